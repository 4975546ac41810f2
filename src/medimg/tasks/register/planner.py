"""The rule-based planner of a learned registration model: a dataset's spacings and shapes -> a
:class:`~medimg.tasks.register.plan.RegisterPlan`.

Rules of :func:`plan_registration` (sized for a 2-core CPU; each decision is explained in ``plan.notes``):

* **Spacing**: the median spacing of the dataset per axis. When the median image at that spacing has more than
  :data:`MAX_VOXELS` voxels, the spacing is enlarged isotropically until it fits (a coarser field, upsampled
  at prediction).
* **Grid**: the 95th percentile of the image extents at the target spacing, per axis, rounded up to a multiple of
  ``2 ** (levels - 1)``; every image is resampled onto a grid of this size centred on its own centre (so a pair
  starts aligned by its image centres, as ``--init geometry`` does in classical registration). At prediction the
  grid grows to cover a larger fixed image (the network is fully convolutional).
* **Network**: a VoxelMorph-style U-Net (:class:`~medimg.models.registration_unet.RegistrationUNet`), features
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
from typing import Sequence

import numpy as np

from medimg.core.errors import bad_value
from medimg.tasks.register.plan import RegisterPlan

__all__ = ["MAX_VOXELS", "plan_registration"]

#: Largest grid (voxels per image) the planner chooses before coarsening the spacing.
MAX_VOXELS = 96 ** 3


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
        raise bad_value("dataset", "cannot plan", "2D or 3D images with spacings and shapes", f"{len(spacings)} images",
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
