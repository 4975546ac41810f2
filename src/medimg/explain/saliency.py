"""Saliency maps for image classifiers, and two checks of whether a map explains anything.

Owns:

* :func:`grad_cam` — Grad-CAM (Selvaraju et al. 2017) and Grad-CAM++ (Chattopadhay et al. 2018) for 2D and 3D
  classifiers, computed from one target layer (medimg classifiers expose it as ``model.cam_layer``).
* :func:`occlusion_sensitivity` — the drop in the target-class probability when a patch of the input is occluded
  (Zeiler & Fergus 2014), averaged over the patches that cover each voxel.
* :func:`randomisation_check` — the model-parameter randomisation test of Adebayo et al. 2018 ("Sanity checks for
  saliency maps"): re-initialise a copy of the model layer by layer from the output down and measure how much the map
  still resembles the original one (Spearman rank correlation). A method whose maps survive randomisation explains
  the input, not the model.
* :func:`deletion_curve` — the deletion metric of Petsiuk et al. 2018 (RISE): remove the most salient voxels first
  and follow the target-class probability; a faithful map makes it fall fast (low area under the curve), which is
  compared with deleting the voxels in random order.

The model contract: any ``torch.nn.Module`` with ``model(x) -> logits`` of shape (B, K) for ``x`` of shape
(B, C, Y, X) or (B, C, Z, Y, X). Probabilities are ``softmax(logits)`` for K > 1 and ``sigmoid(logits)`` for K = 1.
Every function leaves the model as it found it: the train/eval flag of each submodule, ``requires_grad`` of each
parameter and the parameter ``.grad`` fields are not changed, and the hooks are removed even when an error is raised.
The computations run in eval mode (dropout off, batch-norm running statistics), whatever mode the model was in, and
work when the caller is inside ``torch.no_grad()`` or ``torch.inference_mode()``.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import math
import numbers
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medimg.core.errors import InvalidParameterError

__all__ = ["grad_cam", "occlusion_sensitivity", "randomisation_check", "deletion_curve", "spearman_correlation"]

logger = logging.getLogger(__name__)

#: Names accepted by :func:`randomisation_check` for its ``method`` argument.
METHODS = ("grad_cam", "grad_cam++", "occlusion")

TensorLike = torch.Tensor | np.ndarray


# ----------------------------------------------------------------------------------------------------------- checks
def _check_model(model: Any) -> None:
    if not isinstance(model, nn.Module):
        raise InvalidParameterError(
            "not a torch module", parameter="model", expected="a torch.nn.Module returning logits (B, K)",
            found=type(model).__name__, fix="pass the classifier itself, not its state dict or a function",
        )


def _model_device_dtype(model: nn.Module, x: torch.Tensor) -> tuple[torch.device, torch.dtype]:
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return x.device, torch.float32


def _as_batch(x: Any) -> torch.Tensor:
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


def _check_target_layer(model: nn.Module, target_layer: Any) -> str:
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


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InvalidParameterError("not a positive integer", parameter=name, expected="an integer >= 1",
                                    found=repr(value))
    return int(value)


def _per_axis(value: Any, name: str, ndim: int) -> tuple[int, ...]:
    """One positive integer, or one per spatial axis in array order (Y, X) or (Z, Y, X)."""
    values = [value] * ndim if isinstance(value, numbers.Integral) else value
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != ndim:
        raise InvalidParameterError(
            "wrong number of values", parameter=name, expected=f"one integer or {ndim} integers (array axis order)",
            found=repr(value), fix=f"give {name} as one integer or one per spatial axis",
        )
    return tuple(_positive_int(v, name) for v in values)


def _baseline(value: Any, sample: torch.Tensor) -> torch.Tensor:
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


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != x.shape[0]:
        found = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InvalidParameterError(
            "the model does not return logits (B, K)", parameter="model", expected=f"a tensor ({x.shape[0]}, K)",
            found=found, fix="wrap the model so that it returns only the class logits",
        )
    return out


def _probabilities(logits: torch.Tensor) -> torch.Tensor:
    logits = logits.float()
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


def _class_indices(class_index: Any, logits: torch.Tensor) -> torch.Tensor:
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
def _evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode inside the block; afterwards every submodule gets back its own train/eval flag."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, flag in flags:
            module.training = flag


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
    _check_model(model)
    batch = _as_batch(x)
    _check_target_layer(model, target_layer)
    device, dtype = _model_device_dtype(model, batch)
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
        with _evaluating(model), torch.inference_mode(False), torch.enable_grad():
            inputs = batch.to(device=device, dtype=dtype).requires_grad_(True)
            logits = _logits(model, inputs)
            classes = _class_indices(class_index, logits)
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


def _forward_probabilities(model: nn.Module, images: torch.Tensor, classes: int, batch_size: int) -> torch.Tensor:
    """Probability of class ``classes`` for each image (N,), ``batch_size`` images per forward pass."""
    out = [
        _probabilities(_logits(model, images[i:i + batch_size]))[:, classes]
        for i in range(0, images.shape[0], batch_size)
    ]
    return torch.cat(out).double().cpu()


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
    _check_model(model)
    batch = _as_batch(x)
    spatial = tuple(batch.shape[2:])
    sizes = tuple(min(p, n) for p, n in zip(_per_axis(patch, "patch", len(spatial)), spatial))
    steps = (tuple(max(1, p // 2) for p in sizes) if stride is None
             else _per_axis(stride, "stride", len(spatial)))
    for axis, (size, step, n) in enumerate(zip(sizes, steps, spatial)):
        if step > size and size < n:
            raise InvalidParameterError(
                "stride larger than the patch leaves voxels uncovered", parameter="stride",
                expected=f"at most the patch size {size} along axis {axis}", found=step,
                fix="use a stride of at most the patch size (half the patch is usual)",
            )
    batch_size = _positive_int(batch_size, "batch_size")
    _baseline(baseline, batch[0])
    device, dtype = _model_device_dtype(model, batch)
    corners = list(itertools.product(*[_starts(n, p, s) for n, p, s in zip(spatial, sizes, steps)]))
    maps = np.zeros((batch.shape[0], *spatial), np.float64)
    counts = np.zeros(spatial, np.float64)
    for corner in corners:
        counts[tuple(slice(c, c + p) for c, p in zip(corner, sizes))] += 1
    with _evaluating(model), torch.no_grad():
        inputs = batch.to(device=device, dtype=dtype)
        classes = _class_indices(class_index, _logits(model, inputs))
        for b in range(inputs.shape[0]):
            sample, cls = inputs[b], int(classes[b])
            fill = _baseline(baseline, sample)
            reference = float(_forward_probabilities(model, sample[None], cls, 1)[0])
            for first in range(0, len(corners), batch_size):
                chunk = corners[first:first + batch_size]
                occluded = sample.repeat(len(chunk), *[1] * sample.ndim)
                for j, corner in enumerate(chunk):
                    region = (j, slice(None), *[slice(c, c + p) for c, p in zip(corner, sizes)])
                    occluded[region] = fill
                drops = reference - _forward_probabilities(model, occluded, cls, batch_size).numpy()
                for corner, drop in zip(chunk, drops):
                    maps[(b, *[slice(c, c + p) for c, p in zip(corner, sizes)])] += drop
    logger.debug("occlusion sensitivity: %d patches of %s per sample", len(corners), sizes)
    return (maps / counts).astype(np.float32)


# ---------------------------------------------------------------------------------------------- randomisation check
def spearman_correlation(a: TensorLike, b: TensorLike) -> float:
    """Spearman rank correlation of two maps of the same shape (ties get their mean rank).

    A constant map shares no ranking with anything: the correlation is then 0.0 (not NaN).

    Example:
        >>> spearman_correlation(np.array([0.1, 0.5, 0.2]), np.array([1.0, 9.0, 3.0]))
        1.0
    """
    from scipy.stats import rankdata

    a = np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, dtype=np.float64).ravel()
    b = np.asarray(b.detach().cpu() if isinstance(b, torch.Tensor) else b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise InvalidParameterError("maps differ in size", parameter="b", expected=a.size, found=b.size)
    ra, rb = rankdata(a) - (a.size + 1) / 2, rankdata(b) - (b.size + 1) / 2
    denominator = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb / denominator) if denominator > 0 else 0.0


def _explainer(
    method: str | Callable[..., np.ndarray], options: Mapping[str, Any]
) -> tuple[str, Callable[[nn.Module, torch.Tensor, nn.Module | None, torch.Tensor], np.ndarray]]:
    if callable(method):
        name = getattr(method, "__name__", type(method).__name__)
        return name, lambda m, x, layer, cls: method(m, x, target_layer=layer, class_index=cls.tolist(), **options)
    if method in ("grad_cam", "grad_cam++"):
        plus = method == "grad_cam++"
        return method, lambda m, x, layer, cls: grad_cam(m, x, target_layer=layer, class_index=cls.tolist(),
                                                         plus_plus=plus, **options)
    if method == "occlusion":
        return method, lambda m, x, _layer, cls: occlusion_sensitivity(m, x, class_index=cls.tolist(), **options)
    raise InvalidParameterError(
        "unknown saliency method", parameter="method", expected=f"one of {', '.join(METHODS)} or a callable",
        found=repr(method), fix='use "grad_cam"',
    )


def _layers_in_forward_order(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the modules holding their own parameters, in the order the forward pass first calls them."""
    names = {module: name for name, module in model.named_modules()
             if any(True for _ in module.parameters(recurse=False))}
    order: list[str] = []

    def record(module: nn.Module, _inputs: Any) -> None:
        if names[module] not in order:
            order.append(names[module])

    handles = [module.register_forward_pre_hook(record) for module in names]
    try:
        with _evaluating(model), torch.no_grad():
            _logits(model, x)
    finally:
        for handle in handles:
            handle.remove()
    return order


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidParameterError("not an integer", parameter=name, expected="an integer", found=repr(value))
    return int(value)


