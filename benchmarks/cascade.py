"""Does a classical cascade channel help? Nuclei (2D) U-Nets with and without an Otsu mask input, over seeds.

Training (each run alone on one core, two runs side by side so that both arms see the same machine load):

    for seed in 0 1 2; do
      medimg train segment ../shared/data/nuclei_dsb2018 -o runs/cascade/none_s$seed --foreground-only --fold 0 \
          --minutes 8 --iterations 100000 --seed $seed --threads 1 --cache runs/cache &
      medimg train segment ../shared/data/nuclei_dsb2018 -o runs/cascade/otsu_s$seed --foreground-only --fold 0 \
          --minutes 8 --iterations 100000 --seed $seed --threads 1 --cache runs/cache --cascade otsu
      wait
    done
    python benchmarks/cascade.py runs/cascade

``--cascade otsu`` appends the 0/1 Otsu mask of the first channel (computed on the resampled image, before
normalisation) as an extra input channel, in training and in prediction alike (``medimg.tasks.segment.preprocess``);
intensity augmentation leaves that channel alone. The seed sets the weights, the sampling, the augmentation and
the fold split, so each seed is a paired comparison on its own held-out fold (never trained on). Reported per
arm: foreground Dice, instance F1 at IoU 0.5 and the DSB 2018 mAP (touching nuclei split by the same watershed
post-processing, benchmarks/nuclei_dl.py), their mean and standard deviation over seeds, and the paired
difference (otsu - none) per seed.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
METRICS = ("dice", "f1_50", "dsb_map")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, help="folder holding none_s<seed>/ and otsu_s<seed>/ model folders")
    ap.add_argument("--max-cases", type=int, default=None)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "cascade.json")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))
    import torch
    from nuclei_dl import evaluate

    seeds = sorted(int(p.name.split("_s")[1]) for p in args.runs.glob("none_s*")
                   if (args.runs / p.name.replace("none", "otsu")).is_dir())
    if not seeds:
        print(f"no none_s<seed>/otsu_s<seed> pairs under {args.runs}", file=sys.stderr)
        return 2
    per_run: dict[str, dict] = {}
    for seed in seeds:
        for arm in ("none", "otsu"):
            model = args.runs / f"{arm}_s{seed}"
            rows = evaluate(model, "0", max_cases=args.max_cases, classical=False, log=False)
            metrics = json.loads((model / "fold_0" / "metrics.json").read_text())
            per_run[f"{arm}_s{seed}"] = {
                "arm": arm, "seed": seed, "n_val_images": len(rows),
                "iterations": metrics.get("iterations"), "training_minutes": metrics.get("training_minutes"),
                **{k: statistics.fmean(r["unet"][k] for r in rows) for k in METRICS}}
            r = per_run[f"{arm}_s{seed}"]
            print(f"{arm:5s} seed {seed}: {r['iterations']} it, Dice {r['dice']:.4f} F1 {r['f1_50']:.4f} "
                  f"mAP {r['dsb_map']:.4f}", flush=True)

    def spread(values: list[float]) -> dict:
        return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
                "values": values}

    summary = {arm: {k: spread([per_run[f"{arm}_s{s}"][k] for s in seeds]) for k in METRICS}
               for arm in ("none", "otsu")}
    summary["paired_difference_otsu_minus_none"] = {
        k: spread([per_run[f"otsu_s{s}"][k] - per_run[f"none_s{s}"][k] for s in seeds]) for k in METRICS}
    out = {
        "benchmark": "cascade",
        "command": "python benchmarks/cascade.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"platform": platform.platform(), "torch": torch.__version__},
        "data": "nuclei_dsb2018 stage1_train, fold 0 of 5 per seed (the split depends on the seed)",
        "seeds": seeds, "runs": per_run, "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    for k in METRICS:
        d = summary["paired_difference_otsu_minus_none"][k]
        print(f"{k:8s} none {summary['none'][k]['mean']:.4f}  otsu {summary['otsu'][k]['mean']:.4f}  "
              f"paired diff {d['mean']:+.4f} (std {d['std'] if d['std'] is None else round(d['std'], 4)})")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
