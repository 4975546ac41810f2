"""Rule-based planning of a segmentation run from a :class:`Fingerprint`, sized for an ordinary CPU.

Rules (nnU-Net's, scaled down for a 2-core CPU):

* **Target spacing** = the median spacing. When the median spacing is anisotropic (coarsest / finest > 3),
  the coarse axis takes the 10th percentile of its spacings instead (but never finer than the other axes).
* **Patch size** = the median shape at the target spacing, shrunk (largest physical extent first) to a voxel
  budget: :data:`VOXEL_BUDGET_3D` (96k voxels, about 46^3) or :data:`VOXEL_BUDGET_2D` (256^2), then rounded up
  to a multiple of the network's total pooling per axis.
* **Pooling**: an axis is pooled while its bottleneck stays >= 4 voxels and its current spacing is at most
  twice the finest current spacing (coarse axes wait until the others catch up); at most 5 (3D) / 6 (2D)
  poolings.
* **Channels**: 16 base / 256 max (3D), 32 base / 320 max (2D). **Batch**: 2 (3D) / 8 (2D), reduced until
  the estimated training memory fits half of ``memory_gb``.
* **Iterations** = minutes x iterations per minute. Unless measured and passed as ``iterations_per_minute``, the
  rate is estimated from a FLOP count of the U-Net (forward + backward) at an assumed
  :data:`ASSUMED_CPU_GFLOPS` (15 GFLOP/s sustained by PyTorch convolutions on 2 CPU cores).
* **Normalisation** per channel: CT: clip to the foreground 0.5/99.5 percentiles, then z-score with the
  foreground mean/std; MR and other grey channels: per-image z-score; RGB: divide by 255.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from medimg.core.errors import InvalidParameterError
from medimg.plans.fingerprint import Fingerprint
from medimg.tasks.segment.plan import SCHEMA_VERSION, AugSpec, NormSpec, SegmentPlan

logger = logging.getLogger(__name__)

__all__ = ["plan_segmentation", "VOXEL_BUDGET_3D", "VOXEL_BUDGET_2D", "ASSUMED_CPU_GFLOPS", "estimate_memory_gb",
           "estimate_iterations_per_minute"]

VOXEL_BUDGET_3D = 96_000
VOXEL_BUDGET_2D = 256 * 256
ASSUMED_CPU_GFLOPS = 15.0
_MIN_BOTTLENECK = 4
_MAX_POOL = {3: 5, 2: 6}
_ANISOTROPY = 3.0


def _target_spacing(fp: Fingerprint) -> tuple[float, float, float]:
    med = np.asarray(fp.median_spacing, float)
    if fp.dims == 2:
        return (float(med[0]), float(med[1]), 1.0)
    if med.max() / med.min() > _ANISOTROPY:
        worst = int(np.argmax(med))
        others = [med[i] for i in range(3) if i != worst]
        spacings = np.asarray(fp.spacings, float)
        med[worst] = max(float(np.percentile(spacings[:, worst], 10)), max(others) + 1e-5)
    return (float(med[0]), float(med[1]), float(med[2]))


def _shape_at(fp: Fingerprint, target_xyz: tuple[float, float, float]) -> list[float]:
    """Median shape (spatial axes of the patch: zyx for 3D, yx for 2D) after resampling to ``target_xyz``."""
    sp = np.asarray(fp.spacings, float)[:, ::-1]  # zyx
    sh = np.asarray(fp.shapes, float)
    new = sh * sp / np.asarray(target_xyz[::-1], float)
    med = np.median(new, axis=0)
    return [float(v) for v in (med[1:] if fp.dims == 2 else med)]


def _pooling(patch: list[int], spacing: list[float], max_pool: int) -> list[list[int]]:
    """Pool kernels, stage by stage, per the anisotropy and bottleneck rules."""
    size = [float(s) for s in patch]
    sp = list(spacing)
    kernels: list[list[int]] = []
    while len(kernels) < max_pool:
        finest = min(sp[i] for i in range(len(sp)) if size[i] / 2 >= _MIN_BOTTLENECK) \
            if any(size[i] / 2 >= _MIN_BOTTLENECK for i in range(len(sp))) else None
        if finest is None:
            break
        k = [2 if size[i] / 2 >= _MIN_BOTTLENECK and sp[i] <= 2 * finest else 1 for i in range(len(sp))]
        if not any(v == 2 for v in k):
            break
        kernels.append(k)
        size = [s / v for s, v in zip(size, k)]
        sp = [s * v for s, v in zip(sp, k)]
    return kernels


def _fit_budget(shape: list[float], spacing: list[float], budget: int) -> list[int]:
    patch = [max(1, int(round(s))) for s in shape]
    while math.prod(patch) > budget:
        extents = [p * s for p, s in zip(patch, spacing)]
        i = int(np.argmax(extents))
        if patch[i] <= _MIN_BOTTLENECK * 2:
            i = int(np.argmax(patch))
        patch[i] = max(1, int(patch[i] * 0.9))
    return patch


def _channels(base: int, max_ch: int, n_stages: int) -> list[int]:
    return [min(max_ch, base * 2**s) for s in range(n_stages)]


def _stage_voxels(patch: tuple[int, ...], kernels: list[list[int]]) -> list[float]:
    vox = [float(math.prod(patch))]
    size = list(patch)
    for k in kernels:
        size = [s / v for s, v in zip(size, k)]
        vox.append(float(math.prod(size)))
    return vox


def estimate_memory_gb(patch: tuple[int, ...], kernels: list[list[int]], base: int, max_ch: int,
                       batch_size: int) -> float:
    """Rough training memory (GB) of a U-Net: about 12 float32 feature maps kept per stage and side."""
    vox = _stage_voxels(patch, kernels)
    ch = _channels(base, max_ch, len(vox))
    activations = sum(v * c for v, c in zip(vox, ch)) * 12 * 2  # encoder + decoder
    return activations * 4 * batch_size / 1e9 + 0.3


def estimate_iterations_per_minute(patch: tuple[int, ...], kernels: list[list[int]], base: int, max_ch: int,
                                   batch_size: int, *, gflops: float = ASSUMED_CPU_GFLOPS) -> float:
    """Iterations per minute from the FLOPs of two 3^d convolutions per stage and side, forward + backward (x3)."""
    dims = len(patch)
    vox = _stage_voxels(patch, kernels)
    ch = _channels(base, max_ch, len(vox))
    k = 3**dims
    flops = sum(v * 2 * k * c * c * 2 * 2 for v, c in zip(vox, ch)) * 3 * batch_size
    return 60.0 * gflops * 1e9 / max(flops, 1.0)


def plan_segmentation(
    fp: Fingerprint,
    *,
    minutes: float = 30.0,
    memory_gb: float = 4.0,
    overrides: dict[str, Any] | None = None,
    iterations_per_minute: float | None = None,
    seed: int = 0,
) -> SegmentPlan:
    """Plan a segmentation run for a dataset.

    Args:
        fp: the dataset fingerprint.
        minutes: training time budget; iterations = minutes x iterations per minute.
        memory_gb: memory available to training; the batch size shrinks until the estimate fits half of it.
        overrides: field -> value applied last and validated; nested keys like "network.base_channels".
            "target_spacing", "patch_size" and "batch_size" are applied before the network is derived, so the
            pooling follows them.
        iterations_per_minute: a measured rate; default: estimated (see the module docstring).
        seed: written into the plan.

    Raises:
        InvalidParameterError: non-positive minutes/memory, an override the plan rejects.

    Example:
        >>> from medimg.plans.fingerprint import compute_fingerprint  # doctest: +SKIP
        >>> from medimg.tasks.segment.data import SegDataset  # doctest: +SKIP
        >>> plan = plan_segmentation(compute_fingerprint(SegDataset.open("hippocampus")))  # doctest: +SKIP
    """
    if not minutes > 0 or not memory_gb > 0:
        raise InvalidParameterError("time and memory budgets must be positive", parameter="minutes/memory_gb",
                                    expected="> 0", found=(minutes, memory_gb), fix="e.g. minutes=30, memory_gb=4")
    overrides = dict(overrides or {})
    dims = fp.dims
    target = tuple(float(v) for v in overrides.pop("target_spacing", _target_spacing(fp)))
    if len(target) != 3:
        raise InvalidParameterError("invalid target spacing", parameter="target_spacing",
                                    expected="(sx, sy, sz) mm", found=target, fix="give three spacings, x first")
    axis_spacing = [target[2], target[1], target[0]] if dims == 3 else [target[1], target[0]]
    max_pool = _MAX_POOL[dims]
    if "patch_size" in overrides:
        patch = [int(v) for v in overrides.pop("patch_size")]
        if len(patch) != dims:
            raise InvalidParameterError("patch size does not match dims", parameter="patch_size",
                                        expected=f"{dims} sizes", found=tuple(patch), fix="one size per axis")
        kernels = _pooling(patch, axis_spacing, max_pool)  # keep the caller's size
        factor = [math.prod(k[a] for k in kernels) for a in range(dims)]
        while any(p % f for p, f in zip(patch, factor)) and kernels:  # drop deep stages until it divides
            kernels.pop()
            factor = [math.prod(k[a] for k in kernels) for a in range(dims)]
    else:
        shape = _shape_at(fp, target)
        budget = VOXEL_BUDGET_3D if dims == 3 else VOXEL_BUDGET_2D
        patch = _fit_budget(shape, axis_spacing, budget)
        for _ in range(4):  # rounding up can allow one more pooling: repeat until the pair is stable
            kernels = _pooling(patch, axis_spacing, max_pool)
            factor = [math.prod(k[a] for k in kernels) for a in range(dims)]
            rounded = [int(math.ceil(p / f) * f) for p, f in zip(patch, factor)]
            if rounded == patch:
                break
            patch = rounded
    base, max_ch = (16, 256) if dims == 3 else (32, 320)
    base = int(overrides.get("network.base_channels", base))
    max_ch = int(overrides.get("network.max_channels", max_ch))
    patch_t = tuple(patch)
    if "batch_size" in overrides:
        batch = int(overrides.pop("batch_size"))
    else:
        batch = 2 if dims == 3 else 8
        while batch > 1 and estimate_memory_gb(patch_t, kernels, base, max_ch, batch) > memory_gb / 2:
            batch -= 1
    ipm = iterations_per_minute or estimate_iterations_per_minute(patch_t, kernels, base, max_ch, batch)
    iterations = max(1, int(minutes * ipm))

    norms = []
    for modality, stats in zip(fp.modalities, fp.intensity):
        if modality == "ct":
            norms.append(NormSpec("ct", clip=(stats["p00_5"], stats["p99_5"]), mean=stats["mean"],
                                  std=max(stats["std"], 1e-6)))
        elif modality == "rgb":
            norms.append(NormSpec("rgb"))
        else:
            norms.append(NormSpec("zscore"))
    aug = AugSpec(bias_field_p=0.1 if "mr" in fp.modalities else 0.0,
                  rotate_deg=15.0 if dims == 3 else 180.0)
    n_classes = len(fp.label_values)
    network = {
        "name": "unet", "dims": dims, "in_channels": len(fp.channel_names), "n_classes": n_classes,
        "base_channels": base, "max_channels": max_ch, "n_stages": len(kernels) + 1, "block": "plain",
        "pool_kernels": [list(k) for k in kernels], "deep_supervision": True, "norm": "instance", "dropout": 0.0,
    }
    summary = fp.summary()
    summary["assumptions"] = {
        "iterations_per_minute": round(ipm, 3), "measured_rate": iterations_per_minute is not None,
        "assumed_cpu_gflops": ASSUMED_CPU_GFLOPS, "memory_estimate_gb": round(
            estimate_memory_gb(patch_t, kernels, base, max_ch, batch), 3), "memory_gb": memory_gb,
    }
    plan = SegmentPlan(
        schema_version=SCHEMA_VERSION, task="segment", dims=dims, in_channels=len(fp.channel_names),
        n_classes=n_classes, label_values=tuple(fp.label_values), class_names=tuple(fp.class_names),
        target_spacing=target, patch_size=patch_t, batch_size=batch,  # type: ignore[arg-type]
        normalization=tuple(norms), network=network, augmentation=aug, loss="dice_ce", optimizer="adamw",
        learning_rate=1e-3, weight_decay=1e-4, schedule="poly", iterations=iterations, minutes=float(minutes),
        foreground_oversample=0.33, seed=int(seed), fingerprint_summary=summary,
    )
    if overrides:
        plan = plan.replace(**overrides)
    logger.info("plan: spacing %s, patch %s, %d stages, batch %d, %d iterations", plan.target_spacing,
                plan.patch_size, plan.network["n_stages"], plan.batch_size, plan.iterations)
    return plan
