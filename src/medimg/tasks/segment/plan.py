"""The :class:`SegmentPlan`: every choice a segmentation training run makes, as validated data with a JSON round trip.

A plan is saved next to the weights so that a model folder describes itself. ``schema_version`` is written into
every file; reading a file written by a newer medimg fails with a clear message instead of guessing.

Optional fields added after schema version 1 have a default that means "off" and are left out of the JSON while
off, so plans that do not use them read and write exactly as before (``cascade``: see :class:`SegmentPlan`).

The JSON format is the one ``medimg.plans.Plan`` wrote before the plan moved here (the shipped model folders read
and write byte for byte the same); the shared parts (schema and unknown-field checks, dotted overrides, files) are
:class:`medimg.plans.base.PlanBase`'s.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from medimg.augment.batch import AugSpec
from medimg.core.errors import bad_value
from medimg.core.image import to_jsonable
from medimg.plans.base import PlanBase

__all__ = ["SCHEMA_VERSION", "NormSpec", "AugSpec", "SegmentPlan", "NETWORK_KEYS", "CASCADE_CHANNELS"]

#: Version of the plan file format this medimg writes and the newest it reads.
SCHEMA_VERSION = 1
#: Keys of the ``network`` mapping (the fields of medimg.models.spec.NetworkSpec).
NETWORK_KEYS = ("name", "dims", "in_channels", "n_classes", "base_channels", "max_channels", "n_stages", "block",
                "pool_kernels", "deep_supervision", "norm", "dropout")
_NORM_SCHEMES = ("ct", "zscore", "rgb", "none")
_OPTIMIZERS = ("adamw", "sgd")
_SCHEDULES = ("poly", "cosine")
_TASKS = ("segment",)
_LOSSES = ("dice_ce",)
#: Classical results a plan can feed to the network as extra input channels (``SegmentPlan.cascade``), and how many
#: channels each adds after the image's own ``in_channels``.
CASCADE_CHANNELS = {"none": 0, "fcm": 3, "otsu": 1}
#: Optional fields and their "off" value: left out of the JSON while off (older plan files stay identical).
_OFF_DEFAULTS = {"cascade": "none"}


@dataclass(frozen=True)
class NormSpec:
    """Intensity normalisation of one channel.

    Schemes: "ct" (clip to ``clip`` then ``(x - mean) / std`` with dataset foreground statistics), "zscore"
    (per-image mean/std, ``mean``/``std`` None), "rgb" (``x / 255``), "none".
    """

    scheme: str = "zscore"
    clip: tuple[float, float] | None = None
    mean: float | None = None
    std: float | None = None

    def __post_init__(self) -> None:
        if self.scheme not in _NORM_SCHEMES:
            raise bad_value("normalization.scheme", "unknown normalisation scheme", ", ".join(_NORM_SCHEMES),
                            repr(self.scheme), "pick one of the listed schemes")
        if self.clip is not None:
            clip = tuple(float(v) for v in self.clip)
            if len(clip) != 2 or clip[0] > clip[1]:
                raise bad_value("normalization.clip", "invalid clip range", "(low, high) with low <= high", clip,
                                "give the clip range as two numbers")
            object.__setattr__(self, "clip", clip)
        if self.scheme == "ct" and (self.mean is None or self.std is None or self.std <= 0):
            raise bad_value("normalization", "CT normalisation needs the dataset mean and a positive std",
                            "mean and std > 0", f"mean={self.mean}, std={self.std}",
                            "take them from the fingerprint's foreground intensity statistics")


# The augmentation settings of a plan are the augmenter's own spec (one class, one set of field names).


def _network_default() -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class SegmentPlan(PlanBase):
    """All choices of a segmentation run. Build with :func:`medimg.tasks.segment.planner.plan_segmentation`.

    Axes: ``target_spacing`` is (sx, sy, sz) mm, x first (sz is ignored for 2D); ``patch_size`` is (Z, Y, X)
    for 3D and (Y, X) for 2D. ``label_values[i]`` is the value in the label files of class id ``i``.
    ``network["pool_kernels"]`` lists the n_stages - 1 down-sampling kernels, in the axis order of the patch.

    ``cascade`` feeds a classical result of the first image channel to the network as extra input channels
    (computed per case on the image resampled to ``target_spacing``, appended after the normalised channels by
    :func:`medimg.tasks.segment.preprocess.preprocess_case`, so training and prediction both get them):

    * ``"none"`` (default): no extra channel.
    * ``"fcm"``: 3 channels, the memberships of a 3-cluster fuzzy c-means
      (:func:`medimg.classical.fuzzy_c_means` with ``seed=plan.seed``), darkest cluster first; they sum to 1.
    * ``"otsu"``: 1 channel, the 0/1 Otsu foreground mask (:func:`medimg.classical.otsu`).

    ``in_channels`` stays the number of image channels a case has; the network takes
    ``network["in_channels"] == in_channels + CASCADE_CHANNELS[cascade]`` (:attr:`network_in_channels`).
    ``plan.replace(cascade=...)`` keeps ``network["in_channels"]`` in step (:meth:`after_replace`).
    Nested keys use dots: ``plan.replace(**{"network.base_channels": 32, "augmentation.flip": 0.0})``.
    """

    TASK: ClassVar[str] = "segment"
    SCHEMA_VERSION: ClassVar[int] = SCHEMA_VERSION
    TASK_VALUES: ClassVar[tuple[str, ...]] = _TASKS
    NESTED: ClassVar[dict[str, set[str] | None]] = {"network": set(NETWORK_KEYS),
                                                     "augmentation": {f.name for f in fields(AugSpec)}}

    schema_version: int
    task: str
    dims: int
    in_channels: int
    n_classes: int
    label_values: tuple[int, ...]
    class_names: tuple[str, ...]
    target_spacing: tuple[float, float, float]
    patch_size: tuple[int, ...]
    batch_size: int
    normalization: tuple[NormSpec, ...]
    network: dict[str, Any] = field(default_factory=_network_default)
    augmentation: AugSpec = field(default_factory=AugSpec)
    loss: str = "dice_ce"
    optimizer: str = "adamw"
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "poly"
    iterations: int = 1000
    minutes: float | None = None
    foreground_oversample: float = 0.33
    seed: int = 0
    fingerprint_summary: dict[str, Any] = field(default_factory=dict)
    cascade: str = "none"

    @property
    def network_in_channels(self) -> int:
        """Channels the network takes: the image's ``in_channels`` plus those the ``cascade`` adds."""
        return self.in_channels + CASCADE_CHANNELS[self.cascade]

    def __post_init__(self) -> None:
        if self.schema_version != SCHEMA_VERSION:
            raise bad_value("schema_version", "unsupported plan schema version", SCHEMA_VERSION, self.schema_version,
                            "build the plan with this medimg version")
        if self.task not in _TASKS:
            raise bad_value("task", "unknown task", ", ".join(_TASKS), repr(self.task), "use task='segment'")
        if self.dims not in (2, 3):
            raise bad_value("dims", "unsupported dimensionality", "2 or 3", self.dims, "plan 2D or 3D data")
        if not isinstance(self.cascade, str) or self.cascade not in CASCADE_CHANNELS:
            raise bad_value("cascade", "unknown cascade", ", ".join(CASCADE_CHANNELS), repr(self.cascade),
                            "pick one of the listed values ('none' for no extra input channel)")
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("label_values", tuple(int(v) for v in self.label_values))
        set_("class_names", tuple(str(v) for v in self.class_names))
        set_("target_spacing", tuple(float(v) for v in self.target_spacing))
        set_("patch_size", tuple(int(v) for v in self.patch_size))
        norms = tuple(n if isinstance(n, NormSpec) else NormSpec(**n) for n in self.normalization)
        set_("normalization", norms)
        if not isinstance(self.augmentation, AugSpec):
            set_("augmentation", AugSpec(**dict(self.augmentation)))
        set_("network", json.loads(json.dumps(dict(self.network))))
        set_("fingerprint_summary", json.loads(json.dumps(dict(self.fingerprint_summary))))
        if len(self.target_spacing) != 3 or min(self.target_spacing) <= 0:
            raise bad_value("target_spacing", "invalid target spacing", "(sx, sy, sz) mm, all > 0", self.target_spacing,
                            "give three positive spacings, x first")
        if len(self.patch_size) != self.dims or min(self.patch_size) < 1:
            raise bad_value("patch_size", "patch size does not match dims",
                            f"{self.dims} positive sizes ({'Z, Y, X' if self.dims == 3 else 'Y, X'})", self.patch_size,
                            "give one size per spatial axis")
        if self.in_channels < 1 or len(self.normalization) != self.in_channels:
            raise bad_value("normalization", "one normalisation per input channel is needed",
                            f"{self.in_channels} entries", len(self.normalization), "list one NormSpec per channel")
        if self.n_classes < 2 or len(self.label_values) != self.n_classes or len(self.class_names) != self.n_classes:
            raise bad_value("n_classes", "classes, label values and class names disagree",
                            "n_classes >= 2 == len(label_values) == len(class_names)",
                            f"{self.n_classes}, {len(self.label_values)}, {len(self.class_names)}",
                            "list one label value and one name per class, background first")
        if len(set(self.label_values)) != len(self.label_values):
            raise bad_value("label_values", "duplicate label values", "distinct values", self.label_values,
                            "list each value once")
        if self.batch_size < 1 or self.iterations < 1:
            raise bad_value("batch_size" if self.batch_size < 1 else "iterations", "must be at least 1", ">= 1",
                            (self.batch_size, self.iterations), "give a positive number")
        if self.optimizer not in _OPTIMIZERS:
            raise bad_value("optimizer", "unknown optimizer", ", ".join(_OPTIMIZERS), repr(self.optimizer),
                            "pick one of the listed optimizers")
        if self.schedule not in _SCHEDULES:
            raise bad_value("schedule", "unknown schedule", ", ".join(_SCHEDULES), repr(self.schedule),
                            "pick one of the listed schedules")
        if self.loss not in _LOSSES:
            raise bad_value("loss", "unknown loss", ", ".join(_LOSSES), repr(self.loss), "use loss='dice_ce'")
        if not self.learning_rate > 0 or self.weight_decay < 0:
            raise bad_value("learning_rate", "invalid optimiser settings", "learning_rate > 0, weight_decay >= 0",
                            (self.learning_rate, self.weight_decay), "give positive values")
        if not 0.0 <= self.foreground_oversample <= 1.0:
            raise bad_value("foreground_oversample", "fraction out of range", "[0, 1]", self.foreground_oversample,
                            "e.g. 0.33")
        self._check_network()

    def _check_network(self) -> None:
        net = self.network
        missing = [k for k in NETWORK_KEYS if k not in net]
        unknown = [k for k in net if k not in NETWORK_KEYS]
        if missing or unknown:
            raise bad_value("network", "network spec keys are wrong", ", ".join(NETWORK_KEYS),
                            f"missing {missing}, unknown {unknown}", "give exactly the NetworkSpec fields")
        for key, want in (("dims", self.dims), ("n_classes", self.n_classes)):
            if net[key] != want:
                raise bad_value(f"network.{key}", f"network {key} disagrees with the plan", want, net[key],
                                f"override '{key}' on the plan, not only on the network")
        if net["in_channels"] != self.network_in_channels:
            raise bad_value("network.in_channels", "network in_channels disagrees with the plan",
                            f"{self.network_in_channels} (in_channels {self.in_channels} + "
                            f"{CASCADE_CHANNELS[self.cascade]} for cascade {self.cascade!r})", net["in_channels"],
                            "override 'in_channels' or 'cascade' on the plan, not only on the network")
        kernels = net["pool_kernels"] or [[2] * self.dims] * (int(net["n_stages"]) - 1)  # empty: 2 on every axis
        if len(kernels) != int(net["n_stages"]) - 1 or any(len(k) != self.dims for k in kernels):
            raise bad_value("network.pool_kernels", "pool kernels do not match the stages",
                            f"n_stages - 1 = {int(net['n_stages']) - 1} kernels of {self.dims} values",
                            kernels, "re-plan, or give kernels and n_stages together")
        for axis, size in enumerate(self.patch_size):
            factor = 1
            for k in kernels:
                factor *= int(k[axis])
            if size % factor:
                raise bad_value("patch_size", "patch size not divisible by the network's total pooling",
                                f"axis {axis} a multiple of {factor}", size,
                                f"use {max(factor, round(size / factor) * factor)} on that axis, or fewer stages")

    # ---- derivation ----------------------------------------------------------------------------------------
    def after_replace(self, data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
        """After :meth:`replace`: a new ``cascade`` also sets ``network["in_channels"]`` to match (unless that key is
        given too)."""
        if "cascade" in overrides and "network.in_channels" not in overrides and isinstance(data["network"], dict):
            cascade = data["cascade"]
            extra = CASCADE_CHANNELS.get(cascade, 0) if isinstance(cascade, str) else 0  # bad values: validation
            data["network"]["in_channels"] = int(data["in_channels"]) + extra
        return data

    # ---- serialisation -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data; optional fields that are off (e.g. ``cascade="none"``) are left out."""
        data = to_jsonable(dataclasses.asdict(self))
        for name, off in _OFF_DEFAULTS.items():
            if data.get(name) == off:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: Any) -> SegmentPlan:
        """A validated plan from :meth:`to_dict` data (a parsed plan.json); the schema version is checked first.

        Raises:
            InvalidParameterError: not a segmentation plan, unknown or missing fields, or a value the plan rejects.
        """
        cls.check_fields(data)
        values = dict(data)
        values["normalization"] = tuple(
            NormSpec(scheme=n["scheme"], clip=None if n.get("clip") is None else tuple(n["clip"]),
                     mean=n.get("mean"), std=n.get("std")) if isinstance(n, dict) else n
            for n in data.get("normalization", ()))
        if isinstance(data.get("augmentation"), dict):
            aug_names = {f.name for f in fields(AugSpec)}
            bad = sorted(set(data["augmentation"]) - aug_names)
            if bad:
                raise bad_value("augmentation", "unknown augmentation fields", ", ".join(sorted(aug_names)), bad,
                                "remove them")
            values["augmentation"] = AugSpec(**data["augmentation"])
        try:
            return cls(**values)
        except TypeError as exc:
            names = sorted(f.name for f in fields(cls))
            raise bad_value("plan", "plan fields are missing or of the wrong type", ", ".join(names), str(exc),
                            "write the plan with SegmentPlan.save") from exc


