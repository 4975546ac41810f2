"""`medimg analyze IN -o OUT`: the main job. Chooses a pipeline, runs it, writes masks, measurements and a report.

The command parses its options, calls :func:`medimg.pipelines.analysis.analyze` and writes the result
(:mod:`medimg.pipelines.writer` holds the output contract: OUT/report.html, OUT/measurements.json and .csv,
OUT/masks/, and OUT/explain/ with a classifier) and prints its summary.

With ``--classifier MODEL`` the image is also classified (as ``medimg predict`` does: calibrated probabilities,
predictive entropy and mutual information, an explanation map), before the pipeline runs, so that a model that
does not fit the image fails fast.

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
import sys
from pathlib import Path

_PIPELINES = ("ct_body", "hippocampus", "nuclei", "fetal_head")


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


def summary_lines(analysis) -> list[str]:
    """What the command prints on stdout about an analysis (before the report line)."""
    from medimg.tasks.classify.writer import prediction_line

    result = analysis.result
    lines = [f"pipeline:     {result.pipeline} ({result.parameters.get('pipeline_choice', '')})"]
    for k, v in result.summary.items():
        if not isinstance(v, (dict, list)):
            lines.append(f"{k + ':':<14}{v}" if len(k) < 13 else f"{k}: {v}")
    for row in result.summary.get("per_case", [])[:20]:
        lines.append("  " + ", ".join(f"{k} {v}" for k, v in row.items()))
    if analysis.classification is not None:
        c = analysis.classification
        lines.append(f"classifier:   {c.model.name}: {prediction_line(c.prediction)}")
    for note in analysis.all_notes:
        if not note.startswith("no pixel spacing in "):  # on stderr already
            lines.append(f"note: {note}")
    return lines


def run(args: argparse.Namespace) -> int:
    from medimg.cli._args import parse_modality, read_input
    from medimg.cli._classify import quiet_figure_logs
    from medimg.cli._spacing import pixel_spacing_to_xyz, warn_fallback
    from medimg.io.cases import case_files
    from medimg.io.files import check_outputs_apart
    from medimg.pipelines.analysis import analyze, load_classifier_model
    from medimg.pipelines.writer import check_output_folder

    out = Path(args.out)
    check_output_folder(out)
    check_outputs_apart([out], [args.input])  # before any work: replacing OUT must never delete the input
    given = pixel_spacing_to_xyz(args.pixel_spacing) if args.pixel_spacing else None  # validate before reading
    modality = parse_modality(args.modality)
    quiet_figure_logs(args.debug)
    src = Path(args.input)
    options = dict(pipeline=args.pipeline, pixel_spacing=given, precision=args.precision,
                   classifier_uncertainty=args.classifier_uncertainty, classifier_explain=args.classifier_explain)
    if src.is_dir() and case_files(src):  # a folder of image files (not a DICOM folder): one analysis per case
        analysis = analyze(src, classifier=args.classifier, source=str(args.input), **options)
    else:
        if args.pipeline == "none" and not args.classifier:
            analysis = analyze(src, **options)  # refuses in one line before anything is read
        model = load_classifier_model(args.classifier) if args.classifier else None  # a wrong model fails fast
        image = read_input(args)
        if modality is not None:
            image = image.with_metadata(modality=modality.value)
        analysis = analyze(image, classifier=model, source=str(args.input), **options)
    analysis.inputs = (str(args.input),)
    analysis.write(out)
    warn_fallback(analysis.notes, quiet=args.quiet)
    if not args.quiet:
        warnings = analysis.result.warnings
        for i, warning in enumerate(warnings):
            if i == 5:
                print(f"warning: ... and {len(warnings) - 5} more (see the report)", file=sys.stderr)
                break
            print(f"warning: {warning}", file=sys.stderr)
        for line in summary_lines(analysis):
            print(line)
        print(f"report:       {out / 'report.html'}")
    return 0
