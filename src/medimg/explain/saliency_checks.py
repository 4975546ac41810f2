"""Two checks of whether a saliency map explains anything.

* :func:`randomisation_check` — the model-parameter randomisation test of Adebayo et al. 2018 ("Sanity checks for
  saliency maps"): re-initialise a copy of the model layer by layer from the output down and measure how much the map
  still resembles the original one (Spearman rank correlation). A method whose maps survive randomisation explains
  the input, not the model.
* :func:`deletion_curve` — the deletion metric of Petsiuk et al. 2018 (RISE): remove the most salient voxels first
  and follow the target-class probability; a faithful map makes it fall fast (low area under the curve), which is
  compared with deleting the voxels in random order.

The model contract and the promise to leave the model as it was are those of :mod:`medimg.explain.saliency`.
"""

from __future__ import annotations

import copy
import logging
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
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
    positive_int,
)
from medimg.explain.saliency import grad_cam, occlusion_sensitivity

__all__ = ["randomisation_check", "deletion_curve", "spearman_correlation", "METHODS"]

logger = logging.getLogger(__name__)

#: Names accepted by :func:`randomisation_check` for its ``method`` argument.
METHODS = ("grad_cam", "grad_cam++", "occlusion")


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
        with evaluating(model), torch.no_grad():
            model_logits(model, x)
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
    check_model(model)
    batch = as_batch(x)
    name, explain = _explainer(method, dict(options or {}))
    layer_name: str | None = None
    if target_layer is not None:
        layer_name = check_target_layer(model, target_layer)
    elif name in ("grad_cam", "grad_cam++"):
        raise InvalidParameterError(
            "Grad-CAM needs a target layer", parameter="target_layer", expected="a submodule of the model",
            found=None, fix="pass target_layer=model.cam_layer",
        )
    seed = _integer(seed, "seed")
    groups = _randomisation_groups(model, layers)
    device, dtype = model_device_dtype(model, batch)
    with evaluating(model), torch.no_grad():
        classes = class_indices(class_index, model_logits(model, batch.to(device=device, dtype=dtype)))
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
    check_model(model)
    batch = as_batch(x)
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
    steps = positive_int(steps, "steps")
    n_random = positive_int(n_random, "n_random")
    batch_size = positive_int(batch_size, "batch_size")
    baseline_fill(baseline, batch[0])
    rng = np.random.default_rng(_integer(seed, "seed"))
    n_voxels = int(np.prod(spatial))
    counts = np.round(np.arange(steps + 1) / steps * n_voxels).astype(np.int64)
    fractions = counts / n_voxels
    device, dtype = model_device_dtype(model, batch)
    probabilities = np.zeros((batch.shape[0], steps + 1))
    random_probabilities = np.zeros((batch.shape[0], steps + 1))
    with evaluating(model), torch.no_grad():
        inputs = batch.to(device=device, dtype=dtype)
        classes = class_indices(class_index, model_logits(model, inputs))
        for b in range(inputs.shape[0]):
            sample, cls = inputs[b], int(classes[b])
            fill = baseline_fill(baseline, sample)
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
        out.append(forward_probabilities(model, images, cls, batch_size))
    return torch.cat(out).numpy()