def _randomisation_groups(model: nn.Module, layers: Sequence[str] | None) -> dict[str, list[str]] | None:
    """For each name in ``layers``, the names of the modules with their own parameters inside it."""
    if layers is None:
        return None
    if isinstance(layers, str) or not isinstance(layers, Sequence) or not layers:
        raise InvalidParameterError(
            "not a list of module names", parameter="layers", expected='a non-empty list such as ["head", "stem"]',
            found=repr(layers), fix="give the names as in model.named_modules(), or None for every layer",
        )
    names = dict(model.named_modules())
    owners = [name for name, module in names.items() if any(True for _ in module.parameters(recurse=False))]
    groups: dict[str, list[str]] = {}
    for layer in layers:
        if layer not in names:
            raise InvalidParameterError(
                "no such submodule", parameter="layers", expected="names from model.named_modules()",
                found=repr(layer), fix="print([n for n, _ in model.named_modules()]) to see the names",
            )
        members = [name for name in owners if layer == "" or name == layer or name.startswith(layer + ".")]
        if not members:
            raise InvalidParameterError("submodule without parameters", parameter="layers",
                                        expected="a module holding parameters", found=repr(layer))
        groups[layer] = members
    return groups


def _reinitialise(module: nn.Module) -> None:
    """Draw new parameters with the layer's own initialiser; layers without one get a normal with the same spread."""
    reset = getattr(module, "reset_parameters", None)
    if callable(reset):
        reset()
        return
    with torch.no_grad():
        for param in module.parameters(recurse=False):
            std = float(param.float().std()) if param.numel() > 1 else 0.0
            param.normal_(0.0, std if std > 0 else 0.02)


