"""The demo job (``medimg demo``): the main job on the CT series shipped inside the package, as a library call.

:func:`run_demo` reads the 20-slice JPEG 2000 CT series (TotalSegmentator sample, CC BY 4.0) or another series,
and computes: the volume, a soft-tissue-windowed copy resampled to ``spacing``, a montage in the lung and bone
windows, the full analysis (CT body/lung/gas/bone segmentation, volumes in mL) and the shipped hippocampus model on
the shipped MRI crop. Nothing is written until :meth:`Demo.write`, which builds the output folder beside the
target and moves it into place only when everything succeeded::

    OUT/ct.nii.gz  OUT/ct_abdomen_window_<s>mm.nii.gz  OUT/montage_lung_bone.png  OUT/summary.json
    OUT/analysis/ (the `medimg analyze` output)        OUT/analysis_hippocampus/
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Callable

import numpy as np

from medimg.core.errors import ImageWriteError
from medimg.core.image import Image
from medimg.pipelines.base import AnalysisResult
from medimg.tasks.result import Result

__all__ = ["SUMMARY_NAME", "MARKER", "sample_path", "hippocampus_sample_path", "check_demo_output", "Demo",
           "run_demo", "ct_volume_lines"]

SUMMARY_NAME = "summary.json"
#: Key of summary.json that marks a folder as an earlier demo output.
MARKER = "medimg_demo"
SAMPLE_SOURCE = "shipped CT sample (TotalSegmentator, CC BY 4.0)"


def sample_path() -> Path:
    """Folder of the CT sample shipped with the package."""
    return Path(str(files("medimg") / "data" / "ct_sample"))


def hippocampus_sample_path() -> Path:
    """The hippocampus MRI crop shipped with the package (MSD Task04 case 001, CC BY-SA 4.0)."""
    return Path(str(files("medimg") / "data" / "hippocampus_sample" / "hippocampus_001.nii.gz"))


def check_demo_output(out: str | os.PathLike[str]) -> None:
    """Refuse a non-empty ``out`` that is not an earlier demo output (checked before any work)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not (out / SUMMARY_NAME).exists() or MARKER not in (out / SUMMARY_NAME).read_text(errors="ignore"):
            raise ImageWriteError(
                "output folder exists and is not a previous demo output", path=out,
                expected="a new folder, an empty one, or an earlier `medimg demo` output",
                found="other content", fix="choose another folder with --out",
            )


def _syntax_name(uid: str | None) -> str:
    from pydicom.uid import UID

    return UID(uid).name if uid else "?"


@dataclass
class Demo(Result):
    """Everything the demo computed (see the module docstring)."""

    source: Path
    source_name: str
    ct: Image
    windowed: Image
    window_name: str
    montage: np.ndarray
    analysis: AnalysisResult
    hippocampus: Image
    hippocampus_analysis: AnalysisResult
    summary: dict[str, Any] = field(default_factory=dict)
    kind: str = "demo"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.summary)

    def write(self, out: str | os.PathLike[str], *, step: Callable[[str], None] | None = None,
              **options: Any) -> list[Path]:
        """Write the demo folder (atomically; an earlier demo output is replaced, nothing else is deleted)."""
        from medimg.io import write
        from medimg.io.files import atomic_output_dir
        from medimg.pipelines.writer import write_analysis

        step = step or (lambda what: None)
        out = Path(out)
        check_demo_output(out)
        hippo_src = hippocampus_sample_path()
        with atomic_output_dir(out, inputs=[self.source], replace_marker=(SUMMARY_NAME, MARKER)) as tmp:
            write(self.ct, tmp / "ct.nii.gz", inputs=[self.source])
            write(self.windowed, tmp / self.window_name)
            write(Image.from_array(self.montage, channel_axis=-1), tmp / "montage_lung_bone.png")
            write_analysis(self.ct, self.analysis, tmp / "analysis", source=self.source_name, inputs=[self.source],
                           notes=[])
            write_analysis(self.hippocampus, self.hippocampus_analysis, tmp / "analysis_hippocampus",
                           source=str(hippo_src.name), inputs=[hippo_src], notes=[])
            (tmp / SUMMARY_NAME).write_text(json.dumps(self.summary, indent=2))
            step("wrote the volume, the windowed copy, the montage, both reports and the JSON summary")
        return sorted(p for p in out.rglob("*") if p.is_file())

    def summary_lines(self) -> list[str]:
        """What ``medimg demo`` prints after writing (the report paths are relative to the output folder)."""
        hs = self.hippocampus_analysis.summary
        return [*ct_volume_lines(self.analysis.summary),
                f"hippocampus:  anterior {hs['anterior_volume_ml']:.3f} mL, posterior "
                f"{hs['posterior_volume_ml']:.3f} mL (shipped model, sample case {hippocampus_sample_path().name})"]


