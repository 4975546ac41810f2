"""`medimg info IN`: format, modality, size, spacing, orientation, intensity range, series list.

Prints no identifying values (no names, IDs, dates or UIDs). The series description (SeriesDescription, free text
that may carry identifying values; the PS3.15 basic profile removes it) is printed only with --show-identifiers;
without it the series table shows the SeriesNumber.
"""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers, *, parents, help: str) -> None:  # noqa: A002
    p = subparsers.add_parser(
        "info", parents=parents, help=help,
        description="Describe an image file or DICOM file/folder/DICOMDIR/zip. A folder with several DICOM "
        "series lists them; pick one with --series to see its details.",
    )
    p.add_argument("input", help="image file or DICOM file/folder/DICOMDIR/zip")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--show-identifiers", action="store_true",
                   help="also print the series description (free text that may identify the patient)")
    from medimg.cli._args import add_read_options

    add_read_options(p)


def _print_series(series: list[dict], *, show: bool) -> None:
    print(f"{len(series)} DICOM series:")
    last = "description" if show else "series number"
    print(f"  {'#':>3}  {'modality':<8} {'size (x, y, z)':<18} {'files':>5}  {last}")
    for s in series:
        size = s.get("size", "")
        size = size if isinstance(size, str) else "x".join(str(v) for v in size)
        number = s.get("series_number")
        tail = s.get("description", "") if show else ("" if number is None else str(number))
        print(f"  {s['index']:>3}  {s.get('modality', ''):<8} {size:<18} {s.get('n_files', ''):>5}  {tail}")


def _series_rows(infos, *, show: bool) -> list[dict]:
    rows = []
    for i, info in enumerate(infos):
        s = dict(info.summary())
        s.pop("series_uid", None)
        s.pop("study_uid", None)
        if not show:
            s.pop("description", None)
        rows.append({"index": i, **s})
    return rows


def run(args: argparse.Namespace) -> int:
    from medimg.cli._args import read_input
    from medimg.io import detect_format
    from medimg.report.summary import image_summary

    fmt = detect_format(args.input)
    series_rows: list[dict] = []
    if fmt == "dicom":
        from medimg.io.dicom import scan_dicom

        infos = scan_dicom(args.input)
        series_rows = _series_rows(infos, show=args.show_identifiers)
        if len(infos) > 1 and args.series is None:
            if args.json:
                print(json.dumps({"format": "dicom", "series": series_rows}, indent=2))
            else:
                _print_series(series_rows, show=args.show_identifiers)
                print("pick one with --series INDEX to see its details")
            return 0
    image = read_input(args)
    summary = {"format": image.metadata.get("source_format", fmt), **image_summary(image)}
    if args.show_identifiers and image.metadata.get("series_description"):  # image summaries never carry it
        summary.setdefault("metadata", {})["series_description"] = str(image.metadata["series_description"])
    else:
        summary.get("metadata", {}).pop("series_description", None)
    for key in ("spacing_source_z", "geometry_note"):  # e.g. a single slice whose thickness was assumed
        if image.metadata.get(key):
            summary.setdefault("metadata", {})[key] = str(image.metadata[key])
    if series_rows:
        summary["series"] = series_rows
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    g = summary
    print(f"format:       {g['format']}")
    meta = g.get("metadata", {})
    if meta.get("modality"):
        print(f"modality:     {meta['modality']}")
    if meta.get("series_description"):
        print(f"description:  {meta['series_description']}")
    print(f"size (x,y,z): {' x '.join(map(str, g['size_xyz']))}, {g['channels']} channel(s), {g['dtype']}, "
          f"{g['kind']}")
    print(f"spacing (mm): {' x '.join(f'{s:.4g}' for s in g['spacing_mm'])}"
          + (f"  [{meta['spacing_source']}]" if meta.get("spacing_source") else ""))
    print(f"orientation:  {g['orientation']}{' (oblique)' if g['oblique'] else ''}, space {g['space']}")
    print(f"origin (mm):  {', '.join(f'{o:.2f}' for o in g['origin_mm'])}")
    print(f"extent (mm):  {' x '.join(f'{e:.1f}' for e in g['extent_mm'])}")
    if "intensity" in g:
        it = g["intensity"]
        unit = " HU" if meta.get("modality") == "CT" else ""
        print(f"intensity:    min {it['min']:.6g}, max {it['max']:.6g}, mean {it['mean']:.6g}{unit} "
              f"(1st-99th percentile {it['p01']:.6g} .. {it['p99']:.6g})")
    if g.get("non_finite_voxels"):
        print(f"warning:      {g['non_finite_voxels']} voxels are NaN or infinite")
    if meta.get("window"):
        print(f"window:       level/width {meta['window']}")
    if meta.get("geometry_note"):
        print(f"note:         {meta['geometry_note']}")
    if meta.get("transfer_syntax"):
        from pydicom.uid import UID

        print(f"transfer:     {UID(meta['transfer_syntax']).name} ({meta['transfer_syntax']})")
    if len(series_rows) > 1:
        _print_series(series_rows, show=args.show_identifiers)
    return 0
