"""The output contract of ``medimg analyze``, written from an :class:`~medimg.pipelines.analysis.Analysis`.

Output contract (scripts may rely on it)::

    OUT/report.html          one self-contained HTML report (figures embedded)
    OUT/measurements.json    {"medimg_version", "pipeline", "input", "summary", "notes", "warnings",
                             "measurements": [...]}: one record per structure or instance; snake_case keys, units
                             in the name (2D images without a pixel size: _px / _px2 instead of _mm / _mm2)
    OUT/measurements.csv     the same records, one row each
    OUT/masks/<name>.nii.gz  label maps (3D), or OUT/masks/<name>.png (2D, uint8/uint16 label values)

With a classifier::

    OUT/report.html          gains a "Classification" section (probability table, decision, uncertainty, figure)
    OUT/measurements.json    gains "classification": ClassPrediction.to_dict() + model folder, folds, temperatures
    OUT/explain/<stem>.png   the explanation figure (2D: overlay; 3D: montage of the most salient slices)
    OUT/explain/<stem>.nii.gz  the explanation map on the input's grid

OUT is built in a temporary folder beside it and moved into place when everything succeeded. An existing OUT
is replaced only when it is an earlier ``medimg analyze`` output; any other non-empty folder is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medimg.core.errors import ImageWriteError

__all__ = ["MARKER", "check_output_folder", "analysis_payload", "write_analysis"]

#: Key of measurements.json that marks a folder as an earlier ``medimg analyze`` output.
MARKER = "medimg_analyze"


def check_output_folder(out: str | Path, marker_file: str = "measurements.json", marker: str = MARKER,
                        command: str = "analyze") -> None:
    """Refuse a non-empty OUT unless it is an earlier output of the same command (its marker file says so)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        mf = out / marker_file
        if not mf.is_file() or marker not in mf.read_text(errors="ignore")[:4096]:
            raise ImageWriteError(
                f"output folder exists and is not a previous `medimg {command}` output", path=out,
                expected="a new folder, an empty one, or an earlier output of this command",
                found="other content", fix="choose another output folder",
            )


def analysis_payload(result: Any, *, source: str, notes: list[str], mask_files: dict[str, str]) -> dict[str, Any]:
    """measurements.json's content (without the classification), given the mask file names."""
    import medimg

    return {
        MARKER: True,
        "medimg_version": medimg.__version__,
        "pipeline": result.pipeline,
        "input": source,
        "parameters": result.parameters,
        "summary": result.summary,
        "notes": list(notes) + list(result.notes),
        "warnings": list(result.warnings),
        "masks": mask_files,
        "label_names": {k: {str(i): n for i, n in v.items()} for k, v in result.label_names.items()},
        "measurements": result.measurements,
    }


