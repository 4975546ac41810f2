"""The classification planner: :func:`plan_classification` (a dataset -> a
:class:`~medimg.tasks.classify.plan.ClassifyPlan`) and its cost model (:func:`estimate_gflops`,
:func:`estimate_memory_gb`).

Rules of :func:`plan_classification` (sized for a 2-core CPU; every decision is explained in ``plan.notes``):

* **Input size** = the median shape of the samples (``(Y, X)`` or ``(Z, Y, X)``), kept as is when no side
  exceeds :data:`MAX_SIDE` (224 px in 2D, 64 voxels in 3D), so 28/64/128 px MedMNIST inputs are untouched.
  Larger inputs are scaled so that the largest *physical* extent (median shape x median spacing, 1 mm when the
  files carry none) spans the cap, never enlarging an axis, and sides above 32 are rounded to a multiple of 8.
  Samples are then resized to it (``resize="resize"``, linear with anti-aliasing).
* **Channels**: 1 for grey, 3 for RGB; RGB files whose channels are all equal (in every sampled image) are
  planned as grey (``in_channels=1``; :func:`preprocess_sample` takes the first channel).
* **Normalisation**: 8-bit RGB: ``"rgb"`` (x / 255, then the dataset's per-channel mean/std, measured on the
  sampled images); 8-bit grey: ``"zscore"`` per image and channel; wider types (16-bit, float, DICOM):
  ``"percentile"`` (clip to the image's 0.5/99.5 percentiles, scale to [0, 1]) against outliers.
* **Model**: ``resnet18`` in 2D and 3D (the registry builds the 3D variant from ``dims``). ``stem="small"`` (a
  3x3 stride-1 first convolution without early pooling) when the largest input side is at most
  :data:`SMALL_STEM_MAX_SIDE` (64 px in 2D, 32 voxels in 3D), else ``"imagenet"`` (7x7 stride-2 convolution and
  max-pooling): a small stem on 64^3 volumes would cost 64x more on a CPU.
* **Class imbalance** (ratio = largest / smallest class count; multi-label: the largest ratio of negatives to
  positives, or positives to negatives, of a class). Ratio <= 1.5: plain ``ce``/``bce``, uniform sampling.
  1.5 < ratio <= 10: ``weighted_ce`` with inverse-frequency weights ``N / (K * n_k)``, uniform sampling.
  Ratio > 10: plain ``ce`` with ``"balanced"`` sampling (each class drawn equally often) instead, because
  inverse-frequency weights of a very rare class make the loss noisy. Multi-label, ratio > 1.5:
  ``weighted_bce`` with positive weights ``negatives / positives`` per class, uniform sampling. Weights and
  balanced sampling are never combined (that would correct twice).
* **Width, batch and budget**: training cost is estimated from the network's multiply-adds
  (:func:`estimate_gflops`, forward + backward = 3x forward) at :data:`CLASSIFY_CPU_GFLOPS`. The model width is
  the largest of the model's standard width (64; MobileNetV3-Small 16), its half and its quarter that allows
  :data:`MIN_EPOCHS` epochs in ``minutes``. The batch size starts at 32 (2D) / 8 (3D) and halves (down to 2)
  while the estimated training memory exceeds half of ``memory_gb`` or one iteration would take more than
  :data:`MAX_SECONDS_PER_ITERATION`; ``iterations`` = the estimate of what fits in ``minutes`` (the trainer stops
  on the wall clock instead unless iterations are given explicitly or the run is deterministic).
* **Folds**: 5, fewer when the smallest class has fewer samples (at least 2).
"""

from __future__ import annotations

import logging
import math
from dataclasses import fields
from typing import Any, Protocol, Sequence

import numpy as np

from medimg.augment.batch import AugSpec
from medimg.core.errors import bad_value
from medimg.tasks.classify.losses import inverse_frequency_weights
from medimg.tasks.classify.plan import (
    CLASSIFY_MODELS,
    CLASSIFY_SCHEMA_VERSION,
    DERIVED_FIELDS,
    LOSSES,
    NORMALIZATIONS,
    SAMPLINGS,
    STEMS,
    ClassifyPlan,
    check_choice,
    check_float,
    check_floats,
    check_int,
    is_int,
    is_number,
)

