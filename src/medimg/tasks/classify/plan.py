"""The :class:`ClassifyPlan`: every choice of an image classification run, validated and saved as ``plan.json``.

A plan is saved next to the weights (``plan.save("model/plan.json")``) so that a model folder describes itself.
``schema_version`` is written into every file; a file written by a newer medimg fails with a clear message. The
plan is made by :func:`medimg.tasks.classify.planner.plan_classification` (its rules are explained there and in
``plan.notes``); samples are turned into network inputs by :func:`medimg.tasks.classify.preprocess.preprocess_sample`.

The plan's ``task`` field records the kind of classification (binary, multiclass, multilabel): these values are
the plan's :attr:`ClassifyPlan.TASK_VALUES`, by which the task registry knows a classification model folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np

from medimg.augment.batch import AugSpec
from medimg.core.errors import bad_value
from medimg.core.image import to_jsonable
from medimg.plans.base import PlanBase

__all__ = [
    "CLASSIFY_SCHEMA_VERSION", "CLASSIFY_MODELS", "MODELS_3D_ONLY", "STEMS", "CLASSIFY_TASKS", "RESIZE_POLICIES",
    "NORMALIZATIONS", "LOSSES", "SAMPLINGS", "OPTIMIZERS", "SCHEDULES", "DERIVED_FIELDS", "ClassifyPlan",
    "is_int", "is_number", "check_int", "check_float", "check_choice", "check_bool", "check_floats",
]

#: Version of the classification plan file format this medimg writes and the newest it reads.
CLASSIFY_SCHEMA_VERSION = 1
#: Model names a plan may name (built by the model registry); the last three take 3D inputs only.
CLASSIFY_MODELS = ("resnet18", "resnet34", "vgg16", "densenet121", "mobilenetv3_small", "resnet18_25d",
                   "resnet18_acs", "slice_lstm")
MODELS_3D_ONLY = ("resnet18_25d", "resnet18_acs", "slice_lstm")
#: Stems of the classifiers (as in medimg.models.classifier_spec.STEMS).
STEMS = ("small", "imagenet")
#: The kinds of classification (the plan's ``task`` field).
CLASSIFY_TASKS = ("binary", "multiclass", "multilabel")
RESIZE_POLICIES = ("resize", "crop_pad")
NORMALIZATIONS = ("zscore", "minmax", "percentile", "rgb")
LOSSES = {"binary": ("ce", "weighted_ce"), "multiclass": ("ce", "weighted_ce"),
          "multilabel": ("bce", "weighted_bce")}
SAMPLINGS = ("uniform", "balanced")
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "poly")
#: Fields recorded from the data that overrides may not change.
DERIVED_FIELDS = ("schema_version", "task", "class_names", "dims", "imbalance_ratio", "dataset_summary", "notes")


# ---- value checks (shared with the planner) ---------------------------------------------------------------------
def is_int(v: Any) -> bool:
    """An integer (Python or NumPy), not a boolean."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def is_number(v: Any) -> bool:
    """A finite number (not a boolean)."""
    return is_int(v) or (isinstance(v, (float, np.floating)) and math.isfinite(float(v)))


def check_int(name: str, v: Any, lo: int) -> int:
    """``v`` as an int >= ``lo``, else one-line InvalidParameterError naming ``name``."""
    if not is_int(v) or int(v) < lo:
        raise bad_value(name, "must be an integer", f"an integer >= {lo}", repr(v), f"give e.g. {name}={max(lo, 1)}")
    return int(v)


def check_float(name: str, v: Any, lo: float, hi: float = math.inf, *, open_lo: bool = False) -> float:
    """``v`` as a float in [lo, hi] (or (lo, hi] with ``open_lo``)."""
    if not is_number(v) or not (lo < float(v) if open_lo else lo <= float(v)) or float(v) > hi:
        rng = f"{'(' if open_lo else '['}{lo:g}, {hi:g}]"
        raise bad_value(name, "number out of range", f"a number in {rng}", repr(v), f"give a value in {rng}")
    return float(v)


def check_choice(name: str, v: Any, options: Sequence[str]) -> str:
    """``v`` when it is one of ``options``."""
    if not isinstance(v, str) or v not in options:
        raise bad_value(name, f"unknown {name.replace('_', ' ')}", " | ".join(options), repr(v),
                        "pick one of the listed values")
    return v


def check_bool(name: str, v: Any) -> bool:
    """``v`` as a bool (Python or NumPy booleans only)."""
    if not isinstance(v, (bool, np.bool_)):
        raise bad_value(name, "must be true or false", "a boolean", repr(v), f"give {name}=True or False")
    return bool(v)


