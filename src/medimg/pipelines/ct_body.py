"""CT body, lungs, gas and bone by Hounsfield units and morphology, with volumes in mL.

Method (all thresholds in HU, distances in mm so that the result does not depend on the voxel size; the
anatomical rules are explained in full in ``medimg.pipelines.ct_anatomy``):

1. body = largest 3D component of HU > -500 plus every other component at least 10 mm thick (an arm that does not
   touch the torso; not the table or sheets), closed (3 mm) and with holes filled slice by slice; enclosed air
   that comes within 5 mm of the air outside the body (the gap between an arm and the torso, air under a sheet
   or a table pad) is outside air and is removed from the body;
2. air inside the body = HU < -400 within the body, opened (1 mm), cut at the body's midline; a part is *lung*
   when it holds at least 10 mL, looks like aerated parenchyma (median -950..-600 HU, at most 20 % of voxels of
   pure gas below -950 HU), touches the chest wall (2 % of its voxels within 10 mm of bone) and has a lung-like
   partner on the other side (or holds 50 mL on its own); all other air inside the body is *gas* (stomach,
   bowel, airway). When no part passes, no lung is reported (0 mL) and a note says so;
3. bone = HU > 250 within the body, parts smaller than 0.2 mL removed.

Labels of the ``tissues`` mask: 1 soft tissue (everything in the body not below), 2 lung, 3 gas, 4 bone. The
body is the union of the four labels; its volume is the ``body`` row of the table and ``body_volume_ml`` of the
summary (one mask, one number).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

import medimg.pipelines.ct_anatomy as ct_anatomy
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

LABELS = {1: "soft tissue", 2: "lung", 3: "gas", 4: "bone"}
BODY_HU, AIR_HU, BONE_HU = -500.0, -400.0, 250.0
BONE_MIN_ML = 0.2
BODY_PART_MIN_RADIUS_MM = 10.0


def _mask(image: Image, arr: np.ndarray, name: str) -> Image:
    return image.derive(arr.astype(np.uint8)[None], operation=name, kind=Kind.LABEL, metadata={})


def _body_parts(ct: Image, above: Image) -> Image:
    """The largest 3D component of ``above`` plus every other one at least ``BODY_PART_MIN_RADIUS_MM`` thick.

    An arm that does not touch the torso is part of the body as much as one that does; the table, sheets and
    cables are thinner than 10 mm and are left out (thickness = largest inscribed radius, from the distance
    transform).
    """
    ball_ml = 4.0 / 3.0 * np.pi * BODY_PART_MIN_RADIUS_MM ** 3 / 1000.0  # nothing smaller can be that thick
    parts = connected_components(above, min_size_vox=int(ball_ml * 1000.0 / ct.voxel_volume_mm3)).voxels[0]
    # numbered by size: 1 is the largest
    n = int(parts.max())
    if n <= 1:
        return largest_component(above)
    depth = ndimage.distance_transform_edt(parts > 0, sampling=ct.geometry.spacing_zyx)
    radius = np.asarray(ndimage.maximum(depth, parts, np.arange(1, n + 1)))
    keep = np.flatnonzero(radius >= BODY_PART_MIN_RADIUS_MM) + 1
    return _mask(ct, np.isin(parts, np.union1d(keep, [1])), "body_parts")


def _figures(ct: Image, tissues: np.ndarray) -> dict[str, np.ndarray]:
    soft = window(ct, preset="abdomen", force=True).voxels[0]
    lung = window(ct, preset="lung", force=True).voxels[0]
    nz = tissues.shape[0]
    counts = (tissues > 0).reshape(nz, -1).sum(axis=1)
    ks = sorted({int(np.argmax(counts)), nz // 4, nz // 2, (3 * nz) // 4})
    figs = {}
    for k in ks:
        figs[f"axial slice {k}: soft-tissue window, labels soft tissue/lung/gas/bone"] = overlay(soft[k], tissues[k])
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
    spacing = ct.geometry.spacing_zyx
    filled = _body_parts(ct, threshold(ct, lower=BODY_HU))
    filled = fill_holes(binary_closing(filled, radius_mm=3.0), per_slice=True).voxels[0] > 0
    enclosed_air = binary_opening(_mask(ct, filled & (hu < AIR_HU), "air_in_body"), radius_mm=1.0).voxels[0] > 0
    regions = ct_anatomy.split_air(filled, enclosed_air, spacing)
    inside = regions.body
    voxel_ml = ct.voxel_volume_mm3 / 1000.0
    bone_parts = connected_components(_mask(ct, inside & (hu > BONE_HU), "bone_threshold"),
                                      min_size_vox=int(np.ceil(BONE_MIN_ML / voxel_ml))).voxels[0]
    bone = bone_parts > 0
    decision = ct_anatomy.lung_rule(hu, regions.inside, bone, inside, spacing)
    lung = decision.lung & ~bone
    gas = regions.inside & ~lung & ~bone
    tissues = np.zeros(hu.shape, np.uint8)
    tissues[inside] = 1
    tissues[lung] = 2
    tissues[gas] = 3
    tissues[bone] = 4
    tissue_img = ct.derive(tissues[None], operation="ct_body", kind=Kind.LABEL, metadata={},
                           params={"body_hu": BODY_HU, "air_hu": AIR_HU, "bone_hu": BONE_HU})
    ct_hu = ct.with_metadata(modality="CT")
    body_img = _mask(ct, tissues > 0, "body")
    body_record = measure_labels(body_img, image=ct_hu, label_names={1: "body"})[0]
    body_record.update(label="1-4", name="body", structure="body")
    records = measure_labels(tissue_img, image=ct_hu, label_names=LABELS)  # HU
    for r in records:
        r["structure"] = LABELS.get(int(r["label"]), str(r["label"]))
    records = [body_record, *records]
    n_lung_parts = int(ndimage.label(lung)[1]) if lung.any() else 0
    summary = {
        "body_volume_ml": round(float(body_record["volume_ml"]), 2),
        "soft_tissue_volume_ml": round(float((tissues == 1).sum() * voxel_ml), 2),
        "lung_volume_ml": round(float((tissues == 2).sum() * voxel_ml), 2),
        "gas_volume_ml": round(float((tissues == 3).sum() * voxel_ml), 2),
        "bone_volume_ml": round(float((tissues == 4).sum() * voxel_ml), 2),
        "lung_parts": n_lung_parts,
    }
    notes = list(decision.notes)
    if regions.outside_ml >= 0.1:
        notes.append(f"{regions.outside_ml:.1f} mL of air enclosed by the body outline lies outside the body (between "
                     "arm and torso, under a sheet or pad: within 5 mm of the outside air) and is not counted.")
    cut = [bool(sl[[0, -1], :].any() or sl[:, [0, -1]].any()) for sl in inside if sl.any()]
    if cut and np.mean(cut) >= 0.5:
        notes.append(f"The body touches the edge of the image in {100 * np.mean(cut):.0f}% of its slices (a crop or a "
                     "small field of view): volumes are those inside the image, and air cut by the edge (a lung "
                     "included) may be missed or counted as outside air.")
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
                    "outside_air_cover_mm": ct_anatomy.OUTSIDE_COVER_MM,
                    "lung_min_volume_ml": ct_anatomy.LUNG_MIN_ML,
                    "lung_median_hu_range": list(ct_anatomy.LUNG_MEDIAN_HU),
                    "lung_max_pure_gas_fraction": ct_anatomy.LUNG_MAX_PURE_GAS_FRACTION,
                    "pure_gas_hu": ct_anatomy.PURE_GAS_HU,
                    "lung_chest_wall_mm": ct_anatomy.CHEST_WALL_MM,
                    "lung_chest_wall_min_fraction": ct_anatomy.CHEST_WALL_MIN_FRACTION,
                    "lung_single_side_min_ml": ct_anatomy.LUNG_SINGLE_SIDE_ML,
                    "lung_candidates": decision.parts,
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
