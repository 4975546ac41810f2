"""`medimg verify DATASET`: check a training dataset and list every problem and warning.

Segmentation datasets (nnU-Net raw layout, or images/ + masks/): each case's files present and readable, image and
label on the same grid, label values declared in dataset.json, NaN/Inf voxels, consistent channel counts, empty
label maps (warning); 2D layouts: images without a mask.

Classification datasets (a folder of class folders, a CSV of paths and labels, a MedMNIST .npz): every sample
readable, one dimensionality and channel count, no NaN/Inf, every class present; constant and duplicated images
(warnings, with conflicting labels named).

Exit code 0 when the dataset can be trained on, 2 otherwise.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers, *, parents, help: str) -> None:  # noqa: A002
    p = subparsers.add_parser("verify", parents=parents, help=help, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", help="segmentation dataset folder (nnU-Net raw layout or images/ + masks/), or a "
                   "classification dataset (folder of class folders, CSV, MedMNIST .npz)")
    p.add_argument("--task", choices=["auto", "segment", "classify"], default="auto",
                   help="dataset kind; auto: segmentation layouts are recognised by their folders, anything else "
                   "is read as a classification dataset")
    p.add_argument("--split", default=None, help="classify: split(s) to check, e.g. train (MedMNIST, split folders)")
    p.add_argument("--max-cases", type=int, default=None, help="check only the first N cases")
    p.add_argument("--foreground-only", action="store_true", help="2D layouts: binarise instance maps")


def run(args: argparse.Namespace) -> int:
    import sys

    from medimg.tasks.segment.data import SegDataset, verify_dataset

    if _is_classification(args):
        from medimg.tasks.classify import open_classification_dataset, verify_classification_dataset

        split = None if args.split is None else [s.strip() for s in args.split.split(",") if s.strip()]
        cds = open_classification_dataset(args.dataset, split=split)
        report = verify_classification_dataset(cds, max_samples=args.max_cases)
    else:
        ds = SegDataset.open(args.dataset, foreground_only=args.foreground_only)
        report = verify_dataset(ds, max_cases=args.max_cases)
    text = report.to_text()
    if not args.quiet or not report.ok:
        print(text, file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 2


def _is_classification(args: argparse.Namespace) -> bool:
    from pathlib import Path

    if args.task != "auto":
        return args.task == "classify"
    root = Path(args.dataset)
    if root.is_file():
        return root.suffix.lower() in (".csv", ".tsv", ".npz")
    seg_markers = ("dataset.json", "imagesTr", "labelsTr", "images", "masks", "labels")
    return root.is_dir() and not any((root / m).exists() for m in seg_markers)
