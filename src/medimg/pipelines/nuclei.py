"""Microscopy nuclei: instance segmentation by Otsu threshold + watershed, with counts and sizes.

Method:

1. grey = luminance of a colour image (ITU-R BT.601 weights), or the image itself;
2. polarity: nuclei are taken as the minority phase; when the Otsu foreground covers more than half of the
   image (bright background: bright-field, H&E), the grey image is inverted first;
3. Gaussian smoothing (sigma 1 pixel), Otsu threshold, holes filled, objects under 15 pixels removed;
4. touching nuclei split by a marker-controlled watershed on the distance transform (markers at least 3 pixels
   apart and 1 pixel deeper than the saddle: every step is in pixels, so the count does not depend on the pixel
   size given).

Validated on fluorescence microscopy (DSB 2018: Dice 0.89, F1@0.5 0.83); weak on stained colour images
(H&E, F1 0.57) and failing on grey bright-field (F1 0.02), see BENCHMARKS.md. The applies rule
(:func:`applies`) accepts dark, flat backgrounds with bright objects, grey or one dominant colour channel;
bright backgrounds (bright-field, H&E, blood smears) and mid-grey textured images (ultrasound) are outside it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medimg.classical.morphology import connected_components, fill_holes
from medimg.classical.threshold import otsu
from medimg.classical.watershed import watershed_instances
from medimg.core.enums import Kind
from medimg.core.errors import InvalidParameterError
from medimg.core.image import Image
from medimg.measure.table import instance_summary, measure_labels, spacing_unknown, to_pixel_units
from medimg.pipelines.base import AnalysisResult, Applicability, raster_features, register
from medimg.report.figures import overlay

__all__ = ["nuclei", "segment_nuclei", "applies"]

MIN_AREA_PX = 15
MIN_SEPARATION_PX = 3.0
MIN_DEPTH_PX = 1.0  # watershed marker depth; in pixels so that the result does not depend on --pixel-spacing
#: Fluorescence: the median of the image (0 = its minimum, 1 = its 99.5th percentile) at most this ...
FLUORESCENCE_MAX_BACKGROUND = 0.13
#: ... and the spread of its darker half at most this (chosen on the even-indexed images of DSB 2018, BUSI,
#: BCCD and HC18; benchmarks/pipeline_choice.py reports the odd-indexed ones).
FLUORESCENCE_MAX_SPREAD = 0.03
#: Stained or fluorescent colour images count as one-channel when the brightest channel holds this share.
DOMINANT_CHANNEL_SHARE = 0.5


def _grey(image: Image) -> np.ndarray:
    v = image.voxels[:, 0].astype(np.float32)
    if image.n_channels >= 3:
        return 0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2]
    if image.n_channels == 1:
        return v[0]
    raise InvalidParameterError("unsupported number of channels", parameter="image", expected="1, 3 or 4",
                                found=image.n_channels, fix="give a grey-scale or RGB image")


def segment_nuclei(image: Image) -> tuple[Image, dict[str, object]]:
    """Instance map of nuclei in a 2D microscopy image (see the module docstring) and the choices made."""
    if not image.is_2d:
        raise InvalidParameterError("nuclei segmentation needs a 2D image", parameter="image",
                                    expected="Z = 1", found=f"{image.spatial_shape[0]} slices",
                                    fix="give one microscopy image (PNG/TIFF/JPEG)")
    grey = _grey(image)
    smooth = ndimage.gaussian_filter(grey, 1.0)
    g = Image(voxels=smooth[None, None], geometry=image.geometry)
    fg = otsu(g).voxels[0, 0] > 0
    inverted = bool(fg.mean() > 0.5)
    if inverted:
        g = Image(voxels=(smooth.max() - smooth)[None, None], geometry=image.geometry)
        fg = otsu(g).voxels[0, 0] > 0
    mask = fill_holes(Image(voxels=fg.astype(np.uint8)[None, None], geometry=image.geometry, kind=Kind.LABEL))
    mask = connected_components(mask, min_size_vox=MIN_AREA_PX)
    mask = mask.derive((mask.voxels > 0).astype(np.uint8), operation="binarise")
    sep_mm = MIN_SEPARATION_PX * min(image.geometry.spacing[:2])
    depth_mm = MIN_DEPTH_PX * min(image.geometry.spacing[:2])
    instances = watershed_instances(mask, min_distance_mm=sep_mm, min_depth_mm=depth_mm)
    return instances, {"inverted": inverted, "min_area_px": MIN_AREA_PX, "min_separation_px": MIN_SEPARATION_PX,
                       "min_depth_px": MIN_DEPTH_PX}


def applies(image: Image) -> Applicability:
    """Fluorescence microscopy (dark flat background, bright objects; grey or one dominant colour channel)."""
    modality = str(image.metadata.get("modality") or "").upper()
    if not image.is_2d:
        return Applicability(0.0, "3D image (the nuclei pipeline takes one 2D microscopy image)", validated=False)
    if image.n_channels not in (1, 3, 4):
        return Applicability(0.0, f"{image.n_channels}-channel image", validated=False)
    if modality not in ("", "UNKNOWN", "OT", "SM", "XC", "GM"):
        return Applicability(0.05, f"modality {modality} is not microscopy", validated=False)
    f = raster_features(image)
    if f["constant"]:
        return Applicability(0.0, "constant image", validated=False)
    if f["background_level"] >= (0.45 if f["colour"] else 0.7):
        what = "colour image with a bright background (H&E/stained bright-field microscopy or a blood smear)" \
            if f["colour"] else "grey image with a bright background (bright-field microscopy)"
        return Applicability(0.3, what, validated=False)
    dark = f["background_level"] <= FLUORESCENCE_MAX_BACKGROUND and f["background_spread"] <= FLUORESCENCE_MAX_SPREAD
    if not dark:
        return Applicability(0.1, "mid-grey textured background (not fluorescence microscopy)", validated=False)
    if f["colour"] and f["dominant_channel_share"] < DOMINANT_CHANNEL_SHARE:
        return Applicability(0.45, "colour image on a dark background without one dominant channel", validated=False)
    return Applicability(0.85, "fluorescence microscopy (dark flat background, bright objects)")


@register("nuclei", "microscopy: nuclei instances by Otsu + watershed; counts and sizes", applies=applies)
def nuclei(image: Image) -> AnalysisResult:
    """Segment and count nuclei in a 2D microscopy image."""
    instances, choices = segment_nuclei(image)
    records = measure_labels(instances, image=Image(voxels=_grey(image)[None, None], geometry=image.geometry),
                             units="mm")
    for r in records:
        r["structure"] = f"nucleus {r['label']}"
    summary = instance_summary(instances, units="mm")
    if spacing_unknown(image):
        records, summary = to_pixel_units(records), to_pixel_units(summary)
    grey = _grey(image)
    lo, hi = np.percentile(grey, [1, 99.5])
    bg = np.clip((grey - lo) / max(hi - lo, 1e-6), 0, 1)
    notes = []
    if image.metadata.get("spacing_source") == "default_1mm":
        notes.append("The file carries no pixel size: sizes are in pixels (px, px2); give --pixel-spacing for "
                     "physical sizes.")
    if choices["inverted"]:
        notes.append("Bright background detected (bright-field or H&E): intensities were inverted.")
    return AnalysisResult(
        pipeline="nuclei",
        title="Nuclei: instance segmentation, count and sizes",
        method=(__doc__ or "").split("\n\n", 1)[1].strip(),
        parameters=dict(choices),
        masks={"nuclei": instances},
        label_names={"nuclei": {}},
        measurements=records,
        summary={"count": summary.get("count", 0), **{k: v for k, v in summary.items() if k != "count"}},
        figures={"nuclei instances over the image": overlay(bg, instances.voxels[0, 0], alpha=0.3)},
        notes=notes,
    )
