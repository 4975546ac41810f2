"""Hippocampus MRI crops: anterior and posterior hippocampus by the shipped 3D U-Net, volumes in mL.

Method: the ``hippocampus`` model of the medimg zoo (trained with ``medimg train segment`` on the Medical
Segmentation Decathlon Task04 training cases of its fold; see its model card) predicts each crop with a
sliding window and mirror test-time augmentation; the probabilities are resampled back onto the input grid,
and each label's volume is its voxel count times the voxel volume.
"""

from __future__ import annotations

import numpy as np

from medimg.core.errors import ImageReadError, InvalidParameterError
from medimg.core.image import Image
from medimg.measure.table import measure_labels
from medimg.pipelines.base import AnalysisResult, Applicability, register
from medimg.report.figures import overlay

__all__ = ["hippocampus", "looks_like_hippocampus_crop", "applies", "LABELS"]

LABELS = {1: "anterior hippocampus", 2: "posterior hippocampus"}
_MODEL = None


def looks_like_hippocampus_crop(image: Image) -> bool:
    """A small single-channel 3D MR crop at about 1 mm (MSD Task04 style: ~35 x 50 x 36 voxels)."""
    if image.is_2d or image.n_channels != 1:
        return False
    if str(image.metadata.get("modality") or "MR").upper() not in ("MR", "UNKNOWN", "OT", ""):
        return False
    small = max(image.spatial_shape) <= 96 and min(image.spatial_shape) >= 16
    mm = all(0.6 <= s <= 1.5 for s in image.spacing)
    lo = float(image.voxels.min())
    return bool(small and mm and lo >= -100)  # not CT (air at -1000 HU)


def applies(image: Image) -> Applicability:
    """An MSD Task04-style hippocampus crop (the model's training data); other 3D MRI: low, not validated."""
    if image.is_2d:
        return Applicability(0.0, "2D image (the hippocampus model takes a 3D MRI crop)", validated=False)
    if looks_like_hippocampus_crop(image):
        return Applicability(0.9, "small single-channel 3D MRI crop at about 1 mm (hippocampus, MSD Task04 style)")
    modality = str(image.metadata.get("modality") or "").upper()
    if image.n_channels == 1 and modality in ("MR", "", "UNKNOWN", "OT") and float(image.voxels.min()) >= -100:
        return Applicability(0.2, f"3D image of (Z, Y, X) {tuple(image.spatial_shape)} at "
                             f"{', '.join(f'{s:.3g}' for s in image.spacing)} mm, not a small 1 mm hippocampus crop",
                             validated=False)
    return Applicability(0.0, f"3D {modality or 'image'} that is not an MRI hippocampus crop", validated=False)


def _model():
    global _MODEL
    if _MODEL is None:
        from medimg.tasks.segment.predictor import load_model
        from medimg.zoo import resolve_model

        _MODEL = load_model(resolve_model("hippocampus"))
    return _MODEL


def _figure(image: Image, labels: np.ndarray) -> np.ndarray:
    v = image.voxels[0].astype(np.float32)
    lo, hi = np.percentile(v, [1, 99.5])
    bg = np.clip((v - lo) / max(hi - lo, 1e-6), 0, 1)
    fg = labels > 0
    z, y, x = (int(np.round(np.mean(ax))) for ax in np.nonzero(fg)) if fg.any() else (s // 2 for s in v.shape)
    views = [overlay(bg[z], labels[z]), overlay(bg[:, y, :][::-1], labels[:, y, :][::-1]),
             overlay(bg[:, :, x][::-1], labels[:, :, x][::-1])]
    scale = 4
    views = [np.kron(vw, np.ones((scale, scale, 1), np.uint8)) for vw in views]
    h = max(vw.shape[0] for vw in views)
    padded = [np.pad(vw, ((0, h - vw.shape[0]), (0, 4), (0, 0))) for vw in views]
    return np.concatenate(padded, axis=1)


@register("hippocampus", "MRI hippocampus crop: anterior/posterior hippocampus by the shipped 3D U-Net; mL",
          applies=applies)
def hippocampus(image: Image, *, precision: str = "auto") -> AnalysisResult:
    """Segment and measure the anterior and posterior hippocampus in a 3D MRI crop."""
    if image.is_2d or image.n_channels != 1:
        raise InvalidParameterError("the hippocampus model needs a single-channel 3D MRI crop", parameter="image",
                                    expected="1 channel, 3D", found=f"{image.n_channels} channel(s), "
                                    f"{'2D' if image.is_2d else '3D'}", fix="give a T1 MRI crop around the hippocampus")
    try:
        model = _model()
    except ImageReadError as exc:
        raise ImageReadError("the shipped hippocampus model is not available", path=exc.path,
                             fix=exc.fix or "reinstall medimg") from exc
    from medimg.tasks.segment.predictor import predict_image

    pred = predict_image(model, image, tta=True, precision=precision)
    labels = pred.labels
    records = measure_labels(labels, image=image, label_names=LABELS)
    for r in records:
        r["structure"] = LABELS.get(int(r["label"]), str(r["label"]))
    vol = {int(r["label"]): float(r.get("volume_ml") or 0.0) for r in records}
    notes = []
    if not looks_like_hippocampus_crop(image):
        notes.append("The input does not look like an MSD-style hippocampus crop (small 1 mm MRI volume); the "
                     "model was not trained on such data and its output may be meaningless.")
    return AnalysisResult(
        pipeline="hippocampus",
        title="Hippocampus: anterior and posterior volumes",
        method=(__doc__ or "").split("\n\n", 1)[1].strip(),
        parameters={"model": model.name, "folds": list(model.folds), "tta": True,
                    "patch_size": list(model.plan.patch_size), "target_spacing_mm": list(model.plan.target_spacing)},
        masks={"hippocampus": labels},
        label_names={"hippocampus": LABELS},
        measurements=records,
        summary={"anterior_volume_ml": round(vol.get(1, 0.0), 4), "posterior_volume_ml": round(vol.get(2, 0.0), 4),
                 "total_volume_ml": round(vol.get(1, 0.0) + vol.get(2, 0.0), 4)},
        figures={"axial, coronal and sagittal slices through the hippocampus (red anterior, green posterior)":
                 _figure(image, np.asarray(labels.voxels[0]))},
        notes=notes,
    )
