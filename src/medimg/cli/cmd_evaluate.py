"""`medimg evaluate PRED GT -o OUT`: score predicted label maps against references (a pair or two folders)."""

from __future__ import annotations

import argparse


def add_parser(subparsers, *, parents, help: str) -> None:  # noqa: A002 - argparse's own keyword
    p = subparsers.add_parser(
        "evaluate", parents=parents, help=help,
        description="Compare predicted label maps with reference label maps: two files, or two folders whose "
        "files are matched by case id (extensions and nnU-Net _0000 suffixes ignored). Writes OUT/per_case.csv "
        "(one row per case and label: dice, iou, hd95_mm, assd_mm, nsd, ...), OUT/summary.json (mean, std, "
        "median, seeded 95%% bootstrap interval per label and metric; inf distances of one-sided empty masks "
        "are left out and counted) and OUT/boxplot.png. OUT must be new or empty; it appears only complete.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("pred", help="predicted label map file, or folder of them")
    p.add_argument("gt", help="reference label map file, or folder of them")
    p.add_argument("-o", "--output", required=True, help="output folder (new or empty)")
    p.add_argument("--labels", metavar="L1,L2", help="labels to score (default: every non-zero label found)")
    p.add_argument("--tolerance-mm", type=float, default=1.0, help="normalised surface Dice tolerance (mm)")
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


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from medimg.core.errors import InvalidParameterError
    from medimg.io._files import atomic_output_dir
    from medimg.metrics.evaluate import box_plot, evaluate_cases, match_cases, rows_to_csv, summarize

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
