"""`medimg warp IMAGE TRANSFORM --reference REF -o OUT`: apply a saved ITK transform to an image or label map."""

from __future__ import annotations

import argparse


def add_parser(subparsers, *, parents, help: str) -> None:  # noqa: A002 - argparse's own keyword
    p = subparsers.add_parser(
        "warp", parents=parents, help=help,
        description="Resample IMAGE onto REF's grid through TRANSFORM (an ITK .tfm/.h5 file, e.g. OUT/transform.* "
        "from `medimg register`, mapping REF points to IMAGE points). Intensities: linear, float32; --labels: "
        "nearest neighbour, values kept, 0 outside.",
    )
    p.add_argument("image", help="image or label map to warp (on the moving side of the transform)")
    p.add_argument("transform", help="ITK transform file (.tfm, .txt, .h5)")
    p.add_argument("--reference", required=True, metavar="REF", help="image whose grid the output takes (fixed)")
    p.add_argument("-o", "--out", required=True, help="output image file, e.g. warped.nii.gz")
    p.add_argument("--labels", action="store_true", help="IMAGE is a label map: nearest-neighbour interpolation")


def run(args: argparse.Namespace) -> int:
    from medimg.classical.registration import load_transform, warp
    from medimg.io import read, write
    from medimg.io.files import check_input

    for p in (args.image, args.transform, args.reference):
        check_input(p, allow_dir=True)
    transform = load_transform(args.transform)
    image = read(args.image, kind="label" if args.labels else None)
    reference = read(args.reference)
    out = warp(image, transform, reference, labels=True if args.labels else None)
    write(out, args.out, inputs=[args.image, args.transform, args.reference])
    if not args.quiet:
        print(f"wrote {args.out} ({'nearest' if out.kind.value == 'label' else 'linear'}, "
              f"{transform.GetName()})")
    return 0
