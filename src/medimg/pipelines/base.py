"""What an analysis pipeline returns, the registry of pipelines, and the automatic choice among them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from medimg.core.errors import InvalidParameterError
from medimg.core.image import Image

__all__ = ["AnalysisResult", "PIPELINES", "register", "choose_pipeline", "run_pipeline"]


@dataclass
class AnalysisResult:
    """Everything a pipeline produced, ready to be written by ``medimg analyze``.

    Attributes:
        pipeline: registered name.
        title: one line for the report heading.
        method: what was done, in words, for the report.
        parameters: the parameters used (JSON-friendly).
        masks: name -> label Image (written to OUT/masks/<name>.nii.gz, or .png for 2D).
        label_names: name -> {label value: structure name} for each mask.
        measurements: one record per structure or instance (snake_case keys, units in the name).
        summary: headline numbers (e.g. lung_volume_ml, count) for the report and JSON.
        figures: caption -> (H, W, 3) uint8 overlay figure.
        notes: caveats the user must read (fallback spacing, heuristics that fired).
    """

    pipeline: str
    title: str
    method: str
    parameters: dict[str, Any]
    masks: dict[str, Image]
    label_names: dict[str, dict[int, str]]
    measurements: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


PipelineFn = Callable[[Image], AnalysisResult]
#: name -> (function, one-line description)
PIPELINES: dict[str, tuple[PipelineFn, str]] = {}


def register(name: str, description: str) -> Callable[[PipelineFn], PipelineFn]:
    """Decorator adding a pipeline to :data:`PIPELINES`."""

    def deco(fn: PipelineFn) -> PipelineFn:
        PIPELINES[name] = (fn, description)
        return fn

    return deco


def _ultrasound_like(image: Image) -> bool:
    """Grey-scale 2D image with a large exactly-black surround (the fan/sector of an ultrasound frame)."""
    v = image.voxels[0, 0].astype(np.float32)
    border = np.concatenate([v[0], v[-1], v[:, 0], v[:, -1]])
    return bool(image.n_channels == 1 and (v <= v.min()).mean() > 0.08 and np.median(border) <= v.min() + 1)


def choose_pipeline(image: Image) -> tuple[str, str]:
    """Pick a pipeline from the modality and content; returns (name, reason).

    Rules, in order: CT (by the DICOM modality, or a 3D image whose values look like HU: minimum <= -900 and
    maximum >= 300) -> ``ct_body``; a small single-channel 3D MRI crop at about 1 mm -> ``hippocampus``;
    a 2D ultrasound (modality US, or a grey-scale frame with a black sector
    surround) -> ``fetal_head``; any other 2D image (colour or grey, microscopy) -> ``nuclei``. Anything else is
    refused with the fix to name a pipeline.
    """
    modality = str(image.metadata.get("modality") or "").upper()
    if not image.is_2d:
        lo, hi = float(image.voxels.min()), float(image.voxels.max())
        if modality == "CT" or (modality in ("", "UNKNOWN") and lo <= -900 and hi >= 300):
            reason = "DICOM modality CT" if modality == "CT" else f"values from {lo:.0f} to {hi:.0f} look like HU"
            return "ct_body", reason
        from medimg.pipelines.hippocampus import looks_like_hippocampus_crop

        if looks_like_hippocampus_crop(image):
            return "hippocampus", "small 3D MRI crop at ~1 mm (hippocampus)"
        raise InvalidParameterError(
            "no automatic pipeline for this 3D image", parameter="--pipeline",
            expected="a CT volume (modality CT or values in HU) or an MRI hippocampus crop",
            found=f"modality {modality or 'unknown'}, values {lo:.4g}..{hi:.4g}",
            fix=f"name a pipeline with --pipeline ({', '.join(sorted(PIPELINES))}), or only classify the image: "
                "--pipeline none --classifier MODEL",
        )
    if modality == "US" or (modality in ("", "UNKNOWN", "OT") and _ultrasound_like(image)):
        return "fetal_head", "ultrasound (modality US or a black sector surround)"
    return "nuclei", "2D image that is not ultrasound: microscopy nuclei"


def run_pipeline(image: Image, name: str | None = None) -> AnalysisResult:
    """Run the named pipeline (or the automatic choice) on ``image``."""
    import medimg.pipelines  # noqa: F401  (fills the registry)

    reason = "chosen by the user"
    if name is None:
        name, reason = choose_pipeline(image)
    if name not in PIPELINES:
        raise InvalidParameterError(
            "unknown pipeline", parameter="--pipeline", expected=", ".join(sorted(PIPELINES)), found=name,
            fix="pick one of the listed pipelines",
        )
    result = PIPELINES[name][0](image)
    result.parameters = {"pipeline_choice": reason, **result.parameters}
    return result
