"""CT body, lungs, gas and bone by Hounsfield units and morphology, with volumes in mL.

Method (all thresholds in HU, radii in mm so that the result does not depend on the voxel size):

1. body = largest 3D component of HU > -500, closed (3 mm) and with holes filled slice by slice;
2. air inside the body = HU < -400 within the body, opened (1 mm); each connected part is a *lung* part when
   its median HU lies between -960 and -700 (aerated parenchyma with vessels: pure gas is near -1000, bowel
   content mixed with gas lies higher) and it holds at least 10 mL, else *gas* (stomach, bowel, airway);
3. bone = HU > 250 within the body, parts smaller than 0.2 mL removed.

Labels of the ``tissues`` mask: 1 body (soft tissue and everything not below), 2 lung, 3 gas, 4 bone.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medimg.classical.morphology import (
    binary_closing,
    binary_opening,
    connected_components,
    fill_holes,
    largest_component,
)
from medimg.classical.threshold import threshold
from medimg.core.enums import Kind
from medimg.core.errors import InvalidParameterError
from medimg.core.image import Image
from medimg.measure.table import measure_labels
from medimg.pipelines.base import AnalysisResult, register
from medimg.preprocess.intensity import window
from medimg.report.figures import overlay

__all__ = ["ct_body", "LABELS"]

LABELS = {1: "body", 2: "lung", 3: "gas", 4: "bone"}
BODY_HU, AIR_HU, BONE_HU = -500.0, -400.0, 250.0
LUNG_MEDIAN_HU, LUNG_MIN_ML, BONE_MIN_ML = (-960.0, -700.0), 10.0, 0.2


def _mask(image: Image, arr: np.ndarray, name: str) -> Image:
    return image.derive(arr.astype(np.uint8)[None], operation=name, kind=Kind.LABEL, metadata={})


def _figures(ct: Image, tissues: np.ndarray) -> dict[str, np.ndarray]:
    soft = window(ct, preset="abdomen", force=True).voxels[0]
    lung = window(ct, preset="lung", force=True).voxels[0]
    nz = tissues.shape[0]
    counts = (tissues > 0).reshape(nz, -1).sum(axis=1)
    ks = sorted({int(np.argmax(counts)), nz // 4, nz // 2, (3 * nz) // 4})
    figs = {}
    for k in ks:
        figs[f"axial slice {k}: soft-tissue window, labels body/lung/gas/bone"] = overlay(soft[k], tissues[k])
    y = int(np.argmax((tissues > 0).sum(axis=(0, 2))))
    sz, sx = ct.geometry.spacing_zyx[0], ct.geometry.spacing_zyx[2]
    if nz > 1:
        cor_bg, cor_lab = lung[:, y, :][::-1], tissues[:, y, :][::-1]  # superior at the top
        rep = max(1, int(round(sz / sx)))
        figs[f"coronal row {y}: lung window (slices stretched x{rep} to the voxel aspect)"] = overlay(
            np.repeat(cor_bg, rep, axis=0), np.repeat(cor_lab, rep, axis=0))
    return figs


@register("ct_body", "CT: body, lungs, gas and bone by HU and morphology; volumes in mL")
def ct_body(ct: Image) -> AnalysisResult:
    """Segment body, lungs, gas and bone of a CT volume in HU and measure them (see the module docstring)."""
    if ct.n_channels != 1:
        raise InvalidParameterError("CT must have one channel", parameter="image", expected="1 channel",
                                    found=f"{ct.n_channels} channels", fix="give a grey-scale CT volume in HU")
    hu = ct.voxels[0]
    body = largest_component(threshold(ct, lower=BODY_HU))
    body = fill_holes(binary_closing(body, radius_mm=3.0), per_slice=True)
    inside = body.voxels[0] > 0
    air = binary_opening(_mask(ct, inside & (hu < AIR_HU), "air_in_body"), radius_mm=1.0)
    parts = connected_components(air).voxels[0]
    lung = np.zeros_like(inside)
    gas = np.zeros_like(inside)
    voxel_ml = ct.voxel_volume_mm3 / 1000.0
    n_parts = int(parts.max())
    if n_parts:
        idx = np.arange(1, n_parts + 1)
        medians = ndimage.median(hu, parts, idx)
        sizes = ndimage.sum_labels(np.ones_like(parts), parts, idx) * voxel_ml
        medians = np.asarray(medians)
        is_lung = (medians > LUNG_MEDIAN_HU[0]) & (medians < LUNG_MEDIAN_HU[1]) & (np.asarray(sizes) >= LUNG_MIN_ML)
        lung = np.isin(parts, idx[is_lung])
        gas = (parts > 0) & ~lung
    bone_parts = connected_components(_mask(ct, inside & (hu > BONE_HU), "bone_threshold"),
                                      min_size_vox=int(np.ceil(BONE_MIN_ML / voxel_ml))).voxels[0]
    bone = bone_parts > 0
    tissues = np.zeros(hu.shape, np.uint8)
    tissues[inside] = 1
    tissues[lung] = 2
    tissues[gas] = 3
    tissues[bone] = 4
    tissue_img = ct.derive(tissues[None], operation="ct_body", kind=Kind.LABEL, metadata={},
                           params={"body_hu": BODY_HU, "air_hu": AIR_HU, "bone_hu": BONE_HU})
    records = measure_labels(tissue_img, image=ct.with_metadata(modality="CT"), label_names=LABELS)  # HU
    for r in records:
        r["structure"] = LABELS.get(int(r["label"]), str(r["label"]))
    body_ml = float(inside.sum() * voxel_ml)
    summary = {
        "body_volume_ml": round(body_ml, 2),
        "lung_volume_ml": round(float(lung.sum() * voxel_ml), 2),
        "gas_volume_ml": round(float(gas.sum() * voxel_ml), 2),
        "bone_volume_ml": round(float(bone.sum() * voxel_ml), 2),
        "lung_parts": int(len(np.unique(parts[lung]))) if lung.any() else 0,
    }
    notes = []
    z_extent = hu.shape[0] * ct.geometry.spacing[2]
    if z_extent < 150:
        notes.append(f"The volume covers only {z_extent:.0f} mm along the body axis: volumes are those of the "
                     "part imaged, not of whole organs.")
    if ct.metadata.get("modality") not in ("CT",):
        notes.append("The modality is not recorded as CT; values were taken as HU because of their range.")
    return AnalysisResult(
        pipeline="ct_body",
        title="CT body composition: body, lungs, gas and bone",
        method=(__doc__ or "").split("\n\n", 1)[1].strip(),
        parameters={"body_threshold_hu": BODY_HU, "air_threshold_hu": AIR_HU, "bone_threshold_hu": BONE_HU,
                    "lung_median_hu_range": list(LUNG_MEDIAN_HU), "lung_min_volume_ml": LUNG_MIN_ML,
                    "bone_min_volume_ml": BONE_MIN_ML, "closing_radius_mm": 3.0, "opening_radius_mm": 1.0},
        masks={"tissues": tissue_img},
        label_names={"tissues": LABELS},
        measurements=records,
        summary=summary,
        figures=_figures(ct, tissues),
        notes=notes,
    )


def applies(ct: Image):
    """CT volumes: the DICOM modality CT, or a 3D single-channel image whose values look like HU (air at -1000,
    bone above 300); 2D images and other modalities do not apply."""
    from medimg.pipelines.base import Applicability

    modality = str(ct.metadata.get("modality") or "").upper()
    if ct.is_2d:
        return Applicability(0.0, "2D image (the CT body pipeline takes a 3D CT volume)", validated=False)
    if ct.n_channels != 1:
        return Applicability(0.0, f"{ct.n_channels}-channel 3D image", validated=False)
    if modality == "CT":
        return Applicability(0.95, "3D volume of DICOM modality CT")
    lo, hi = float(ct.voxels.min()), float(ct.voxels.max())
    if modality in ("", "UNKNOWN", "OT") and lo <= -900 and hi >= 300:
        return Applicability(0.8, f"3D volume whose values from {lo:.0f} to {hi:.0f} look like HU")
    return Applicability(0.0, f"3D {modality or 'image'} whose values {lo:.4g}..{hi:.4g} are not HU", validated=False)


from medimg.pipelines.base import register_applies  # noqa: E402  (appended with the rule)

register_applies("ct_body")(applies)
