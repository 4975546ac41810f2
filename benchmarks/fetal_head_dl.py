"""Fetal head (HC18, 2D ultrasound): the shipped learned model through `medimg analyze`'s pipeline against the
classical ellipse fit.

    make zoo-fetal-head
    # = medimg train segment ../shared/data/fetal_head_hc18 -o runs/fetal_head --fold 0 --minutes 32 \
    #       --iterations 100000 --group-by '^(\\d+)_' --cache runs/cache --seed 0 \
    #       --set 'target_spacing=[0.5,0.5,1.0]' --set 'patch_size=[256,320]'
    #   then copied into src/medimg/zoo/fetal_head, then:
    python benchmarks/fetal_head_dl.py --model src/medimg/zoo/fetal_head --fold 0

The split keeps every image of one fetus (``010_HC``, ``010_2HC``) in one fold (``--group-by``), and every method
is scored on the validation images of the model's fold (never trained on). Pixel sizes come from
pixel_size_and_HC.csv, the reference head circumference (HC) from the same file.

* learned: the ``fetal_head`` pipeline, i.e. what ``medimg analyze IMAGE --pixel-spacing MM`` runs (the image
  read with the CSV pixel size; the zoo entry pointed at ``--model``): the U-Net mask on the original grid,
  largest component, moment ellipse, Ramanujan circumference. Its quality flag is recorded per image.
* learned, no pixel size: the same pipeline on the PNG read without a pixel size (what ``analyze IMAGE`` without
  ``--pixel-spacing`` does: the network is told 0.128 mm, the result is in pixels); the pixel circumference is
  converted with the CSV pixel size here only to score the segmentation.
* classical: the pipeline's fallback (``classical_head_fit``: skull-echo RANSAC ellipse), whose two parameters
  were chosen on fetuses 000-079; fold-0 images of those fetuses are reported separately as well.

Reported per method: Dice of the pipeline's head mask against the reference filled-ellipse mask, |HC - reference|
in mm (mean, median, 90th percentile, share within 5 mm), failures (no ellipse) and gross errors (Dice < 0.5).
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


METHODS = ("learned", "learned_no_pixel_size", "classical")


def _summary(rows: list[dict], method: str) -> dict:
    import numpy as np

    dices = np.array([r[method]["dice"] for r in rows])
    diffs = np.array([r[method]["abs_diff_mm"] for r in rows if r[method]["abs_diff_mm"] is not None])
    out = {"images": len(rows), "dice_mean": float(dices.mean()), "dice_median": float(np.median(dices)),
           "failures_no_fit": int(sum(r[method]["abs_diff_mm"] is None for r in rows)),
           "gross_errors_dice_below_0_5": int((dices < 0.5).sum()),
           "seconds_mean": statistics.fmean(r[method]["seconds"] for r in rows)}
    if method.startswith("learned"):
        out["method_used"] = {m: sum(r[method]["method"] == m for r in rows)
                              for m in sorted({r[method]["method"] for r in rows})}
        flagged = [r for r in rows if r[method]["quality_flag"] not in ("ok", None)]
        out["flagged"] = len(flagged)
        flagged_diffs = [r[method]["abs_diff_mm"] for r in flagged if r[method]["abs_diff_mm"] is not None]
        if flagged_diffs:
            out["flagged_hc_abs_diff_mm_mean"] = float(np.mean(flagged_diffs))
    if diffs.size:
        out.update(hc_abs_diff_mm_mean=float(diffs.mean()), hc_abs_diff_mm_median=float(np.median(diffs)),
                   hc_abs_diff_mm_p90=float(np.percentile(diffs, 90)), hc_within_5mm=float((diffs <= 5).mean()))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="model folder (the recipe's: src/medimg/zoo/fetal_head)")
    ap.add_argument("--fold", default="0")
    ap.add_argument("--max-cases", type=int, default=None)
    ap.add_argument("--tta", action="store_true", help="mirror test-time augmentation in the pipeline")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "fetal_head_dl.json")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    sys.path.insert(0, str(HERE))
    import dataclasses
    import logging

    import numpy as np
    import torch

    import medimg.pipelines.fetal_head as fh
    import medimg.zoo as zoo
    from classical import _quiet
    from medimg.io import read
    from medimg.metrics import dice
    from medimg.tasks.segment.data import SegDataset
    from medimg.testing import data_root

    _quiet()
    logging.disable(logging.WARNING)  # the "no pixel spacing" warning of every PNG read without one
    model_dir = args.model.resolve()
    # the pipeline loads the zoo entry: point it at the model under test
    zoo.ZOO[fh.MODEL_NAME] = dataclasses.replace(zoo.ZOO[fh.MODEL_NAME], folder=os.path.relpath(
        model_dir, zoo.ZOO[fh.MODEL_NAME].path.parent))
    if zoo.ZOO[fh.MODEL_NAME].path.resolve() != model_dir or not zoo.ZOO[fh.MODEL_NAME].available:
        raise SystemExit(f"{model_dir}: not a usable model folder")
    fh.TTA = args.tta
    root = data_root() / "fetal_head_hc18"
    with open(root / "pixel_size_and_HC.csv", newline="") as fh_csv:
        ref = {r["filename"]: (float(r["pixel size(mm)"]), float(r["head circumference (mm)"]))
               for r in csv.DictReader(fh_csv)}
    ds = SegDataset.open(root)
    val = json.loads((model_dir / "splits.json").read_text())["folds"][int(args.fold)]["val"][: args.max_cases]
    rows = []
    for case in val:
        pixel_mm, hc_ref = ref[f"{case}.png"]
        truth = np.asarray(ds.load_label(case).voxels[0, 0]) > 0
        row = {"id": case, "pixel_mm": pixel_mm, "hc_ref_mm": hc_ref, "tuning_fetus": int(case[:3]) < TUNING_FETUSES}
        path = root / "images" / f"{case}.png"

        image = read(path, spacing=(pixel_mm, pixel_mm))  # = analyze IMAGE --pixel-spacing MM
        t0 = time.perf_counter()
        result = fh.fetal_head(image)
        mask = np.asarray(result.masks["head"].voxels[0, 0]) > 0
        row["learned"] = {"dice": dice(mask, truth), "hc_mm": result.summary["head_circumference_mm"],
                          "method": result.summary["method"], "quality_flag": result.summary["quality_flag"],
                          "ellipse_mask_dice": result.summary["ellipse_mask_dice"],
                          "seconds": round(time.perf_counter() - t0, 3)}

        bare = read(path)  # = analyze IMAGE without --pixel-spacing
        t0 = time.perf_counter()
        result = fh.fetal_head(bare)
        mask = np.asarray(result.masks["head"].voxels[0, 0]) > 0
        px = result.summary["head_circumference_px"]
        row["learned_no_pixel_size"] = {
            "dice": dice(mask, truth), "hc_mm": None if px is None else px * pixel_mm,
            "reported_mm": result.summary["head_circumference_mm"], "method": result.summary["method"],
            "quality_flag": result.summary["quality_flag"], "seconds": round(time.perf_counter() - t0, 3)}

        frame = image.voxels[:, 0].astype(np.float32).mean(axis=0)
        t0 = time.perf_counter()
        head = fh.classical_head_fit(frame, (pixel_mm, pixel_mm))
        row["classical"] = {"dice": 0.0 if head is None else dice(head.mask > 0, truth),
                            "hc_mm": None if head is None else head.circumference,
                            "seconds": round(time.perf_counter() - t0, 3)}
        for method in METHODS:
            hc = row[method]["hc_mm"]
            row[method]["abs_diff_mm"] = None if hc is None else abs(hc - hc_ref)
        rows.append(row)
        diff = {m: float("nan") if row[m]["abs_diff_mm"] is None else row[m]["abs_diff_mm"] for m in METHODS}
        print(f"{case:8s} " + " | ".join(f"{m} Dice {row[m]['dice']:.3f} |dHC| {diff[m]:6.2f}" for m in METHODS)
              + f" | flag: {row['learned']['quality_flag']}", flush=True)

    groups = {"all": rows, "fetuses_080_and_later": [r for r in rows if not r["tuning_fetus"]]}
    summary = {g: {m: _summary(sel, m) for m in METHODS} for g, sel in groups.items() if sel}
    metrics = json.loads((model_dir / f"fold_{args.fold}" / "metrics.json").read_text())
    result = {
        "benchmark": "fetal_head_dl",
        "command": "python benchmarks/fetal_head_dl.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
        "scored": "the fetal_head pipeline (medimg analyze) with the model folder as its zoo entry; tta "
                  f"{args.tta}; classical = the pipeline's fallback",
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
            print(f"{group:22s} {method:22s} n={m['images']:3d} Dice {m['dice_mean']:.3f} |dHC| mean "
                  f"{m.get('hc_abs_diff_mm_mean', nan):.2f} median {m.get('hc_abs_diff_mm_median', nan):.2f} mm, "
                  f"within 5 mm {m.get('hc_within_5mm', nan):.2f}, gross {m['gross_errors_dice_below_0_5']}, "
                  f"failures {m['failures_no_fit']}, flagged {m.get('flagged', '-')}, used {m.get('method_used', '-')}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
