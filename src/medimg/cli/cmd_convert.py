"""`medimg convert IN OUT`: read any supported input, write the format of OUT's extension."""

from __future__ import annotations

import argparse

from medimg.cli._args import add_read_options, read_input


def add_parser(subparsers, *, parents, help: str) -> None:  # noqa: A002 - argparse's own keyword
    p = subparsers.add_parser(
        "convert", parents=parents, help=help,
        description="Convert an image. The output format follows OUT's extension (.nii.gz, .nii, .nrrd, .mha, "
        ".mhd, .png, .jpg, .tif, .npz); OUT without extension writes a DICOM series folder (inputs that came "
        "from DICOM only). OUT is written atomically and never overwrites IN. Outputs keep no identifying values: "
        "no source path, source UIDs or series description in .npz metadata; a DICOM series gets new UIDs and a "
        "header de-identified with the PS3.15 basic profile (no names, IDs, dates or private tags). "
        "--keep-identifiers keeps them.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("input", help="image file, DICOM file/folder/DICOMDIR/zip")
    from medimg.cli._output import add_output_argument

    add_output_argument(p, help="output file (or folder for DICOM)")
    p.add_argument("--label", action="store_true", help="the input is a label map (kept integer)")
    p.add_argument("--keep-identifiers", action="store_true",
                   help="keep identifying values in the output (patient/study attributes, source UIDs, private tags "
                   "of a DICOM header; source path, UIDs and series description in .npz metadata)")
    add_read_options(p)


def run(args: argparse.Namespace) -> int:
    from medimg.cli._output import resolve_output
    from medimg.core.enums import Kind
    from medimg.io import write
    from medimg.io.deid import KEEP_IDENTIFIERS, deidentify_image

    resolve_output(args)
    image = read_input(args)
    if args.keep_identifiers:
        image = image.with_metadata(**{KEEP_IDENTIFIERS: True})
    else:
        image = deidentify_image(image)
    if args.label:
        image = image.replace(kind=Kind.LABEL)
    out = write(image, args.output, inputs=[args.input])
    if not args.quiet:
        sx, sy, sz = image.geometry.spacing
        print(f"wrote {out}: {image.spatial_shape[::-1]} voxels (x, y, z) at {sx:.4g} x {sy:.4g} x {sz:.4g} mm")
    return 0
