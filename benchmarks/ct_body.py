"""CT body pipeline against TotalSegmentator on every CT in the shared data: lung, body and gas.

Each CT goes through ``medimg analyze`` (the command itself, ``medimg.cli.main``), and the written
``masks/tissues.nii.gz`` and ``measurements.json`` are compared with TotalSegmentator's label map for the same
scan (a model's output, not manual truth; label ids of TotalSegmentator v2 "total"):

* lung: our label 2 against the five lung lobes (10-14): volumes and Dice;
* body: TotalSegmentator has no body mask for these scans, so we report which share of all its labelled voxels
  lies inside our body mask (every organ must), and the summary/table body volumes (they must be equal);
* gas: which share of our gas (label 3) lies in TotalSegmentator's stomach, small bowel, duodenum or colon
  (6, 18, 19, 20); the rest lies at their edges (partial volume) or in other air inside the body.

CTs: the 20-slice DICOM series shipped as the demo sample (TotalSegmentator's ``example_seg_dicom``), the
122x101x112 abdominal CT (``example_seg_fast_force_split``) and its 30-slice top (``example_seg``). The chest
crops around the aorta and the pulmonary artery and the 10 soft-tissue-sarcoma CT crops (IBSI) have no lung
reference; their lines give our numbers and notes for plausibility only.

    python benchmarks/ct_body.py                  # writes benchmarks/results/ct_body.json
    python benchmarks/ct_body.py --quick          # only the three CTs with a TotalSegmentator label map
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TS_LUNG = [10, 11, 12, 13, 14]
TS_GUT = [6, 18, 19, 20]


def _cases(root: Path, quick: bool) -> list[tuple[str, Path, Path | None]]:
    from medimg.pipelines.demo import sample_path

    ref = root / "ct_mr_samples_totalsegmentator" / "tests" / "reference_files"
    cases = [
        ("demo sample: 20-slice DICOM series (upper abdomen)", sample_path(), ref / "example_seg_dicom.nii.gz"),
        ("example_ct: 122x101x112 at 3 mm (abdomen-pelvis, lung bases)", ref / "example_ct.nii.gz",
         ref / "example_seg_fast_force_split.nii.gz"),
        ("example_ct_sm: 122x101x30 at 3 mm (top of example_ct)", ref / "example_ct_sm.nii.gz",
         ref / "example_seg.nii.gz"),
    ]
    if not quick:
        cases += [
            ("chest crop around the aorta, 1.5 mm", ref / "aorta_report/test_result/models/ct_cropped.nii.gz", None),
            ("chest crop around the pulmonary artery, 1.5 mm", ref / "pulmonary_report/models/ct_cropped.nii.gz",
             None),
        ]
        cases += [(f"sarcoma crop {p.parent.name} (IBSI)", p, None)
                  for p in sorted((root / "sts_ct_pet_mr_ibsi").glob("STS_*/CT_image.nii.gz"))]
    return [c for c in cases if c[1].exists()]


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return "medimg/data/" + path.name  # the sample shipped inside the package


def _analyze(path: Path, out: Path) -> tuple[dict, np.ndarray, object]:
    from medimg.cli.main import main
    from medimg.io import read

    code = main(["analyze", str(path), "-o", str(out), "--pipeline", "ct_body", "-q"])
    if code != 0:
        raise SystemExit(f"medimg analyze {path} exited {code}")
    payload = json.loads((out / "measurements.json").read_text())
    tissues = read(out / "masks" / "tissues.nii.gz", kind="label")
    return payload, tissues.voxels[0], tissues


def _on_grid(seg_path: Path, grid) -> np.ndarray:
    from medimg.io import read
    from medimg.preprocess.spatial import resample_to

    seg = read(seg_path, kind="label")
    try:
        grid.check_same_grid(seg)
    except Exception:  # noqa: BLE001 - another voxel order (NIfTI LAS against DICOM LPS): resample exactly
        seg = resample_to(seg, grid, interpolation="nearest")
    return seg.voxels[0]


def run(quick: bool) -> dict:
    from medimg.testing.data import data_root

    root = data_root()
    if root is None:
        raise SystemExit("shared data not found: set MEDIMG_DATA")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, path, seg_path) in enumerate(_cases(root, quick)):
            t0 = time.perf_counter()
            payload, tissues, grid = _analyze(path, Path(tmp) / f"case{i}")
            seconds = time.perf_counter() - t0
            s = payload["summary"]
            table = {m["structure"]: m for m in payload["measurements"]}
            vml = float(np.prod(grid.geometry.spacing)) / 1000.0
            row = {
                "ct": name, "input": _rel(path, root), "shape_zyx": list(tissues.shape),
                "spacing_mm": [round(v, 3) for v in grid.geometry.spacing],
                "seconds": round(seconds, 1),
                "ours": {k: s[k] for k in ("body_volume_ml", "lung_volume_ml", "lung_parts", "gas_volume_ml",
                                           "bone_volume_ml")},
                "table_body_volume_ml": round(float(table["body"]["volume_ml"]), 2),
                "summary_equals_table": s["body_volume_ml"] == round(float(table["body"]["volume_ml"]), 2),
                "notes": payload["notes"],
            }
            if seg_path is not None:
                seg = _on_grid(seg_path, grid)
                ref_lung = np.isin(seg, TS_LUNG)
                lung, gas, body = tissues == 2, tissues == 3, tissues > 0
                denom = lung.sum() + ref_lung.sum()
                labelled = seg > 0
                row["totalsegmentator"] = {
                    "reference": _rel(seg_path, root),
                    "lung_volume_ml": round(float(ref_lung.sum() * vml), 2),
                    "lung_dice": round(float(2 * (lung & ref_lung).sum() / denom), 4) if denom else None,
                    "lung_both_empty": bool(denom == 0),
                    "gut_volume_ml": round(float(np.isin(seg, TS_GUT).sum() * vml), 2),
                    "our_gas_in_ts_gut_fraction": round(float(np.isin(seg[gas], TS_GUT).mean()), 4)
                    if gas.any() else None,
                    "our_gas_in_ts_lung_fraction": round(float(ref_lung[gas].mean()), 4) if gas.any() else None,
                    "ts_labelled_inside_our_body_fraction": round(float(body[labelled].mean()), 4),
                }
            rows.append(row)
            print(json.dumps(row)[:400], flush=True)
    return {"cases": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(HERE / "results" / "ct_body.json"))
    ap.add_argument("--quick", action="store_true", help="only the CTs with a TotalSegmentator label map")
    args = ap.parse_args(argv)
    import platform

    result = run(args.quick)
    result["machine"] = {"python": platform.python_version(), "platform": platform.platform()}
    result["measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    result["command"] = "python benchmarks/ct_body.py" + (" --quick" if args.quick else "")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