def randomisation_check(
    model: nn.Module,
    x: TensorLike,
    *,
    method: str | Callable[..., np.ndarray] = "grad_cam",
    target_layer: nn.Module | None = None,
    class_index: int | Sequence[int] | None = None,
    layers: Sequence[str] | None = None,
    options: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Cascading model-parameter randomisation test of a saliency method (Adebayo et al. 2018).

    A deep copy of ``model`` has its parameterised layers re-initialised one after the other, from the logits down to
    the input (each layer with its own ``reset_parameters``, the initialiser used before training), in the order the
    forward pass calls them. After each step the map of the same class is computed again and compared with the map of
    the trained model by Spearman rank correlation. A method that depends on what the model learned loses the
    correlation as layers are randomised; one that stays near 1 only echoes the input (an edge detector). The model
    itself is not changed, and the global random state is restored afterwards. Each step costs one map, so for deep
    networks name a few blocks in ``layers`` (all the layers inside a block are re-initialised in one step).

    Args:
        model: classifier, ``model(x) -> logits (B, K)``.
        x: input (B, C, Y, X) or (B, C, Z, Y, X).
        method: ``"grad_cam"``, ``"grad_cam++"``, ``"occlusion"``, or a callable
            ``method(model, x, *, target_layer, class_index, **options) -> (B, *spatial)`` array.
        target_layer: the Grad-CAM layer of ``model`` (required for the Grad-CAM methods and passed to a callable);
            the same layer of each randomised copy is used.
        class_index: class explained in every map: None for the trained model's prediction (kept fixed while the
            copy is randomised), one integer, or one per sample.
        layers: names of submodules (as in ``model.named_modules()``) randomised one step each, in this order,
            e.g. ``["head", "backbone.stages.3", "backbone.stages.2"]``; None for every layer with parameters, from
            the last one the forward pass calls to the first.
        options: extra keyword arguments of the method, e.g. ``{"patch": 4}`` for occlusion.
        seed: seed of the re-initialisation.

    Returns:
        dict with ``method`` (str), ``class_index`` (list of int, one per sample), ``layers`` (names of the
        randomised layers, in the order they were randomised), ``spearman`` (list of float: mean over the samples
        after each step, same length as ``layers``), ``spearman_per_sample`` (one list of B floats per step),
        ``final_spearman`` (float, all layers randomised) and ``seed``.

    Raises:
        InvalidParameterError: unknown ``method``; missing or foreign ``target_layer``; a name in ``layers`` that is
            not a submodule or holds no parameters; model without parameters; the errors of the method itself.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
        ...                             torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> result = randomisation_check(model, torch.rand(1, 1, 12, 12), target_layer=model[1])
        >>> result["layers"], len(result["spearman"])
        (['4', '0'], 2)
    """
    _check_model(model)
    batch = _as_batch(x)
    name, explain = _explainer(method, dict(options or {}))
    layer_name: str | None = None
    if target_layer is not None:
        layer_name = _check_target_layer(model, target_layer)
    elif name in ("grad_cam", "grad_cam++"):
        raise InvalidParameterError(
            "Grad-CAM needs a target layer", parameter="target_layer", expected="a submodule of the model",
            found=None, fix="pass target_layer=model.cam_layer",
        )
    seed = _integer(seed, "seed")
    groups = _randomisation_groups(model, layers)
    device, dtype = _model_device_dtype(model, batch)
    with _evaluating(model), torch.no_grad():
        classes = _class_indices(class_index, _logits(model, batch.to(device=device, dtype=dtype)))
    if groups is None:
        groups = {name: [name] for name in _layers_in_forward_order(model, batch.to(device=device, dtype=dtype))[::-1]}
    if not groups:
        raise InvalidParameterError("the model has no parameters to randomise", parameter="model",
                                    expected="at least one layer with parameters", found=0)
    original = explain(model, batch, target_layer, classes)
    if any(float(np.ptp(m)) == 0.0 for m in original):
        logger.warning("a saliency map of the trained model is constant; its correlations are reported as 0")
    randomised = copy.deepcopy(model)
    modules = dict(randomised.named_modules())
    copy_layer = None if layer_name is None else modules[layer_name]
    per_step: list[list[float]] = []
    rng_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(seed)
        for layer, members in groups.items():
            for member in members:
                _reinitialise(modules[member])
            maps = explain(randomised, batch, copy_layer, classes)
            per_step.append([spearman_correlation(a, b) for a, b in zip(original, maps)])
            logger.debug("randomised down to %r: Spearman %.3f", layer, float(np.mean(per_step[-1])))
    means = [float(np.mean(step)) for step in per_step]
    return {
        "method": name,
        "class_index": [int(c) for c in classes],
        "layers": list(groups),
        "spearman": means,
        "spearman_per_sample": per_step,
        "final_spearman": means[-1],
        "seed": seed,
    }


# --------------------------------------------------------------------------------------------------- deletion curve
def _auc(fractions: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Trapezoidal area under each row of ``values`` over ``fractions``."""
    widths = np.diff(fractions)
    return ((values[..., 1:] + values[..., :-1]) / 2 * widths).sum(-1)


