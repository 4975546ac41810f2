"""The :class:`ClassifyPlan`: every choice of an image classification run, its rule-based planner, and the one
deterministic preprocessing that training and prediction share.

A plan is saved next to the weights (``plan.save("model/plan.json")``) so that a model folder describes itself.
``schema_version`` is written into every file; a file written by a newer medimg fails with a clear message.

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

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, Sequence

import numpy as np

from medimg.augment.batch import AugSpec
from medimg.core.errors import InvalidParameterError
from medimg.core.image import to_jsonable
from medimg.plans.base import PlanBase as JsonFileMixin

logger = logging.getLogger(__name__)

__all__ = [
    "CLASSIFY_SCHEMA_VERSION",
    "CLASSIFY_MODELS",
    "MAX_SIDE",
    "SMALL_STEM_MAX_SIDE",
    "MIN_EPOCHS",
    "MAX_SECONDS_PER_ITERATION",
    "CLASSIFY_CPU_GFLOPS",
    "STEMS",
    "ClassifyPlan",
    "ClassificationSource",
    "plan_classification",
    "preprocess_sample",
    "estimate_gflops",
    "estimate_memory_gb",
]

#: Version of the classification plan file format this medimg writes and the newest it reads.
CLASSIFY_SCHEMA_VERSION = 1
#: Model names a plan may name (built by the model registry); the last three take 3D inputs only.
CLASSIFY_MODELS = ("resnet18", "resnet34", "vgg16", "densenet121", "mobilenetv3_small", "resnet18_25d",
                   "resnet18_acs", "slice_lstm")
_MODELS_3D_ONLY = ("resnet18_25d", "resnet18_acs", "slice_lstm")
#: Largest planned input side per dimensionality (larger inputs are resized down).
MAX_SIDE = {2: 224, 3: 64}
#: Stems of the classifiers (as in medimg.models.classifier_spec.STEMS).
STEMS = ("small", "imagenet")
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
_TASKS = ("binary", "multiclass", "multilabel")
_RESIZE = ("resize", "crop_pad")
_NORMS = ("zscore", "minmax", "percentile", "rgb")
_LOSSES = {"binary": ("ce", "weighted_ce"), "multiclass": ("ce", "weighted_ce"),
           "multilabel": ("bce", "weighted_bce")}
_SAMPLINGS = ("uniform", "balanced")
_OPTIMIZERS = ("adamw", "sgd")
_SCHEDULES = ("cosine", "poly")
_IMBALANCE_WEIGHTED = 1.5
_IMBALANCE_BALANCED = 10.0
#: Fields recorded from the data that overrides may not change.
_DERIVED = ("schema_version", "task", "class_names", "dims", "imbalance_ratio", "dataset_summary", "notes")
# Multiply-adds (G) of each model's 2D version at 224 x 224, width 64, standard stem (published figures).
_GMACS_224 = {"resnet18": 1.82, "resnet34": 3.67, "vgg16": 15.5, "densenet121": 2.87, "mobilenetv3_small": 0.06,
              "resnet18_25d": 1.82, "resnet18_acs": 1.82, "slice_lstm": 1.82}
# Cost per input voxel of a model's 3D use relative to its 2D cost per pixel: 3D kernels (x3) on maps that the
# stem also shrinks along z (/4); 2.5D and ACS kernels have 2D taps (x1/4 in all); slice-wise 2D CNNs pay in full.
_COST_3D = {"vgg16": 1.5, "resnet18_25d": 0.25, "resnet18_acs": 0.25, "slice_lstm": 1.0}
# Training memory relative to resnet18 (activations kept for the backward pass).
_MEMORY = {"resnet34": 1.7, "vgg16": 4.0, "densenet121": 3.0, "mobilenetv3_small": 0.6}


def _bad(parameter: str, what: str, expected: Any, found: Any, fix: str) -> InvalidParameterError:
    return InvalidParameterError(what, parameter=parameter, expected=expected, found=found, fix=fix)


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_num(v: Any) -> bool:
    return _is_int(v) or (isinstance(v, (float, np.floating)) and math.isfinite(float(v)))


def _check_int(name: str, v: Any, lo: int) -> int:
    if not _is_int(v) or int(v) < lo:
        raise _bad(name, "must be an integer", f"an integer >= {lo}", repr(v), f"give e.g. {name}={max(lo, 1)}")
    return int(v)


def _check_float(name: str, v: Any, lo: float, hi: float = math.inf, *, open_lo: bool = False) -> float:
    if not _is_num(v) or not (lo < float(v) if open_lo else lo <= float(v)) or float(v) > hi:
        rng = f"{'(' if open_lo else '['}{lo:g}, {hi:g}]"
        raise _bad(name, "number out of range", f"a number in {rng}", repr(v), f"give a value in {rng}")
    return float(v)


def _check_choice(name: str, v: Any, options: Sequence[str]) -> str:
    if not isinstance(v, str) or v not in options:
        raise _bad(name, f"unknown {name.replace('_', ' ')}", " | ".join(options), repr(v),
                   "pick one of the listed values")
    return v


def _check_bool(name: str, v: Any) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise _bad(name, "must be true or false", "a boolean", repr(v), f"give {name}=True or False")
    return bool(v)


def _check_floats(name: str, v: Any, n: int | None, *, positive: bool) -> tuple[float, ...]:
    if isinstance(v, (str, bytes)) or not isinstance(v, (list, tuple, np.ndarray)) or \
            not all(_is_num(x) for x in v) or (n is not None and len(v) != n) or \
            (positive and not all(float(x) > 0 for x in v)):
        raise _bad(name, "wrong list of numbers", f"{n if n is not None else 'some'} finite"
                   f"{' positive' if positive else ''} numbers", repr(v), "give one number per class/channel")
    return tuple(float(x) for x in v)


@dataclass(frozen=True)
class ClassifyPlan(JsonFileMixin):
    """All choices of an image classification run. Build with :func:`plan_classification`.

    Axes: ``input_size`` is (Y, X) for 2D and (Z, Y, X) for 3D; network inputs are (B, C, *input_size).
    The network has ``n_classes`` outputs (binary tasks too, trained with softmax cross-entropy); multi-label
    tasks use one sigmoid output per class.

    Attributes:
        schema_version: :data:`CLASSIFY_SCHEMA_VERSION`.
        task: "binary", "multiclass" or "multilabel".
        class_names: class names in output order.
        dims, in_channels, input_size: network input (see above).
        resize: "resize" (linear interpolation with anti-aliasing to ``input_size``) or "crop_pad" (centred
            crop / pad to ``input_size``, padding with the channel's minimum; keeps the physical scale).
        normalization: per image and channel: "zscore" ((x - mean) / std), "minmax" (to [0, 1]), "percentile"
            (clip to ``percentiles`` of the image, then to [0, 1]), "rgb" (x / 255, then
            (x - channel_mean[c]) / channel_std[c] with the dataset's statistics).
        percentiles: (low, high) percentiles of "percentile".
        channel_mean, channel_std: per-channel statistics of "rgb" (after / 255); None otherwise.
        model: a name of :data:`CLASSIFY_MODELS`; model_width: channels of the first stage (64 = standard);
            stem: "small" (3x3 stride-1 first convolution, no early pooling) or "imagenet" (7x7 stride 2 and
            max-pooling); dropout: before the classifier, in [0, 0.95]; se: squeeze-and-excitation blocks.
            :meth:`network_kwargs` turns these into the keyword arguments of
            ``medimg.models.ClassifierSpec``.
        augmentation: the batch augmenter's :class:`~medimg.augment.batch.AugSpec`.
        loss: "ce", "weighted_ce" (binary/multiclass), "bce", "weighted_bce" (multilabel).
        class_weights: weighted losses: one weight per class (CE class weights; BCE positive weights).
        sampling: "uniform" (every sample once per epoch) or "balanced" (each class drawn equally often).
        imbalance_ratio: as measured on the dataset (see the module docstring).
        optimizer, learning_rate, weight_decay, schedule ("cosine" | "poly"), batch_size: training settings.
        minutes, iterations: the time budget and the iterations planned to fit it.
        n_folds: cross-validation folds (1: train on everything); seed: the one seed of the run.
        notes: why each choice was made; dataset_summary: what the plan was made from.
    """

    schema_version: int
    task: str
    class_names: tuple[str, ...]
    dims: int
    in_channels: int
    input_size: tuple[int, ...]
    resize: str = "resize"
    normalization: str = "zscore"
    percentiles: tuple[float, float] = (0.5, 99.5)
    channel_mean: tuple[float, ...] | None = None
    channel_std: tuple[float, ...] | None = None
    model: str = "resnet18"
    model_width: int = 64
    stem: str = "imagenet"
    dropout: float = 0.0
    se: bool = False
    augmentation: AugSpec = field(default_factory=AugSpec)
    loss: str = "ce"
    class_weights: tuple[float, ...] | None = None
    sampling: str = "uniform"
    imbalance_ratio: float = 1.0
    optimizer: str = "adamw"
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 32
    schedule: str = "cosine"
    minutes: float | None = None
    iterations: int = 1000
    n_folds: int = 5
    seed: int = 0
    notes: tuple[str, ...] = ()
    dataset_summary: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        """Number of classes = number of network outputs."""
        return len(self.class_names)

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        if not _is_int(self.schema_version) or self.schema_version != CLASSIFY_SCHEMA_VERSION:
            raise _bad("schema_version", "unsupported classification plan schema version", CLASSIFY_SCHEMA_VERSION,
                       repr(self.schema_version), "build the plan with this medimg version")
        _check_choice("task", self.task, _TASKS)
        if isinstance(self.class_names, str) or not isinstance(self.class_names, (list, tuple)) or \
                not all(isinstance(n, str) and n for n in self.class_names) or \
                len(set(self.class_names)) != len(self.class_names) or len(self.class_names) < 2:
            raise _bad("class_names", "invalid class names", "at least 2 distinct non-empty names",
                       repr(self.class_names), "list one name per class")
        set_("class_names", tuple(self.class_names))
        if self.task == "binary" and self.n_classes != 2:
            raise _bad("class_names", "a binary task has two classes", 2, self.n_classes,
                       "use task='multiclass' for more classes")
        if self.task == "multiclass" and self.n_classes < 3:
            raise _bad("task", "two classes make a binary task", "task='binary'", repr(self.task),
                       "use task='binary'")
        if self.dims not in (2, 3) or not _is_int(self.dims):
            raise _bad("dims", "unsupported dimensionality", "2 or 3", repr(self.dims), "plan 2D or 3D data")
        set_("in_channels", _check_int("in_channels", self.in_channels, 1))
        size = self.input_size
        if isinstance(size, (str, bytes)) or not isinstance(size, (list, tuple)) or len(size) != self.dims or \
                not all(_is_int(s) and int(s) >= 1 for s in size):
            raise _bad("input_size", "input size does not match dims",
                       f"{self.dims} positive integers ({'Z, Y, X' if self.dims == 3 else 'Y, X'})", repr(size),
                       "give one size per spatial axis")
        set_("input_size", tuple(int(s) for s in size))
        _check_choice("resize", self.resize, _RESIZE)
        _check_choice("normalization", self.normalization, _NORMS)
        pct = _check_floats("percentiles", self.percentiles, 2, positive=False)
        if not 0.0 <= pct[0] < pct[1] <= 100.0:
            raise _bad("percentiles", "invalid percentile range", "0 <= low < high <= 100", pct, "e.g. (0.5, 99.5)")
        set_("percentiles", pct)
        for name in ("channel_mean", "channel_std"):
            value = getattr(self, name)
            if value is not None:
                set_(name, _check_floats(name, value, self.in_channels, positive=name == "channel_std"))
        if self.normalization == "rgb" and (self.channel_mean is None or self.channel_std is None):
            raise _bad("channel_mean", "rgb normalisation needs per-channel statistics",
                       f"channel_mean and channel_std with {self.in_channels} values", "None",
                       "plan with plan_classification, which measures them, or give them")
        _check_choice("model", self.model, CLASSIFY_MODELS)
        if self.dims == 2 and self.model in _MODELS_3D_ONLY:
            raise _bad("model", "model takes 3D inputs only", "a 2D model: " + ", ".join(
                m for m in CLASSIFY_MODELS if m not in _MODELS_3D_ONLY), repr(self.model), "pick a 2D model")
        set_("model_width", _check_int("model_width", self.model_width, 1))
        _check_choice("stem", self.stem, STEMS)
        set_("se", _check_bool("se", self.se))
        set_("dropout", _check_float("dropout", self.dropout, 0.0, 0.95))
        if not isinstance(self.augmentation, AugSpec):
            if not isinstance(self.augmentation, dict):
                raise _bad("augmentation", "augmentation must be an AugSpec", "an AugSpec or a mapping",
                           type(self.augmentation).__name__, "give medimg.augment.batch.AugSpec(...)")
            set_("augmentation", AugSpec.from_dict(self.augmentation))
        _check_choice("loss", self.loss, _LOSSES[self.task])
        if self.loss.startswith("weighted_"):
            if self.class_weights is None:
                raise _bad("class_weights", f"loss '{self.loss}' needs class weights", f"{self.n_classes} weights",
                           "None", "give class_weights, or use an unweighted loss")
            set_("class_weights", _check_floats("class_weights", self.class_weights, self.n_classes, positive=True))
        elif self.class_weights is not None:
            raise _bad("class_weights", f"loss '{self.loss}' takes no class weights", "None",
                       repr(self.class_weights), f"use loss='weighted_{self.loss}', or drop class_weights")
        _check_choice("sampling", self.sampling, _SAMPLINGS)
        if self.sampling == "balanced" and self.task == "multilabel":
            raise _bad("sampling", "balanced sampling needs one class per sample", "'uniform' for multilabel",
                       repr(self.sampling), "use sampling='uniform' and loss='weighted_bce'")
        if not (_is_num(self.imbalance_ratio) or self.imbalance_ratio == math.inf) or self.imbalance_ratio < 1:
            raise _bad("imbalance_ratio", "invalid imbalance ratio", "a number >= 1", repr(self.imbalance_ratio),
                       "this field is measured by plan_classification")
        set_("imbalance_ratio", float(self.imbalance_ratio))
        _check_choice("optimizer", self.optimizer, _OPTIMIZERS)
        set_("learning_rate", _check_float("learning_rate", self.learning_rate, 0.0, 10.0, open_lo=True))
        set_("weight_decay", _check_float("weight_decay", self.weight_decay, 0.0, 1.0))
        set_("batch_size", _check_int("batch_size", self.batch_size, 1))
        _check_choice("schedule", self.schedule, _SCHEDULES)
        if self.minutes is not None:
            set_("minutes", _check_float("minutes", self.minutes, 0.0, open_lo=True))
        set_("iterations", _check_int("iterations", self.iterations, 1))
        set_("n_folds", _check_int("n_folds", self.n_folds, 1))
        set_("seed", _check_int("seed", self.seed, 0))
        if isinstance(self.notes, str) or not isinstance(self.notes, (list, tuple)) or \
                not all(isinstance(n, str) for n in self.notes):
            raise _bad("notes", "notes must be a list of strings", "strings", repr(self.notes), "give strings")
        set_("notes", tuple(self.notes))
        if not isinstance(self.dataset_summary, dict):
            raise _bad("dataset_summary", "dataset summary must be a mapping", "a JSON object",
                       type(self.dataset_summary).__name__, "give a dict")
        set_("dataset_summary", json.loads(json.dumps(to_jsonable(self.dataset_summary))))

    def network_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``medimg.models.ClassifierSpec`` for this plan's network.

        ``slices`` (the number of slices ``resnet18_25d`` stacks as channels) is ``input_size[0]`` for 3D plans.

        Example:
            >>> ClassifyPlan(schema_version=1, task="binary", class_names=("a", "b"), dims=3, in_channels=1,
            ...              input_size=(28, 28, 28), stem="small").network_kwargs()["stem"]
            'small'
        """
        kwargs = {"name": self.model, "dims": self.dims, "in_channels": self.in_channels,
                  "n_classes": self.n_classes, "width": self.model_width, "stem": self.stem, "se": self.se,
                  "dropout": self.dropout}
        if self.dims == 3:
            kwargs["slices"] = self.input_size[0]
        return kwargs

    # ---- derivation ----------------------------------------------------------------------------------------
    def replace(self, **overrides: Any) -> ClassifyPlan:
        """A new, validated plan with some fields replaced.

        Augmentation keys use dots: ``plan.replace(**{"augmentation.flip": 0.0})``. Replacing ``loss`` by an
        unweighted loss drops ``class_weights`` (unless they are given too).

        Raises:
            InvalidParameterError: unknown field, or a value the plan rejects.

        Example:
            >>> plan = ClassifyPlan(schema_version=1, task="binary", class_names=("a", "b"), dims=2,
            ...                     in_channels=1, input_size=(28, 28))
            >>> plan.replace(model_width=32, **{"augmentation.flip": 0.0}).augmentation.flip
            0.0
        """
        data = self.to_dict()
        names = {f.name for f in fields(self)}
        for key, value in overrides.items():
            head, _, rest = key.partition(".")
            if head not in names:
                raise _bad(key, "unknown plan field", "one of " + ", ".join(sorted(names)), repr(key),
                           "check the spelling; augmentation keys look like 'augmentation.flip'")
            if rest:
                aug_names = {f.name for f in fields(AugSpec)}
                if head != "augmentation" or rest not in aug_names:
                    raise _bad(key, "unknown nested plan field", f"augmentation.<{' | '.join(sorted(aug_names))}>",
                               repr(key), "only augmentation has nested fields")
                data["augmentation"][rest] = to_jsonable(value)
            else:
                data[head] = to_jsonable(value)
        if "loss" in overrides and "class_weights" not in overrides and \
                not str(overrides["loss"]).startswith("weighted_"):
            data["class_weights"] = None
        return ClassifyPlan.from_dict(data)

    # ---- serialisation -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data (``imbalance_ratio`` inf is written as the string "inf")."""
        data = to_jsonable(dataclasses.asdict(self))
        data["augmentation"] = self.augmentation.to_dict()
        if math.isinf(self.imbalance_ratio):
            data["imbalance_ratio"] = "inf"
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassifyPlan:
        """Build a plan from :meth:`to_dict` data: the schema version first, then unknown keys, then values.

        Raises:
            InvalidParameterError: not a mapping, no/newer schema version, unknown or missing fields, bad values.
        """
        if not isinstance(data, dict):
            raise _bad("plan", "a plan must be a JSON object", "an object", type(data).__name__,
                       "give the content of a plan.json")
        version = data.get("schema_version")
        if not _is_int(version):
            raise _bad("schema_version", "plan has no schema version", "an integer", repr(version),
                       "this is not a medimg classification plan file")
        if version > CLASSIFY_SCHEMA_VERSION:
            raise _bad("schema_version", "plan written by a newer medimg", f"schema <= {CLASSIFY_SCHEMA_VERSION}",
                       version, "upgrade medimg to read this plan")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise _bad("plan", "unknown classification plan fields", ", ".join(sorted(names)), unknown,
                       "remove them, or upgrade medimg (a segmentation plan.json is read with medimg.plans.Plan)")
        required = [f.name for f in fields(cls) if f.default is dataclasses.MISSING and
                    f.default_factory is dataclasses.MISSING]
        missing = [k for k in required if k not in data]
        if missing:
            raise _bad("plan", "classification plan fields are missing", ", ".join(required), missing,
                       "write the plan with ClassifyPlan.save")
        values = dict(data)
        if values.get("imbalance_ratio") in ("inf", "Infinity"):
            values["imbalance_ratio"] = math.inf
        if isinstance(values.get("augmentation"), dict):
            values["augmentation"] = AugSpec.from_dict(values["augmentation"])
        return cls(**values)


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
    _check_choice("model", model, CLASSIFY_MODELS)
    _check_choice("stem", stem, STEMS)
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
    _check_choice("model", model, CLASSIFY_MODELS)
    _check_choice("stem", stem, STEMS)
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


def _class_weights(counts: np.ndarray, n: int, multilabel: bool) -> tuple[float, ...]:
    if multilabel:
        return tuple(round(float((n - c) / c), 6) for c in counts)
    return tuple(round(float(n / (len(counts) * c)), 6) for c in counts)


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
    if not _is_num(minutes) or not minutes > 0 or not _is_num(memory_gb) or not memory_gb > 0:
        raise _bad("minutes/memory_gb", "time and memory budgets must be positive", "> 0", (minutes, memory_gb),
                   "e.g. minutes=30, memory_gb=4")
    overrides = dict(overrides or {})
    minutes = _check_float("minutes", overrides.pop("minutes", minutes), 0.0, open_lo=True)
    seed = _check_int("seed", overrides.pop("seed", seed), 0)
    names = {f.name for f in fields(ClassifyPlan)}
    for key in overrides:
        head = key.partition(".")[0]
        if head not in names:
            raise _bad(key, "unknown plan field", "one of " + ", ".join(sorted(names - set(_DERIVED))), repr(key),
                       "check the spelling; augmentation keys look like 'augmentation.flip'")
        if head in _DERIVED:
            raise _bad(key, "field is measured from the dataset and cannot be overridden",
                       "one of " + ", ".join(sorted(names - set(_DERIVED))), repr(key),
                       "change the dataset (e.g. class_names= when opening it) instead")
    n = len(ds)
    if n == 0:
        raise _bad("ds", "empty dataset", "at least one sample per class", 0, "open a dataset with samples")
    dims, task, class_names = int(ds.dims), str(ds.task), tuple(ds.class_names)
    multilabel = task == "multilabel"
    labels = np.asarray(ds.labels)
    counts = labels.sum(axis=0) if multilabel else np.bincount(labels, minlength=len(class_names))
    if (counts == 0).any():
        empty = [c for c, k in zip(class_names, counts) if k == 0]
        raise _bad("ds", "classes without samples" + (" (positives)" if multilabel else ""),
                   "every class represented", empty, "add samples of those classes, or open the dataset without "
                   "them (class_names=)")
    if multilabel and (counts == n).any():
        full = [c for c, k in zip(class_names, counts) if k == n]
        raise _bad("ds", "labels positive in every sample", "negatives for every label", full,
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
        in_channels = _check_int("in_channels", overrides.pop("in_channels"), 1)
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
                len(input_size) != dims or not all(_is_int(v) and int(v) >= 1 for v in input_size):
            raise _bad("input_size", "input size does not match dims",
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
    _check_choice("model", model, CLASSIFY_MODELS)
    if "stem" in overrides:
        stem = _check_choice("stem", overrides.pop("stem"), STEMS)
        notes.append(f"model {model} ({dims}D), {stem} stem (override)")
    else:
        stem = "small" if max(input_size) <= SMALL_STEM_MAX_SIDE[dims] else "imagenet"
        notes.append(f"model {model} ({dims}D), {stem} stem (largest input side {max(input_size)} "
                     f"{'<=' if stem == 'small' else '>'} {SMALL_STEM_MAX_SIDE[dims]})")

    # ---- normalisation ----
    if "normalization" in overrides:
        normalization = _check_choice("normalization", overrides.pop("normalization"), _NORMS)
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
            raise _bad("normalization", "rgb statistics need images with in_channels channels", in_channels,
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
        sampling = _check_choice("sampling", sampling_o, _SAMPLINGS)
        if loss_o is None and sampling == "balanced" and loss.startswith("weighted_"):
            loss = loss[len("weighted_"):]
        why += f"; override: sampling {sampling}"
    if loss_o is not None:
        loss = _check_choice("loss", loss_o, _LOSSES[task])
        why += f"; override: loss {loss}"
    class_weights = None
    if loss.startswith("weighted_"):
        class_weights = _class_weights(counts, n, multilabel) if weights_o is None else \
            _check_floats("class_weights", weights_o, len(class_names), positive=True)
    elif weights_o is not None:
        raise _bad("class_weights", f"loss '{loss}' takes no class weights", "None", repr(weights_o),
                   "override loss='weighted_ce' (or 'weighted_bce') too")
    notes.append(why)

    # ---- folds ----
    if "n_folds" in overrides:
        n_folds = _check_int("n_folds", overrides.pop("n_folds"), 1)
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
            return _check_int("batch_size", batch_o, 1)
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
        width = _check_int("model_width", width_o, 1)
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
    iterations = _check_int("iterations", iters_o, 1) if iters_o is not None else \
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


# ---- preprocessing -----------------------------------------------------------------------------------------------
def _match_channels(arr: np.ndarray, want: int) -> np.ndarray:
    c = arr.shape[0]
    if c == want:
        return arr
    if c in (2, 4):  # grey + alpha, RGBA
        arr, c = arr[:-1], c - 1
        if c == want:
            return arr
    if c == 1 and want == 3:
        return np.repeat(arr, 3, axis=0)
    if c == 3 and want == 1:
        if np.array_equal(arr[0], arr[1]) and np.array_equal(arr[0], arr[2]):
            return arr[:1]
        weights = np.array([0.299, 0.587, 0.114], np.float32).reshape(3, *([1] * (arr.ndim - 1)))
        return (arr * weights).sum(axis=0, keepdims=True)  # ITU-R BT.601 luma
    raise _bad("array", "channel count does not match the plan", f"{want} channels (or grey/RGB to convert)",
               f"{c} channels", "give images with the channels the model was planned for")


def _normalise(arr: np.ndarray, plan: ClassifyPlan) -> np.ndarray:
    out = np.empty(arr.shape, np.float32)
    for c in range(arr.shape[0]):
        x = arr[c].astype(np.float32, copy=False)
        if plan.normalization == "zscore":
            std = float(x.std())
            out[c] = (x - float(x.mean())) / std if std > 1e-8 else 0.0
        elif plan.normalization == "minmax":
            lo, hi = float(x.min()), float(x.max())
            out[c] = (x - lo) / (hi - lo) if hi > lo else 0.0
        elif plan.normalization == "percentile":
            lo, hi = (float(v) for v in np.percentile(x, plan.percentiles))
            out[c] = (np.clip(x, lo, hi) - lo) / (hi - lo) if hi > lo else 0.0
        else:  # rgb
            assert plan.channel_mean is not None and plan.channel_std is not None
            out[c] = (x / 255.0 - plan.channel_mean[c]) / plan.channel_std[c]
    return out


def _crop_pad(arr: np.ndarray, size: Sequence[int]) -> np.ndarray:
    out = np.empty((arr.shape[0], *size), np.float32)
    out[...] = arr.reshape(arr.shape[0], -1).min(axis=1).reshape(-1, *([1] * len(size)))
    src, dst = [slice(None)], [slice(None)]
    for have, want in zip(arr.shape[1:], size):
        if have >= want:
            start = (have - want) // 2
            src.append(slice(start, start + want))
            dst.append(slice(None))
        else:
            start = (want - have) // 2
            src.append(slice(None))
            dst.append(slice(start, start + have))
    out[tuple(dst)] = arr[tuple(src)]
    return out


def _resize(arr: np.ndarray, size: Sequence[int]) -> np.ndarray:
    if tuple(arr.shape[1:]) == tuple(size):
        return arr
    from skimage.transform import resize

    out = resize(arr, (arr.shape[0], *size), order=1, mode="edge", anti_aliasing=True, preserve_range=True)
    return out.astype(np.float32, copy=False)


def preprocess_sample(array: np.ndarray, plan: ClassifyPlan) -> np.ndarray:
    """The network input of one sample: channels matched, normalised, then resized or cropped/padded.

    Deterministic, used by both training and prediction. Channels: alpha dropped; grey repeated to 3 channels
    for an RGB plan; RGB turned to grey for a grey plan (the first channel when all three are equal, else the
    BT.601 luma). Normalisation uses the statistics of the whole image before the spatial step.

    Args:
        array: one sample as :meth:`ClassificationDataset.load` gives it: (C, Y, X) for 2D plans, (C, Z, Y, X)
            for 3D plans; an array without channel axis ((Y, X) / (Z, Y, X)) is taken as one channel, and
            ``Image.voxels`` of a 2D image, (C, 1, Y, X), is accepted too.
        plan: the plan.

    Returns:
        float32 (in_channels, *input_size), C-contiguous.

    Raises:
        InvalidParameterError: wrong number of axes, a channel count that cannot be converted, NaN/Inf values.

    Example:
        >>> plan = ClassifyPlan(schema_version=1, task="binary", class_names=("a", "b"), dims=2,
        ...                     in_channels=1, input_size=(16, 16))
        >>> x = preprocess_sample(np.arange(32 * 24, dtype=np.float32).reshape(1, 32, 24), plan)
        >>> x.shape, x.dtype, bool(abs(float(x.mean())) < 0.1)
        ((1, 16, 16), dtype('float32'), True)
    """
    arr = np.asarray(array)
    if arr.ndim == plan.dims:
        arr = arr[None]
    elif plan.dims == 2 and arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]  # Image voxels (C, 1, Y, X)
    if arr.ndim != plan.dims + 1 or min(arr.shape) < 1:
        raise _bad("array", "sample has the wrong number of axes",
                   f"(C, {'Z, Y, X' if plan.dims == 3 else 'Y, X'}) for a {plan.dims}D plan", f"shape {arr.shape}",
                   "give one sample as ClassificationDataset.load returns it")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise _bad("array", "sample is not numeric", "a numeric array", str(arr.dtype), "convert it to numbers")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise _bad("array", "sample holds NaN/Inf values", "finite values",
                   f"{int(arr.size - np.count_nonzero(np.isfinite(arr)))} non-finite", "replace them first")
    arr = _normalise(_match_channels(arr, plan.in_channels), plan)
    arr = _resize(arr, plan.input_size) if plan.resize == "resize" else _crop_pad(arr, plan.input_size)
    return np.ascontiguousarray(arr, dtype=np.float32)
