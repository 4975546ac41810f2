"""Anatomical rules behind ``ct_body``: where the body ends, which air is inside it, and which air is lung.

All thresholds are in HU and all distances in mm, so that the rules do not depend on the voxel size.

Body and the air inside it
    The body is the largest 3D component of HU > -500, closed (3 mm) and with holes filled slice by slice. Filling
    also encloses air that lies *outside* the body: the gap between an arm and the torso where the two touch, air
    under a sheet, a garment or a table pad. Such air is told from air inside the body by how thin its cover is:
    a connected air region (HU < -400, opened by 1 mm) that comes within ``OUTSIDE_COVER_MM`` (5 mm) of the
    air outside the body in any slice is outside air: it is removed from the body and is neither gas nor lung.
    Gas in the gut and the lungs lie behind the body wall (skin, fat and muscle, 10 mm or more; 16 mm or more
    in every CT we checked), skin folds and clothing are 1-3 mm thick.

Lung
    Each air region inside the body is cut at the body's midline (the lungs are a left and a right organ; a
    trachea or bronchus joining them is cut there too). A part is lung when all of these hold:

    1. size: at least ``LUNG_MIN_ML`` (10 mL). Smaller air is called gas; a lung sliver at the edge of a slab
       below this size is not reported as lung.
    2. aerated parenchyma: median HU between -950 and -600 *and* at most 20 % of its voxels at the density of
       pure gas (< -950 HU). Lung is air mixed with 10-20 % tissue and blood (about -850 HU, spread by vessels;
       normal lung has only a few percent of voxels below -950 HU; the lung bases we checked have 0.1 %). Gas
       in the stomach and the bowel is pure gas near -1000 HU: in the CTs we checked, every gut gas region of
       10 mL or more has 45-72 % of its voxels below -950 HU. Smaller pockets of gas mixed with stool can look
       like parenchyma; rules 1 and 3 hold them off. (Severe emphysema can also reach a fifth of voxels below
       -950 HU; such lungs may be reported as gas.)
    3. chest wall: at least 2 % of its voxels lie within 10 mm of bone (HU > 250). The lungs touch the ribs and
       the spine over a large part of their surface (pleura and intercostal tissue are a few mm thick); gas in
       the gut is held away from the ribs by the diaphragm, liver, spleen and the bowel wall. Measured: 27 % for
       the lung bases, 0 % for every gut gas region of 10 mL or more.
    4. pairing: lung parts found on one side of the midline only are kept only when they hold at least
       ``LUNG_SINGLE_SIDE_ML`` (50 mL) together (a thoracic CT or a crop that shows one lung); a small
       parenchyma-like region without any partner on the other side is reported as gas, with a note.

    When no part satisfies the rule the result is *no lung* (0 mL) with a note saying so; the rule never
    guesses. The rule was checked against TotalSegmentator's lung lobes on every CT in the project's data
    (``benchmarks/ct_body.py``); it does not look at the position along the body axis, because a slab does not
    say where it lies in the body.

Limits
    A crop that cuts through the lungs (the lung touches the edge of the image) loses them: air open to the
    image edge is not enclosed, and the enclosed rest comes close to it and is taken for outside air (the
    pipeline adds a note when the body touches the image edge). An arm pressed against the torso over its whole
    length leaves no air gap, so nothing is to be removed; a gap closed by more than 5 mm of tissue would be
    counted as gas.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

__all__ = ["AirRegions", "split_air", "lung_rule", "OUTSIDE_COVER_MM", "LUNG_MIN_ML", "LUNG_MEDIAN_HU",
           "LUNG_MAX_PURE_GAS_FRACTION", "PURE_GAS_HU", "CHEST_WALL_MM", "CHEST_WALL_MIN_FRACTION",
           "LUNG_SINGLE_SIDE_ML"]

OUTSIDE_COVER_MM = 5.0
LUNG_MIN_ML = 10.0
LUNG_MEDIAN_HU = (-950.0, -600.0)
PURE_GAS_HU = -950.0
LUNG_MAX_PURE_GAS_FRACTION = 0.2
CHEST_WALL_MM = 10.0
CHEST_WALL_MIN_FRACTION = 0.02
LUNG_SINGLE_SIDE_ML = 50.0


@dataclass
class AirRegions:
    """Air enclosed by the filled body mask, split into outside air and air inside the body.

    Attributes:
        body: the body mask with outside air removed (Z, Y, X bool).
        inside: air inside the body (Z, Y, X bool).
        outside_ml: volume of the enclosed air judged to lie outside the body (arm gaps, folds, pads).
    """

    body: np.ndarray
    inside: np.ndarray
    outside_ml: float = 0.0


@dataclass
class LungDecision:
    """The lung mask and, per candidate part, why it was or was not taken (for notes and the report)."""

    lung: np.ndarray
    parts: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _distance_to_outside(filled: np.ndarray, spacing_yx: tuple[float, float]) -> np.ndarray:
    """Per-slice distance (mm) of every voxel to the nearest voxel outside the filled body."""
    out = np.zeros(filled.shape, np.float32)
    for k in range(filled.shape[0]):
        if filled[k].any():
            out[k] = ndimage.distance_transform_edt(filled[k], sampling=spacing_yx)
    return out


def split_air(filled: np.ndarray, air: np.ndarray, spacing_zyx: tuple[float, float, float]) -> AirRegions:
    """Tell enclosed air outside the body (thin cover) from air inside it (see the module docstring).

    Args:
        filled: body mask with holes filled slice by slice (Z, Y, X bool).
        air: air voxels (HU < -400, opened) within ``filled`` (Z, Y, X bool).
        spacing_zyx: voxel size in mm, array order.
    """
    parts, n = ndimage.label(air)
    if n == 0:
        return AirRegions(body=filled.copy(), inside=air.copy())
    depth = _distance_to_outside(filled, (spacing_zyx[1], spacing_zyx[2]))
    min_depth = ndimage.minimum(depth, parts, np.arange(1, n + 1))
    outside_ids = np.flatnonzero(np.asarray(min_depth) <= OUTSIDE_COVER_MM) + 1
    outside = np.isin(parts, outside_ids)
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    return AirRegions(body=filled & ~outside, inside=air & ~outside, outside_ml=float(outside.sum() * voxel_ml))


def _midline_x(body: np.ndarray) -> int:
    """Index along x of the body's left-right centre (the centroid of the body mask)."""
    xs = np.flatnonzero(body.any(axis=(0, 1)))
    if xs.size == 0:
        return body.shape[2] // 2
    counts = body.sum(axis=(0, 1)).astype(np.float64)
    return int(round(float((counts * np.arange(body.shape[2])).sum() / counts.sum())))