logger = logging.getLogger(__name__)

__all__ = ["MAX_SIDE", "SMALL_STEM_MAX_SIDE", "MIN_EPOCHS", "MAX_SECONDS_PER_ITERATION", "CLASSIFY_CPU_GFLOPS",
           "ClassificationSource", "plan_classification", "estimate_gflops", "estimate_memory_gb"]

#: Largest planned input side per dimensionality (larger inputs are resized down).
MAX_SIDE = {2: 224, 3: 64}
#: Inputs whose largest side is at most this get the small stem.
SMALL_STEM_MAX_SIDE = {2: 64, 3: 32}
#: The planner narrows the model until the budget allows this many epochs.
MIN_EPOCHS = 10
#: Effective training throughput (GFLOP/s, by :func:`estimate_gflops`' count) that sizes the width, batch and
#: iteration estimate. Measured on the 2-core AVX-512 CPU this project targets: ResNet-18 width 16, batch 8 on
#: 64^3 volumes in float32 trains at ~107 GFLOP/s (AdrenalMNIST3D), batch 32 on 224^2 images under bf16 at ~142
#: GFLOP/s (BUSI). The segmentation planner's 15 GFLOP/s describes U-Net patches, far smaller kernels per voxel.
#: The trainer stops on the wall-clock budget, so this only has to be right within a factor of about 2.
CLASSIFY_CPU_GFLOPS = 100.0
#: The planner halves the batch while one iteration would take longer than this (seconds).
MAX_SECONDS_PER_ITERATION = 4.0
_STANDARD_WIDTH = {"mobilenetv3_small": 16}  # others: 64
_IMBALANCE_WEIGHTED = 1.5
_IMBALANCE_BALANCED = 10.0
# Multiply-adds (G) of each model's 2D version at 224 x 224, width 64, standard stem (published figures).
_GMACS_224 = {"resnet18": 1.82, "resnet34": 3.67, "vgg16": 15.5, "densenet121": 2.87, "mobilenetv3_small": 0.06,
              "resnet18_25d": 1.82, "resnet18_acs": 1.82, "slice_lstm": 1.82}
# Cost per input voxel of a model's 3D use relative to its 2D cost per pixel: 3D kernels (x3) on maps that the
# stem also shrinks along z (/4); 2.5D and ACS kernels have 2D taps (x1/4 in all); slice-wise 2D CNNs pay in full.
_COST_3D = {"vgg16": 1.5, "resnet18_25d": 0.25, "resnet18_acs": 0.25, "slice_lstm": 1.0}
# Training memory relative to resnet18 (activations kept for the backward pass).
_MEMORY = {"resnet34": 1.7, "vgg16": 4.0, "densenet121": 3.0, "mobilenetv3_small": 0.6}


# ---- cost model --------------------------------------------------------------------------------------------------
def _standard_width(model: str) -> int:
    return _STANDARD_WIDTH.get(model, 64)


def estimate_gflops(model: str, dims: int, input_size: Sequence[int], *, width: int | None = None,
                    stem: str = "imagenet") -> float:
    """Rough forward multiply-adds (G) of one sample: the model's published 224 x 224 figure scaled by input
    elements, (width / standard width)^2, x16 (2D) / x64 (3D) for the small stem, and a 3D factor per model
    family. ``width`` None: the standard width (64; MobileNetV3-Small 16).

    Example:
        >>> round(estimate_gflops("resnet18", 2, (224, 224)), 2)
        1.82
    """
    check_choice("model", model, CLASSIFY_MODELS)
    check_choice("stem", stem, STEMS)
    per_pixel = _GMACS_224[model] / (224 * 224)
    elements = float(math.prod(int(s) for s in input_size))
    factor = 1.0 if dims == 2 else _COST_3D.get(model, 0.75)
    stem_factor = (16.0 if dims == 2 or model == "slice_lstm" else 64.0) if stem == "small" else 1.0
    scale = (width if width is not None else _standard_width(model)) / _standard_width(model)
    return per_pixel * elements * factor * stem_factor * scale**2