def check_floats(name: str, v: Any, n: int | None, *, positive: bool) -> tuple[float, ...]:
    """``v`` as a tuple of ``n`` finite (positive) floats."""
    if isinstance(v, (str, bytes)) or not isinstance(v, (list, tuple, np.ndarray)) or \
            not all(is_number(x) for x in v) or (n is not None and len(v) != n) or \
            (positive and not all(float(x) > 0 for x in v)):
        raise bad_value(name, "wrong list of numbers", f"{n if n is not None else 'some'} finite"
                        f"{' positive' if positive else ''} numbers", repr(v), "give one number per class/channel")
    return tuple(float(x) for x in v)


@dataclass(frozen=True)
class ClassifyPlan(PlanBase):
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

    TASK: ClassVar[str] = "classify"
    SCHEMA_VERSION: ClassVar[int] = CLASSIFY_SCHEMA_VERSION
    TASK_VALUES: ClassVar[tuple[str, ...]] = CLASSIFY_TASKS
    NESTED: ClassVar[dict[str, set[str] | None]] = {"augmentation": {f.name for f in dataclasses.fields(AugSpec)}}

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
        if not is_int(self.schema_version) or self.schema_version != CLASSIFY_SCHEMA_VERSION:
            raise bad_value("schema_version", "unsupported classification plan schema version", CLASSIFY_SCHEMA_VERSION,
                            repr(self.schema_version), "build the plan with this medimg version")
        check_choice("task", self.task, CLASSIFY_TASKS)
        if isinstance(self.class_names, str) or not isinstance(self.class_names, (list, tuple)) or \
                not all(isinstance(n, str) and n for n in self.class_names) or \
                len(set(self.class_names)) != len(self.class_names) or len(self.class_names) < 2:
            raise bad_value("class_names", "invalid class names", "at least 2 distinct non-empty names",
                            repr(self.class_names), "list one name per class")
        set_("class_names", tuple(self.class_names))
        if self.task == "binary" and self.n_classes != 2:
            raise bad_value("class_names", "a binary task has two classes", 2, self.n_classes,
                            "use task='multiclass' for more classes")
        if self.task == "multiclass" and self.n_classes < 3:
            raise bad_value("task", "two classes make a binary task", "task='binary'", repr(self.task),
                            "use task='binary'")
        if self.dims not in (2, 3) or not is_int(self.dims):
            raise bad_value("dims", "unsupported dimensionality", "2 or 3", repr(self.dims), "plan 2D or 3D data")
        set_("in_channels", check_int("in_channels", self.in_channels, 1))
        size = self.input_size
        if isinstance(size, (str, bytes)) or not isinstance(size, (list, tuple)) or len(size) != self.dims or \
                not all(is_int(s) and int(s) >= 1 for s in size):
            raise bad_value("input_size", "input size does not match dims",
                            f"{self.dims} positive integers ({'Z, Y, X' if self.dims == 3 else 'Y, X'})", repr(size),
                            "give one size per spatial axis")
        set_("input_size", tuple(int(s) for s in size))
        check_choice("resize", self.resize, RESIZE_POLICIES)
        check_choice("normalization", self.normalization, NORMALIZATIONS)
        pct = check_floats("percentiles", self.percentiles, 2, positive=False)
        if not 0.0 <= pct[0] < pct[1] <= 100.0:
            raise bad_value("percentiles", "invalid percentile range", "0 <= low < high <= 100", pct,
                            "e.g. (0.5, 99.5)")
        set_("percentiles", pct)
        for name in ("channel_mean", "channel_std"):
            value = getattr(self, name)
            if value is not None:
                set_(name, check_floats(name, value, self.in_channels, positive=name == "channel_std"))
        if self.normalization == "rgb" and (self.channel_mean is None or self.channel_std is None):
            raise bad_value("channel_mean", "rgb normalisation needs per-channel statistics",
                            f"channel_mean and channel_std with {self.in_channels} values", "None",
                            "plan with plan_classification, which measures them, or give them")
        check_choice("model", self.model, CLASSIFY_MODELS)
        if self.dims == 2 and self.model in MODELS_3D_ONLY:
            raise bad_value("model", "model takes 3D inputs only", "a 2D model: " + ", ".join(
                m for m in CLASSIFY_MODELS if m not in MODELS_3D_ONLY), repr(self.model), "pick a 2D model")
        set_("model_width", check_int("model_width", self.model_width, 1))
        check_choice("stem", self.stem, STEMS)
        set_("se", check_bool("se", self.se))
        set_("dropout", check_float("dropout", self.dropout, 0.0, 0.95))
        if not isinstance(self.augmentation, AugSpec):
            if not isinstance(self.augmentation, dict):
                raise bad_value("augmentation", "augmentation must be an AugSpec", "an AugSpec or a mapping",
                                type(self.augmentation).__name__, "give medimg.augment.batch.AugSpec(...)")
            set_("augmentation", AugSpec.from_dict(self.augmentation))
        check_choice("loss", self.loss, LOSSES[self.task])
        if self.loss.startswith("weighted_"):
            if self.class_weights is None:
                raise bad_value("class_weights", f"loss '{self.loss}' needs class weights", f"{self.n_classes} weights",
                                "None", "give class_weights, or use an unweighted loss")
            set_("class_weights", check_floats("class_weights", self.class_weights, self.n_classes, positive=True))
        elif self.class_weights is not None:
            raise bad_value("class_weights", f"loss '{self.loss}' takes no class weights", "None",
                            repr(self.class_weights), f"use loss='weighted_{self.loss}', or drop class_weights")
        check_choice("sampling", self.sampling, SAMPLINGS)
        if self.sampling == "balanced" and self.task == "multilabel":
            raise bad_value("sampling", "balanced sampling needs one class per sample", "'uniform' for multilabel",
                            repr(self.sampling), "use sampling='uniform' and loss='weighted_bce'")
        if not (is_number(self.imbalance_ratio) or self.imbalance_ratio == math.inf) or self.imbalance_ratio < 1:
            raise bad_value("imbalance_ratio", "invalid imbalance ratio", "a number >= 1", repr(self.imbalance_ratio),
                            "this field is measured by plan_classification")
        set_("imbalance_ratio", float(self.imbalance_ratio))
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        set_("learning_rate", check_float("learning_rate", self.learning_rate, 0.0, 10.0, open_lo=True))
        set_("weight_decay", check_float("weight_decay", self.weight_decay, 0.0, 1.0))
        set_("batch_size", check_int("batch_size", self.batch_size, 1))
        check_choice("schedule", self.schedule, SCHEDULES)
        if self.minutes is not None:
            set_("minutes", check_float("minutes", self.minutes, 0.0, open_lo=True))
        set_("iterations", check_int("iterations", self.iterations, 1))
        set_("n_folds", check_int("n_folds", self.n_folds, 1))
        set_("seed", check_int("seed", self.seed, 0))
        if isinstance(self.notes, str) or not isinstance(self.notes, (list, tuple)) or \
                not all(isinstance(n, str) for n in self.notes):
            raise bad_value("notes", "notes must be a list of strings", "strings", repr(self.notes), "give strings")
        set_("notes", tuple(self.notes))
        if not isinstance(self.dataset_summary, dict):
            raise bad_value("dataset_summary", "dataset summary must be a mapping", "a JSON object",
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
    def after_replace(self, data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
        """:meth:`replace` (the base's dotted overrides, ``augmentation.<field>``): replacing ``loss`` by an
        unweighted loss drops ``class_weights`` (unless they are given too).

        Example:
            >>> plan = ClassifyPlan(schema_version=1, task="binary", class_names=("a", "b"), dims=2,
            ...                     in_channels=1, input_size=(28, 28))
            >>> plan.replace(model_width=32, **{"augmentation.flip": 0.0}).augmentation.flip
            0.0
        """
        if "loss" in overrides and "class_weights" not in overrides and \
                not str(overrides["loss"]).startswith("weighted_"):
            data["class_weights"] = None
        return data

    # ---- serialisation -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data (``imbalance_ratio`` inf is written as the string "inf")."""
        data = to_jsonable(dataclasses.asdict(self))
        data["augmentation"] = self.augmentation.to_dict()
        if math.isinf(self.imbalance_ratio):
            data["imbalance_ratio"] = "inf"
        return data

    @classmethod
    def from_dict(cls, data: Any) -> ClassifyPlan:
        """Build a plan from :meth:`to_dict` data: the schema version first, then unknown keys, then values.

        Raises:
            InvalidParameterError: not a mapping, no/newer schema version, unknown or missing fields, bad values.
        """
        values = dict(cls.check_fields(data))
        if values.get("imbalance_ratio") in ("inf", "Infinity"):
            values["imbalance_ratio"] = math.inf
        if isinstance(values.get("augmentation"), dict):
            values["augmentation"] = AugSpec.from_dict(values["augmentation"])
        return cls(**values)
