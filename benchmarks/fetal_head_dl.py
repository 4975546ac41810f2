"""Fetal head (HC18, 2D ultrasound): a model trained by `medimg train segment` against the classical ellipse fit.

    medimg train segment ../shared/data/fetal_head_hc18 -o runs/fetal_head --fold 0 --minutes 18 \
        --iterations 100000 --group-by '^(\\d+)_' --cache runs/cache \
        --set 'target_spacing=[0.5,0.5,1.0]' --set 'patch_size=[256,320]'
    python benchmarks/fetal_head_dl.py --model runs/fetal_head --fold 0

The split keeps every image of one fetus (``010_HC``, ``010_2HC``) in one fold (``--group-by``), and both
methods are scored on the validation images of the model's fold (never trained on). Pixel sizes come from
pixel_size_and_HC.csv, the reference head circumference (HC) from the same file.

* U-Net: ``predict_image`` (pixel-size aware: images are resampled to 0.5 mm for the network and the mask is
  returned on the original grid), largest connected component, then the moment ellipse of the mask
  (``measure.fit_ellipse``) and its circumference (Ramanujan).
* Classical: the ``fetal_head`` pipeline's skull-echo RANSAC ellipse fit (benchmarks/classical.py), whose two
  parameters were chosen on fetuses 000-079; fold-0 images of those fetuses are reported separately as well.

Reported per method: Dice against the filled-ellipse mask, |HC - reference| in mm (mean, median, 90th
percentile, share within 5 mm), failures (no ellipse) and gross errors (Dice < 0.5).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TUNING_FETUSES = 80  # the classical pipeline's parameters were chosen on fetuses 000-079 (benchmarks/classical.py)


def _summary(rows: list[dict], method: str) -> dict:
    import numpy as np

    dices = np.array([r[method]["dice"] for r in rows])
    diffs = np.array([r[method]["abs_diff_mm"] for r in rows if r[method]["abs_diff_mm"] is not None])
    out = {"images": len(rows), "dice_mean": float(dices.mean()), "dice_median": float(np.median(dices)),
           "failures_no_fit": int(sum(r[method]["abs_diff_mm"] is None for r in rows)),
           "gross_errors_dice_below_0_5": int((dices < 0.5).sum()),
           "seconds_mean": statistics.fmean(r[method]["seconds"] for r in rows)}
    if diffs.size:
        out.update(hc_abs_diff_mm_mean=float(diffs.mean()), hc_abs_diff_mm_median=float(np.median(diffs)),
                   hc_abs_diff_mm_p90=float(np.percentile(diffs, 90)), hc_within_5mm=float((diffs <= 5).mean()))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--fold", default="0")
    ap.add_argument("--max-cases", type=int, default=None)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "fetal_head_dl.json")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    sys.path.insert(0, str(HERE))
    import numpy as np
    import torch

    from classical import _quiet
    from medimg.infer.postprocess import keep_largest_component
    from medimg.io import read
    from medimg.measure.ellipse import fit_ellipse
    from medimg.metrics import dice
    from medimg.pipelines.fetal_head import ellipse_circumference_mm, fit_head_ellipse
    from medimg.plans import SegDataset
    from medimg.tasks.segment.predict import load_model, predict_image
    from medimg.testing import data_root

    _quiet()
    root = data_root() / "fetal_head_hc18"
    with open(root / "pixel_size_and_HC.csv", newline="") as fh:
        ref = {r["filename"]: (float(r["pixel size(mm)"]), float(r["head circumference (mm)"]))
               for r in csv.DictReader(fh)}
    ds = SegDataset.open(root)
    val = json.loads((args.model / "splits.json").read_text())["folds"][int(args.fold)]["val"][: args.max_cases]
    model = load_model(args.model, folds=[f"fold_{args.fold}"])
    rows = []
    for case in val:
        pixel_mm, hc_ref = ref[f"{case}.png"]
        image = ds.load_image(case)
        truth = np.asarray(ds.load_label(case).voxels[0, 0]) > 0
        row = {"id": case, "pixel_mm": pixel_mm, "hc_ref_mm": hc_ref, "tuning_fetus": int(case[:3]) < TUNING_FETUSES}

        t0 = time.perf_counter()
        labels = np.asarray(predict_image(model, image).labels.voxels[0, 0])
        mask = keep_largest_component(labels, [1]) > 0 if labels.any() else labels > 0
        fit = fit_ellipse(mask, (pixel_mm, pixel_mm))
        row["unet"] = {"dice": dice(mask, truth), "hc_mm": None if fit is None else fit.circumference_mm,
                       "seconds": round(time.perf_counter() - t0, 3)}

        raw = read(root / "images" / f"{case}.png", spacing=(pixel_mm, pixel_mm))
        t0 = time.perf_counter()
        ell = fit_head_ellipse(raw.voxels[:, 0].astype(np.float32).mean(axis=0))
        row["classical"] = {"dice": 0.0 if ell is None else dice(ell[0] > 0, truth),
                            "hc_mm": None if ell is None else ellipse_circumference_mm(ell[1], (pixel_mm, pixel_mm)),
                            "seconds": round(time.perf_counter() - t0, 3)}
        for method in ("unet", "classical"):
            hc = row[method]["hc_mm"]
            row[method]["abs_diff_mm"] = None if hc is None else abs(hc - hc_ref)
        rows.append(row)
        print(f"{case:8s} unet Dice {row['unet']['dice']:.3f} |dHC| {row['unet']['abs_diff_mm'] or float('nan'):6.2f}"
              f" | classical Dice {row['classical']['dice']:.3f} "
              f"|dHC| {row['classical']['abs_diff_mm'] or float('nan'):6.2f}", flush=True)

    groups = {"all": rows, "fetuses_080_and_later": [r for r in rows if not r["tuning_fetus"]]}
    summary = {g: {m: _summary(sel, m) for m in ("unet", "classical")} for g, sel in groups.items() if sel}
    metrics = json.loads((args.model / f"fold_{args.fold}" / "metrics.json").read_text())
    result = {
        "benchmark": "fetal_head_dl",
        "command": "python benchmarks/fetal_head_dl.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
        "training": {k: metrics.get(k) for k in ("iterations", "training_minutes", "stop_reason", "n_train")},
        "split": "fold 0 of 5, grouped by fetus (--group-by '^(\\d+)_'); splits.json in the model folder",
        "n_val_images": len(rows), "n_val_fetuses": len({r["id"][:3] for r in rows}),
        "published_context": "HC18 challenge top methods: ~1.7-2 mm mean absolute HC difference on the hidden test "
                             "set (van den Heuvel et al., PLoS ONE 2018); not comparable (other images).",
        "summary": summary, "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    for group, s in summary.items():
        for method, m in s.items():
            nan = float("nan")
            print(f"{group:24s} {method:10s} n={m['images']:3d} Dice {m['dice_mean']:.3f} |dHC| mean "
                  f"{m.get('hc_abs_diff_mm_mean', nan):.2f} median {m.get('hc_abs_diff_mm_median', nan):.2f} mm, "
                  f"within 5 mm {m.get('hc_within_5mm', nan):.2f}, gross {m['gross_errors_dice_below_0_5']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
