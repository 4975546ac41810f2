"""Atlas-based segmentation: register labelled atlases onto a target image and fuse their warped labels.

This module owns single- and multi-atlas segmentation (:func:`atlas_segment`) and its label fusion
(majority or locally weighted voting). Registration is :func:`medimg.classical.registration.register`, with the
target as the fixed image and each atlas as the moving one.

How labels travel (the choice made here, and why): each atlas label map is split into one binary map per
label value, these maps are warped onto the target grid with **linear** interpolation, and the votes are the
warped fractions (background = 1 - the sum of the others). Warping the label map with nearest neighbour and
voting one-hot would be the same at voxel centres that map deep inside a region, but it snaps every boundary
voxel to one side, so small shifts of the transform flip whole voxels; the interpolated fractions are
partial-volume votes that let several atlases (and the weights) settle boundary voxels smoothly. On three
hippocampus targets with three atlases each (MSD Task04 crops) linear was 0.001-0.013 mean Dice above
nearest for every target; ``label_interpolation="nearest"`` keeps the classic one-hot form (one scalar
resampling per atlas instead of one vector resampling of L channels, so less memory for many labels).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from medimg.core.enums import Kind
from medimg.core.errors import InvalidParameterError
from medimg.core.image import Image

__all__ = ["VOTINGS", "ATLAS_METHODS", "AtlasResult", "atlas_segment"]

logger = logging.getLogger(__name__)

VOTINGS = ("majority", "weighted")
ATLAS_METHODS = ("rigid", "affine", "bspline", "demons", "diffeomorphic_demons")


@dataclass(frozen=True, eq=False)
class AtlasResult:
    """What :func:`atlas_segment` returns.

    Attributes:
        labels: (1, Z, Y, X) label Image on the target grid (uint8, or uint16 above 255).
        probabilities: (L + 1, Z, Y, X) float32 fused votes normalised to sum 1 per voxel, channel ``k`` for
            label value ``label_values[k]`` (channel 0 = background); kind probability.
        weights: weighted voting only: (A, Z, Y, X) float32 per-atlas voxel weights (summing to 1 over the
            atlases at every voxel); None for majority voting.
        label_values: the label values, background 0 first, then every value found in any atlas, ascending.
        registrations: per atlas, JSON-friendly: method, metric, seconds (registration only), metric before
            and after (lower is better), iterations.
        params: the settings used.
    """

    labels: Image
    probabilities: Image
    weights: Image | None
    label_values: tuple[int, ...]
    registrations: tuple[dict[str, Any], ...]
    params: Mapping[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary: settings, label values, per-atlas registration numbers."""
        return {"params": dict(self.params), "label_values": list(self.label_values),
                "registrations": [dict(r) for r in self.registrations]}


def _check_atlases(image: Image, atlases: Any) -> list[tuple[Image, Image]]:
    from medimg.classical.registration_checks import check_image, check_on_grid, check_same_dim

    if isinstance(atlases, tuple) and len(atlases) == 2 and all(isinstance(a, Image) for a in atlases):
        atlases = [atlases]  # a single (image, labels) pair
    try:
        pairs = [tuple(a) for a in atlases]
    except TypeError as exc:
        raise InvalidParameterError("atlases is not a sequence", parameter="atlases",
                                    expected="a sequence of (atlas_image, atlas_labels) pairs",
                                    found=type(atlases).__name__, fix="pass [(atlas_image, atlas_labels), ...]"
                                    ) from exc
    if not pairs:
        raise InvalidParameterError("no atlases", parameter="atlases", expected="at least one (image, labels) pair",
                                    found="an empty sequence", fix="give one or more atlases")
    out = []
    for i, pair in enumerate(pairs):
        name = f"atlases[{i}]"
        if len(pair) != 2:
            raise InvalidParameterError("an atlas is not an (image, labels) pair", parameter=name,
                                        expected="2 items (atlas_image, atlas_labels)", found=f"{len(pair)} items",
                                        fix="pass each atlas as (atlas_image, atlas_labels)")
        atlas, labels = pair
        check_image(atlas, f"{name} image")
        check_same_dim(image, atlas, "image", f"{name} image")
        check_on_grid(atlas, labels, f"{name} atlas", f"{name} labels")
        vox = labels.voxels
        if np.issubdtype(vox.dtype, np.floating) and not np.all(vox == np.round(vox)):
            raise InvalidParameterError("atlas labels are not whole numbers", parameter=f"{name} labels",
                                        expected="integer label values", found=f"{vox.dtype} with fractions",
                                        fix="read the label map with kind='label' or round it")
        if vox.size and vox.min() < 0:
            raise InvalidParameterError("negative atlas label", parameter=f"{name} labels",
                                        expected="label values >= 0 (0 = background)", found=int(vox.min()),
                                        fix="relabel the atlas with non-negative values")
        out.append((atlas, labels))
    return out


def _zscore(vox: np.ndarray, mean: float, std: float) -> np.ndarray:
    return ((vox.astype(np.float32) - np.float32(mean)) / np.float32(std if std > 0 else 1.0)).astype(np.float32)


