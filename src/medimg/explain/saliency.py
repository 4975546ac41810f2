"""Saliency maps for image classifiers.

Owns:

* :func:`grad_cam` — Grad-CAM (Selvaraju et al. 2017) and Grad-CAM++ (Chattopadhay et al. 2018) for 2D and 3D
  classifiers, computed from one target layer (medimg classifiers expose it as ``model.cam_layer``).
* :func:`occlusion_sensitivity` — the drop in the target-class probability when a patch of the input is occluded
  (Zeiler & Fergus 2014), averaged over the patches that cover each voxel.

The checks of whether a map explains anything (:func:`~medimg.explain.saliency_checks.randomisation_check`,
:func:`~medimg.explain.saliency_checks.deletion_curve`) are in :mod:`medimg.explain.saliency_checks`.

The model contract: any ``torch.nn.Module`` with ``model(x) -> logits`` of shape (B, K) for ``x`` of shape
(B, C, Y, X) or (B, C, Z, Y, X). Probabilities are ``softmax(logits)`` for K > 1 and ``sigmoid(logits)`` for K = 1.
Every function leaves the model as it found it: the train/eval flag of each submodule, ``requires_grad`` of each
parameter and the parameter ``.grad`` fields are not changed, and the hooks are removed even when an error is raised.
The computations run in eval mode (dropout off, batch-norm running statistics), whatever mode the model was in, and
work when the caller is inside ``torch.no_grad()`` or ``torch.inference_mode()``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medimg.core.errors import InvalidParameterError
from medimg.explain.model_inputs import (
    TensorLike,
    as_batch,
    baseline_fill,
    check_model,
    check_target_layer,
    class_indices,
    evaluating,
    forward_probabilities,
    model_device_dtype,
    model_logits,
    per_axis_sizes,
    positive_int,
)

__all__ = ["grad_cam", "occlusion_sensitivity"]

logger = logging.getLogger(__name__)


def _minmax(maps: torch.Tensor) -> torch.Tensor:
    """Scale each sample of (B, *spatial) to [0, 1]; a constant map becomes all zeros."""
    flat = maps.reshape(maps.shape[0], -1)
    lo = flat.min(1).values.reshape(-1, *[1] * (maps.ndim - 1))
    span = flat.max(1).values.reshape(-1, *[1] * (maps.ndim - 1)) - lo
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (maps - lo) / safe, torch.zeros_like(maps))


# --------------------------------------------------------------------------------------------------------- Grad-CAM
def grad_cam(
    model: nn.Module,
    x: TensorLike,
    *,
    target_layer: nn.Module,
    class_index: int | Sequence[int] | None = None,
    plus_plus: bool = False,
) -> np.ndarray:
    """Grad-CAM or Grad-CAM++ map of a classifier's decision, at the input's resolution, in [0, 1] per sample.

    With activations ``A_k`` of the target layer (channels ``k``) and ``g_k = dS/dA_k``, the gradient of the logit
    ``S`` of the explained class, Grad-CAM (Selvaraju et al. 2017) weights each channel by the spatial mean of its
    gradient, ``w_k = mean(g_k)``; Grad-CAM++ (Chattopadhay et al. 2018, exponential form of their eq. 19) uses
    ``w_k = sum(alpha_k * relu(g_k))`` with ``alpha_k = g_k**2 / (2 g_k**2 + sum(A_k * g_k**3))`` (denominators of
    0 replaced by 1), leaving out the common factor ``exp(S)``, which the normalisation removes. The map
    ``relu(sum_k w_k A_k)`` is upsampled (bilinear / trilinear, ``align_corners=False``) to the input size and
    min-max scaled to [0, 1] per sample; a map with no positive evidence is all zeros. This matches
    ``monai.visualize.GradCAM`` / ``GradCAMpp`` followed by a min-max scaling.

    Volume classifiers whose target layer works on 2D slices are supported (``x`` of 5 axes, activations of 4):
    activations ``(B * Z, F, y, x)``, slice ``z`` of volume ``b`` in row ``b * Z + z`` (a slice-wise encoder such as
    ``slice_lstm``), are explained as one ``(F, Z, y, x)`` feature volume per sample; activations ``(B, F, y, x)``
    (slices stacked as channels, 2.5D) give an in-plane map, repeated along Z since the layer cannot tell slices
    apart.

    The gradients are taken with ``torch.autograd.grad`` with respect to the activations, so parameter ``.grad``
    fields and ``requires_grad`` flags are not touched (frozen models work). In-place operations after the target
    layer are safe: the forward hook hands a copy of the activations to the rest of the network.

    Args:
        model: classifier, ``model(x) -> logits (B, K)``.
        x: input (B, C, Y, X) or (B, C, Z, Y, X), tensor or numpy array; it is not modified.
        target_layer: the module whose output is explained, a submodule of ``model`` whose output has the same number
            of spatial axes as ``x``, or per-slice 2D maps of a volume (see above) (medimg classifiers:
            ``model.cam_layer``, the last convolution block).
        class_index: class to explain: None for the predicted class of each sample, one integer for all samples, or
            one integer per sample.
        plus_plus: Grad-CAM++ instead of Grad-CAM.

    Returns:
        float32 array (B, Y, X) or (B, Z, Y, X) with values in [0, 1].

    Raises:
        InvalidParameterError: ``x`` is not 4D/5D, ``target_layer`` is not in ``model`` or is not called in the
            forward pass or has no spatial output, ``class_index`` is out of range, the model does not return (B, K).

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
        ...                             torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> cam = grad_cam(model, torch.rand(2, 1, 16, 12), target_layer=model[1])
        >>> cam.shape, cam.dtype.name, bool(cam.min() >= 0.0), bool(cam.max() <= 1.0)
        ((2, 16, 12), 'float32', True, True)
    """
    check_model(model)
    batch = as_batch(x)
    check_target_layer(model, target_layer)
    device, dtype = model_device_dtype(model, batch)
    spatial = tuple(batch.shape[2:])
    store: dict[str, Any] = {"calls": 0}

    def keep_output(_module: nn.Module, _inputs: Any, output: Any) -> Any:
        store["calls"] += 1
        if not isinstance(output, torch.Tensor):
            store["type"] = type(output).__name__
            return None
        store["acts"] = output
        # the rest of the network gets a copy, so in-place operations downstream cannot rewrite the saved activations
        return output.clone()

    handle = target_layer.register_forward_hook(keep_output)
    try:
        with evaluating(model), torch.inference_mode(False), torch.enable_grad():
            inputs = batch.to(device=device, dtype=dtype).requires_grad_(True)
            logits = model_logits(model, inputs)
            classes = class_indices(class_index, logits)
            acts = _target_activations(store, tuple(batch.shape))
            score = logits.gather(1, classes[:, None]).sum()
            (grads,) = torch.autograd.grad(score, acts, allow_unused=True)
    finally:
        handle.remove()
    with torch.no_grad():
        acts = acts.detach().float()
        if grads is None:
            logger.warning("the explained logits do not depend on target_layer; the Grad-CAM maps are all zeros")
            grads = torch.zeros_like(acts)
        grads = grads.detach().float()
        acts, in_plane = _volume_layout(acts, tuple(batch.shape))
        grads, _ = _volume_layout(grads, tuple(batch.shape))
        axes = tuple(range(2, acts.ndim))
        if plus_plus:
            g2 = grads * grads
            denominator = 2 * g2 + (acts * g2 * grads).sum(axes, keepdim=True)
            alpha = g2 / torch.where(denominator != 0, denominator, torch.ones_like(denominator))
            weights = (alpha * F.relu(grads)).sum(axes, keepdim=True)
        else:
            weights = grads.mean(axes, keepdim=True)
        cam = F.relu((weights * acts).sum(1, keepdim=True))
        size = spatial[1:] if in_plane else spatial
        mode = "bilinear" if len(size) == 2 else "trilinear"
        cam = F.interpolate(cam, size=size, mode=mode, align_corners=False)[:, 0]
        if in_plane:
            cam = cam[:, None].expand(-1, spatial[0], -1, -1)
        cam = _minmax(cam)
    logger.debug("Grad-CAM%s of %d sample(s), feature map %s", "++" if plus_plus else "", cam.shape[0],
                 tuple(acts.shape[2:]))
    return cam.cpu().numpy().astype(np.float32)


def _volume_layout(t: torch.Tensor, input_shape: tuple[int, ...]) -> tuple[torch.Tensor, bool]:
    """Target-layer tensors as (B, F, *spatial) and whether they are in-plane (2.5D) maps of a volume input.

    (B * Z, F, y, x), slice-major, becomes (B, F, Z, y, x); (B, F, y, x) for a volume stays, flagged in-plane.
    """
    if t.ndim == len(input_shape):
        return t, False
    batch, depth = input_shape[0], input_shape[2]
    if t.shape[0] == batch:
        return t, True
    return t.reshape(batch, depth, *t.shape[1:]).transpose(1, 2), False


def _target_activations(store: Mapping[str, Any], input_shape: tuple[int, ...]) -> torch.Tensor:
    if store["calls"] == 0:
        raise InvalidParameterError(
            "target_layer was not called in the forward pass", parameter="target_layer",
            expected="a module the model calls on the way to its logits", found="no call",
            fix="pick a layer that the forward pass uses (model.cam_layer for medimg classifiers)",
        )
    if "acts" not in store:
        raise InvalidParameterError(
            "target_layer does not return a tensor", parameter="target_layer", expected="a tensor output",
            found=store.get("type"), fix="pick the convolution block itself, not a module returning a tuple",
        )
    if store["calls"] > 1:
        logger.warning("target_layer was called %d times in one forward pass; the last call is explained",
                       store["calls"])
    acts: torch.Tensor = store["acts"]
    batch, ndim = input_shape[0], len(input_shape)
    slices = ndim == 5 and acts.ndim == 4 and acts.shape[0] in (batch, batch * input_shape[2])
    if acts.ndim != ndim and not slices:
        expected = f"{ndim} axes (B, C, *spatial)"
        if ndim == 5:
            expected += f", or per-slice maps (B, F, y, x) / (B * Z, F, y, x) with B = {batch}, Z = {input_shape[2]}"
        raise InvalidParameterError(
            "target_layer output has no spatial axes like the input", parameter="target_layer",
            expected=expected, found=tuple(acts.shape),
            fix="pick a convolution block before the global pooling (model.cam_layer)",
        )
    if not acts.requires_grad:
        raise InvalidParameterError(
            "target_layer output is cut off from autograd", parameter="target_layer",
            expected="an output that depends on the input through autograd", found="a detached tensor",
            fix="remove torch.no_grad()/detach() inside the model before the target layer",
        )
    return acts


# ------------------------------------------------------------------------------------------------------- occlusion
def _starts(size: int, patch: int, stride: int) -> list[int]:
    """Patch starts along one axis: 0, stride, ... and a last patch flush with the end."""
    last = size - patch
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return starts


def occlusion_sensitivity(
    model: nn.Module,
    x: TensorLike,
    *,
    patch: int | Sequence[int] = 8,
    stride: int | Sequence[int] | None = None,
    class_index: int | Sequence[int] | None = None,
    baseline: str | float = "mean",
    batch_size: int = 32,
) -> np.ndarray:
    """Drop in the target-class probability when a patch is occluded, averaged over the patches covering each voxel.

    Patches of size ``patch`` slide with step ``stride`` (the last one flush with the image end, so every voxel is
    covered); each occluded copy has the patch, in every channel, replaced by ``baseline``. The value of a patch is
    ``p(class | x) - p(class | x occluded)``; the value of a voxel is the mean over the patches that contain it. When
    ``size - patch`` is a multiple of ``stride`` along each axis (the same patch positions), this is ``p(x)`` minus
    the map of ``monai.visualize.OcclusionSensitivity`` with a constant ``mode`` and ``overlap = 1 - stride / patch``.

    Args:
        model: classifier, ``model(x) -> logits (B, K)``.
        x: input (B, C, Y, X) or (B, C, Z, Y, X), tensor or numpy array; it is not modified.
        patch: patch size in voxels, one integer or one per spatial axis (array order); clipped to the image size.
        stride: step between patches in voxels, at most the patch size; None for half the patch (at least 1).
        class_index: class to explain: None for the predicted class of each sample, one integer, or one per sample.
        baseline: ``"mean"`` (each channel's mean over the sample) or a number, e.g. 0.0 or -1000.0 (air in CT).
        batch_size: occluded copies per forward pass.

    Returns:
        float32 array (B, Y, X) or (B, Z, Y, X): probability drops in [-1, 1], high where the evidence is; not
        normalised (negative where occluding made the class more likely).

    Raises:
        InvalidParameterError: bad ``x``, ``patch``, ``stride``, ``baseline``, ``batch_size`` or ``class_index``.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
        ...                             torch.nn.AdaptiveMaxPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> occ = occlusion_sensitivity(model, torch.rand(1, 1, 16, 16), patch=4, stride=4, baseline=0.0)
        >>> occ.shape, bool(abs(occ).max() <= 1.0)
        ((1, 16, 16), True)
    """
    check_model(model)
    batch = as_batch(x)
    spatial = tuple(batch.shape[2:])
    sizes = tuple(min(p, n) for p, n in zip(per_axis_sizes(patch, "patch", len(spatial)), spatial))
    steps = (tuple(max(1, p // 2) for p in sizes) if stride is None
             else per_axis_sizes(stride, "stride", len(spatial)))
    for axis, (size, step, n) in enumerate(zip(sizes, steps, spatial)):
        if step > size and size < n:
            raise InvalidParameterError(
                "stride larger than the patch leaves voxels uncovered", parameter="stride",
                expected=f"at most the patch size {size} along axis {axis}", found=step,
                fix="use a stride of at most the patch size (half the patch is usual)",
            )
    batch_size = positive_int(batch_size, "batch_size")
    baseline_fill(baseline, batch[0])
    device, dtype = model_device_dtype(model, batch)
    corners = list(itertools.product(*[_starts(n, p, s) for n, p, s in zip(spatial, sizes, steps)]))
    maps = np.zeros((batch.shape[0], *spatial), np.float64)
    counts = np.zeros(spatial, np.float64)
    for corner in corners:
        counts[tuple(slice(c, c + p) for c, p in zip(corner, sizes))] += 1
    with evaluating(model), torch.no_grad():
        inputs = batch.to(device=device, dtype=dtype)
        classes = class_indices(class_index, model_logits(model, inputs))
        for b in range(inputs.shape[0]):
            sample, cls = inputs[b], int(classes[b])
            fill = baseline_fill(baseline, sample)
            reference = float(forward_probabilities(model, sample[None], cls, 1)[0])
            for first in range(0, len(corners), batch_size):
                chunk = corners[first:first + batch_size]
                occluded = sample.repeat(len(chunk), *[1] * sample.ndim)
                for j, corner in enumerate(chunk):
                    region = (j, slice(None), *[slice(c, c + p) for c, p in zip(corner, sizes)])
                    occluded[region] = fill
                drops = reference - forward_probabilities(model, occluded, cls, batch_size).numpy()
                for corner, drop in zip(chunk, drops):
                    maps[(b, *[slice(c, c + p) for c, p in zip(corner, sizes)])] += drop
    logger.debug("occlusion sensitivity: %d patches of %s per sample", len(corners), sizes)
    return (maps / counts).astype(np.float32)
