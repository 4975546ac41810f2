"""`medimg analyze IN -o OUT`: the main job. Chooses a pipeline, runs it, writes masks, measurements and a report.

Output contract (scripts may rely on it)::

    OUT/report.html          one self-contained HTML report (figures embedded)
    OUT/measurements.json    {"medimg_version", "pipeline", "input", "summary", "notes", "warnings",
                             "measurements": [...]}: one record per structure or instance; snake_case keys, units
                             in the name (2D images without a pixel size: _px / _px2 instead of _mm / _mm2)
    OUT/measurements.csv     the same records, one row each
    OUT/masks/<name>.nii.gz  label maps (3D), or OUT/masks/<name>.png (2D, uint8/uint16 label values)

With ``--classifier MODEL`` the image is also classified (as ``medimg predict`` does: calibrated probabilities,
predictive entropy and mutual information, an explanation map), before the pipeline runs, so that a model that
does not fit the image fails fast::

    OUT/report.html          gains a "Classification" section (probability table, decision, uncertainty, figure)
    OUT/measurements.json    gains "classification": ClassPrediction.to_dict() + model folder, folds, temperatures
    OUT/explain/<stem>.png   the explanation figure (2D: overlay; 3D: montage of the most salient slices)
    OUT/explain/<stem>.nii.gz  the explanation map on the input's grid

Without ``--pipeline`` every pipeline's applies rule is asked and the most confident one that was validated on
such input runs; when none applies, nothing is written and the error says what the image looks like. A pipeline
forced with ``--pipeline`` on an input outside what it was validated on runs with a warning (report, JSON
``warnings``, stderr unless -q).

``--pipeline none`` runs only the classification (empty masks/ and measurements); with ``--classifier`` and no
``--pipeline``, an image that no pipeline is chosen for is classified only, with a note.

OUT is built in a temporary folder beside it and moved into place when everything succeeded. An existing OUT
is replaced only when it is an earlier ``medimg analyze`` output; any other non-empty folder is refused.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_MARKER = "medimg_analyze"
_PIPELINES = ("ct_body", "hippocampus", "nuclei", "fetal_head")


@dataclass(frozen=True)
class Classification:
    """A loaded classification model and its prediction for the analysed image."""

    model: Any  # medimg.tasks.classify.predictor.ClassificationModel
    prediction: Any  # medimg.tasks.classify.writer.ClassPrediction


def add_parser(subparsers, *, parents, help: str) -> None:  # noqa: A002
    from medimg.cli._args import add_precision_option, add_read_options
    from medimg.cli._classify import EXPLAIN_CHOICES, UNCERTAINTY_CHOICES
    from medimg.cli._spacing import add_pixel_spacing_option

    p = subparsers.add_parser(
        "analyze", parents=parents, help=help,
        description="Read a study, choose an analysis pipeline from its modality and content (CT body/lungs/"
        "bone, microscopy nuclei, fetal head ultrasound), run it and write OUT/report.html, "
        "OUT/measurements.json, OUT/measurements.csv and OUT/masks/. With --classifier MODEL the image is also "
        "classified: a Classification section in the report, a classification entry in measurements.json and "
        "the explanation map in OUT/explain/.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("input", help="image file or DICOM file/folder/zip")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--pipeline", choices=[*_PIPELINES, "none"], default=None,
                   help="skip the automatic choice; none: no segmentation, only the --classifier model")
    p.add_argument("--modality", metavar="MOD", default=None,
                   help="modality when the file records none (e.g. CT for a NIfTI in HU, US, SM)")
    add_pixel_spacing_option(p)
    add_precision_option(p)
    add_read_options(p)
    c = p.add_argument_group("classification")
    c.add_argument("--classifier", metavar="MODEL", default=None,
                   help="also classify the image with this model folder (`medimg train classify`) or shipped model "
                   "name: calibrated class probabilities, decision, uncertainty and an explanation map "
                   "(one image, not a folder of cases)")
    c.add_argument("--classifier-uncertainty", choices=UNCERTAINTY_CHOICES, default="auto",
                   help="uncertainty of the classification: auto takes the fold ensemble, else MC dropout, else "
                   "flip TTA")
    c.add_argument("--classifier-explain", choices=EXPLAIN_CHOICES, default="gradcam",
                   help="explanation map of the predicted class")


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


def apply_pixel_spacing(image, given, path, notes: list[str] | None):
    """``image`` with the --pixel-spacing ``given`` ((sx, sy, sz) or None) applied when it has no spacing of its
    own; the fallback note is added to ``notes`` (when not None) only when no spacing was applied."""
    from medimg.cli._spacing import FALLBACK_NOTE

    if image.metadata.get("spacing_source") == "default_1mm":
        if given:
            sx, sy, _ = given
            image = image.replace(geometry=image.geometry.replace(spacing=(sx, sy, image.spacing[2])))
            image = image.with_metadata(spacing_source="user")
        elif notes is not None and image.is_2d:
            notes.append(FALLBACK_NOTE.format(path=path))
    elif given and notes is not None:
        notes.append(f"{path} states its own pixel spacing; --pixel-spacing was not applied")
    return image


def load_input(args: argparse.Namespace, notes: list[str]):
    """Read the input, apply --pixel-spacing to 2D files without spacing and --modality to files without one."""
    from medimg.cli._args import parse_modality, read_input
    from medimg.cli._spacing import pixel_spacing_to_xyz

    given = pixel_spacing_to_xyz(args.pixel_spacing) if args.pixel_spacing else None  # validate before reading
    modality = parse_modality(args.modality)
    image = apply_pixel_spacing(read_input(args), given, args.input, notes)
    if modality is not None:
        image = image.with_metadata(modality=modality.value)
    return image


def in_pixel_units(image, result):
    """``result`` with its measurements and summary in pixel units (``_px``/``_px2`` keys) when ``image`` is 2D
    with no known pixel size; unchanged otherwise (see :func:`medimg.measure.table.to_pixel_units`)."""
    from medimg.measure.table import spacing_unknown, to_pixel_units

    if spacing_unknown(image):
        result.measurements = to_pixel_units(result.measurements)
        result.summary = to_pixel_units(result.summary)
    return result


def write_analysis(image, result, out: Path, *, source: str, inputs: list[str], notes: list[str],
                   classification: Classification | None = None) -> Path:
    """Write the output contract of ``medimg analyze`` for one AnalysisResult (and a classification) into ``out``."""
    import numpy as np

    import medimg
    from medimg.io import write
    from medimg.io.files import atomic_output_dir
    from medimg.measure import to_csv
    from medimg.report import ReportSection, image_summary, render_html
    from medimg.tasks.classify.writer import classification_record, classification_section

    # a fresh temporary folder; replaces OUT only when it is an earlier analyze output and holds no input
    with atomic_output_dir(out, inputs=inputs, replace_marker=("measurements.json", _MARKER)) as tmp:
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
        payload: dict[str, Any] = {
            _MARKER: True,
            "medimg_version": medimg.__version__,
            "pipeline": result.pipeline,
            "input": source,
            "parameters": result.parameters,
            "summary": result.summary,
            "notes": all_notes,
            "warnings": list(result.warnings),
            "masks": mask_files,
            "label_names": {k: {str(i): n for i, n in v.items()} for k, v in result.label_names.items()},
            "measurements": result.measurements,
        }
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
    records, masks, figures, label_names, notes, warnings = [], {}, {}, {}, [], []
    for case, r in results:
        records += [{"case": case, **rec} for rec in r.measurements]
        for name, mask in r.masks.items():
            masks[f"{case}_{name}"] = mask
            label_names[f"{case}_{name}"] = r.label_names.get(name, {})
        if len(figures) < 6:
            figures.update({f"{case}: {cap}": fig for cap, fig in r.figures.items()})
        notes += [f"{case}: {n}" for n in r.notes]
        warnings += [f"{case}: {w}" for w in r.warnings]
    summary = {"cases": len(results), "per_case": [{"case": c, **r.summary} for c, r in results]}
    return AnalysisResult(pipeline=first.pipeline, title=f"{first.title} ({len(results)} cases)",
                          method=first.method, parameters=first.parameters, masks=masks, label_names=label_names,
                          measurements=records, summary=summary, figures=figures, notes=notes, warnings=warnings)


def _with_option(exc, *, parameter: str, path: str | None = None, what: str | None = None,
                 fix: str | None = None):
    """The same kind of error, naming the command-line option (and file) that caused it."""
    return type(exc)(what or exc.what, path=exc.path if path is None else path, parameter=parameter,
                     expected=exc.expected, found=exc.found, fix=fix or exc.fix)


def load_classifier_option(args: argparse.Namespace):
    """Resolve and load the ``--classifier`` model; every error names the option."""
    from medimg.core.errors import InvalidParameterError, MedimgError
    from medimg.plans.model_folder import model_task
    from medimg.tasks.classify.predictor import load
    from medimg.zoo import resolve_model

    try:
        model_dir = resolve_model(args.classifier)
    except MedimgError as exc:
        raise _with_option(exc, parameter="--classifier") from exc
    has_plan = (model_dir / "plan.json").is_file()
    try:
        task = model_task(model_dir) if has_plan else None
    except MedimgError:
        task = None
    if task != "classify":
        raise InvalidParameterError(
            "not a classification model", path=model_dir, parameter="--classifier",
            expected="a folder written by `medimg train classify` (plan.json with task binary, multiclass or "
                     "multilabel, and fold_*/model.pt) or a shipped classifier name",
            found="a plan.json of another task (a segmentation model?)" if has_plan else "a folder without plan.json",
            fix="give a classification model; segmentation models run through `medimg predict` or --pipeline")
    try:
        return load(model_dir)
    except MedimgError as exc:
        raise _with_option(exc, parameter="--classifier") from exc


def classify_image(args: argparse.Namespace, model, image) -> Classification:
    """Classify the input image as `medimg predict` would; a misfit (dimensions, channels, options) is one error
    that names the option, the image and the model."""
    from medimg.core.errors import InvalidParameterError
    from medimg.tasks.classify.predictor import predict_samples

    dims = int(model.plan.dims)
    if image.is_2d != (dims == 2):
        have = "2D" if image.is_2d else "3D"
        raise InvalidParameterError(
            f"the image is {have} but classifier '{model.name}' takes {dims}D images", path=args.input,
            parameter="--classifier", expected=f"a {dims}D image",
            found=f"a {have} image of (Z, Y, X) {image.spatial_shape}",
            fix=f"use a classifier trained on {have} images, or leave --classifier out")
    options = {"--uncertainty": "--classifier-uncertainty", "--explain": "--classifier-explain"}
    try:
        preds = predict_samples(model, {Path(args.input).name or str(args.input): image},
                                uncertainty=args.classifier_uncertainty, explain=args.classifier_explain,
                                precision=args.precision)
    except InvalidParameterError as exc:
        if exc.parameter in options:
            fix = exc.fix or ""
            for old, new in options.items():
                fix = re.sub(rf"{re.escape(old)}\b", new, fix)
            raise _with_option(exc, parameter=options[exc.parameter], fix=fix) from exc
        what = re.sub(r"^sample '[^']*': ", "", exc.what)
        raise _with_option(exc, parameter="--classifier", path=args.input,
                           what=f"the image does not fit classifier '{model.name}': {what}",
                           fix=f"{exc.fix or 'give an image like the training images'}, or use a classifier "
                               "trained on images like this one") from exc
    return Classification(model=model, prediction=preds[0])


def classification_only(reason: str):
    """The AnalysisResult of ``--pipeline none``: no masks, no measurements; the classification is the result."""
    from medimg.pipelines import AnalysisResult

    return AnalysisResult(pipeline="none", title="Image classification",
                          method="No analysis pipeline was run; the image was classified only (see Classification).",
                          parameters={"pipeline_choice": reason}, masks={}, label_names={}, measurements=[])


def run(args: argparse.Namespace) -> int:
    from medimg.cli._classify import quiet_figure_logs
    from medimg.cli._spacing import warn_fallback
    from medimg.cli.cmd_predict import _read_case, case_files
    from medimg.core.errors import InvalidParameterError
    from medimg.io.files import check_outputs_apart
    from medimg.pipelines import choose_pipeline, run_pipeline
    from medimg.tasks.classify.writer import prediction_line

    out = Path(args.out)
    check_output_folder(out, "measurements.json", _MARKER, "analyze")
    check_outputs_apart([out], [args.input])  # before any work: replacing OUT must never delete the input
    if args.pipeline == "none" and not args.classifier:
        raise InvalidParameterError("nothing to run", parameter="--pipeline", expected="--classifier MODEL with "
                                    "--pipeline none", found="--pipeline none alone",
                                    fix="add --classifier MODEL, or leave --pipeline out for the automatic choice")
    notes: list[str] = []
    src = Path(args.input)
    cases = case_files(src) if src.is_dir() else {}
    if cases and args.classifier:
        raise InvalidParameterError(
            "--classifier classifies one image", path=src, parameter="--classifier",
            expected="one image file or DICOM series", found=f"a folder of {len(cases)} cases",
            fix=f"classify a folder with `medimg predict {args.classifier} {src} OUT`, or analyse one case")
    quiet_figure_logs(args.debug)
    model = load_classifier_option(args) if args.classifier else None  # before reading: a wrong model fails fast
    classification = None
    if cases:  # a folder of image files (not a DICOM folder): one analysis per case, one report
        from medimg.cli._spacing import FALLBACK_NOTE, pixel_spacing_to_xyz

        given = pixel_spacing_to_xyz(args.pixel_spacing) if args.pixel_spacing else None
        results, unknown = [], []
        for case, files in sorted(cases.items()):
            image = apply_pixel_spacing(_read_case(files), given, files[0], None)
            if image.is_2d and image.metadata.get("spacing_source") == "default_1mm":
                unknown.append(case)
            try:
                result = run_pipeline(image, args.pipeline, precision=args.precision)
            except InvalidParameterError as exc:  # name the case that no pipeline applies to
                raise _with_option(exc, parameter=exc.parameter or "--pipeline", path=str(files[0])) from exc
            results.append((case, in_pixel_units(image, result)))
        if unknown:
            what = src if len(unknown) == len(cases) else f"{len(unknown)} of the {len(cases)} cases of {src}"
            notes.append(FALLBACK_NOTE.format(path=what))
        result = combine_cases(results)
    else:
        image = load_input(args, notes)
        pipeline = args.pipeline
        if model is not None:
            classification = classify_image(args, model, image)  # before the pipeline: a misfit fails fast
            if pipeline is None:
                try:
                    choose_pipeline(image)
                except InvalidParameterError as exc:
                    pipeline = "none"
                    notes.append(f"{exc.what.split(';')[0]} (found {exc.found}): only the classification ran")
        if pipeline == "none":
            result = classification_only("chosen by the user (--pipeline none)" if args.pipeline == "none" else
                                         "no automatic pipeline for this image")
        else:
            result = in_pixel_units(image, run_pipeline(image, pipeline, precision=args.precision))
    report = write_analysis(image, result, out, source=str(args.input), inputs=[args.input], notes=notes,
                            classification=classification)
    warn_fallback(notes, quiet=args.quiet)
    if not args.quiet:
        for i, warning in enumerate(result.warnings):
            if i == 5:
                print(f"warning: ... and {len(result.warnings) - 5} more (see the report)", file=sys.stderr)
                break
            print(f"warning: {warning}", file=sys.stderr)
        print(f"pipeline:     {result.pipeline} ({result.parameters.get('pipeline_choice', '')})")
        for k, v in result.summary.items():
            if not isinstance(v, (dict, list)):
                print(f"{k + ':':<14}{v}" if len(k) < 13 else f"{k}: {v}")
        for row in result.summary.get("per_case", [])[:20]:
            print("  " + ", ".join(f"{k} {v}" for k, v in row.items()))
        if classification is not None:
            print(f"classifier:   {classification.model.name}: {prediction_line(classification.prediction)}")
        for note in notes + result.notes:
            if not note.startswith("no pixel spacing in "):  # on stderr already
                print(f"note: {note}")
        print(f"report:       {report}")
    return 0
