"""Render the benchmark JSON results in benchmarks/results/ as the Markdown tables quoted in BENCHMARKS.md.

    python benchmarks/tables.py io        # prints the I/O table
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _ms(row: dict, reader: str) -> str:
    r = row.get(reader, {})
    return "error" if "error" in r else f"{r['median_s'] * 1000:.1f}"


def _mib(row: dict, reader: str) -> str:
    r = row.get(reader, {})
    return "" if "error" in r else f"{r['peak_rss_added_mib']:.1f}"


def io_table(data: dict) -> str:
    lines = [
        "| input | medimg ms | SimpleITK ms | nibabel ms | time ratio vs SimpleITK | time ratio vs nibabel "
        "| medimg peak MiB | SimpleITK peak MiB | nibabel peak MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in data["rows"]:
        has_nib = "nibabel" in row
        lines.append(
            f"| {row['kind']}: {row['input']} | {_ms(row, 'medimg')} | {_ms(row, 'simpleitk')} | "
            f"{_ms(row, 'nibabel') if has_nib else ''} | {row.get('time_ratio_vs_simpleitk', '')} | "
            f"{row.get('time_ratio_vs_nibabel', '')} | {_mib(row, 'medimg')} | {_mib(row, 'simpleitk')} | "
            f"{_mib(row, 'nibabel') if has_nib else ''} |"
        )
    return "\n".join(lines)


def metrics_table(data: dict) -> str:
    lines = [
        "| input | medimg HD95 ms | MONAI HD95 ms | medpy HD95 ms | HD95 ratio vs MONAI | medimg NSD ms "
        "| MONAI NSD ms | NSD ratio vs MONAI | values agree |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in data["results"]:
        lines.append(
            f"| {r['input']} | {r['medimg_hd95_s'] * 1000:.1f} | {r['monai_hd95_s'] * 1000:.1f} | "
            f"{r['medpy_hd95_s'] * 1000:.1f} | {r['ratio_hd95_vs_monai']:.2f} | {r['medimg_nsd_s'] * 1000:.1f} | "
            f"{r['monai_nsd_s'] * 1000:.1f} | {r['ratio_nsd_vs_monai']:.2f} | {'yes' if r['agree'] else 'NO'} |"
        )
    lines.append(f"\nGeometric mean of the time ratios vs MONAI: HD95 {data['geomean_ratio_hd95_vs_monai']:.2f}, "
                 f"NSD {data['geomean_ratio_nsd_vs_monai']:.2f}.")
    return "\n".join(lines)


TABLES = {"io": io_table, "metrics": metrics_table}


def main() -> None:
    names = sys.argv[1:] or sorted(TABLES)
    for name in names:
        path = RESULTS / f"{name}.json"
        if not path.exists():
            sys.exit(f"{path} not found: run benchmarks/{name}.py first")
        data = json.loads(path.read_text())
        print(f"<!-- {name}: {data.get('command', '')}, {data.get('date', '')} -->")
        print(TABLES[name](data))
        print()


if __name__ == "__main__":
    main()