def deletion_curve(
    model: nn.Module,
    x: TensorLike,
    saliency: TensorLike,
    *,
    class_index: int | Sequence[int] | None = None,
    steps: int = 20,
    baseline: str | float = "mean",
    n_random: int = 3,
    seed: int = 0,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Deletion metric (Petsiuk et al. 2018): remove the most salient voxels first and follow the class probability.

    At step ``k`` of ``steps`` the ``round(k / steps * N)`` most salient of the ``N`` voxels (ties in random order),
    in every channel, are replaced by ``baseline`` and the probability of the explained class is recorded. The area
    under the probability-versus-fraction curve (trapezoidal rule) is low when the map puts first what the model
    needs. For reference the same curve is computed for voxels deleted in random order (mean of ``n_random``
    orders); a useful map has ``auc`` well below ``random_auc``.

    Args:
        model: classifier, ``model(x) -> logits (B, K)``.
        x: input (B, C, Y, X) or (B, C, Z, Y, X); it is not modified.
        saliency: map (B, *spatial) like the output of :func:`grad_cam`, or (*spatial) for one sample; higher =
            more important. Only the order of the values matters.
        class_index: class followed: None for the predicted class of each sample, one integer, or one per sample.
        steps: number of deletion steps; the curve has ``steps + 1`` points from 0 to 1.
        baseline: ``"mean"`` (each channel's mean over the sample) or a number.
        n_random: random deletion orders averaged for the reference curve.
        seed: seed of the tie-breaking and of the random orders.
        batch_size: images per forward pass.

    Returns:
        dict with ``fractions`` (steps + 1,) deleted fraction of the voxels, ``probabilities`` (B, steps + 1),
        ``auc`` (B,), ``random_probabilities`` (B, steps + 1), ``random_auc`` (B,) (numpy arrays, float64) and
        ``class_index`` (B,) int64.

    Raises:
        InvalidParameterError: ``saliency`` does not match ``x``, bad ``steps``, ``n_random``, ``baseline``,
            ``batch_size`` or ``class_index``.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
        ...                             torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> x = torch.rand(1, 1, 8, 8)
        >>> curve = deletion_curve(model, x, x[:, 0], steps=4)
        >>> curve["fractions"].tolist(), curve["probabilities"].shape, curve["auc"].shape
        ([0.0, 0.25, 0.5, 0.75, 1.0], (1, 5), (1,))
    """
    _check_model(model)
    batch = _as_batch(x)
    spatial = tuple(batch.shape[2:])
    sal = saliency.detach().cpu().numpy() if isinstance(saliency, torch.Tensor) else np.asarray(saliency)
    if sal.shape == spatial and batch.shape[0] == 1:
        sal = sal[None]
    if sal.shape != (batch.shape[0], *spatial):
        raise InvalidParameterError(
            "saliency does not match the input", parameter="saliency",
            expected=f"shape {(batch.shape[0], *spatial)} (B, *spatial)", found=sal.shape,
            fix="pass the map returned for this x (grad_cam / occlusion_sensitivity output)",
        )
    if not np.issubdtype(sal.dtype, np.number) or not np.all(np.isfinite(sal)):
        raise InvalidParameterError("saliency is not a finite real map", parameter="saliency",
                                    expected="finite real values", found=sal.dtype)
    steps = _positive_int(steps, "steps")
    n_random = _positive_int(n_random, "n_random")
    batch_size = _positive_int(batch_size, "batch_size")
    _baseline(baseline, batch[0])
    rng = np.random.default_rng(_integer(seed, "seed"))
    n_voxels = int(np.prod(spatial))
    counts = np.round(np.arange(steps + 1) / steps * n_voxels).astype(np.int64)
    fractions = counts / n_voxels
    device, dtype = _model_device_dtype(model, batch)
    probabilities = np.zeros((batch.shape[0], steps + 1))
    random_probabilities = np.zeros((batch.shape[0], steps + 1))
    with _evaluating(model), torch.no_grad():
        inputs = batch.to(device=device, dtype=dtype)
        classes = _class_indices(class_index, _logits(model, inputs))
        for b in range(inputs.shape[0]):
            sample, cls = inputs[b], int(classes[b])
            fill = _baseline(baseline, sample)
            order = np.lexsort((rng.random(n_voxels), -sal[b].ravel().astype(np.float64)))
            probabilities[b] = _deletion_probabilities(model, sample, fill, order, counts, cls, batch_size)
            for _ in range(n_random):
                random_order = rng.permutation(n_voxels)
                random_probabilities[b] += _deletion_probabilities(model, sample, fill, random_order, counts, cls,
                                                                   batch_size) / n_random
    return {
        "fractions": fractions,
        "probabilities": probabilities,
        "auc": _auc(fractions, probabilities),
        "random_probabilities": random_probabilities,
        "random_auc": _auc(fractions, random_probabilities),
        "class_index": classes.cpu().numpy().astype(np.int64),
    }


def _deletion_probabilities(
    model: nn.Module, sample: torch.Tensor, fill: torch.Tensor, order: np.ndarray, counts: np.ndarray, cls: int,
    batch_size: int,
) -> np.ndarray:
    """Class probability after deleting the first ``counts[k]`` voxels of ``order``, for each k."""
    channels, spatial = sample.shape[0], sample.shape[1:]
    rank = torch.empty(order.size, dtype=torch.long)
    rank[torch.from_numpy(order)] = torch.arange(order.size)
    rank = rank.reshape(spatial).to(sample.device)
    flat_fill = fill.expand_as(sample)
    out = []
    for first in range(0, counts.size, batch_size):
        chunk = torch.from_numpy(counts[first:first + batch_size]).to(sample.device)
        deleted = rank[None] < chunk.reshape(-1, *[1] * len(spatial))  # (n, *spatial)
        images = torch.where(deleted[:, None], flat_fill[None], sample[None].expand(chunk.numel(), channels,
                                                                                     *spatial))
        out.append(_forward_probabilities(model, images, cls, batch_size))
    return torch.cat(out).numpy()
