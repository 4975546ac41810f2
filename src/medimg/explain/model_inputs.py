"""What saliency maps and their checks share (:mod:`medimg.explain.saliency`, :mod:`medimg.explain.saliency_checks`):
the checks of a model, an input batch, a target layer, a baseline and a class index, and running a model as those
functions promise to (eval mode restored afterwards, logits of shape (B, K), probabilities by softmax or sigmoid)."""

from __future__ import annotations

import contextlib
import itertools
import math
import numbers
import operator
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from medimg.core.errors import InvalidParameterError

__all__ = ["TensorLike", "check_model", "model_device_dtype", "as_batch", "check_target_layer", "positive_int",
           "per_axis_sizes", "baseline_fill", "model_logits", "to_probabilities", "class_indices", "evaluating",
           "forward_probabilities"]

TensorLike = torch.Tensor | np.ndarray


def check_model(model: Any) -> None:
    if not isinstance(model, nn.Module):
        raise InvalidParameterError(
            "not a torch module", parameter="model", expected="a torch.nn.Module returning logits (B, K)",
            found=type(model).__name__, fix="pass the classifier itself, not its state dict or a function",
        )


def model_device_dtype(model: nn.Module, x: torch.Tensor) -> tuple[torch.device, torch.dtype]:
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return x.device, torch.float32


def as_batch(x: Any) -> torch.Tensor:
    """The input as a float tensor (B, C, *spatial) with 2 or 3 spatial axes; never the caller's object."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.array(x))
    if not isinstance(x, torch.Tensor):
        raise InvalidParameterError(
            "not an array", parameter="x", expected="a torch.Tensor or numpy array (B, C, Y, X) or (B, C, Z, Y, X)",
            found=type(x).__name__, fix="stack the images into one batch array",
        )
    if x.ndim not in (4, 5):
        raise InvalidParameterError(
            "wrong number of axes", parameter="x", expected="4 axes (B, C, Y, X) or 5 axes (B, C, Z, Y, X)",
            found=tuple(x.shape), fix="add the batch and channel axes, e.g. image[None, None]",
        )
    if min(x.shape) < 1:
        raise InvalidParameterError("empty input", parameter="x", expected="no axis of length 0", found=tuple(x.shape))
    if x.is_complex() or x.dtype == torch.bool:
        raise InvalidParameterError("unsupported dtype", parameter="x", expected="a real number dtype", found=x.dtype)
    if not x.is_floating_point():
        x = x.to(torch.float32)
    with torch.inference_mode(False):
        # a clone made outside inference mode is an ordinary tensor that autograd may use
        x = x.detach().clone()
    if not bool(torch.isfinite(x).all()):
        raise InvalidParameterError(
            "non-finite values", parameter="x", expected="finite values", found="NaN or infinity",
            fix="replace NaN/inf first, e.g. with numpy.nan_to_num",
        )
    return x


def check_target_layer(model: nn.Module, target_layer: Any) -> str:
    """The name of ``target_layer`` inside ``model`` ("" for the model itself)."""
    if not isinstance(target_layer, nn.Module):
        raise InvalidParameterError(
            "not a torch module", parameter="target_layer", expected="a submodule of the model, e.g. model.cam_layer",
            found=type(target_layer).__name__, fix="pass the module object, not its name",
        )
    for name, module in model.named_modules(remove_duplicate=False):
        if module is target_layer:
            return name
    raise InvalidParameterError(
        "target_layer is not part of the model", parameter="target_layer",
        expected="a submodule of the model (model.cam_layer for medimg classifiers)",
        found=type(target_layer).__name__,
        fix="take the layer from the same model object you explain (not from a copy or another model)",
    )


def positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InvalidParameterError("not a positive integer", parameter=name, expected="an integer >= 1",
                                    found=repr(value))
    return int(value)


def per_axis_sizes(value: Any, name: str, ndim: int) -> tuple[int, ...]:
    """One positive integer, or one per spatial axis in array order (Y, X) or (Z, Y, X)."""
    values = [value] * ndim if isinstance(value, numbers.Integral) else value
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != ndim:
        raise InvalidParameterError(
            "wrong number of values", parameter=name, expected=f"one integer or {ndim} integers (array axis order)",
            found=repr(value), fix=f"give {name} as one integer or one per spatial axis",
        )
    return tuple(positive_int(v, name) for v in values)


def baseline_fill(value: Any, sample: torch.Tensor) -> torch.Tensor:
    """The replacement value of removed voxels for one sample (C, *spatial): (C, 1, ..., 1)."""
    channels, ndim = sample.shape[0], sample.ndim - 1
    if isinstance(value, str) and value == "mean":
        return sample.reshape(channels, -1).mean(1).reshape(channels, *[1] * ndim)
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value)):
        return torch.full((channels, *[1] * ndim), float(value), dtype=sample.dtype, device=sample.device)
    raise InvalidParameterError(
        "unknown baseline", parameter="baseline", expected='"mean" (per-channel mean of the sample) or a finite number',
        found=repr(value), fix='use "mean", or the intensity of the background, e.g. 0.0 or -1000.0 for CT in HU',
    )


def model_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != x.shape[0]:
        found = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InvalidParameterError(
            "the model does not return logits (B, K)", parameter="model", expected=f"a tensor ({x.shape[0]}, K)",
            found=found, fix="wrap the model so that it returns only the class logits",
        )
    return out


def to_probabilities(logits: torch.Tensor) -> torch.Tensor:
    logits = logits.float()
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


def class_indices(class_index: Any, logits: torch.Tensor) -> torch.Tensor:
    """One class per sample (B,) long tensor: the predicted class when ``class_index`` is None."""
    batch, n_classes = logits.shape
    if class_index is None:
        if n_classes == 1:
            return torch.zeros(batch, dtype=torch.long, device=logits.device)
        return logits.detach().argmax(1)
    if isinstance(class_index, (torch.Tensor, np.ndarray)):
        class_index = class_index.tolist()
    values = class_index if isinstance(class_index, Sequence) and not isinstance(class_index, str) else [class_index]
    try:
        if any(isinstance(v, bool) for v in values):
            raise TypeError("bool")
        ints = [operator.index(v) for v in values]
    except TypeError as exc:
        raise InvalidParameterError(
            "not an integer class index", parameter="class_index", expected="None, an integer or one per sample",
            found=repr(class_index),
        ) from exc
    if len(ints) == 1:
        ints = ints * batch
    if len(ints) != batch:
        raise InvalidParameterError(
            "one class index per sample", parameter="class_index", expected=f"1 or {batch} values",
            found=len(ints), fix="give one integer for the whole batch, or one per sample",
        )
    bad = [v for v in ints if not 0 <= v < n_classes]
    if bad:
        raise InvalidParameterError(
            "class index out of range", parameter="class_index", expected=f"0 <= class_index < {n_classes}",
            found=bad[0], fix=f"the model has {n_classes} outputs; count classes from 0",
        )
    return torch.tensor(ints, dtype=torch.long, device=logits.device)


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode inside the block; afterwards every submodule gets back its own train/eval flag."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, flag in flags:
            module.training = flag


def forward_probabilities(model: nn.Module, images: torch.Tensor, classes: int, batch_size: int) -> torch.Tensor:
    """Probability of class ``classes`` for each image (N,), ``batch_size`` images per forward pass."""
    out = [
        to_probabilities(model_logits(model, images[i:i + batch_size]))[:, classes]
        for i in range(0, images.shape[0], batch_size)
    ]
    return torch.cat(out).double().cpu()
