"""`medimg verify DATASET`: check a training dataset and list every problem and warning.

Checks each case: files present and readable, image and label on the same grid, label values declared in
dataset.json, NaN/Inf voxels, consistent channel counts, empty label maps (warning); 2D layouts: images without a
mask. Exit code 0 when the dataset can be trained on, 2 otherwise.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers, *, parents, help: str) -> None:  # noqa: A002
    p = subparsers.add_parser("verify", parents=parents, help=help, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", help="dataset folder (nnU-Net raw layout or images/ + masks/)")
    p.add_argument("--max-cases", type=int, default=None, help="check only the first N cases")
    p.add_argument("--foreground-only", action="store_true", help="2D layouts: binarise instance maps")


def run(args: argparse.Namespace) -> int:
    import sys

    from medimg.plans import SegDataset, verify_dataset

    ds = SegDataset.open(args.dataset, foreground_only=args.foreground_only)
    report = verify_dataset(ds, max_cases=args.max_cases)
    text = report.to_text()
    if not args.quiet or not report.ok:
        print(text, file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 2