def estimate_memory_gb(model: str, dims: int, input_size: Sequence[int], *, width: int | None = None,
                       stem: str = "imagenet", batch_size: int = 1) -> float:
    """Rough training memory (GB): stored activations (about 0.8 (2D) / 0.3 (3D) feature values per input
    element and unit of resnet width, 3 tensors of 4 bytes kept per value, x16 (2D) / x64 (3D) with the small
    stem) plus weights, gradients and two optimiser moments (resnet18: 11.7 M parameters at width 64), 0.2 GB
    overhead; other models scaled by a factor.

    Example:
        >>> round(estimate_memory_gb("resnet18", 2, (224, 224), batch_size=32), 2)
        1.37
    """
    check_choice("model", model, CLASSIFY_MODELS)
    check_choice("stem", stem, STEMS)
    elements = float(math.prod(int(s) for s in input_size))
    stem_factor = (16.0 if dims == 2 else 64.0) if stem == "small" else 1.0
    factor = _MEMORY.get(model, 1.0)
    scale = (width if width is not None else _standard_width(model)) / _standard_width(model)
    act = elements * (0.8 if dims == 2 else 0.3) * 64 * scale * stem_factor * 3 * 4 * batch_size * factor
    params = 11.7e6 * scale**2 * (3 if dims == 3 else 1) * 4 * 4 * factor
    return (act + params) / 1e9 + 0.2


def _seconds_per_sample(model: str, dims: int, size: Sequence[int], width: int, stem: str) -> float:
    gflop = 2.0 * 3.0 * estimate_gflops(model, dims, size, width=width, stem=stem)  # MAC = 2 FLOP
    return gflop / CLASSIFY_CPU_GFLOPS


# ---- planning ----------------------------------------------------------------------------------------------------
class ClassificationSource(Protocol):
    """What :func:`plan_classification` needs of a dataset (a :class:`medimg.tasks.classify.ClassificationDataset`)."""

    class_names: tuple[str, ...]
    task: str
    dims: int
    channels: int
    labels: np.ndarray

    def __len__(self) -> int: ...

    def header(self, i: int) -> Any: ...

    def load_image(self, i: int) -> Any: ...


def _stats_indices(n: int, k: int) -> list[int]:
    """Up to ``k`` indices spread evenly over ``range(n)`` (deterministic)."""
    if n <= k:
        return list(range(n))
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, k)})


def _input_size(median: Sequence[float], spacing: Sequence[float] | None, dims: int) -> tuple[tuple[int, ...], str]:
    cap = MAX_SIDE[dims]
    med = [max(1, int(round(m))) for m in median]
    if max(med) <= cap:
        return tuple(med), f"input size {tuple(med)} = median shape (within the {cap} cap, kept as is)"
    sp = [1.0] * len(med) if spacing is None else [float(s) for s in spacing]
    extent = [m * s for m, s in zip(med, sp)]
    step = max(extent) / cap
    size = [min(m, max(1, int(round(e / step)))) for m, e in zip(med, extent)]
    size = [min(cap, max(8, 8 * int(round(s / 8)))) if s > 32 else s for s in size]
    how = "physical extent" if spacing is not None else "shape"
    return tuple(size), (f"input size {tuple(size)}: median shape {tuple(med)} exceeds the {cap} cap; scaled by "
                         f"its {how} so the largest side is {cap} (no axis enlarged), sides > 32 rounded to x8")


