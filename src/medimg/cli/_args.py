"""Small argument parsers shared by the subcommands (each raises InvalidParameterError naming the option)."""

from __future__ import annotations

import argparse
import re

from medimg.core.errors import InvalidParameterError


def parse_floats(text: str | None, *, option: str, count: tuple[int, ...] = (2, 3)) -> tuple[float, ...] | None:
    """Parse 'a,b[,c]' into floats; None stays None."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in re.split(r"[,x]", text.strip()))
    except ValueError as exc:
        raise InvalidParameterError(
            "not a list of numbers", parameter=option, expected=f"{' or '.join(map(str, count))} comma-separated "
            "numbers, e.g. 1.5,1.5,2", found=repr(text), fix=f"write {option} like 1.5,1.5,2",
        ) from exc
    if len(values) not in count:
        raise InvalidParameterError(
            "wrong number of values", parameter=option, expected=f"{' or '.join(map(str, count))} values",
            found=f"{len(values)} values ({text})", fix=f"write {option} like 1.5,1.5,2",
        )
    return values


def parse_series(text: str | None) -> str | int | None:
    """--series accepts an index (as listed by `medimg info`) or a SeriesInstanceUID."""
    if text is None:
        return None
    return int(text) if text.isdigit() else text


def add_read_options(parser) -> None:
    """Options every command that reads an image accepts."""
    parser.add_argument("--series", metavar="INDEX|UID",
                        help="DICOM folder with several series: which one to read (see `medimg info`); .npz file: "
                        "KEY[:INDEX], e.g. test:0 for sample 0 of a MedMNIST file's test split")
    # commands with --pixel-spacing (analyze, segment) keep --spacing working but hidden: one visible name there
    pixel = "--pixel-spacing" in getattr(parser, "_option_string_actions", {})
    parser.add_argument("--spacing", metavar="SX,SY[,SZ]",
                        help=argparse.SUPPRESS if pixel else "voxel spacing in mm (x,y[,z] order) for inputs "
                        "without one (PNG/JPEG/TIFF/NPZ, DICOM without PixelSpacing)")
    parser.add_argument("--allow-gaps", action="store_true",
                        help="DICOM: resample a series with uneven slice spacing or a missing slice onto an "
                        "even grid instead of refusing it")


#: The values of --precision (medimg.train.precision.PRECISIONS, spelled out so that the parser does not import torch).
PRECISION_CHOICES = ("auto", "fp32", "bf16")


def add_precision_option(parser) -> None:
    """--precision auto|fp32|bf16, shared by every command that runs or trains a network."""
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                        help="network arithmetic: auto (bf16 only where the CPU computes it natively, AVX-512-BF16 "
                        "or AMX, or on CUDA; fp32 otherwise), fp32, or bf16 (default auto)")


def read_input(args):
    """Read args.input with the shared read options."""
    from medimg.io import read

    return read(
        args.input,
        series=parse_series(getattr(args, "series", None)),
        spacing=parse_floats(getattr(args, "spacing", None), option="--spacing"),
        on_gap="resample" if getattr(args, "allow_gaps", False) else "error",
    )


def parse_modality(text: str | None):
    """--modality: a DICOM modality code (CT, MR, US, ...) or None."""
    from medimg.core.enums import Modality

    if text is None:
        return None
    modality = Modality.parse(text)
    if modality == Modality.UNKNOWN:
        raise InvalidParameterError(
            "unknown modality", parameter="--modality", expected=", ".join(m.value for m in Modality),
            found=repr(text), fix="write e.g. --modality CT",
        )
    return modality


def load_input(args, notes: list[str]):
    """Read args.input with the shared read options, then apply --pixel-spacing to a 2D file without a pixel size
    (else note the pixel-unit fallback in ``notes``) and --modality to a file that records none."""
    from medimg.cli._spacing import pixel_spacing_to_xyz
    from medimg.pipelines.analysis import apply_pixel_spacing

    given = pixel_spacing_to_xyz(args.pixel_spacing) if getattr(args, "pixel_spacing", None) else None
    modality = parse_modality(getattr(args, "modality", None))  # both validated before reading
    image = apply_pixel_spacing(read_input(args), given, args.input, notes)
    if modality is not None:
        image = image.with_metadata(modality=modality.value)
    return image
