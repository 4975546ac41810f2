"""Fetal head ultrasound: head segmentation, ellipse fit, head circumference (HC) in mm.

Method: the ``fetal_head`` model of the medimg zoo (a 2D U-Net trained with ``medimg train segment`` on the
HC18 images of fold 0, grouped by fetus; see its model card) segments the head at 0.5 mm pixels (the mask is
returned on the input grid); the largest connected component is kept and the ellipse with the same second
moments is fitted to it (``medimg.measure.fit_ellipse``). The head circumference is that ellipse's perimeter
(Ramanujan), the biparietal and occipito-frontal diameters (BPD, OFD) are its minor and major axes (outer to
outer). The fit is flagged when the filled ellipse and the mask disagree (Dice < 0.9) or the head touches the
image border (a truncated head). On fold-0 validation images (fetuses the model never saw) the mean absolute HC
error is about 3 mm (BENCHMARKS.md).

Fallback (classical, no learning), used only when the model is missing or finds no head, and said so in the
result:

1. the frame is smoothed (Gaussian, sigma 2 pixels) and the bright skull echo is taken as the pixels above the
   96th percentile of the non-black sector (the percentile and sigma were chosen on
   HC18 images 000-079, every 4th; benchmarks evaluate on other fetuses);
2. echo components smaller than 0.2 % of the frame are dropped; the points of the remaining components are
   fitted with an ellipse by RANSAC over 5-point conics (Sampson distance, 4-pixel inlier band), so that
   isolated bright structures (placenta, uterine wall) count as outliers, then refitted on the inliers;
3. the head mask is the filled ellipse; the head circumference is the ellipse perimeter in mm, measured on the
   pixel grid with its spacing.

The classical fit is a baseline: on HC18 fetuses it was not tuned on, its mean head-circumference error is
15-25 mm, with about 10 % of frames gross misfits (BENCHMARKS.md).

Without a pixel size (a PNG read without ``--pixel-spacing``) no value is reported in mm: the circumference and
axes are given in pixels, and the network sees the frame at the median HC18 pixel size (0.128 mm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from medimg.core.enums import Kind
from medimg.core.errors import ImageReadError, InvalidParameterError
from medimg.core.image import Image
from medimg.measure.ellipse import EllipseFit, fit_ellipse
from medimg.measure.table import measure_labels
from medimg.metrics.segmentation import dice_per_label
from medimg.pipelines.base import AnalysisResult, register
from medimg.report.figures import overlay

__all__ = ["fetal_head", "fit_head_ellipse", "ellipse_circumference_mm", "HeadFit", "load_head_model", "segment_head",
           "fit_head_mask", "classical_head_fit", "filled_ellipse"]

MODEL_NAME = "fetal_head"  # the zoo entry
ASSUMED_PIXEL_MM = 0.128  # median HC18 pixel size: what the network is told when a frame has no pixel size
MIN_ELLIPSE_DICE = 0.9  # below this the fitted ellipse and the head mask disagree: the fit is flagged
TTA = False  # mirror test-time augmentation (see benchmarks/fetal_head_dl.py)
_MODELS: dict = {}  # model folder -> loaded model (once per process)

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


@dataclass
class HeadFit:
    """A head found in one frame and its ellipse, in the units of the spacing it was measured with.

    Attributes:
        method: "learned" (the zoo model) or "classical fallback" (skull-echo RANSAC ellipse).
        mask: (Y, X) uint8 head mask (learned: the network's largest component; classical: the filled ellipse).
        ellipse: (Y, X) bool filled fitted ellipse.
        circumference, major_axis, minor_axis: ellipse perimeter and full axis lengths (mm, or pixels).
        ellipse_mask_dice: Dice between ``ellipse`` and ``mask`` (None for the classical fit, whose mask is the
            ellipse).
        flags: reasons to distrust the fit (empty when none).
    """

    method: str
    mask: np.ndarray
    ellipse: np.ndarray
    circumference: float
    major_axis: float
    minor_axis: float
    ellipse_mask_dice: float | None
    flags: list[str] = field(default_factory=list)


def load_head_model():
    """The zoo's fetal-head model, loaded once per process and model folder; (model, "") or (None, why not)."""
    from medimg.tasks.segment.predictor import load_model
    from medimg.zoo import resolve_model

    try:
        path = resolve_model(MODEL_NAME)
        key = str(path.resolve())
        if key not in _MODELS:
            _MODELS[key] = load_model(path)
        return _MODELS[key], ""
    except (ImageReadError, InvalidParameterError, OSError, RuntimeError, ValueError) as exc:
        return None, getattr(exc, "what", None) or str(exc).splitlines()[0]


def segment_head(image: Image, model, *, spacing_known: bool = True, precision: str = "auto") -> np.ndarray:
    """(Y, X) bool head mask of a 2D frame by ``model`` (largest connected component; all False if none).

    Colour frames are averaged to grey. A frame without a pixel size is given ``ASSUMED_PIXEL_MM`` for the network
    (which works at its plan's physical pixel size); the mask is returned on the frame's own pixel grid.
    """
    from medimg.infer.postprocess import keep_largest_component
    from medimg.tasks.segment.predictor import predict_image

    img = image
    if img.n_channels != 1:
        img = img.replace(voxels=img.voxels.astype(np.float32).mean(axis=0, keepdims=True))
    if not spacing_known:
        img = img.replace(geometry=img.geometry.replace(spacing=(ASSUMED_PIXEL_MM, ASSUMED_PIXEL_MM,
                                                                 img.spacing[2])))
    labels = np.asarray(predict_image(model, img, tta=TTA, precision=precision).labels.voxels[0, 0])
    if not labels.any():
        return labels > 0
    return keep_largest_component(labels, [1]) > 0


def filled_ellipse(fit: EllipseFit, shape: tuple[int, int], spacing_xy: tuple[float, float]) -> np.ndarray:
    """(Y, X) bool: the pixels whose centres lie inside ``fit`` (an ellipse in mm on a grid of ``spacing_xy``)."""
    sx, sy = spacing_xy
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    dx, dy = xx * sx - fit.center_xy_mm[0], yy * sy - fit.center_xy_mm[1]
    t = math.radians(fit.angle_deg)
    u = dx * math.cos(t) + dy * math.sin(t)
    v = -dx * math.sin(t) + dy * math.cos(t)
    return (u / max(fit.semi_major_mm, 1e-9)) ** 2 + (v / max(fit.semi_minor_mm, 1e-9)) ** 2 <= 1.0


def _touches_border(mask: np.ndarray) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def fit_head_mask(mask: np.ndarray, spacing_xy: tuple[float, float]) -> HeadFit | None:
    """Moment ellipse of a (Y, X) head mask, its circumference and axes, and the quality checks; None if empty."""
    fit = fit_ellipse(mask, spacing_xy)
    if fit is None:
        return None
    ellipse = filled_ellipse(fit, mask.shape, spacing_xy)
    dice = dice_per_label(ellipse, mask, [1])[1]
    flags = []
    if dice < MIN_ELLIPSE_DICE:
        flags.append(f"the fitted ellipse disagrees with the head mask (Dice {dice:.2f} < {MIN_ELLIPSE_DICE})")
    if _touches_border(mask):
        flags.append("the head touches the image border (truncated head: the ellipse is extrapolated)")
    return HeadFit("learned", mask.astype(np.uint8), ellipse, fit.circumference_mm, fit.major_axis_mm,
                   fit.minor_axis_mm, dice, flags)


def classical_head_fit(frame: np.ndarray, spacing_xy: tuple[float, float]) -> HeadFit | None:
    """The classical skull-echo RANSAC ellipse of a (Y, X) frame as a :class:`HeadFit`; None if no ellipse fits."""
    fit = fit_head_ellipse(frame)
    if fit is None:
        return None
    mask, params = fit
    xc, yc, r1, r2, axes = params
    lengths = sorted(2 * r * float(np.hypot(*(axes[:, i] * np.asarray(spacing_xy)))) for i, r in enumerate((r1, r2)))
    flags = ["classical fallback: the ellipse is fitted to bright echoes and is not checked against a head mask "
             "(mean HC error about 15 mm on unseen fetuses)"]
    if _touches_border(mask > 0):
        flags.append("the fitted ellipse reaches the image border")
    return HeadFit("classical fallback", mask.astype(np.uint8), mask > 0,
                   ellipse_circumference_mm(params, spacing_xy), lengths[1], lengths[0], None, flags)


@register("fetal_head", "fetal head ultrasound: ellipse fit to the skull echo; head circumference in mm")
def fetal_head(image: Image, *, precision: str = "auto") -> AnalysisResult:
    """Head segmentation, ellipse fit and head circumference of a 2D fetal ultrasound frame."""
    if not image.is_2d:
        raise InvalidParameterError("fetal head analysis needs a 2D frame", parameter="image", expected="Z = 1",
                                    found=f"{image.spatial_shape[0]} slices", fix="give one ultrasound frame")
    frame = image.voxels[:, 0].astype(np.float32).mean(axis=0)
    known = image.metadata.get("spacing_source") != "default_1mm"
    unit = "mm" if known else "px"
    spacing = (float(image.spacing[0]), float(image.spacing[1])) if known else (1.0, 1.0)
    notes = []
    if not known:
        notes.append("The file carries no pixel size (the reader assumed 1 mm per pixel), so no value is given in "
                     "mm: the head circumference and diameters are in pixels (head_circumference_px). Give "
                     "--pixel-spacing MM (HC18: pixel_size_and_HC.csv) for millimetres; without it the model also "
                     f"sees the frame at an assumed {ASSUMED_PIXEL_MM} mm per pixel, which may segment worse.")
    model, why = load_head_model()
    head = None
    if model is not None:
        head = fit_head_mask(segment_head(image, model, spacing_known=known, precision=precision), spacing)
        if head is None:
            notes.append("The fetal-head model found no head in this frame: the classical ellipse fit was used "
                         "instead (fallback; its errors are several times larger).")
    else:
        notes.append(f"The shipped fetal-head model is not available ({why}): the classical skull-echo ellipse fit "
                     "was used instead (fallback; mean head-circumference error about 15 mm on unseen fetuses, "
                     "against about 3 mm for the model). Reinstall medimg or retrain it: make zoo-fetal-head.")
    if head is None:
        head = classical_head_fit(frame, spacing)
    if head is None:
        notes.append("No head ellipse could be fitted: no head circumference is reported.")
        mask, method, flag = np.zeros(frame.shape, np.uint8), "none", "no head found"
    else:
        mask, method, flag = head.mask, head.method, "; ".join(head.flags) or "ok"
        if head.method == "learned" and head.flags:
            notes.append("Check this measurement: " + "; ".join(head.flags) + ".")

    def value(x: float | None) -> float | None:
        return None if head is None or x is None else round(float(x), 2)

    values = {f"head_circumference_{unit}": value(head and head.circumference),
              f"bpd_{unit}": value(head and head.minor_axis), f"ofd_{unit}": value(head and head.major_axis)}
    if not known:
        values = {"head_circumference_mm": None, **values}
    quality = {"ellipse_mask_dice": value(head and head.ellipse_mask_dice), "quality_flag": flag}
    head_img = image.derive(mask[None, None], operation="fetal_head_mask", kind=Kind.LABEL, metadata={})
    records = measure_labels(head_img, label_names={1: "head"})
    for r in records:
        r["structure"] = "head"
        r["method"] = method
        r.update(values)
        r.update(quality)
    lo, hi = np.percentile(frame, [1, 99.5])
    bg = np.clip((frame - lo) / max(hi - lo, 1e-6), 0, 1)
    shown = mask.copy()
    if head is not None and head.method == "learned":
        outline = head.ellipse & ~ndimage.binary_erosion(head.ellipse, iterations=2)
        shown[outline] = 2
    parameters: dict = {"method": method}
    if model is not None:
        parameters.update(model=model.name, folds=list(model.folds), tta=TTA,
                          target_spacing_mm=list(model.plan.target_spacing), min_ellipse_dice=MIN_ELLIPSE_DICE)
    if method != "learned":
        parameters.update(percentile=PERCENTILE, sigma_px=SIGMA_PX, min_component_fraction=MIN_COMPONENT_FRACTION,
                          ransac_band_px=4.0, ransac_trials=400, seed=0)
    doc = (__doc__ or "").split("\n\n", 1)[1]
    return AnalysisResult(
        pipeline="fetal_head",
        title="Fetal head: segmentation, ellipse fit and head circumference"
              + (" (classical fallback)" if method == "classical fallback" else ""),
        method=doc.split("\n\nFallback")[0].strip() if method == "learned" else doc.strip(),
        parameters=parameters,
        masks={"head": head_img},
        label_names={"head": {1: "head"}},
        measurements=records,
        summary={"method": method, **values, **quality},
        figures={("head mask (red) and fitted ellipse (green)" if method == "learned" else "fitted head ellipse"):
                 overlay(bg, shown, alpha=0.25)},
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
