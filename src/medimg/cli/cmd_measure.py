"""`medimg measure IMAGE LABELS`: per-label volumes, areas, diameters and intensity statistics in physical units."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from medimg.cli._spacing import add_pixel_spacing_option, pixel_spacing_to_xyz, warn_fallback

logger = logging.getLogger(__name__)

_COLUMNS_3D = ("volume_ml", "surface_area_mm2", "longest_diameter_mm", "short_axis_diameter_mm",
               "max_cross_section_area_mm2")
_COLUMNS_2D = ("area_mm2", "perimeter_mm", "longest_diameter_mm", "short_axis_diameter_mm",
               "ellipse_circumference_mm")


def add_parser(subparsers, *, parents, help: str) -> None:  # noqa: A002 - argparse's own keyword
    p = subparsers.add_parser(
        "measure", parents=parents, help=help,
        description="Measure every label of LABELS in physical units (volume mL, surface area mm^2, diameters "
        "mm, centroid LPS mm; 2D: area, perimeter, ellipse fit) with intensity statistics from IMAGE (HU for CT). "
        "Prints a table; --json/--csv write every field, atomically.",
    )
    p.add_argument("image", help="intensity image on the same grid as LABELS")
    p.add_argument("labels", help="label map (integer values, 0 = background)")
    p.add_argument("--json", metavar="PATH", help="write the records and the settings used as JSON")
    p.add_argument("--csv", metavar="PATH", help="write one row per record as CSV")
    p.add_argument("--instances", action="store_true",
                   help="measure each connected component of each label separately, and summarise counts/sizes")
    p.add_argument("--modality", metavar="MOD", help="modality when the file has none (e.g. CT: statistics in HU)")
    add_pixel_spacing_option(p)


def _read(path: str, *, kind: str | None, spacing: tuple[float, float, float] | None, notes: list[str]):
    from medimg.io import read
    from medimg.measure.table import SPACING_FALLBACK_NOTE

    image = read(path, spacing=spacing, kind=kind)
    source = image.metadata.get("spacing_source")
    if source == "default_1mm" and image.is_2d:
        notes.append(SPACING_FALLBACK_NOTE.format(path=path))
    elif spacing is not None and source not in ("user", None) and image.is_2d:
        notes.append(f"{path} states its own pixel spacing ({source}); --pixel-spacing was not applied to it")
    return image


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.4e}"
    return str(value)


def _table(records: list[dict[str, Any]], columns: list[str]) -> str:
    rows = [columns] + [[_fmt(r.get(c)) for c in columns] for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows)


def _write_outputs(args: argparse.Namespace, payload: dict[str, Any], records: list[dict[str, Any]],
                   inputs: list[str], to_json: Any, to_csv: Any) -> None:
    """Write --json and --csv together: both paths are checked before either file appears, and a failure in one
    leaves neither behind (each is written to a temporary file; both are renamed only when both succeeded)."""
    import contextlib

    from medimg.core.errors import InvalidParameterError
    from medimg.io.files import atomic_output, same_path

    if args.json and args.csv and same_path(args.json, args.csv):
        raise InvalidParameterError("--json and --csv name the same file", parameter="--csv",
                                    expected="two different files", found=args.csv,
                                    fix="give --csv another file name, e.g. measurements.csv")
    with contextlib.ExitStack() as stack:
        temps = {flag: stack.enter_context(atomic_output(path, inputs=inputs))
                 for flag, path in (("json", args.json), ("csv", args.csv)) if path}
        if "json" in temps:
            to_json(payload, temps["json"])
        if "csv" in temps:
            to_csv(records, temps["csv"])


def run(args: argparse.Namespace) -> int:
    from medimg.measure import instance_summary, measure_labels, to_csv, to_json
    from medimg.measure.table import SPACING_FALLBACK_NOTE, pixel_unit_key, spacing_unknown

    spacing = pixel_spacing_to_xyz(args.pixel_spacing) if args.pixel_spacing else None
    from medimg.cli._args import parse_modality

    modality = parse_modality(args.modality)
    notes: list[str] = []
    image = _read(args.image, kind=None, spacing=spacing, notes=notes)
    labels = _read(args.labels, kind="label", spacing=spacing, notes=notes)
    fallback = [n for n in notes if n.startswith("no pixel spacing in ")]
    if len(fallback) == 2:  # image and labels: one warning for both
        notes.remove(fallback[1])
        notes[notes.index(fallback[0])] = SPACING_FALLBACK_NOTE.format(path=f"{args.image} and {args.labels}")
    if modality is not None:
        image = image.with_metadata(modality=modality.value)
    records = measure_labels(labels, image=image, instances=args.instances)
    summary = instance_summary(labels, split_components=True) if args.instances else None
    inputs = [args.image, args.labels]
    sx, sy, sz = labels.geometry.spacing
    payload: dict[str, Any] = {
        "image": args.image, "labels": args.labels, "dimensions": 2 if labels.is_2d else 3,
        "spacing_mm": [sx, sy, sz], "spacing_source": labels.metadata.get("spacing_source"),
        "units": "px" if labels.is_2d and spacing_unknown(labels, image) else "mm",
        "notes": notes, "records": records,
    }
    if summary is not None:
        payload["instance_summary"] = summary
    _write_outputs(args, payload, records, inputs, to_json, to_csv)
    warn_fallback(notes, quiet=args.quiet)
    if args.quiet:
        return 0
    for note in notes:
        if not note.startswith("no pixel spacing in "):  # on stderr already
            print(f"note: {note}")
    if not records:
        print(f"no labels in {args.labels}: every voxel is 0 (nothing to measure)")
    else:
        stat = "mean_hu" if "mean_hu" in records[0] else "mean_intensity"
        cols = ["label"] + (["instance"] if args.instances else []) + ["voxel_count"]
        px = labels.is_2d and spacing_unknown(labels, image)
        cols += [pixel_unit_key(c) if px else c for c in (_COLUMNS_2D if labels.is_2d else _COLUMNS_3D)]
        cols += [stat] if stat in records[0] else []
        print("spacing unknown: lengths in px, areas in px2" if px else
              f"spacing {sx:.4g} x {sy:.4g}" + ("" if labels.is_2d else f" x {sz:.4g}") + " mm")
        print(_table(records, cols))
    if summary is not None:
        print(f"instances: {summary['count']}; size ({summary['size_unit']}) min {_fmt(summary['size_min'])}, "
              f"median {_fmt(summary['size_median'])}, max {_fmt(summary['size_max'])}")
    for what, path in (("JSON", args.json), ("CSV", args.csv)):
        if path:
            print(f"wrote {what} {path}")
    return 0
