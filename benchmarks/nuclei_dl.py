"""Nuclei (2D): a model trained by `medimg train segment` against the classical Otsu + watershed baseline.

    medimg train segment ../shared/data/nuclei_dsb2018 -o runs/nuclei --foreground-only --fold 0 --minutes 15 \
        --iterations 100000 --cache runs/cache
    python benchmarks/nuclei_dl.py --model runs/nuclei --fold 0

Both methods are scored on the validation images of the model's fold (never trained on), per image type (the
grouping rule of benchmarks/classical.py). The model predicts the nucleus foreground; touching nuclei are split
into instances by the same post-processing as the classical pipeline (fill holes, drop objects under 15 px,
watershed on the distance transform), so the comparison isolates the foreground step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def evaluate(model_dir: Path, fold: str = "0", *, max_cases: int | None = None, classical: bool = True,
             log: bool = True) -> list[dict]:
    """Score a nuclei model (and, with ``classical``, Otsu + watershed) on the validation images of its fold."""
    sys.path.insert(0, str(REPO / "src"))
    sys.path.insert(0, str(HERE))
    import numpy as np

    from classical import _instances_from_foreground, _quiet, nuclei_type
    from medimg.io import read
    from medimg.metrics import dice, dsb_average_precision, instance_f1
    from medimg.pipelines.nuclei import segment_nuclei
    from medimg.tasks.segment.data import SegDataset
    from medimg.tasks.segment.predictor import load_model, predict_image
    from medimg.testing import data_root

    _quiet()
    root = data_root() / "nuclei_dsb2018"
    ds = SegDataset.open(root, foreground_only=True)
    val = json.loads((model_dir / "splits.json").read_text())["folds"][int(fold)]["val"][:max_cases]
    model = load_model(model_dir, folds=[f"fold_{fold}"])
    rows = []
    for case in val:
        image, _ = ds.load(case)
        raw = read(root / "images" / f"{case}.png", spacing=(1.0, 1.0))
        gt = np.asarray(read(root / "labels" / f"{case}.png", spacing=(1.0, 1.0)).voxels[0, 0]).astype(np.int64)
        row = {"id": case, "type": nuclei_type(raw.voxels), "n_gt": int(len(np.unique(gt)) - 1)}
        t0 = time.perf_counter()
        fg = np.asarray(predict_image(model, image).labels.voxels[0, 0]) > 0
        results = [("unet", _instances_from_foreground(fg, raw.geometry).astype(np.int64), time.perf_counter() - t0)]
        if classical:
            t0 = time.perf_counter()
            pred = np.asarray(segment_nuclei(raw)[0].voxels[0, 0]).astype(np.int64)
            results.append(("otsu_watershed", pred, time.perf_counter() - t0))
        for name, pred, sec in results:
            f1 = instance_f1(pred, gt, iou_thresholds=(0.5,))[0.5]
            row[name] = {"dice": dice(pred > 0, gt > 0), "f1_50": f1["f1"], "dsb_map": dsb_average_precision(pred, gt),
                         "seconds": round(sec, 3)}
        rows.append(row)
        if log and classical:
            print(f"{case[:12]} {row['type'][:12]:12s} unet Dice {row['unet']['dice']:.3f} "
                  f"F1 {row['unet']['f1_50']:.3f} | otsu Dice {row['otsu_watershed']['dice']:.3f} "
                  f"F1 {row['otsu_watershed']['f1_50']:.3f}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--fold", default="0")
    ap.add_argument("--max-cases", type=int, default=None)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "nuclei_dl.json")
    args = ap.parse_args(argv)
    import torch

    rows = evaluate(args.model, args.fold, max_cases=args.max_cases)
    summary = {}
    for group in ["all"] + sorted({r["type"] for r in rows}):
        sel = [r for r in rows if group == "all" or r["type"] == group]
        summary[group] = {"images": len(sel)}
        for method in ("unet", "otsu_watershed"):
            summary[group][method] = {k: statistics.fmean(r[method][k] for r in sel)
                                      for k in ("dice", "f1_50", "dsb_map")}
    metrics = json.loads((args.model / f"fold_{args.fold}" / "metrics.json").read_text())
    result = {
        "benchmark": "nuclei_dl",
        "command": "python benchmarks/nuclei_dl.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
        "training": {k: metrics.get(k) for k in ("iterations", "training_minutes", "stop_reason", "n_train")},
        "n_val_images": len(rows), "summary": summary, "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    for group, s in summary.items():
        print(f"{group:28s} n={s['images']:3d}  unet Dice {s['unet']['dice']:.3f} F1 {s['unet']['f1_50']:.3f} "
              f"mAP {s['unet']['dsb_map']:.3f} | otsu Dice {s['otsu_watershed']['dice']:.3f} "
              f"F1 {s['otsu_watershed']['f1_50']:.3f} mAP {s['otsu_watershed']['dsb_map']:.3f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