def write_analysis(image, result, out: Path, *, source: str, inputs: list[str], notes: list[str],
                   classification: Any = None) -> Path:
    """Write the output contract of ``medimg analyze`` for one AnalysisResult (and a classification) into ``out``;
    returns the report's path."""
    import numpy as np

    import medimg
    from medimg.io import write
    from medimg.io.files import atomic_output_dir
    from medimg.measure import to_csv
    from medimg.report import ReportSection, image_summary, render_html
    from medimg.tasks.classify.writer import classification_record, classification_section

    # a fresh temporary folder; replaces OUT only when it is an earlier analyze output and holds no input
    with atomic_output_dir(out, inputs=inputs, replace_marker=("measurements.json", MARKER)) as tmp:
        (tmp / "masks").mkdir()
        mask_files = {}
        for name, mask in result.masks.items():
            if mask.is_2d:
                top = int(mask.voxels.max()) if mask.voxels.size else 0
                mask = mask.replace(voxels=mask.voxels.astype(np.uint8 if top < 256 else np.uint16))
                rel = f"masks/{name}.png"
            else:
                rel = f"masks/{name}.nii.gz"
            write(mask, tmp / rel, inputs=inputs)
            mask_files[name] = rel
        all_notes = list(notes) + list(result.notes)
        pixel_units = any(k.endswith(("_px", "_px2")) for r in result.measurements[:1] for k in r)
        payload = analysis_payload(result, source=source, notes=notes, mask_files=mask_files)
        class_section, files = None, {}
        if classification is not None:
            pred, model = classification.prediction, classification.model
            files, figure = _write_explanation(pred, image, tmp / "explain")
            payload["classification"] = classification_record(pred, model, files=files)
            class_section = classification_section(pred, model, figure=figure, files=files)
        (tmp / "measurements.json").write_text(json.dumps(payload, indent=2, allow_nan=False))
        to_csv(result.measurements, tmp / "measurements.csv")
        info = image_summary(image)
        info.pop("history", None)
        sections = [
            ReportSection("Input", items={
                "file": source, "format": image.metadata.get("source_format", ""),
                "modality": image.metadata.get("modality", "unknown"),
                "size (x, y, z)": " x ".join(map(str, info["size_xyz"])),
                "spacing (mm)": " x ".join(f"{s:.4g}" for s in info["spacing_mm"]),
                "orientation": info["orientation"] + (" (oblique)" if info["oblique"] else ""),
            }),
            ReportSection("Method", text=result.method, items={k: json.dumps(v) if isinstance(v, (list, dict))
                                                                 else v for k, v in result.parameters.items()}),
        ]
        if all_notes:
            sections.append(ReportSection("Notes", text=" ".join(all_notes)))
        if result.summary:
            sections.append(ReportSection("Summary", items=result.summary))
        if class_section is not None:
            sections.append(class_section)
        if result.figures:
            sections.append(ReportSection("Figures", figures=result.figures))
        if result.measurements:
            cols = _report_columns(result.measurements)
            units = ("Lengths in pixels (px) and areas in square pixels (px2): the image carries no pixel size "
                     "(give --pixel-spacing MM for millimetres)" if pixel_units else "All values in physical units")
            sections.append(ReportSection(
                "Measurements", text=f"{units} (names carry the unit); the full table is in "
                "measurements.csv / measurements.json.",
                records=[{k: r.get(k) for k in cols} for r in result.measurements[:200]],
            ))
        outputs = {"masks": ", ".join(mask_files.values()) or "none",
                   "measurements": "measurements.json, measurements.csv"}
        if class_section is not None:
            outputs["explanation"] = ", ".join(files.values()) or "none (--classifier-explain none)"
        sections.append(ReportSection("Outputs", items=outputs))
        import numpy
        import scipy
        import SimpleITK
        import skimage

        html_text = render_html(result.title, sections, warnings=result.warnings, software={
            "medimg": medimg.__version__, "numpy": numpy.__version__, "scipy": scipy.__version__,
            "scikit-image": skimage.__version__, "SimpleITK": SimpleITK.Version.VersionString(),
        })
        (tmp / "report.html").write_text(html_text, encoding="utf-8")
    return out / "report.html"


def _write_explanation(pred, image, folder: Path) -> tuple[dict[str, str], Any]:
    """Write the explanation files of ``pred`` into ``folder`` (as ``medimg predict`` does) and return their
    names relative to OUT and the figure as (H, W, 3) uint8 for the report; ({}, None) without a map."""
    import numpy as np
    from PIL import Image as PILImage

    from medimg.tasks.classify.writer import safe_file_stem, write_explanation

    if pred.saliency is None:
        return {}, None
    folder.mkdir(parents=True, exist_ok=True)
    files = write_explanation(pred, image, folder, safe_file_stem(pred.id))
    with PILImage.open(folder.parent / files["png"]) as fig:
        figure = np.asarray(fig.convert("RGB"))
    return files, figure


def _report_columns(records: list[dict[str, Any]]) -> list[str]:
    from medimg.measure.table import pixel_unit_key

    preferred = ["structure", "label", "volume_ml", "area_mm2", "surface_area_mm2", "longest_diameter_mm",
                 "short_axis_diameter_mm", "max_cross_section_area_mm2", "ellipse_circumference_mm",
                 "head_circumference_mm", "perimeter_mm", "mean_hu", "std_hu", "mean_intensity",
                 "centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]
    present = set().union(*(r.keys() for r in records))
    preferred = [k for c in preferred for k in dict.fromkeys((c, pixel_unit_key(c)))]
    return [c for c in preferred if c in present]