def _stats(image: Image) -> tuple[float, float]:
    v = image.voxels.astype(np.float64)
    return float(v.mean()), float(v.std())


def _smooth(arr: np.ndarray, image: Image, sigma_mm: float) -> np.ndarray:
    """Gaussian smoothing of a (Z, Y, X) array with ``sigma_mm`` in mm on each axis (none across a 2D slice)."""
    from scipy.ndimage import gaussian_filter

    if sigma_mm <= 0:
        return arr
    sx, sy, sz = image.spacing
    sigma = (0.0 if image.is_2d else sigma_mm / sz, sigma_mm / sy, sigma_mm / sx)
    return gaussian_filter(arr, sigma=sigma, mode="nearest")


def _votes(labels: Image, values: tuple[int, ...], transform: Any, target: Image, interpolation: str) -> np.ndarray:
    """(L + 1, Z, Y, X) float32 votes of one atlas on the target grid, channel k for ``values[k]``."""
    from medimg.classical.registration import warp

    fg = values[1:]
    shape = (len(values),) + target.spatial_shape
    votes = np.zeros(shape, np.float32)
    if interpolation == "nearest":
        warped = warp(labels, transform, target, labels=True).array
        for k, v in enumerate(values):
            votes[k] = warped == v
        return votes
    if fg:
        lab = np.asarray(labels.array)
        onehot = np.stack([(lab == v).astype(np.float32) for v in fg])
        warped = warp(labels.replace(voxels=onehot, kind=Kind.PROBABILITY), transform, target, labels=False)
        votes[1:] = np.clip(warped.voxels, 0.0, 1.0)
    votes[0] = np.clip(1.0 - votes[1:].sum(axis=0), 0.0, 1.0)
    return votes


