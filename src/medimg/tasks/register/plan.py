"""The :class:`RegisterPlan` of a learned registration model and its rule-based planner.

A plan is saved as ``MODEL_DIR/plan.json`` beside the weights, so a model folder describes itself: the grid the
network sees, the intensity normalisation, the pre-alignment, the losses and the training budget.

Rules of :func:`plan_registration` (sized for a 2-core CPU; each decision is explained in ``plan.notes``):

* **Spacing**: the median spacing of the dataset per axis. When the median image at that spacing has more than
  :data:`MAX_VOXELS` voxels, the spacing is enlarged isotropically until it fits (a coarser field, upsampled
  at prediction).
* **Grid**: the 95th percentile of the image extents at the target spacing, per axis, rounded up to a multiple of
  ``2 ** (levels - 1)``; every image is resampled onto a grid of this size centred on its own centre (so a pair
  starts aligned by its image centres, as ``--init geometry`` does in classical registration). At prediction the
  grid grows to cover a larger fixed image (the network is fully convolutional).
* **Network**: a VoxelMorph-style U-Net (:class:`~medimg.tasks.register.network.RegistrationUNet`), features
  ``(16, 32, 32, 32)`` (4 levels; 3 levels when the smallest grid side is below 32), predicting a stationary
  velocity field integrated by scaling and squaring in 7 steps (diffeomorphic; ``integrate=False`` for a plain
  displacement).
* **Losses** (``mode="unsupervised"``): local NCC (window 9) for one modality, or mutual information
  (``similarity="mi"``) across modalities, plus diffusion regularisation of the velocity (weight 0.5: our
  diffusion term sums the three axes where VoxelMorph's ``Grad('l2')`` averages them, so this is VoxelMorph's
  lambda = 1.5 for NCC), plus a soft label-Dice term (weight 1) when the dataset has labels
  (semi-supervised). ``mode="supervised"``: each pair is a real image and its warp by a random smooth
  diffeomorphic field (maximum displacement ``simulate_max_mm``); the loss is the mean squared field error
  (voxels^2) plus the regulariser at 1 % of ``reg_weight`` (a light smoothness prior).
* **Pre-alignment**: ``"center"`` (image centres; nothing to compute) or ``"affine"`` (the classical affine
  registration, Mattes MI: at training every image is aligned once to a template case of the training set, at
  prediction the moving image to the fixed one). Centre alignment is the default because it keeps a pair's
  registration a single network pass.
* **Batch and learning rate**: batch 4 up to 256k voxels per image, then 2, then 1 (above 1M); Adam(W), learning
  rate 5e-4 with a cosine schedule (the training budget is short).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Sequence

import numpy as np

from medimg.core.errors import InvalidParameterError
from medimg.plans.base import PlanBase as JsonFileMixin

__all__ = ["REGISTER_SCHEMA_VERSION", "MAX_VOXELS", "RegisterPlan", "plan_registration"]

REGISTER_SCHEMA_VERSION = 1
#: Largest grid (voxels per image) the planner chooses before coarsening the spacing.
MAX_VOXELS = 96 ** 3
_SIMILARITIES = ("ncc", "mi", "mse")
_REGULARISERS = ("diffusion", "bending")
_MODES = ("unsupervised", "supervised")
_PREALIGN = ("center", "affine")


def _bad(parameter: str, what: str, expected: Any, found: Any, fix: str) -> InvalidParameterError:
    return InvalidParameterError(what, parameter=parameter, expected=expected, found=found, fix=fix)


@dataclass(frozen=True)
class RegisterPlan(JsonFileMixin):
    """Every choice of a learned registration model (see the module text for the rules that fill it).

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

    def __post_init__(self) -> None:
        def tup(name: str, kind: type) -> None:
            object.__setattr__(self, name, tuple(kind(v) for v in getattr(self, name)))

        for name, kind in (("spacing", float), ("grid", int), ("features", int), ("label_values", int),
                           ("percentiles", float), ("notes", str)):
            tup(name, kind)
        if self.task != "register":
            raise _bad("task", "not a registration plan", "task 'register'", self.task,
                       "give the folder of a model trained by `medimg train register`")
        if self.schema_version > REGISTER_SCHEMA_VERSION:
            raise _bad("schema_version", "plan written by a newer medimg", f"<= {REGISTER_SCHEMA_VERSION}",
                       self.schema_version, "upgrade medimg")
        if self.dims not in (2, 3):
            raise _bad("dims", "dims must be 2 or 3", "2 | 3", self.dims, "fix plan.json")
        if len(self.spacing) != self.dims or any(not s > 0 for s in self.spacing):
            raise _bad("spacing", "invalid spacing", f"{self.dims} positive numbers (mm)", self.spacing,
                       "fix plan.json")
        div = 2 ** (len(self.features) - 1)
        if len(self.grid) != self.dims or any(g < div or g % div for g in self.grid):
            raise _bad("grid", "invalid grid", f"{self.dims} sizes, multiples of {div}", self.grid,
                       f"use sizes divisible by {div}, e.g. --set 'grid=[{', '.join([str(4 * div)] * self.dims)}]'")
        if not self.features or any(f < 1 for f in self.features):
            raise _bad("features", "invalid features", "positive channel counts", self.features, "e.g. [16,32,32,32]")
        for name, options in (("mode", _MODES), ("similarity", _SIMILARITIES), ("regulariser", _REGULARISERS),
                              ("prealign", _PREALIGN)):
            if getattr(self, name) not in options:
                raise _bad(name, f"unknown {name}", " | ".join(options), getattr(self, name),
                           f"use --set {name}={options[0]}")
        if self.ncc_window < 3 or self.ncc_window % 2 == 0:
            raise _bad("ncc_window", "invalid NCC window", "an odd number >= 3", self.ncc_window, "e.g. 9")
        for name in ("reg_weight", "dice_weight", "lr", "weight_decay", "simulate_max_mm"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise _bad(name, f"invalid {name}", "a number >= 0", v, f"fix --set {name}=...")
        if self.batch_size < 1 or self.steps < 0 or self.val_pairs < 0:
            raise _bad("batch_size", "invalid batch size, steps or val_pairs", "batch_size >= 1, steps >= 0",
                       (self.batch_size, self.steps, self.val_pairs), "fix plan.json")
        lo, hi = self.percentiles
        if not (len(self.percentiles) == 2 and 0 <= lo < hi <= 100):
            raise _bad("percentiles", "invalid percentiles", "0 <= low < high <= 100", self.percentiles,
                       "e.g. [0.5, 99.5]")

    @property
    def divisor(self) -> int:
        return 2 ** (len(self.features) - 1)

    @property
    def n_labels(self) -> int:
        return len(self.label_values)

    def replace(self, **overrides: Any) -> RegisterPlan:
        """A copy with fields replaced (``--set`` overrides); unknown fields are refused."""
        names = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise _bad("--set", f"unknown plan field {unknown[0]}", ", ".join(sorted(names)), unknown[0],
                       "use a field of plan.json")
        data = self.to_dict()
        data.update(overrides)
        return RegisterPlan.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: Any) -> RegisterPlan:
        if not isinstance(data, dict):
            raise _bad("plan", "plan is not a JSON object", "an object", type(data).__name__, "repair plan.json")
        if data.get("task", "register") != "register":
            raise _bad("task", "not a registration plan", "task 'register'", data.get("task"),
                       "give the folder of a model trained by `medimg train register`")
        names = {f.name for f in fields(cls)}
        missing = [n for n in ("dims", "spacing", "grid") if n not in data]
        if missing:
            raise _bad("plan", f"plan lacks {missing[0]}", "a plan written by `medimg train register`",
                       f"fields {sorted(data)}", "train the model again")
        try:
            return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names})
        except TypeError as exc:
            raise _bad("plan", "plan fields have wrong types", "a plan written by medimg", str(exc),
                       "train the model again") from exc


