"""`medimg evaluate PRED GT -o OUT [--task T]`: score predictions against references.

``--task segmentation`` (default) scores label maps (:mod:`medimg.metrics.evaluate`); the other tasks
(instance, classification, detection, quality, registration) live in :mod:`medimg.metrics.evaluate_tasks`.
This module only parses options, calls the library, writes the files atomically and prints.
"""

from __future__ import annotations

import argparse


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except None (task-dependent defaults are stated in the option's help)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def add_parser(subparsers, *, parents, help: str) -> None:  # noqa: A002 - argparse's own keyword
    p = subparsers.add_parser(
        "evaluate", parents=parents, help=help,
        description="Compare predictions with references. --task segmentation (default): label maps, two "
        "files or two folders whose files are matched by case id (extensions and nnU-Net _0000 suffixes "
        "ignored); writes OUT/per_case.csv (one row per case and label: dice, iou, hd95_mm, assd_mm, nsd, ...), "
        "OUT/summary.json (mean, std, median, seeded 95% bootstrap interval per label and metric; inf distances "
        "of one-sided empty masks are left out and counted) and OUT/boxplot.png. "
        "--task instance: instance label maps (files or folders) -> F1 at --iou, DSB mean AP, AJI per case. "
        "--task classification: PRED a CSV 'case' + 'score' (binary) or 'score_<class>' columns, GT a CSV "
        "'case,label' -> AUC, accuracy, balanced accuracy, sensitivity/specificity at --threshold, confusion "
        "matrix, ECE. --task detection: folders of per-image VOC .xml or .json box files matched by stem "
        "-> AP per class, mAP at --iou, FROC; OUT/per_image.csv. --task quality: images (files or folders) "
        "-> PSNR, SSIM. --task registration: landmark CSVs 'case,x,y,z' (mm, same order per case) -> TRE; "
        "--field adds Jacobian determinant statistics of a displacement field. Every task writes "
        "OUT/summary.json and a CSV table. OUT must be new or empty; it appears only complete.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("pred", help="prediction: label map / image file or folder, CSV, or folder of box files")
    p.add_argument("gt", help="reference, of the same kind as PRED")
    p.add_argument("-o", "--out", "--output", dest="output", metavar="OUT", required=True,
                   help="output folder (new or empty)")
    p.add_argument("--task", choices=("segmentation", "instance", "classification", "detection", "quality",
                                      "registration"), default="segmentation", help="what PRED and GT hold")
    p.add_argument("--labels", metavar="L1,L2", help="segmentation: labels to score (default: every non-zero "
                   "label found)")
    p.add_argument("--tolerance-mm", type=float, default=1.0, help="segmentation: normalised surface Dice "
                   "tolerance (mm)")
    p.add_argument("--iou", metavar="T1,T2", help="instance: IoU thresholds of F1 (default 0.5,0.75); "
                   "detection: one IoU threshold of AP/FROC (default 0.5)")
    p.add_argument("--threshold", type=float, help="classification (binary): score >= threshold is positive "
                   "(default 0.5)")
    p.add_argument("--bins", type=int, help="classification: bins of the expected calibration error (default 15)")
    p.add_argument("--data-range", type=float, help="quality: span of possible values (default: max - min of "
                   "each reference)")
    p.add_argument("--field", metavar="FILE", help="registration: displacement field (NIfTI/MHA vector image, "
                   "2 or 3 components in mm) for Jacobian statistics")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap intervals")
    p.add_argument("--bootstrap", type=int, default=2000, help="number of bootstrap resamples")


def _parse_labels(text: str | None) -> list[int] | None:
    from medimg.core.errors import InvalidParameterError

    if text is None:
        return None
    try:
        labels = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise InvalidParameterError("not a list of integers", parameter="--labels", expected="e.g. 1,2",
                                    found=repr(text), fix="write --labels like 1,2") from exc
    if not labels or min(labels) < 1:
        raise InvalidParameterError("labels must be positive integers", parameter="--labels",
                                    expected="e.g. 1,2", found=repr(text), fix="leave out background (0)")
    return labels


#: option -> tasks it applies to (options left at None elsewhere)
_TASK_OPTIONS = {"labels": ("segmentation",), "iou": ("instance", "detection"), "threshold": ("classification",),
                 "bins": ("classification",), "data_range": ("quality",), "field": ("registration",)}


def _parse_iou(text: str | None, task: str) -> tuple[float, ...]:
    from medimg.core.errors import InvalidParameterError

    if text is None:
        return (0.5, 0.75) if task == "instance" else (0.5,)
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise InvalidParameterError("not a list of numbers", parameter="--iou", expected="e.g. 0.5,0.75",
                                    found=repr(text), fix="write --iou like 0.5,0.75") from exc
    if not values or any(not 0 <= v < 1 for v in values) or (task == "detection" and len(values) != 1):
        raise InvalidParameterError(
            "invalid IoU threshold(s)", parameter="--iou",
            expected="one number in [0, 1)" if task == "detection" else "numbers in [0, 1), e.g. 0.5,0.75",
            found=repr(text), fix="e.g. --iou 0.5")
    return values


def _check_task_options(args: argparse.Namespace) -> None:
    from medimg.core.errors import InvalidParameterError

    for dest, tasks in _TASK_OPTIONS.items():
        if getattr(args, dest, None) is not None and args.task not in tasks:
            flag = "--" + dest.replace("_", "-")
            raise InvalidParameterError(f"{flag} does not apply to --task {args.task}", parameter=flag,
                                        expected=f"--task {' or '.join(tasks)}", found=f"--task {args.task}",
                                        fix=f"leave {flag} out or choose --task {tasks[0]}")


def _run_task(args: argparse.Namespace) -> int:
    import json
    import sys

    from medimg.io.files import atomic_output_dir
    from medimg.metrics import evaluate_tasks as et

    common = {"seed": args.seed, "n_bootstrap": args.bootstrap}
    if args.task == "instance":
        result = et.evaluate_instance_task(args.pred, args.gt, iou_thresholds=_parse_iou(args.iou, "instance"),
                                           **common)
    elif args.task == "classification":
        result = et.evaluate_classification_task(
            args.pred, args.gt, threshold=0.5 if args.threshold is None else args.threshold,
            n_bins=15 if args.bins is None else args.bins)
    elif args.task == "detection":
        result = et.evaluate_detection_task(args.pred, args.gt, iou_threshold=_parse_iou(args.iou, "detection")[0])
    elif args.task == "quality":
        result = et.evaluate_quality_task(args.pred, args.gt, data_range=args.data_range, **common)
    else:
        result = et.evaluate_registration_task(args.pred, args.gt, field_path=args.field, **common)
    for missing, what in ((result.missing_pred, "reference case(s) without prediction"),
                          (result.missing_gt, "prediction(s) without reference")):
        if missing and not args.quiet:
            print(f"medimg evaluate: warning: {len(missing)} {what}, left out: {', '.join(missing)}",
                  file=sys.stderr)
    inputs = [args.pred, args.gt] + ([args.field] if args.task == "registration" and args.field else [])
    with atomic_output_dir(args.output, inputs=inputs) as tmp:
        for name, text in result.tables.items():
            (tmp / name).write_text(text, encoding="utf-8")
        (tmp / "summary.json").write_text(json.dumps(result.summary, indent=2, allow_nan=False), encoding="utf-8")
    if not args.quiet:
        parts = [f"{k} {'n/a' if v is None else f'{v:.4g}'}" for k, v in result.headline.items()]
        print(f"{args.task}: {', '.join(parts)}")
        print(f"wrote {args.output}: {', '.join([*result.tables, 'summary.json'])}")
    return 0


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from medimg.core.errors import InvalidParameterError
    from medimg.io.files import atomic_output_dir
    from medimg.metrics.evaluate import box_plot, evaluate_cases, match_cases, rows_to_csv, summarize

    task = getattr(args, "task", "segmentation")
    args.task = task
    _check_task_options(args)
    if task != "segmentation":
        return _run_task(args)
    labels = _parse_labels(args.labels)
    if not args.tolerance_mm >= 0:
        raise InvalidParameterError("invalid tolerance", parameter="--tolerance-mm", expected="a number >= 0",
                                    found=args.tolerance_mm, fix="give the tolerance in mm, e.g. 1.0")
    match = match_cases(args.pred, args.gt)
    for missing, what in ((match.missing_pred, "reference case(s) without prediction"),
                          (match.missing_gt, "prediction(s) without reference")):
        if missing and not args.quiet:
            print(f"medimg evaluate: warning: {len(missing)} {what}, left out: {', '.join(missing)}",
                  file=sys.stderr)
    rows = evaluate_cases(match, labels=labels, tolerance_mm=args.tolerance_mm)
    summary = summarize(rows, seed=args.seed, n_bootstrap=args.bootstrap)
    summary.update(tolerance_mm=args.tolerance_mm, pred=str(args.pred), gt=str(args.gt),
                   cases=[cid for cid, _, _ in match.pairs], missing_predictions=match.missing_pred,
                   missing_references=match.missing_gt,
                   definitions={"hd95_mm": "max of the two directed 95th percentiles (MONAI)",
                                "assd_mm": "mean of both directed surface distance sets pooled (MONAI)",
                                "nsd": "surface voxels within tolerance_mm / all surface voxels (MONAI)",
                                "empty": "both empty: dice 1, distances 0; one empty: dice 0, distances inf "
                                         "(left out of the statistics and counted in n_excluded_inf)"})
    with atomic_output_dir(args.output, inputs=[args.pred, args.gt]) as tmp:
        (tmp / "per_case.csv").write_text(rows_to_csv(rows), encoding="utf-8")
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False), encoding="utf-8")
        box_plot(rows, tmp / "boxplot.png")
    if not args.quiet:
        for lab, block in summary["per_label"].items():
            d, h = block["dice"], block["hd95_mm"]
            hd = "n/a" if h["mean"] is None else f"{h['mean']:.3g} mm"
            print(f"label {lab}: dice {d['mean']:.4f} [{d['ci_low']:.4f}, {d['ci_high']:.4f}], hd95 {hd} "
                  f"({d['n']} cases)")
        print(f"wrote {args.output}: per_case.csv, summary.json, boxplot.png")
    return 0
