"""Fetal head ultrasound: skull echo detection and ellipse fit, head circumference in mm.

Method (classical, no learning):

1. the frame is smoothed (Gaussian, sigma 2 pixels) and the bright skull echo is taken as the pixels above the
   96th percentile of the non-black sector (the percentile and sigma were chosen on
   HC18 images 000-079, every 4th; benchmarks evaluate on other fetuses);
2. echo components smaller than 0.2 % of the frame are dropped; the points of the remaining components are
   fitted with an ellipse by RANSAC over 5-point conics (Sampson distance, 4-pixel inlier band), so that
   isolated bright structures (placenta, uterine wall) count as outliers, then refitted on the inliers;
3. the head mask is the filled ellipse; the head circumference is the ellipse perimeter in mm, measured on the
   pixel grid with its spacing.

This is a baseline that learned models are expected to beat: on HC18 fetuses it was not tuned on, the median
head-circumference error is about 10 mm and about 12 % of frames are gross misfits (BENCHMARKS.md), far from
a trained network.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from medimg.core.enums import Kind
from medimg.core.errors import InvalidParameterError
from medimg.core.image import Image
from medimg.measure.table import measure_labels
from medimg.pipelines.base import AnalysisResult, register
from medimg.report.figures import overlay

__all__ = ["fetal_head", "fit_head_ellipse", "ellipse_circumference_mm"]

PERCENTILE = 96.0
SIGMA_PX = 2.0
MIN_COMPONENT_FRACTION = 0.002
MIN_AXIS_RATIO = 0.55  # fetal heads are close to round (HC18 short/long axis ratio ~0.7-0.9)


def _conic_from_points(x: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """Least-squares conic (A, B, C, D, E, F) through the points (SVD null vector), or None if not an ellipse."""
    design = np.column_stack([x * x, x * y, y * y, x, y, np.ones_like(x)])
    _, _, vt = np.linalg.svd(design, full_matrices=False)
    conic = vt[-1]
    a_, b_, c_ = conic[:3]
    if b_ * b_ - 4 * a_ * c_ >= 0:
        return None
    return conic if a_ + c_ > 0 else -conic


def _sampson(conic: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """First-order geometric distance of points to a conic (Sampson distance)."""
    a_, b_, c_, d_, e_, f_ = conic
    value = a_ * x * x + b_ * x * y + c_ * y * y + d_ * x + e_ * y + f_
    gx = 2 * a_ * x + b_ * y + d_
    gy = b_ * x + 2 * c_ * y + e_
    return np.abs(value) / np.maximum(np.hypot(gx, gy), 1e-12)


def _ellipse_params(conic: np.ndarray) -> tuple[float, float, float, float, np.ndarray] | None:
    """(xc, yc, r1, r2, axes) of an ellipse conic: centre, semi-axes, and the unit axis vectors as columns."""
    a_, b_, c_, d_, e_, f_ = conic
    m = np.array([[a_, b_ / 2], [b_ / 2, c_]])
    try:
        xc, yc = np.linalg.solve(2 * m, [-d_, -e_])
    except np.linalg.LinAlgError:
        return None
    f0 = a_ * xc * xc + b_ * xc * yc + c_ * yc * yc + d_ * xc + e_ * yc + f_
    evals, evecs = np.linalg.eigh(m)
    if f0 >= 0 or np.any(evals <= 0):
        return None
    r = np.sqrt(-f0 / evals)
    return float(xc), float(yc), float(r[0]), float(r[1]), evecs


def fit_head_ellipse(frame: np.ndarray, *, seed: int = 0, trials: int = 400) -> tuple[np.ndarray, tuple] | None:
    """Fit the skull ellipse in a (Y, X) ultrasound frame.

    RANSAC over 5-point conics (vectorised Sampson distances, inlier band 4 pixels), then a least-squares
    refit on the inliers. Returns (filled uint8 mask, (xc, yc, r1, r2, axes)) in pixels, or None.
    """
    f = ndimage.gaussian_filter(frame.astype(np.float32), SIGMA_PX)
    sector = frame > frame.min()
    if sector.sum() < 100:
        return None
    bright = f > np.percentile(f[sector], PERCENTILE)
    lab, n = ndimage.label(bright)
    if n == 0:
        return None
    sizes = ndimage.sum_labels(np.ones_like(lab), lab, np.arange(1, n + 1))
    keep = np.arange(1, n + 1)[sizes >= MIN_COMPONENT_FRACTION * frame.size]
    pts = np.argwhere(np.isin(lab, keep)).astype(np.float64)
    if len(pts) < 20:
        return None
    rng = np.random.default_rng(seed)
    if len(pts) > 5000:
        pts = pts[rng.choice(len(pts), 5000, replace=False)]
    # condition the coordinates: centre and scale to unit spread
    centre = pts.mean(axis=0)
    scale = float(pts.std()) or 1.0
    y, x = ((pts - centre) / scale).T
    band = 4.0 / scale
    min_r = 0.05 * min(frame.shape) / scale
    max_r = 0.6 * max(frame.shape) / scale
    best, best_score = None, 0.0
    for _ in range(trials):
        idx = rng.choice(len(x), 5, replace=False)
        conic = _conic_from_points(x[idx], y[idx])
        if conic is None:
            continue
        par = _ellipse_params(conic)
        if par is None:
            continue
        xc, yc, r1, r2, axes = par
        if min(r1, r2) < min_r or max(r1, r2) > max_r or min(r1, r2) / max(r1, r2) < MIN_AXIS_RATIO:
            continue
        inliers = _sampson(conic, x, y) < band
        if inliers.sum() < 20:
            continue
        # score = how much of the ellipse outline the inliers cover (angular bins), not how many they are:
        # counting inliers favours huge ellipses through every bright structure
        local = np.stack([x[inliers] - xc, y[inliers] - yc], -1) @ axes / np.array([r1, r2])
        bins = np.unique(((np.arctan2(local[:, 1], local[:, 0]) + math.pi) / (2 * math.pi) * 72).astype(int))
        score = len(bins) / 72 + 1e-6 * inliers.sum()
        if score > best_score:
            best, best_score = inliers, score
    if best is None:
        return None
    conic = _conic_from_points(x[best], y[best])
    par = _ellipse_params(conic) if conic is not None else None
    if par is None:
        return None
    xc, yc, r1, r2, axes = par
    yy, xx = np.mgrid[0 : frame.shape[0], 0 : frame.shape[1]]
    inside = (np.hypot(*(np.stack([(xx - centre[1]) / scale - xc, (yy - centre[0]) / scale - yc], -1)
                         @ axes / np.array([r1, r2])).transpose(2, 0, 1)) <= 1.0)
    params = (xc * scale + centre[1], yc * scale + centre[0], r1 * scale, r2 * scale, axes)
    return inside.astype(np.uint8), params


def ellipse_circumference_mm(params: tuple, spacing_xy: tuple[float, float]) -> float:
    """Perimeter (mm) of a pixel-space ellipse on a pixel grid of spacing (sx, sy), by dense polygon sampling."""
    xc, yc, r1, r2, axes = params
    t = np.linspace(0, 2 * math.pi, 4097)
    pts = np.stack([r1 * np.cos(t), r2 * np.sin(t)]) .T @ axes.T  # (x, y) offsets in pixels
    mm = pts * np.asarray(spacing_xy)
    return float(np.hypot(*np.diff(mm, axis=0).T).sum())


@register("fetal_head", "fetal head ultrasound: ellipse fit to the skull echo; head circumference in mm")
def fetal_head(image: Image) -> AnalysisResult:
    """Head segmentation and head circumference of a 2D fetal ultrasound frame."""
    if not image.is_2d:
        raise InvalidParameterError("fetal head analysis needs a 2D frame", parameter="image", expected="Z = 1",
                                    found=f"{image.spatial_shape[0]} slices", fix="give one ultrasound frame")
    frame = image.voxels[:, 0].astype(np.float32).mean(axis=0)
    fit = fit_head_ellipse(frame)
    notes = []
    if image.metadata.get("spacing_source") == "default_1mm":
        notes.append("The file carries no pixel size: 1 mm per pixel was assumed, so the head circumference is in "
                     "pixel units. Give --pixel-spacing MM (HC18: pixel_size_and_HC.csv) for millimetres.")
    if fit is None:
        mask = np.zeros(frame.shape, np.uint8)
        notes.append("No skull ellipse could be fitted: no head circumference is reported.")
        hc = None
    else:
        mask = fit[0]
        hc = ellipse_circumference_mm(fit[1], image.geometry.spacing[:2])
    head = image.derive(mask[None, None], operation="fetal_head_ellipse", kind=Kind.LABEL, metadata={})
    records = measure_labels(head, label_names={1: "head"})
    for r in records:
        r["structure"] = "head"
        r["head_circumference_mm"] = None if hc is None else round(hc, 2)
    lo, hi = np.percentile(frame, [1, 99.5])
    bg = np.clip((frame - lo) / max(hi - lo, 1e-6), 0, 1)
    return AnalysisResult(
        pipeline="fetal_head",
        title="Fetal head: ellipse fit and head circumference",
        method=(__doc__ or "").split("\n\n", 1)[1].split("\n\nThis is a baseline")[0].strip(),
        parameters={"percentile": PERCENTILE, "sigma_px": SIGMA_PX, "min_component_fraction": MIN_COMPONENT_FRACTION,
                    "ransac_band_px": 4.0, "ransac_trials": 400, "seed": 0},
        masks={"head": head},
        label_names={"head": {1: "head"}},
        measurements=records,
        summary={"head_circumference_mm": None if hc is None else round(hc, 2)},
        figures={"fitted head ellipse": overlay(bg, mask, alpha=0.25)},
        notes=notes,
    )


def applies(image: Image):
    """Grey 2D ultrasound frames with the black surround of a fan-shaped sector (HC18 style).

    The sector test (thresholds chosen on the even-indexed images of HC18, BUSI, BCCD and DSB 2018;
    benchmarks/pipeline_choice.py reports the odd-indexed ones): at least 6 % of the frame and 60 % of its border
    are black; the largest non-black region covers 30-95 % of the frame, is solid (>= 0.7 of its convex hull),
    narrower at the top than at its widest (a fan, <= 0.92; cropped images such as BUSI are rectangles) and not
    dark (median >= 0.06 of the range). Ultrasound without such a sector (e.g. breast ultrasound) is outside
    what the fetal-head pipeline was validated on.
    """
    from medimg.pipelines.base import Applicability, raster_features

    modality = str(image.metadata.get("modality") or "").upper()
    if not image.is_2d:
        return Applicability(0.0, "3D image (the fetal-head pipeline takes one 2D ultrasound frame)", validated=False)
    if modality not in ("", "UNKNOWN", "OT", "US"):
        return Applicability(0.0, f"modality {modality} is not ultrasound", validated=False)
    f = raster_features(image)
    if f["constant"]:
        return Applicability(0.0, "constant image", validated=False)
    sector = (not f["colour"] and f["black_fraction"] >= 0.06 and f["black_border"] >= 0.6
              and 0.3 <= f["sector_share"] <= 0.95 and f["sector_solidity"] >= 0.7
              and f["sector_apex_width"] <= 0.92 and f["sector_level"] >= 0.06)
    if sector:
        return Applicability(0.95 if modality == "US" else 0.9,
                             "grey ultrasound frame with a black fan-shaped sector surround (HC18 style)")
    if modality == "US":
        return Applicability(0.4, "ultrasound without the black sector surround of a fetal-head frame",
                             validated=False)
    what = "colour image" if f["colour"] else "grey image without a black ultrasound sector surround"
    return Applicability(0.05, what, validated=False)


from medimg.pipelines.base import register_applies  # noqa: E402  (appended with the rule)

register_applies("fetal_head")(applies)
