"""`medimg predict MODEL IN OUT`: segment a file, a folder of cases, or a DICOM series with a trained model.

MODEL is a model folder (from `medimg train segment`) or a shipped model name (`medimg models`). IN is an image
file, a DICOM series folder, or a folder of case files (nnU-Net naming: CASE_0000.nii.gz, CASE_0001.nii.gz, ...
are the channels of CASE). For a folder, OUT is a folder and gets one label file per case, named like the case
without the channel suffix.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

_IMAGE_EXT = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png", ".tif", ".tiff", ".jpg", ".jpeg", ".npz")


def add_parser(subparsers, *, parents, help: str) -> None:  # noqa: A002
    from medimg.cli._args import add_read_options

    p = subparsers.add_parser("predict", parents=parents, help=help, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="model folder or shipped model name")
    p.add_argument("input", help="image file, DICOM series folder, or folder of cases")
    p.add_argument("output", help="label file (or folder for a folder input)")
    p.add_argument("--tta", action="store_true", help="mirror test-time augmentation (slower, slightly better)")
    p.add_argument("--overlap", type=float, default=0.5, help="sliding-window overlap, 0..0.9")
    p.add_argument("--probabilities", metavar="PATH", help="also write class probabilities (4D NIfTI)")
    p.add_argument("--uncertainty", metavar="PATH", help="also write the predictive entropy map")
    p.add_argument("--no-postprocess", action="store_true", help="skip largest-component postprocessing")
    p.add_argument("--folds", default=None, help="comma-separated folds to ensemble (default: all trained)")
    add_read_options(p)


def _ext(name: str) -> str:
    low = name.lower()
    return next((e for e in _IMAGE_EXT if low.endswith(e)), "")


def case_files(folder: Path) -> dict[str, list[Path]]:
    """Group the image files of a folder by case id (the _0000 channel suffix removed), channels in order."""
    cases: dict[str, list[Path]] = {}
    for f in sorted(folder.iterdir()):
        ext = _ext(f.name)
        if not ext or f.name.startswith("."):
            continue
        stem = f.name[: -len(ext)]
        m = re.fullmatch(r"(.+)_(\d{4})", stem)
        cases.setdefault(m.group(1) if m else stem, []).append(f)
    return cases


def _read_case(files: list[Path]):
    import numpy as np

    from medimg.io import read

    images = [read(f) for f in files]
    for other, f in zip(images[1:], files[1:]):
        images[0].check_same_grid(other, what=f"channel files '{files[0].name}' and '{f.name}'")
    if len(images) == 1:
        return images[0]
    return images[0].replace(voxels=np.concatenate([im.voxels for im in images]))


def run(args: argparse.Namespace) -> int:
    from medimg.cli._args import read_input
    from medimg.core.errors import InvalidParameterError
    from medimg.io import write
    from medimg.tasks.segment.predict import load_model, predict_image
    from medimg.zoo import resolve_model

    if not 0 <= args.overlap < 1:
        raise InvalidParameterError("overlap out of range", parameter="--overlap", expected="0 <= overlap < 1",
                                    found=args.overlap)
    model = load_model(resolve_model(args.model), folds=args.folds.split(",") if args.folds else None)
    src = Path(args.input)
    post = False if args.no_postprocess else None
    batch = src.is_dir() and bool(case_files(src))
    if not batch:
        image = read_input(args)
        pred = predict_image(model, image, tta=args.tta, overlap=args.overlap,
                             probabilities=bool(args.probabilities), uncertainty=bool(args.uncertainty),
                             largest_component=post)
        write(pred.labels, args.output, inputs=[args.input])
        if args.probabilities:
            write(pred.probabilities, args.probabilities, inputs=[args.input])
        if args.uncertainty:
            write(pred.uncertainty, args.uncertainty, inputs=[args.input])
        if not args.quiet:
            print(f"wrote {args.output} ({model.name}, folds {', '.join(model.folds)})")
        return 0
    from medimg.io._files import atomic_output_dir

    cases = case_files(src)
    with atomic_output_dir(args.output, inputs=[src]) as tmp:
        for n, (case, files) in enumerate(sorted(cases.items()), 1):
            image = _read_case(files)
            pred = predict_image(model, image, tta=args.tta, overlap=args.overlap, largest_component=post)
            ext = ".png" if pred.labels.is_2d and _ext(files[0].name) in (".png", ".tif", ".tiff", ".jpg",
                                                                           ".jpeg") else ".nii.gz"
            write(pred.labels, tmp / f"{case}{ext}")
            if not args.quiet:
                print(f"[{n}/{len(cases)}] {case}{ext}")
    return 0
