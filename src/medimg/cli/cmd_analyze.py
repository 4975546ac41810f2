"""`medimg analyze IN -o OUT`: the main job. Chooses a pipeline, runs it, writes masks, measurements and a report.

Output contract (scripts may rely on it)::

    OUT/report.html          one self-contained HTML report (figures embedded)
    OUT/measurements.json    {"medimg_version", "pipeline", "input", "summary", "notes", "measurements": [...]}
                             one record per structure or instance; snake_case keys, units in the name
    OUT/measurements.csv     the same records, one row each
    OUT/masks/<name>.nii.gz  label maps (3D), or OUT/masks/<name>.png (2D, uint8/uint16 label values)

OUT is built in a temporary folder beside it and moved into place when everything succeeded. An existing OUT
is replaced only when it is an earlier ``medimg analyze`` output; any other non-empty folder is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import Any

_MARKER = "medimg_analyze"


def add_parser(subparsers, *, parents, help: str) -> None:  # noqa: A002
    from medimg.cli._args import add_read_options
    from medimg.cli._spacing import add_pixel_spacing_option

    p = subparsers.add_parser(
        "analyze", parents=parents, help=help,
        description="Read a study, choose an analysis pipeline from its modality and content (CT body/lungs/"
        "bone, microscopy nuclei, fetal head ultrasound), run it and write OUT/report.html, "
        "OUT/measurements.json, OUT/measurements.csv and OUT/masks/.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("input", help="image file or DICOM file/folder/zip")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--pipeline", choices=["ct_body", "hippocampus", "nuclei", "fetal_head"], default=None,
                   help="skip the automatic choice")
    p.add_argument("--modality", metavar="MOD", default=None,
                   help="modality when the file records none (e.g. CT for a NIfTI in HU, US, SM)")
    add_pixel_spacing_option(p)
    add_read_options(p)


def check_output_folder(out: Path, marker_file: str, marker: str, command: str) -> None:
    """Refuse a non-empty OUT unless it is an earlier output of the same command (its marker file says so)."""
    from medimg.core.errors import ImageWriteError

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        mf = out / marker_file
        if not mf.is_file() or marker not in mf.read_text(errors="ignore")[:4096]:
            raise ImageWriteError(
                f"output folder exists and is not a previous `medimg {command}` output", path=out,
                expected="a new folder, an empty one, or an earlier output of this command",
                found="other content", fix="choose another output folder",
            )


def replace_folder(tmp: Path, out: Path) -> None:
    """Move the finished temporary folder to ``out``, replacing an earlier output."""
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def load_input(args: argparse.Namespace, notes: list[str]):
    """Read the input, apply --pixel-spacing to 2D files without spacing and --modality to files without one."""
    from medimg.cli._args import parse_modality, read_input
    from medimg.cli._spacing import FALLBACK_NOTE, pixel_spacing_to_xyz

    given = pixel_spacing_to_xyz(args.pixel_spacing) if args.pixel_spacing else None  # validate before reading
    modality = parse_modality(args.modality)
    image = read_input(args)
    if image.metadata.get("spacing_source") == "default_1mm":
        if given:
            sx, sy, _ = given
            image = image.replace(geometry=image.geometry.replace(spacing=(sx, sy, image.spacing[2])))
            image = image.with_metadata(spacing_source="user")
        else:
            notes.append(FALLBACK_NOTE.format(path=args.input))
    elif args.pixel_spacing:
        notes.append(f"{args.input} states its own pixel spacing; --pixel-spacing was not applied")
    if modality is not None:
        image = image.with_metadata(modality=modality.value)
    return image


def write_analysis(image, result, out: Path, *, source: str, inputs: list[str], notes: list[str]) -> Path:
    """Write the output contract of ``medimg analyze`` for one AnalysisResult into ``out``."""
    import numpy as np

    import medimg
    from medimg.io import write
    from medimg.measure import to_csv
    from medimg.report import ReportSection, image_summary, render_html

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(os.path.abspath(out)).parent / f".{out.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "masks").mkdir(parents=True)
    try:
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
        payload: dict[str, Any] = {
            _MARKER: True,
            "medimg_version": medimg.__version__,
            "pipeline": result.pipeline,
            "input": source,
            "parameters": result.parameters,
            "summary": result.summary,
            "notes": all_notes,
            "masks": mask_files,
            "label_names": {k: {str(i): n for i, n in v.items()} for k, v in result.label_names.items()},
            "measurements": result.measurements,
        }
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
        sections.append(ReportSection("Summary", items=result.summary))
        sections.append(ReportSection("Figures", figures=result.figures))
        if result.measurements:
            cols = _report_columns(result.measurements)
            sections.append(ReportSection(
                "Measurements", text="All values in physical units (names carry the unit); the full table is in "
                "measurements.csv / measurements.json.",
                records=[{k: r.get(k) for k in cols} for r in result.measurements[:200]],
            ))
        sections.append(ReportSection("Outputs", items={"masks": ", ".join(mask_files.values()),
                                                        "measurements": "measurements.json, measurements.csv"}))
        import numpy
        import scipy
        import SimpleITK
        import skimage

        html_text = render_html(result.title, sections, software={
            "medimg": medimg.__version__, "numpy": numpy.__version__, "scipy": scipy.__version__,
            "scikit-image": skimage.__version__, "SimpleITK": SimpleITK.Version.VersionString(),
        })
        (tmp / "report.html").write_text(html_text, encoding="utf-8")
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "report.html"


def _report_columns(records: list[dict[str, Any]]) -> list[str]:
    preferred = ["structure", "label", "volume_ml", "area_mm2", "surface_area_mm2", "longest_diameter_mm",
                 "short_axis_diameter_mm", "max_cross_section_area_mm2", "ellipse_circumference_mm",
                 "head_circumference_mm", "perimeter_mm", "mean_hu", "std_hu", "mean_intensity",
                 "centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]
    present = set().union(*(r.keys() for r in records))
    return [c for c in preferred if c in present]


def combine_cases(results: list[tuple[str, Any]]):
    """One AnalysisResult for a folder of cases: records and masks prefixed by case, per-case summaries."""
    from medimg.pipelines import AnalysisResult

    first = results[0][1]
    names = {r.pipeline for _, r in results}
    if len(names) > 1:
        from medimg.core.errors import InvalidParameterError

        raise InvalidParameterError("the cases of the folder need different pipelines", parameter="input",
                                    found=sorted(names), fix="analyse one kind of image per folder, or pass "
                                    "--pipeline")
    records, masks, figures, label_names, notes = [], {}, {}, {}, []
    for case, r in results:
        records += [{"case": case, **rec} for rec in r.measurements]
        for name, mask in r.masks.items():
            masks[f"{case}_{name}"] = mask
            label_names[f"{case}_{name}"] = r.label_names.get(name, {})
        if len(figures) < 6:
            figures.update({f"{case}: {cap}": fig for cap, fig in r.figures.items()})
        notes += [f"{case}: {n}" for n in r.notes]
    summary = {"cases": len(results), "per_case": [{"case": c, **r.summary} for c, r in results]}
    return AnalysisResult(pipeline=first.pipeline, title=f"{first.title} ({len(results)} cases)",
                          method=first.method, parameters=first.parameters, masks=masks, label_names=label_names,
                          measurements=records, summary=summary, figures=figures, notes=notes)


def run(args: argparse.Namespace) -> int:
    from medimg.cli.cmd_predict import _read_case, case_files
    from medimg.pipelines import run_pipeline

    out = Path(args.out)
    check_output_folder(out, "measurements.json", _MARKER, "analyze")
    notes: list[str] = []
    src = Path(args.input)
    cases = case_files(src) if src.is_dir() else {}
    if cases:  # a folder of image files (not a DICOM folder): one analysis per case, one report
        results = []
        for case, files in sorted(cases.items()):
            image = _read_case(files)
            results.append((case, run_pipeline(image, args.pipeline)))
        result = combine_cases(results)
    else:
        image = load_input(args, notes)
        result = run_pipeline(image, args.pipeline)
    report = write_analysis(image, result, out, source=str(args.input), inputs=[args.input], notes=notes)
    if not args.quiet:
        print(f"pipeline:     {result.pipeline} ({result.parameters.get('pipeline_choice', '')})")
        for k, v in result.summary.items():
            if not isinstance(v, (dict, list)):
                print(f"{k + ':':<14}{v}")
        for row in result.summary.get("per_case", [])[:20]:
            print("  " + ", ".join(f"{k} {v}" for k, v in row.items()))
        for note in notes + result.notes:
            print(f"note: {note}")
        print(f"report:       {report}")
    return 0
