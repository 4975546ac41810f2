"""Which pipeline `medimg analyze` chooses (or refuses) on whole real data sets (issue 12, item 2).

For every image of BUSI (breast ultrasound), BCCD (blood smears), HC18 (fetal head ultrasound) and DSB 2018
(nuclei; split into fluorescence, grey bright-field and colour/H&E by the rule of benchmarks/classical.py),
``medimg.pipelines.choose_pipeline`` is asked; the share of each set sent to each pipeline or refused is written
to benchmarks/results/pipeline_choice.json and printed as a Markdown table.

The applies rules' thresholds (``medimg.pipelines.nuclei`` FLUORESCENCE_*, the sector test of
``medimg.pipelines.fetal_head.applies``) were chosen on the even-indexed images (sorted file names, per data set);
the table reports the odd-indexed ones (``--half odd``, the default). ``--half even`` shows the tuning half and
``--half all`` every image. The shipped CT and hippocampus samples are checked too.

Expected: BUSI and BCCD refused, HC18 -> fetal_head, DSB fluorescence -> nuclei, DSB colour and bright-field
refused (the nuclei pipeline is not validated there), CT sample -> ct_body, hippocampus sample -> hippocampus.

Usage: python benchmarks/pipeline_choice.py [--half odd|even|all] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from _results import write_section  # noqa: E402

EXPECTED = {"busi": "refused", "bccd": "refused", "hc18": "fetal_head", "dsb fluorescence": "nuclei",
            "dsb bright-field (grey)": "refused", "dsb colour (H&E / stained)": "refused"}
COLUMNS = ("ct_body", "hippocampus", "fetal_head", "nuclei", "refused")


def _dsb_type(voxels: np.ndarray) -> str:
    """benchmarks/classical.py nuclei_type: colour if RGB channels differ, fluorescence if median grey < 100."""
    v = voxels[:, 0].astype(np.float32)
    if v.shape[0] >= 3 and float(np.abs(v[0] - v[1]).mean() + np.abs(v[1] - v[2]).mean()) > 1.0:
        return "dsb colour (H&E / stained)"
    grey = 0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2] if v.shape[0] >= 3 else v[0]
    return "dsb fluorescence" if float(np.median(grey)) < 100 else "dsb bright-field (grey)"


def _sets(data: Path) -> dict[str, list[Path]]:
    busi = data / "breast_ultrasound_busi"
    return {
        "busi": [p for sub in ("benign", "malignant", "normal") for p in sorted((busi / sub).glob("*.png"))],
        "bccd": sorted((data / "blood_cells_bccd" / "JPEGImages").glob("*.jpg")),
        "hc18": sorted((data / "fetal_head_hc18" / "images").glob("*.png")),
        "dsb": sorted((data / "nuclei_dsb2018" / "images").glob("*.png")),
    }


def _half(paths: list[Path], half: str) -> list[Path]:
    return paths if half == "all" else paths[(0 if half == "even" else 1)::2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--half", choices=("odd", "even", "all"), default="odd")
    ap.add_argument("--data", default=os.environ.get("MEDIMG_DATA", str(HERE.parent.parent / "shared" / "data")))
    ap.add_argument("--out", default=str(HERE / "results" / "pipeline_choice.json"))
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    from medimg.core.errors import InvalidParameterError
    from medimg.io import read
    from medimg.pipelines import choose_pipeline

    data = Path(args.data)
    counts: dict[str, Counter] = {}
    wrong: dict[str, list[str]] = {}
    t0 = time.perf_counter()
    for name, paths in _sets(data).items():
        for path in _half(paths, args.half):
            image = read(path)
            group = _dsb_type(image.voxels) if name == "dsb" else name
            try:
                choice = choose_pipeline(image)[0]
            except InvalidParameterError:
                choice = "refused"
            counts.setdefault(group, Counter())[choice] += 1
            if choice != EXPECTED[group]:
                wrong.setdefault(group, []).append(f"{path.name}: {choice}")
    samples = {}
    from medimg.pipelines.demo import sample_path

    hippo = HERE.parent / "src" / "medimg" / "data" / "hippocampus_sample" / "hippocampus_001.nii.gz"
    for label, path, expected in (("shipped CT sample", sample_path(), "ct_body"),
                                  ("shipped hippocampus sample", hippo, "hippocampus")):
        choice = choose_pipeline(read(path))[0]
        samples[label] = {"choice": choice, "expected": expected}
    rows = {}
    for group, c in counts.items():
        n = sum(c.values())
        rows[group] = {"images": n, "expected": EXPECTED[group],
                       "share": {k: round(c.get(k, 0) / n, 4) for k in COLUMNS},
                       "correct": round(c.get(EXPECTED[group], 0) / n, 4), "not_expected": wrong.get(group, [])}
    section = {"half": args.half, "tuned_on": "even-indexed images of each data set (sorted file names)",
               "sets": rows, "shipped_samples": samples, "seconds": round(time.perf_counter() - t0, 1)}
    write_section(Path(args.out), args.half, section, {"platform": platform.platform()})
    print(f"\n{args.half}-indexed images ({'tuning half' if args.half == 'even' else 'not tuned on'}"
          f"{'' if args.half != 'all' else ', both halves'}):\n")
    print("| data set | images | expected | " + " | ".join(COLUMNS) + " |")
    print("|---|---:|---|" + "---:|" * len(COLUMNS))
    for group, r in rows.items():
        cells = " | ".join(f"{100 * r['share'][k]:.1f}%" for k in COLUMNS)
        print(f"| {group} | {r['images']} | {r['expected']} | {cells} |")
    for label, s in samples.items():
        print(f"{label}: {s['choice']} (expected {s['expected']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
