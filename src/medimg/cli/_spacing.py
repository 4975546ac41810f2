"""`--pixel-spacing MM|ROW,COL` for commands that take 2D images (PNG/JPEG/TIFF carry no spacing)."""

from __future__ import annotations

import math
import sys

from medimg.core.errors import InvalidParameterError

__all__ = ["pixel_spacing_to_xyz", "add_pixel_spacing_option", "warn_fallback"]



def warn_fallback(notes: list[str], *, quiet: bool) -> None:
    """Print the spacing fallback notes among ``notes`` on stderr, one line each, unless ``quiet``."""
    if quiet:
        return
    for note in notes:
        if note.startswith("no pixel spacing in "):
            print(f"warning: {note}", file=sys.stderr)


def pixel_spacing_to_xyz(text: str, *, option: str = "--pixel-spacing") -> tuple[float, float, float]:
    """Parse 'MM' or 'ROW,COL' (DICOM PixelSpacing order) into a (sx, sy, sz) spacing with sz = 1.

    ROW is the spacing between rows (= sy), COL between columns (= sx).

    >>> pixel_spacing_to_xyz("0.5")
    (0.5, 0.5, 1.0)
    >>> pixel_spacing_to_xyz("0.6,0.4")
    (0.4, 0.6, 1.0)
    """
    parts = [p.strip() for p in str(text).replace(";", ",").split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError as exc:
        raise InvalidParameterError(
            "not a pixel spacing", parameter=option, expected="MM or ROW,COL in mm, e.g. 0.5 or 0.6,0.4",
            found=repr(text), fix=f"write {option} 0.5 or {option} 0.6,0.4",
        ) from exc
    if len(values) not in (1, 2) or not all(math.isfinite(v) and v > 0 for v in values):
        raise InvalidParameterError(
            "invalid pixel spacing", parameter=option, expected="one or two positive numbers (mm): MM or ROW,COL",
            found=repr(text), fix=f"write {option} 0.5 or {option} 0.6,0.4",
        )
    row, col = (values[0], values[0]) if len(values) == 1 else (values[0], values[1])
    return (col, row, 1.0)


def add_pixel_spacing_option(parser) -> None:
    """Add ``--pixel-spacing`` to an argparse parser."""
    parser.add_argument(
        "--pixel-spacing", metavar="MM|ROW,COL",
        help="pixel size in mm for 2D files that carry none (PNG/JPEG/TIFF): one value, or row,col spacing as "
        "in DICOM PixelSpacing. Without it such files are measured at 1 mm per pixel, and the output says so",
    )