def plan_classification(
    ds: ClassificationSource,
    *,
    minutes: float = 30.0,
    memory_gb: float = 4.0,
    overrides: dict[str, Any] | None = None,
    seed: int = 0,
    stats_samples: int = 16,
) -> ClassifyPlan:
    """Plan a classification run for a dataset (rules: see the module docstring; reasons in ``plan.notes``).

    Args:
        ds: the dataset (:func:`medimg.tasks.classify.open_classification_dataset`).
        minutes: training time budget per run (per fold); sets the width, batch and iterations.
        memory_gb: memory available to training; the batch shrinks until the estimate fits half of it.
        overrides: field -> value, validated. ``in_channels``, ``input_size``, ``model``, ``model_width``,
            ``stem``, ``normalization``, ``loss``, ``class_weights``, ``sampling``, ``batch_size``,
            ``n_folds`` and ``iterations`` replace the rule's choice before the rules that depend on them; the
            others (and ``augmentation.<field>``) are applied last. Fields measured from the data (task,
            class_names, dims, imbalance_ratio, ...) cannot be overridden.
        seed: written into the plan.
        stats_samples: how many samples (spread evenly over the dataset) are read for dtypes, spacing, grey-in-RGB
            detection and RGB statistics; shapes come from every sample's header.

    Raises:
        InvalidParameterError: non-positive budgets, an empty dataset, a class without samples, an unknown
            override or a value the plan rejects.

    Example:
        >>> from medimg.tasks.classify import open_classification_dataset  # doctest: +SKIP
        >>> plan = plan_classification(open_classification_dataset("busi"), minutes=30)  # doctest: +SKIP
        >>> plan.loss, plan.input_size                                          # doctest: +SKIP
        ('weighted_ce', (224, 224))
    """
    if not is_number(minutes) or not minutes > 0 or not is_number(memory_gb) or not memory_gb > 0:
        raise bad_value("minutes/memory_gb", "time and memory budgets must be positive", "> 0", (minutes, memory_gb),
                        "e.g. minutes=30, memory_gb=4")
    overrides = dict(overrides or {})
    minutes = check_float("minutes", overrides.pop("minutes", minutes), 0.0, open_lo=True)
    seed = check_int("seed", overrides.pop("seed", seed), 0)
    names = {f.name for f in fields(ClassifyPlan)}
    for key in overrides:
        head = key.partition(".")[0]
        if head not in names:
            raise bad_value(key, "unknown plan field", "one of " + ", ".join(sorted(names - set(DERIVED_FIELDS))),
                            repr(key),
                            "check the spelling; augmentation keys look like 'augmentation.flip'")
        if head in DERIVED_FIELDS:
            raise bad_value(key, "field is measured from the dataset and cannot be overridden",
                            "one of " + ", ".join(sorted(names - set(DERIVED_FIELDS))), repr(key),
                            "change the dataset (e.g. class_names= when opening it) instead")
    n = len(ds)
    if n == 0:
        raise bad_value("ds", "empty dataset", "at least one sample per class", 0, "open a dataset with samples")
    dims, task, class_names = int(ds.dims), str(ds.task), tuple(ds.class_names)
    multilabel = task == "multilabel"
    labels = np.asarray(ds.labels)
    counts = labels.sum(axis=0) if multilabel else np.bincount(labels, minlength=len(class_names))
    if (counts == 0).any():
        empty = [c for c, k in zip(class_names, counts) if k == 0]
        raise bad_value("ds", "classes without samples" + (" (positives)" if multilabel else ""),
                        "every class represented", empty, "add samples of those classes, or open the dataset without "
                        "them (class_names=)")
    if multilabel and (counts == n).any():
        full = [c for c, k in zip(class_names, counts) if k == n]
        raise bad_value("ds", "labels positive in every sample", "negatives for every label", full,
                        "add negative samples, or leave those columns out (label_columns=)")
    notes: list[str] = []

    # ---- shapes, spacing, types ----
    shapes = np.array([tuple(ds.header(i).shape) for i in range(n)], float)  # (n, 3) zyx
    median_zyx = np.median(shapes, axis=0)
    idx = _stats_indices(n, max(1, int(stats_samples)))
    images = [ds.load_image(i) for i in idx]
    dtypes = sorted({str(im.dtype) for im in images})
    known = [im.spacing for im in images if im.metadata.get("spacing_known", False)]
    spacing_xyz = tuple(float(v) for v in np.median(np.asarray(known, float), axis=0)) if known else None
    eight_bit = all(np.dtype(d) in (np.uint8, np.bool_) for d in dtypes)

    # ---- channels ----
    channels = int(ds.channels)
    grey_rgb = channels == 3 and all(np.array_equal(im.voxels[0], im.voxels[c]) for im in images for c in (1, 2))
    if "in_channels" in overrides:
        in_channels = check_int("in_channels", overrides.pop("in_channels"), 1)
        notes.append(f"in_channels {in_channels} (override; files have {channels})")
    elif grey_rgb:
        in_channels = 1
        notes.append(f"in_channels 1: the RGB files hold grey images (R == G == B in all {len(images)} sampled)")
    else:
        in_channels = channels
        notes.append(f"in_channels {channels}: {'RGB' if channels == 3 else 'grey' if channels == 1 else 'channels'}"
                     " images")

    # ---- input size ----
    median = list(median_zyx[1:] if dims == 2 else median_zyx)
    if "input_size" in overrides:
        input_size = overrides.pop("input_size")
        if isinstance(input_size, (str, bytes)) or not isinstance(input_size, (list, tuple)) or \
                len(input_size) != dims or not all(is_int(v) and int(v) >= 1 for v in input_size):
            raise bad_value("input_size", "input size does not match dims",
                            f"{dims} positive integers ({'Z, Y, X' if dims == 3 else 'Y, X'})", repr(input_size),
                            "give one size per spatial axis")
        input_size = tuple(int(v) for v in input_size)
        notes.append(f"input size {input_size} (override; median shape {tuple(round(m) for m in median)})")
    else:
        sp = None if spacing_xyz is None else ([spacing_xyz[1], spacing_xyz[0]] if dims == 2 else
                                               [spacing_xyz[2], spacing_xyz[1], spacing_xyz[0]])
        input_size, why = _input_size(median, sp, dims)
        notes.append(why)

    # ---- model ----
    model = overrides.pop("model", "resnet18")
    check_choice("model", model, CLASSIFY_MODELS)
    if "stem" in overrides:
        stem = check_choice("stem", overrides.pop("stem"), STEMS)
        notes.append(f"model {model} ({dims}D), {stem} stem (override)")
    else:
        stem = "small" if max(input_size) <= SMALL_STEM_MAX_SIDE[dims] else "imagenet"
        notes.append(f"model {model} ({dims}D), {stem} stem (largest input side {max(input_size)} "
                     f"{'<=' if stem == 'small' else '>'} {SMALL_STEM_MAX_SIDE[dims]})")

    # ---- normalisation ----
    if "normalization" in overrides:
        normalization = check_choice("normalization", overrides.pop("normalization"), NORMALIZATIONS)
        notes.append(f"normalisation {normalization} (override)")
    elif in_channels == 3 and eight_bit:
        normalization = "rgb"
        notes.append("normalisation rgb: 8-bit colour images (x / 255, then the dataset's channel mean/std)")
    elif eight_bit:
        normalization = "zscore"
        notes.append("normalisation zscore per image: 8-bit grey images")
    else:
        normalization = "percentile"
        notes.append(f"normalisation percentile (0.5-99.5 per image, to [0, 1]): voxel types {dtypes} have a wide "
                     "range and outliers")
    channel_mean = channel_std = None
    if normalization == "rgb":
        vals = [np.asarray(im.voxels, np.float64).reshape(im.voxels.shape[0], -1) / 255.0 for im in images]
        if in_channels == 1:
            vals = [v[:1] for v in vals]
        if any(v.shape[0] != in_channels for v in vals):
            raise bad_value("normalization", "rgb statistics need images with in_channels channels", in_channels,
                            sorted({v.shape[0] for v in vals}), "use normalization='zscore'")
        allv = np.concatenate(vals, axis=1)
        channel_mean = tuple(round(float(m), 6) for m in allv.mean(axis=1))
        channel_std = tuple(round(max(float(s), 1e-6), 6) for s in allv.std(axis=1))

    # ---- imbalance ----
    if multilabel:
        ratio = float(np.max(np.maximum((n - counts) / counts, counts / (n - counts))))
    else:
        ratio = float(counts.max() / counts.min())
    count_text = ", ".join(f"{c} {int(k)}" for c, k in zip(class_names, counts))
    loss_o, weights_o, sampling_o = (overrides.pop(k, None) for k in ("loss", "class_weights", "sampling"))
    if multilabel:
        loss, sampling = ("weighted_bce" if ratio > _IMBALANCE_WEIGHTED else "bce"), "uniform"
        why = (f"imbalance ratio {ratio:.3g} (largest negatives/positives of a label, or the inverse; positives "
               f"{count_text} of {n}) "
               + (f"> {_IMBALANCE_WEIGHTED}: weighted BCE with positive weights negatives/positives per class"
                  if loss == "weighted_bce" else f"<= {_IMBALANCE_WEIGHTED}: plain BCE"))
    elif ratio > _IMBALANCE_BALANCED:
        loss, sampling = "ce", "balanced"
        why = (f"imbalance ratio {ratio:.3g} ({count_text}) > {_IMBALANCE_BALANCED:g}: balanced sampling with plain "
               "cross-entropy (inverse-frequency weights of so rare a class make the loss noisy; weights and "
               "balanced sampling together would correct twice)")
    elif ratio > _IMBALANCE_WEIGHTED:
        loss, sampling = "weighted_ce", "uniform"
        why = (f"imbalance ratio {ratio:.3g} ({count_text}) > {_IMBALANCE_WEIGHTED}: weighted cross-entropy with "
               "inverse-frequency class weights N / (K n_k); sampling stays uniform (weights and balanced "
               "sampling together would correct twice)")
    else:
        loss, sampling = "ce", "uniform"
        why = f"imbalance ratio {ratio:.3g} ({count_text}) <= {_IMBALANCE_WEIGHTED}: plain cross-entropy, uniform"
    if sampling_o is not None:
        sampling = check_choice("sampling", sampling_o, SAMPLINGS)
        if loss_o is None and sampling == "balanced" and loss.startswith("weighted_"):
            loss = loss[len("weighted_"):]
        why += f"; override: sampling {sampling}"
    if loss_o is not None:
        loss = check_choice("loss", loss_o, LOSSES[task])
        why += f"; override: loss {loss}"
    class_weights = None
    if loss.startswith("weighted_"):
        class_weights = inverse_frequency_weights(counts, n, multilabel) if weights_o is None else \
            check_floats("class_weights", weights_o, len(class_names), positive=True)
    elif weights_o is not None:
        raise bad_value("class_weights", f"loss '{loss}' takes no class weights", "None", repr(weights_o),
                        "override loss='weighted_ce' (or 'weighted_bce') too")
    notes.append(why)

    # ---- folds ----
    if "n_folds" in overrides:
        n_folds = check_int("n_folds", overrides.pop("n_folds"), 1)
    else:
        smallest = int(counts.min())
        n_folds = int(min(5, max(2, smallest)))
        notes.append(f"{n_folds} folds" + ("" if n_folds == 5 else f": the smallest class has {smallest} samples")
                     + (" (fewer than the folds: some folds will miss it)" if smallest < n_folds else ""))
    n_train = max(1, int(n * (n_folds - 1) / n_folds) if n_folds > 1 else n)

    # ---- width, batch, iterations ----
    budget_s = float(minutes) * 60.0
    width_o, batch_o, iters_o = (overrides.pop(k, None) for k in ("model_width", "batch_size", "iterations"))

    def batch_for(width: int) -> int:
        if batch_o is not None:
            return check_int("batch_size", batch_o, 1)
        batch = 32 if dims == 2 else 8
        per_sample = _seconds_per_sample(model, dims, input_size, width, stem)
        while batch > 2 and (
                estimate_memory_gb(model, dims, input_size, width=width, stem=stem, batch_size=batch)
                > memory_gb / 2 or per_sample * batch > MAX_SECONDS_PER_ITERATION):
            batch //= 2
        return int(min(batch, max(2, n_train)))

    def epochs_for(width: int) -> float:
        return budget_s / _seconds_per_sample(model, dims, input_size, width, stem) / n_train

    if width_o is not None:
        width = check_int("model_width", width_o, 1)
        notes.append(f"model width {width} (override): about {epochs_for(width):.3g} epochs in {minutes:g} minutes")
    else:
        widths = [_standard_width(model) // d for d in (1, 2, 4)]
        width = next((w for w in widths if epochs_for(w) >= MIN_EPOCHS), widths[-1])
        tried = ", ".join(f"width {w}: {epochs_for(w):.3g}" for w in widths if w >= width)
        notes.append(f"model width {width}: epochs of {n_train} training samples in {minutes:g} minutes at "
                     f"{CLASSIFY_CPU_GFLOPS:g} GFLOP/s ({tried}); the widest with >= {MIN_EPOCHS} epochs"
                     + ("" if epochs_for(width) >= MIN_EPOCHS else
                        " not reached even at the narrowest: give more minutes or a smaller input_size"))
    batch = batch_for(width)
    per_iteration = _seconds_per_sample(model, dims, input_size, width, stem) * batch
    iterations = check_int("iterations", iters_o, 1) if iters_o is not None else \
        max(1, int(budget_s / per_iteration))
    mem = estimate_memory_gb(model, dims, input_size, width=width, stem=stem, batch_size=batch)
    notes.append(f"batch {batch}{' (override)' if batch_o is not None else ''}: about {per_iteration:.2f} s and "
                 f"{mem:.2f} GB per iteration (limits {MAX_SECONDS_PER_ITERATION:g} s, {memory_gb / 2:g} GB); "
                 f"{iterations} iterations{' (override)' if iters_o is not None else ''} in {minutes:g} minutes")

    aug = AugSpec(flip=0.5, rotate_deg=15.0, rotate_p=0.2, scale=(0.85, 1.25), scale_p=0.2, elastic_p=0.0,
                  noise_p=0.1, blur_p=0.1, gamma_p=0.3, brightness_contrast_p=0.15, low_res_p=0.1, bias_field_p=0.0)
    notes.append("augmentation: flips on every axis (override augmentation.flip=0 where orientation carries "
                 "meaning), rotation 15 deg, scaling, intensity changes")
    summary = {
        "source": str(getattr(ds, "source", "")), "layout": getattr(ds, "layout", ""), "n_samples": n,
        "class_counts": {c: int(k) for c, k in zip(class_names, counts)}, "channels": channels,
        "median_shape_zyx": [float(v) for v in median_zyx], "min_shape_zyx": [int(v) for v in shapes.min(axis=0)],
        "max_shape_zyx": [int(v) for v in shapes.max(axis=0)], "median_spacing_xyz": spacing_xyz,
        "sampled_dtypes": dtypes, "n_sampled": len(images), "n_excluded": len(getattr(ds, "excluded", ())),
        "assumed_cpu_gflops": CLASSIFY_CPU_GFLOPS, "memory_gb": memory_gb,
        "seconds_per_iteration": round(per_iteration, 4),
    }
    plan = ClassifyPlan(
        schema_version=CLASSIFY_SCHEMA_VERSION, task=task, class_names=class_names, dims=dims,
        in_channels=in_channels, input_size=input_size, resize="resize", normalization=normalization,
        channel_mean=channel_mean, channel_std=channel_std, model=model, model_width=width, stem=stem,
        dropout=0.0, se=False, augmentation=aug, loss=loss, class_weights=class_weights, sampling=sampling,
        imbalance_ratio=ratio, optimizer="adamw", learning_rate=1e-3, weight_decay=1e-4, batch_size=batch,
        schedule="cosine", minutes=float(minutes), iterations=iterations, n_folds=n_folds, seed=int(seed),
        notes=tuple(notes), dataset_summary=summary,
    )
    if overrides:
        plan = plan.replace(**overrides, notes=plan.notes + tuple(
            f"override: {k} = {v!r}" for k, v in sorted(overrides.items())))
    logger.info("classification plan: %s %s, input %s, %s width %d, loss %s, batch %d, %d iterations", task,
                class_names, plan.input_size, plan.model, plan.model_width, plan.loss, plan.batch_size,
                plan.iterations)
    return plan
