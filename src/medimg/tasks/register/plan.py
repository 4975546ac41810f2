"""The :class:`RegisterPlan` of a learned registration model.

A plan is saved as ``MODEL_DIR/plan.json`` beside the weights, so a model folder describes itself: the grid the
network sees, the intensity normalisation, the pre-alignment, the losses and the training budget. The rules that
fill it are in :mod:`medimg.tasks.register.planner`; the JSON round trip, the schema and unknown-field checks and the
dotted ``--set`` overrides come from :class:`medimg.plans.base.PlanBase`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from medimg.core.errors import bad_value
from medimg.plans.base import PlanBase

__all__ = ["REGISTER_SCHEMA_VERSION", "RegisterPlan"]

REGISTER_SCHEMA_VERSION = 1
_SIMILARITIES = ("ncc", "mi", "mse")
_REGULARISERS = ("diffusion", "bending")
_MODES = ("unsupervised", "supervised")
_PREALIGN = ("center", "affine")


@dataclass(frozen=True)
class RegisterPlan(PlanBase):
    """Every choice of a learned registration model (:func:`~medimg.tasks.register.planner.plan_registration` fills it).

    Attributes:
        dims: 2 or 3.
        spacing: target spacing (sx, sy[, sz]) in mm.
        grid: training grid (Z, Y, X) or (Y, X), multiples of ``2 ** (len(features) - 1)``.
        features: channels per U-Net level.
        integrate, steps: stationary velocity field integrated by scaling and squaring.
        mode: "unsupervised" (similarity + regulariser [+ Dice]) or "supervised" (simulated fields).
        similarity: "ncc" (local, window ``ncc_window``), "mi" (cross-modal) or "mse".
        regulariser, reg_weight: "diffusion" or "bending" and its weight.
        dice_weight: weight of the soft label-Dice term (0 without labels).
        label_values: label values of the dataset (background 0 first) for the Dice term and validation.
        prealign: "center" or "affine".
        percentiles: intensity normalisation: clip to these percentiles of the image, scale to [0, 1].
        batch_size, lr, weight_decay: optimiser settings.
        simulate_max_mm: supervised mode: largest displacement of the simulated fields.
        val_pairs: validation pairs drawn from the fold's validation cases.
        dataset, n_cases: where the plan came from.
        notes: why each choice was made.
    """

    dims: int
    spacing: tuple[float, ...]
    grid: tuple[int, ...]
    features: tuple[int, ...] = (16, 32, 32, 32)
    integrate: bool = True
    steps: int = 7
    mode: str = "unsupervised"
    similarity: str = "ncc"
    ncc_window: int = 9
    regulariser: str = "diffusion"
    reg_weight: float = 0.5
    dice_weight: float = 0.0
    label_values: tuple[int, ...] = ()
    prealign: str = "center"
    percentiles: tuple[float, float] = (0.5, 99.5)
    batch_size: int = 4
    lr: float = 5e-4
    weight_decay: float = 0.0
    simulate_max_mm: float = 6.0
    val_pairs: int = 20
    dataset: str = ""
    n_cases: int = 0
    notes: tuple[str, ...] = ()
    schema_version: int = REGISTER_SCHEMA_VERSION
    task: str = "register"

    TASK: ClassVar[str] = "register"
    SCHEMA_VERSION: ClassVar[int] = REGISTER_SCHEMA_VERSION
    TASK_VALUES: ClassVar[tuple[str, ...]] = ("register",)

    def __post_init__(self) -> None:
        def tup(name: str, kind: type) -> None:
            object.__setattr__(self, name, tuple(kind(v) for v in getattr(self, name)))

        for name, kind in (("spacing", float), ("grid", int), ("features", int), ("label_values", int),
                           ("percentiles", float), ("notes", str)):
            tup(name, kind)
        if self.task != "register":
            raise bad_value("task", "not a registration plan", "task 'register'", self.task,
                       "give the folder of a model trained by `medimg train register`")
        if self.schema_version > REGISTER_SCHEMA_VERSION:
            raise bad_value("schema_version", "plan written by a newer medimg", f"<= {REGISTER_SCHEMA_VERSION}",
                       self.schema_version, "upgrade medimg")
        if self.dims not in (2, 3):
            raise bad_value("dims", "dims must be 2 or 3", "2 | 3", self.dims, "fix plan.json")
        if len(self.spacing) != self.dims or any(not s > 0 for s in self.spacing):
            raise bad_value("spacing", "invalid spacing", f"{self.dims} positive numbers (mm)", self.spacing,
                       "fix plan.json")
        div = 2 ** (len(self.features) - 1)
        if len(self.grid) != self.dims or any(g < div or g % div for g in self.grid):
            raise bad_value("grid", "invalid grid", f"{self.dims} sizes, multiples of {div}", self.grid,
                       f"use sizes divisible by {div}, e.g. --set 'grid=[{', '.join([str(4 * div)] * self.dims)}]'")
        if not self.features or any(f < 1 for f in self.features):
            raise bad_value("features", "invalid features", "positive channel counts", self.features,
                            "e.g. [16,32,32,32]")
        for name, options in (("mode", _MODES), ("similarity", _SIMILARITIES), ("regulariser", _REGULARISERS),
                              ("prealign", _PREALIGN)):
            if getattr(self, name) not in options:
                raise bad_value(name, f"unknown {name}", " | ".join(options), getattr(self, name),
                           f"use --set {name}={options[0]}")
        if self.ncc_window < 3 or self.ncc_window % 2 == 0:
            raise bad_value("ncc_window", "invalid NCC window", "an odd number >= 3", self.ncc_window, "e.g. 9")
        for name in ("reg_weight", "dice_weight", "lr", "weight_decay", "simulate_max_mm"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise bad_value(name, f"invalid {name}", "a number >= 0", v, f"fix --set {name}=...")
        if self.batch_size < 1 or self.steps < 0 or self.val_pairs < 0:
            raise bad_value("batch_size", "invalid batch size, steps or val_pairs", "batch_size >= 1, steps >= 0",
                       (self.batch_size, self.steps, self.val_pairs), "fix plan.json")
        lo, hi = self.percentiles
        if not (len(self.percentiles) == 2 and 0 <= lo < hi <= 100):
            raise bad_value("percentiles", "invalid percentiles", "0 <= low < high <= 100", self.percentiles,
                       "e.g. [0.5, 99.5]")

    @property
    def divisor(self) -> int:
        return 2 ** (len(self.features) - 1)

    @property
    def n_labels(self) -> int:
        return len(self.label_values)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: Any) -> RegisterPlan:
        """A plan from parsed plan.json; plans written before ``schema_version`` existed read as version 1.

        Raises:
            InvalidParameterError: not a registration plan, a newer schema, unknown or missing fields, bad values.
        """
        if isinstance(data, dict):
            if data.get("task", "register") != "register":
                raise bad_value("task", "not a registration plan", "task 'register'", data.get("task"),
                                "give the folder of a model trained by `medimg train register`")
            data = {"schema_version": REGISTER_SCHEMA_VERSION, **data}
        cls.check_fields(data, required=())
        missing = [n for n in ("dims", "spacing", "grid") if n not in data]
        if missing:
            raise bad_value("plan", f"plan lacks {missing[0]}", "a plan written by `medimg train register`",
                            f"fields {sorted(data)}", "train the model again")
        try:
            return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()})
        except TypeError as exc:
            raise bad_value("plan", "plan fields have wrong types", "a plan written by medimg", str(exc),
                            "train the model again") from exc