def atlas_segment(
    image: Image,
    atlases: Sequence[tuple[Image, Image]],
    *,
    method: str = "affine",
    voting: str = "majority",
    metric: str = "ncc",
    init: str = "geometry",
    levels: Sequence[int] = (2, 1),
    iterations: int | None = None,
    sampling_fraction: float = 0.2,
    label_interpolation: str = "linear",
    weight_sigma_mm: float = 2.0,
    weight_temperature: float = 0.5,
    seed: int = 0,
) -> AtlasResult:
    """Segment ``image`` by registering each atlas onto it and fusing the warped atlas labels.

    Each atlas image is registered onto ``image`` (fixed = ``image``, moving = atlas) with
    :func:`~medimg.classical.registration.register`, both z-scored first (``(I - mean) / std`` over each
    image's own voxels, so that mean squares and demons see comparable intensities). The atlas labels are then
    warped as per-label maps (see the module docstring) and fused voxel by voxel:

    * ``voting="majority"``: ``votes(l, x) = sum_a p_a(l, x)`` where ``p_a(l, x)`` is atlas ``a``'s warped
      fraction of label ``l`` at ``x`` (0 or 1 with ``label_interpolation="nearest"``).
    * ``voting="weighted"`` (locally weighted voting): ``votes(l, x) = sum_a w_a(x) p_a(l, x)`` with
      ``w_a(x) = softmax_a(-D_a(x) / weight_temperature)``, where ``D_a = G * (t - s_a)^2`` is the squared
      difference between the z-scored target ``t`` and the z-scored warped atlas intensity ``s_a`` (the atlas
      z-scored with its own mean and standard deviation, then warped linearly), smoothed by a Gaussian ``G``
      of standard deviation ``weight_sigma_mm`` mm. Atlases that match the target well around ``x`` count
      more; the weights sum to 1 over the atlases at every voxel.

    The label at ``x`` is the value with the most votes; **ties go to the lowest label value** (background
    before 1 before 2, ...). A single atlas is simply its warped labels (no vote to take).

    Args:
        image: target, single-channel intensity Image (1, Z, Y, X), 2D or 3D.
        atlases: one or more ``(atlas_image, atlas_labels)`` pairs; each label map must lie on its atlas
            image's grid; atlases of the same dimension (2D/3D) as ``image``.
        method: registration model: "rigid", "affine", "bspline", "demons" or "diffeomorphic_demons"
            (the deformable ones start from an affine pre-alignment).
        voting: "majority" or "weighted" (see above).
        metric, init, levels, iterations, sampling_fraction, seed: passed to ``register`` (defaults chosen
            for same-modality atlases: normalised cross-correlation, two levels).
        label_interpolation: "linear" (per-label maps, fractional votes; default) or "nearest".
        weight_sigma_mm: weighted voting: Gaussian sigma (mm) of the local squared-difference window.
        weight_temperature: weighted voting: softmax temperature in z-score variance units (smaller = sharper
            preference for the locally best atlas).

    Returns:
        :class:`AtlasResult` with the label Image on ``image``'s grid, the normalised votes, the weights
        (weighted voting) and per-atlas registration seconds and metric.

    Raises:
        InvalidParameterError: no atlases; an atlas label map not on its atlas image's grid, not whole
            numbers or negative; a 2D atlas for a 3D image (or the reverse); an unknown option; and what
            ``register`` raises (e.g. fields of view that do not overlap).

    Example:
        >>> zz, yy, xx = np.mgrid[:12, :16, :16]
        >>> ball = lambda c: ((zz - 6) ** 2 + (yy - c) ** 2 + (xx - 8) ** 2 < 16)
        >>> target = Image.from_array(ball(8).astype(np.float32))
        >>> atlas = Image.from_array(ball(9).astype(np.float32))
        >>> labels = Image.from_array(ball(9).astype(np.uint8), kind="label")
        >>> res = atlas_segment(target, [(atlas, labels)], method="rigid", metric="meansquares", levels=(1,),
        ...                     sampling_fraction=1.0)
        >>> res.label_values, int(res.labels.array[6, 8, 8])
        ((0, 1), 1)
    """
    from medimg.classical.registration import check_image, choice, register

    method = choice(method, ATLAS_METHODS, "method")
    voting = choice(voting, VOTINGS, "voting")
    label_interpolation = choice(label_interpolation, ("linear", "nearest"), "label_interpolation")
    if not float(weight_sigma_mm) >= 0 or not float(weight_temperature) > 0:
        raise InvalidParameterError("invalid weighting settings", parameter="weight_sigma_mm/weight_temperature",
                                    expected="weight_sigma_mm >= 0 and weight_temperature > 0",
                                    found=(weight_sigma_mm, weight_temperature), fix="give e.g. 2.0 and 0.5")
    image = check_image(image, "image")
    pairs = _check_atlases(image, atlases)
    values = (0,) + tuple(sorted({int(v) for _, lab in pairs for v in np.unique(lab.voxels) if v != 0}))

    t_mean, t_std = _stats(image)
    target_z = image.replace(voxels=_zscore(image.voxels, t_mean, t_std), kind=Kind.INTENSITY)
    votes = np.zeros((len(values),) + image.spatial_shape, np.float32)
    per_atlas: list[np.ndarray] = []
    dists: list[np.ndarray] = []
    records: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    for i, (atlas, labels) in enumerate(pairs):
        a_mean, a_std = _stats(atlas)
        atlas_z = atlas.replace(voxels=_zscore(atlas.voxels, a_mean, a_std), kind=Kind.INTENSITY)
        res = register(target_z, atlas_z, method=method, metric=metric, init=init, levels=levels,
                       iterations=iterations, sampling_fraction=sampling_fraction, seed=seed)
        records.append({"atlas": i, "method": res.method, "metric": res.metric, "seconds": res.seconds,
                        "metric_before": res.metric_before, "metric_after": res.metric_after,
                        "iterations": res.iterations})
        logger.debug("atlas %d: %s metric %.4g -> %.4g in %.2f s", i, method, res.metric_before, res.metric_after,
                     res.seconds)
        v = _votes(labels, values, res.transform, image, label_interpolation)
        if voting == "majority":
            votes += v
        else:
            diff2 = (target_z.voxels[0] - res.warped.voxels[0]) ** 2
            dists.append(_smooth(diff2.astype(np.float32), image, float(weight_sigma_mm)))
            per_atlas.append(v)

    weights_img = None
    if voting == "weighted":
        d = np.stack(dists)  # (A, Z, Y, X)
        logits = -(d - d.min(axis=0, keepdims=True)) / np.float32(weight_temperature)
        w = np.exp(logits)
        w /= w.sum(axis=0, keepdims=True)
        w = w.astype(np.float32)
        for a, v in enumerate(per_atlas):
            votes += w[a][None] * v
        weights_img = image.derive(w, operation="atlas_weights", kind=Kind.PROBABILITY,
                                   params={"weight_sigma_mm": float(weight_sigma_mm),
                                           "weight_temperature": float(weight_temperature)})

    best = np.argmax(votes, axis=0)  # first maximum = lowest label value on ties
    lut = np.asarray(values, np.int64)
    top = values[-1]
    dtype = np.uint8 if top < 256 else np.uint16 if top < 65536 else np.uint32
    label_arr = lut[best].astype(dtype)[None]
    total = votes.sum(axis=0, keepdims=True)
    probs = (votes / np.where(total > 0, total, 1.0)).astype(np.float32)
    params = {"method": method, "voting": voting, "metric": metric, "init": init, "levels": list(levels),
              "iterations": iterations, "sampling_fraction": float(sampling_fraction),
              "label_interpolation": label_interpolation, "n_atlases": len(pairs), "seed": int(seed),
              "intensity_normalisation": "z-score per image before registration"}
    if voting == "weighted":
        params.update(weight_sigma_mm=float(weight_sigma_mm), weight_temperature=float(weight_temperature))
    labels_img = image.derive(label_arr, operation="atlas_segment", params=params, kind=Kind.LABEL)
    labels_img = labels_img.with_metadata(label_values=list(values))
    prob_img = image.derive(probs, operation="atlas_votes", params=params, kind=Kind.PROBABILITY,
                            metadata={**image.metadata, "label_values": list(values)})
    logger.debug("atlas_segment: %d atlases, %s voting, %.2f s", len(pairs), voting, time.perf_counter() - t_all)
    return AtlasResult(labels=labels_img, probabilities=prob_img, weights=weights_img, label_values=values,
                       registrations=tuple(records), params=params)
