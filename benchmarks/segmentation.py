"""Segmentation benchmark: a model folder trained by `medimg train segment`, evaluated on its held-out fold.

    # train (the recipe of the shipped model; 55 min wall clock on 2 cores):
    medimg train segment ../shared/data/hippocampus -o runs/hippocampus --fold 0 --minutes 55 \
        --iterations 100000 --set batch_size=4 --validate-every 5 --validate-cases 12
    # evaluate on the fold's validation cases (never trained on):
    python benchmarks/segmentation.py --model runs/hippocampus --fold 0

For every validation case of the fold the full prediction path runs (`medimg.tasks.segment.predictor`: plan
preprocessing, sliding window, probabilities resampled back to the input grid), then Dice and HD95 per class
on the original grid (medimg.metrics, checked against MONAI in the tests). The Dice-vs-minutes curve comes from
the periodic validation recorded during training (first 12 validation cases, on the plan's grid).

Anchor: nnU-Net 3d_fullres 5-fold cross-validation on MSD Task04, Dice 0.8975 anterior / 0.8807 posterior, as
quoted in the "published anchor" column of ../shared/data/README.md (nnU-Net: Isensee et al., Nature Methods
18, 203-211, 2021). Our number is one fold (42 held-out cases), not 5-fold CV: comparable in kind, not identical
in protocol.
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
ANCHOR = {"anterior": 0.8975, "posterior": 0.8807}


def _summary(values: list[float]) -> dict[str, float]:
    finite = [v for v in values if v == v and v != float("inf")]
    return {"mean": statistics.fmean(finite) if finite else float("nan"),
            "std": statistics.pstdev(finite) if len(finite) > 1 else 0.0,
            "median": statistics.median(finite) if finite else float("nan"), "n": len(finite),
            "n_excluded": len(values) - len(finite)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="model folder")
    ap.add_argument("--fold", default="0")
    ap.add_argument("--data", type=Path, default=None, help="dataset folder (default: the hippocampus set)")
    ap.add_argument("--tta", action="store_true")
    ap.add_argument("--max-cases", type=int, default=None, help="score only the first N validation cases (smoke test)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "segmentation.json")
    ap.add_argument("--write-postprocess", action="store_true",
                    help="write MODEL/postprocess.json: keep the largest component of the classes where that "
                    "raised the fold's mean Dice (nnU-Net's rule; decided on these validation cases)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    import numpy as np
    import torch

    from medimg.infer.postprocess import keep_largest_component
    from medimg.metrics import hd95
    from medimg.tasks.segment.data import SegDataset
    from medimg.tasks.segment.predictor import load_model, predict_image
    from medimg.testing import data_root

    root = args.data or (data_root() / "hippocampus")
    ds = SegDataset.open(root)
    splits = json.loads((args.model / "splits.json").read_text())["folds"]
    val = splits[int(args.fold)]["val"][: args.max_cases]
    model = load_model(args.model, folds=[f"fold_{args.fold}"])
    plan = model.plan
    names = list(plan.class_names[1:])
    per_case = []
    t_pred = []
    for case in val:
        image, label = ds.load(case)
        t0 = time.perf_counter()
        pred = predict_image(model, image, tta=args.tta, largest_component=False)
        t_pred.append(time.perf_counter() - t0)
        p, t = np.asarray(pred.labels.voxels[0]), np.asarray(label.voxels[0])
        values = list(plan.label_values[1:])
        p_lcc = keep_largest_component(p, values)
        row = {"case": case}
        for value, name in zip(values, names):
            pm, tm = p == value, t == value
            denom = pm.sum() + tm.sum()
            row[f"dice_{name}"] = 1.0 if denom == 0 else float(2 * (pm & tm).sum() / denom)
            row[f"hd95_mm_{name}"] = float(hd95(pm, tm, spacing_mm=image.spacing))
            pl = p_lcc == value
            denom = pl.sum() + tm.sum()
            row[f"dice_lcc_{name}"] = 1.0 if denom == 0 else float(2 * (pl & tm).sum() / denom)
        per_case.append(row)
        print(f"{case}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "case"), flush=True)
    metrics = json.loads((args.model / f"fold_{args.fold}" / "metrics.json").read_text())
    result = {
        "benchmark": "segmentation",
        "command": "python benchmarks/segmentation.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
        "dataset": str(root), "fold": args.fold, "n_val_cases": len(val), "tta": args.tta,
        "training": {k: metrics.get(k) for k in ("iterations", "training_minutes", "stop_reason", "n_train",
                                                 "threads")},
        "plan": {"patch_size": list(plan.patch_size), "batch_size": plan.batch_size,
                 "network": plan.network, "target_spacing": list(plan.target_spacing)},
        "dice": {n: _summary([r[f"dice_{n}"] for r in per_case]) for n in names},
        "hd95_mm": {n: _summary([r[f"hd95_mm_{n}"] for r in per_case]) for n in names},
        "dice_largest_component": {n: _summary([r[f"dice_lcc_{n}"] for r in per_case]) for n in names},
        "dice_vs_minutes": [{"minutes": round(v["minutes"], 2), "iteration": v["iteration"],
                             "mean_dice": v["mean_dice"], "dice_per_class": v["dice_per_class"]}
                            for v in metrics.get("curve", [])],
        "predict_seconds_per_case": _summary(t_pred),
        "anchor_nnunet_3d_fullres_5fold_dice": ANCHOR,
        "per_case": per_case,
    }
    lcc_classes = [int(v) for v, n in zip(plan.label_values[1:], names)
                   if result["dice_largest_component"][n]["mean"] > result["dice"][n]["mean"]]
    result["postprocess_decision"] = {"largest_component_classes": lcc_classes,
                                      "rule": "keep the largest component of a class when that raises its mean "
                                              "Dice on the fold's validation cases"}
    if args.write_postprocess:
        (args.model / "postprocess.json").write_text(json.dumps({"largest_component_classes": lcc_classes,
                                                                 "decided_on": f"fold {args.fold} validation"}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    for n in names:
        d, h = result["dice"][n], result["hd95_mm"][n]
        print(f"{n}: Dice {d['mean']:.4f} +- {d['std']:.4f}, HD95 {h['mean']:.2f} +- {h['std']:.2f} mm "
              f"(nnU-Net anchor {ANCHOR.get(n, float('nan'))})")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