def run_demo(source: str | os.PathLike[str] | None = None, *, spacing: tuple[float, float, float] = (1.5, 1.5, 1.5),
             step: Callable[[str], None] | None = None, say: Callable[[str], None] | None = None) -> Demo:
    """Compute the demo on ``source`` (a DICOM series; default the shipped sample); nothing is written.

    ``step(what)`` is called after each step (progress), ``say(line)`` with what was found in the input.
    """
    import medimg
    from medimg.io import read
    from medimg.pipelines.choose import run_pipeline
    from medimg.preprocess import resample, window
    from medimg.report import image_summary, montage

    step = step or (lambda what: None)
    say = say or (lambda line: None)
    t0 = time.perf_counter()
    src = Path(source) if source is not None else sample_path()
    source_name = SAMPLE_SOURCE if source is None else str(src)
    ct = read(src)
    step("read the DICOM series")
    s = image_summary(ct)
    meta = s.get("metadata", {})
    say(f"input:        {src}")
    say(f"found:        {meta.get('modality', '?')} series, "
        f"{s['size_xyz'][0]} x {s['size_xyz'][1]} x {s['size_xyz'][2]} voxels, "
        f"{' x '.join(f'{v:.3g}' for v in s['spacing_mm'])} mm, orientation {s['orientation']}, "
        f"transfer syntax {_syntax_name(meta.get('transfer_syntax'))}")
    it = s["intensity"]
    say(f"intensity:    {it['min']:.0f} .. {it['max']:.0f} HU (mean {it['mean']:.1f})")

    soft = window(resample(ct, spacing_mm=spacing), preset="abdomen")
    window_name = f"ct_abdomen_window_{spacing[0]:g}mm.nii.gz"
    step(f"windowed (abdomen) and resampled to {spacing} mm")

    lung = window(ct, preset="lung").voxels[0]
    bone = window(ct, preset="bone").voxels[0]
    nz = ct.spatial_shape[0]
    picks = sorted({int(round(f * (nz - 1))) for f in (0.1, 0.37, 0.63, 0.9)})
    tiles = [lung[k] for k in picks] + [bone[k] for k in picks]
    labels = [f"lung  z={k}" for k in picks] + [f"bone  z={k}" for k in picks]
    rgb = montage(tiles, columns=len(picks), labels=labels)
    step("drew the lung/bone montage")

    analysis = run_pipeline(ct)
    step("analysed: body, gas, bone and lung (if any) segmented and measured")
    hippo = read(hippocampus_sample_path())
    hippo_result = run_pipeline(hippo, "hippocampus")
    step("hippocampus MRI crop segmented by the shipped model and measured")

    hu = ct.voxels[0].astype(np.float32)
    outputs = {"volume": "ct.nii.gz", "windowed_resampled": window_name, "montage": "montage_lung_bone.png",
               "report": "analysis/report.html", "measurements": "analysis/measurements.json",
               "hippocampus_report": "analysis_hippocampus/report.html"}
    summary = {
        MARKER: True,
        "medimg_version": medimg.__version__,
        "input": source_name,
        "analysis": analysis.summary,
        "hippocampus_analysis": hippo_result.summary,
        "image": s,
        "hu_fractions": {
            "air (< -900 HU)": round(float((hu < -900).mean()), 4),
            "-900..-500 HU (lung-like density, not a lung mask)": round(
                float(((hu >= -900) & (hu < -500)).mean()), 4),
            "soft tissue (-100..100 HU)": round(float(((hu >= -100) & (hu <= 100)).mean()), 4),
            "bone (> 300 HU)": round(float((hu > 300).mean()), 4),
        },
        "windowed_resampled": image_summary(soft),
        "outputs": outputs,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    return Demo(source=src, source_name=source_name, ct=ct, windowed=soft, window_name=window_name, montage=rgb,
                analysis=analysis, hippocampus=hippo, hippocampus_analysis=hippo_result, summary=summary)


def ct_volume_lines(summary: dict) -> list[str]:
    """What the demo prints about the CT analysis: body, its parts and the lung, or that there is no lung.

    Example:
        >>> ct_volume_lines({"body_volume_ml": 3104.0, "soft_tissue_volume_ml": 2980.2, "lung_volume_ml": 0.0,
        ...                  "gas_volume_ml": 30.2, "bone_volume_ml": 93.6, "lung_parts": 0})[1]
        'lung:         none found (no air region inside the body passes the lung rule; see the report notes)'
    """
    parts = ", ".join(f"{name} {summary[key]:.1f} mL" for name, key in (
        ("soft tissue", "soft_tissue_volume_ml"), ("gas inside the body", "gas_volume_ml"),
        ("bone", "bone_volume_ml"), ("lung", "lung_volume_ml")) if summary.get(key))
    lines = [f"volumes:      body {summary['body_volume_ml']:.1f} mL" + (f" = {parts}" if parts else "")]
    if summary.get("lung_volume_ml"):
        n = summary.get("lung_parts", 0)
        lines.append(f"lung:         {summary['lung_volume_ml']:.1f} mL in {n} part{'s' if n != 1 else ''}")
    else:
        lines.append("lung:         none found (no air region inside the body passes the lung rule; see the report "
                     "notes)")
    return lines