def lung_rule(hu: np.ndarray, inside_air: np.ndarray, bone: np.ndarray, body: np.ndarray,
              spacing_zyx: tuple[float, float, float]) -> LungDecision:
    """Apply the lung rule of the module docstring to the air inside the body.

    Args:
        hu: CT values (Z, Y, X).
        inside_air: air inside the body (from :func:`split_air`).
        bone: bone voxels (HU > 250 within the body).
        body: the body mask (for the midline).
        spacing_zyx: voxel size in mm, array order.

    Returns:
        A :class:`LungDecision`: the lung mask, one record per part of at least 1 mL with the measured
        features and the verdict, and notes for the report.
    """
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    mid = _midline_x(body)
    halves = inside_air.copy()
    halves[:, :, mid] = False  # cut at the midline: the left and right lung are judged on their own
    parts, n = ndimage.label(halves)
    lung = np.zeros(hu.shape, bool)
    decision = LungDecision(lung=lung)
    if n == 0:
        decision.notes.append("No lung: there is no air inside the body.")
        return decision
    idx = np.arange(1, n + 1)
    sizes = np.asarray(ndimage.sum_labels(np.ones_like(parts, np.int8), parts, idx)) * voxel_ml
    near_bone = (ndimage.distance_transform_edt(~bone, sampling=spacing_zyx) <= CHEST_WALL_MM) if bone.any() \
        else np.zeros(hu.shape, bool)
    objects = ndimage.find_objects(parts)
    candidates: list[int] = []
    for i in idx[sizes >= 1.0]:
        sl = objects[i - 1]
        m = parts[sl] == i
        v = hu[sl][m]
        rec = {
            "part": int(i), "volume_ml": round(float(sizes[i - 1]), 2),
            "side": "low x" if sl[2].start + np.nonzero(m)[2].mean() < mid else "high x",
            "median_hu": round(float(np.median(v)), 1),
            "pure_gas_fraction": round(float((v < PURE_GAS_HU).mean()), 3),
            "chest_wall_fraction": round(float(near_bone[sl][m].mean()), 3),
        }
        reasons = []
        if rec["volume_ml"] < LUNG_MIN_ML:
            reasons.append(f"smaller than {LUNG_MIN_ML:g} mL")
        if not (LUNG_MEDIAN_HU[0] <= rec["median_hu"] <= LUNG_MEDIAN_HU[1]):
            reasons.append(f"median {rec['median_hu']:.0f} HU outside {LUNG_MEDIAN_HU[0]:.0f}..{LUNG_MEDIAN_HU[1]:.0f}")
        if rec["pure_gas_fraction"] > LUNG_MAX_PURE_GAS_FRACTION:
            reasons.append(f"{100 * rec['pure_gas_fraction']:.0f}% of voxels are pure gas (< {PURE_GAS_HU:.0f} HU)")
        if rec["chest_wall_fraction"] < CHEST_WALL_MIN_FRACTION:
            reasons.append(f"not against the chest wall ({100 * rec['chest_wall_fraction']:.1f}% of voxels within "
                           f"{CHEST_WALL_MM:g} mm of bone)")
        rec["lung"] = not reasons
        rec["why_not"] = "; ".join(reasons)
        decision.parts.append(rec)
        if not reasons:
            candidates.append(int(i))
    sides = {r["side"] for r in decision.parts if r["lung"]}
    if len(sides) == 1:
        total = sum(r["volume_ml"] for r in decision.parts if r["lung"])
        if total < LUNG_SINGLE_SIDE_ML:
            for r in decision.parts:
                if r["lung"]:
                    r["lung"], r["why_not"] = False, "no lung-like partner on the other side of the midline"
            decision.notes.append(
                f"An air region of {total:.1f} mL on one side only looked like lung parenchyma, but no lung-like "
                f"region lies on the other side and it is smaller than {LUNG_SINGLE_SIDE_ML:g} mL: reported as gas.")
            candidates = []
        else:
            decision.notes.append(f"Lung found on one side of the midline only ({total:.1f} mL).")
    if candidates:
        lung |= np.isin(parts, candidates)
        # give the midline plane back to the lung it was cut from (voxels between two lung voxels or next to one)
        cut = inside_air & ~halves
        lung |= cut & ndimage.binary_dilation(lung, structure=np.ones((1, 1, 3), bool))
    else:
        decision.notes.append(
            "No lung: no air region inside the body has the size, density (aerated parenchyma, not pure gas), "
            "chest-wall contact and left-right pairing of a lung; all air inside the body is reported as gas.")
    decision.lung = lung
    return decision
