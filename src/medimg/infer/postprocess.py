"""Post-processing of predicted probabilities and label maps: largest connected component, predictive entropy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch
from scipy import ndimage

from medimg.core.errors import InvalidParameterError

__all__ = ["keep_largest_component", "entropy"]

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)


def keep_largest_component(labels: np.ndarray, classes: Sequence[int], *, connectivity: int = 1) -> np.ndarray:
    """Keep, for each listed class, only its largest connected component; the other components become 0.

    Args:
        labels: (Y, X) or (Z, Y, X) integer label map.
        classes: label values to clean; other labels are left as they are.
        connectivity: neighbourhood of ``scipy.ndimage.generate_binary_structure``: 1 = faces (6 in 3D), up to
            ``labels.ndim`` = faces, edges and corners (26 in 3D).

    Returns:
        a new label map of the same shape and dtype; ``labels`` is left unchanged. Of components of equal size
        the first in raster order is kept.

    Raises:
        InvalidParameterError: a non-integer label map or a connectivity outside [1, ndim].

    Example:
        >>> lab = np.array([[1, 1, 0, 1], [0, 0, 0, 0], [2, 0, 2, 2]])
        >>> keep_largest_component(lab, [1, 2]).tolist()
        [[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 2, 2]]
    """
    labels = np.asarray(labels)
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise InvalidParameterError(
            "label map must hold integers", parameter="labels", expected="an integer array", found=labels.dtype,
            fix="take the argmax of the probabilities, or cast with .astype(np.int16)",
        )
    if not 1 <= connectivity <= max(labels.ndim, 1):
        raise InvalidParameterError(
            "connectivity out of range", parameter="connectivity", expected=f"1..{labels.ndim}", found=connectivity,
            fix="use 1 (faces) or labels.ndim (faces, edges and corners)",
        )
    structure = ndimage.generate_binary_structure(labels.ndim, connectivity)
    out = labels.copy()
    for cls in classes:
        mask = labels == cls
        boxes = ndimage.find_objects(mask.astype(np.uint8))
        if not boxes or boxes[0] is None:
            continue
        box = boxes[0]
        sub = mask[box]
        components, n = ndimage.label(sub, structure=structure)
        if n <= 1:
            continue
        sizes = np.bincount(components.ravel(), minlength=n + 1)
        sizes[0] = 0
        drop = sub & (components != int(np.argmax(sizes)))
        out[box][drop] = 0
    return out


def entropy(probs: ArrayT, *, axis: int = 0) -> ArrayT:
    """Predictive entropy in nats of class probabilities, per voxel (0 * log 0 counts as 0).

    Args:
        probs: (K, *spatial) probabilities summing to 1 over ``axis``; a torch tensor or a NumPy array.
        axis: the class axis.

    Returns:
        (*spatial) entropy of the same type (tensor or array) and floating dtype as ``probs`` (float32 for integer
        input); between 0 and log(K).

    Raises:
        InvalidParameterError: ``probs`` with fewer than 1 axis.

    Example:
        >>> round(float(entropy(np.array([0.5, 0.5]))), 4)
        0.6931
    """
    if probs.ndim < 1:
        raise InvalidParameterError(
            "probabilities need a class axis", parameter="probs", expected="(K, *spatial)", found=tuple(probs.shape),
            fix="pass the softmax output with the class axis first",
        )
    if isinstance(probs, torch.Tensor):
        p = probs if probs.is_floating_point() else probs.to(torch.float32)
        return -torch.special.xlogy(p, p).sum(dim=axis)
    from scipy.special import xlogy

    p = probs if np.issubdtype(probs.dtype, np.floating) else probs.astype(np.float32)
    return -xlogy(p, p).sum(axis=axis).astype(p.dtype, copy=False)