def _round_up(v: float, div: int) -> int:
    """``v`` rounded up to a multiple of ``div`` (at least ``div``); round-off below 1e-6 voxels is ignored."""
    return max(div, int(math.ceil(round(v / div, 6))) * div)


def plan_registration(spacings: Sequence[Sequence[float]], shapes: Sequence[Sequence[int]], *, dims: int,
                      label_values: Sequence[int] = (), dataset: str = "", multimodal: bool = False
                      ) -> RegisterPlan:
    """Plan a learned registration model from the dataset's spacings (sx, sy[, sz]) and shapes ((Z,) Y, X).

    Example:
        >>> p = plan_registration([(1.0, 1.0, 1.0)] * 3, [(36, 50, 35), (40, 52, 38), (34, 48, 36)], dims=3,
        ...                       label_values=(0, 1, 2))
        >>> p.grid, p.spacing, p.dice_weight, p.batch_size
        ((40, 56, 40), (1.0, 1.0, 1.0), 1.0, 4)
    """
    if dims not in (2, 3) or not spacings or len(spacings) != len(shapes):
        raise _bad("dataset", "cannot plan", "2D or 3D images with spacings and shapes", f"{len(spacings)} images",
                   "give at least one image")
    sp = np.asarray([list(s)[:dims] for s in spacings], dtype=float)  # (N, dims) x, y[, z]
    sh = np.asarray([list(s)[-dims:] for s in shapes], dtype=float)[:, ::-1]  # (N, dims) x, y[, z]
    notes: list[str] = []
    target = np.median(sp, axis=0)
    axes = "x, y, z" if dims == 3 else "x, y"
    notes.append(f"target spacing = median spacing {np.round(target, 4).tolist()} mm ({axes})")
    extent = sh * sp  # mm
    median_voxels = float(np.prod(np.median(extent, axis=0) / target))
    if median_voxels > MAX_VOXELS:
        factor = (median_voxels / MAX_VOXELS) ** (1.0 / dims)
        target = target * factor
        notes.append(f"median image has {median_voxels:.0f} voxels > {MAX_VOXELS}: spacing enlarged by "
                     f"{factor:.3f} to {np.round(target, 4).tolist()} mm")
    size_xyz = np.percentile(extent / target, 95, axis=0)
    levels = 4 if float(np.min(size_xyz)) >= 32 else 3
    features = (16, 32, 32, 32) if levels == 4 else (16, 32, 32)
    div = 2 ** (levels - 1)
    grid = tuple(_round_up(v, div) for v in size_xyz[::-1])  # (Z,) Y, X
    notes.append(f"grid {list(grid)} = 95th percentile of the extents at the target spacing, rounded up to a "
                 f"multiple of {div} ({levels} U-Net levels)")
    voxels = int(np.prod(grid))
    batch = 4 if voxels <= 256_000 else 2 if voxels <= 1_000_000 else 1
    notes.append(f"batch {batch} for {voxels} voxels per image")
    labels = tuple(int(v) for v in label_values)
    dice_weight = 1.0 if len(labels) > 1 else 0.0
    notes.append("labels present: soft Dice term of weight 1 (semi-supervised)" if dice_weight else
                 "no labels: similarity and regularisation only")
    similarity = "mi" if multimodal else "ncc"
    notes.append("mutual information (cross-modal)" if multimodal else "local NCC, window 9 (one modality)")
    return RegisterPlan(dims=dims, spacing=tuple(float(v) for v in target), grid=grid, features=features,
                        dice_weight=dice_weight, label_values=labels, similarity=similarity, batch_size=batch,
                        dataset=dataset, n_cases=len(spacings), notes=tuple(notes))
