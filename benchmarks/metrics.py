"""Metric speed benchmark: medimg HD95 and normalised surface Dice against MONAI and medpy, same inputs, same run.

Inputs (real labels from ../shared/data, or $MEDIMG_DATA):
* hippocampus: label 1 and 2 of MSD hippocampus cases 001 vs 006 cropped to a common shape (two different
  subjects), and case 001 vs its dilated-and-shifted copy; spacing 1 mm.
* brain: voxelmorph test_scan.npz 'seg' (160x192x224, 1 mm): the whole-brain mask and 5 structures vs the
  label map shifted by (2, 1, -1) voxels.

For each input, each implementation is run ``--repeats`` times and the median kept. MONAI gets one-hot
(1, 1, Z, Y, X) tensors built beforehand (not timed); medimg gets the label map and the label. Values are
checked to agree (HD95: MONAI definition; medpy hd95 pools both directions, so it is compared with
medimg's ``method="pooled"``). Ratios < 1 mean medimg is faster.

    python benchmarks/metrics.py            # writes benchmarks/results/metrics.json, < 3 minutes
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _timeit(fn, repeats):
    times, value = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), float(value)


def _inputs(root: Path):
    import nibabel as nib

    def hip(case):
        path = root / "hippocampus" / "labelsTr" / f"hippocampus_{case}.nii.gz"
        return np.transpose(np.asarray(nib.load(str(path)).dataobj)).astype(np.uint8)

    from scipy import ndimage

    a, b = hip("001"), hip("006")
    crop = tuple(slice(0, min(x, y)) for x, y in zip(a.shape, b.shape))
    pert = a.copy()
    pert[ndimage.binary_dilation(a == 1)] = 1
    pert = np.roll(pert, 2, axis=1)
    out = []
    for lab in (1, 2):
        out.append((f"hippocampus 001 vs 006 label {lab}", b[crop], a[crop], lab))
        out.append((f"hippocampus 001 perturbed label {lab}", pert, a, lab))
    seg = np.load(root / "brain_t1_labels_voxelmorph" / "data" / "test_scan.npz")["seg"].astype(np.int32)
    shifted = np.roll(seg, (2, 1, -1), axis=(0, 1, 2))
    out.append(("brain mask 160x192x224", (shifted > 0).astype(np.uint8), (seg > 0).astype(np.uint8), 1))
    for lab in (2, 17, 41, 10, 49):
        if (seg == lab).any():
            out.append((f"brain label {lab}", shifted, seg, lab))
    return out


def _measure(name, pred, gt, lab, tol, repeats):
    import torch
    from medpy.metric import binary as mb
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice

    from medimg.metrics import segmentation as seg

    pm, gm = pred == lab, gt == lab
    tp = torch.from_numpy(pm[None, None].astype(np.float32))
    tg = torch.from_numpy(gm[None, None].astype(np.float32))
    r = {"input": name, "shape": list(pred.shape), "voxels_pred": int(pm.sum()), "voxels_gt": int(gm.sum())}
    r["medimg_hd95_s"], v_ours = _timeit(lambda: seg.hd95(pred, gt, label=lab), repeats)
    r["monai_hd95_s"], v_monai = _timeit(
        lambda: compute_hausdorff_distance(tp, tg, include_background=True, percentile=95).item(), repeats)
    r["medpy_hd95_s"], v_medpy = _timeit(lambda: mb.hd95(pm, gm), repeats)
    v_pooled = seg.hd95(pred, gt, label=lab, method="pooled")
    r["medimg_nsd_s"], n_ours = _timeit(
        lambda: seg.normalized_surface_dice(pred, gt, label=lab, tolerance_mm=tol), repeats)
    r["monai_nsd_s"], n_monai = _timeit(
        lambda: compute_surface_dice(tp, tg, [tol], include_background=True).item(), repeats)
    r["medimg_all_metrics_s"], _ = _timeit(
        lambda: seg.segmentation_scores(pred, gt, labels=[lab], tolerance_mm=tol)[lab]["dice"], repeats)
    r.update(hd95_mm=v_ours, hd95_monai_mm=v_monai, hd95_pooled_mm=v_pooled, hd95_medpy_mm=v_medpy,
             nsd=n_ours, nsd_monai=n_monai)
    r["agree"] = bool(abs(v_ours - v_monai) < 1e-4 * max(1, v_monai) and abs(v_pooled - v_medpy) < 1e-6
                      and abs(n_ours - n_monai) < 1e-5)
    r["ratio_hd95_vs_monai"] = r["medimg_hd95_s"] / r["monai_hd95_s"]
    r["ratio_nsd_vs_monai"] = r["medimg_nsd_s"] / r["monai_nsd_s"]
    r["ratio_hd95_vs_medpy"] = r["medimg_hd95_s"] / r["medpy_hd95_s"]
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tolerance-mm", type=float, default=1.0)
    ap.add_argument("--out", default=str(HERE / "results" / "metrics.json"))
    args = ap.parse_args(argv)

    import monai
    import torch

    from medimg.testing import data_root

    root = data_root()
    if root is None:
        print("shared data not found: set MEDIMG_DATA", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    results = []
    for name, pred, gt, lab in _inputs(root):
        r = _measure(name, pred, gt, lab, args.tolerance_mm, args.repeats)
        results.append(r)
        print(f"{name:36s} hd95 {r['medimg_hd95_s'] * 1e3:8.1f} ms (MONAI {r['monai_hd95_s'] * 1e3:8.1f}, medpy "
              f"{r['medpy_hd95_s'] * 1e3:8.1f})  nsd {r['medimg_nsd_s'] * 1e3:8.1f} ms (MONAI "
              f"{r['monai_nsd_s'] * 1e3:8.1f})  agree={r['agree']}")
    out = {
        "benchmark": "metrics", "command": f"python benchmarks/metrics.py --repeats {args.repeats}",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "repeats": args.repeats, "torch_threads": 1,
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "monai": monai.__version__,
                     "torch": torch.__version__},
        "machine": platform.platform(), "results": results,
        "geomean_ratio_hd95_vs_monai": float(np.exp(np.mean(np.log([r["ratio_hd95_vs_monai"] for r in results])))),
        "geomean_ratio_nsd_vs_monai": float(np.exp(np.mean(np.log([r["ratio_nsd_vs_monai"] for r in results])))),
        "all_agree": all(r["agree"] for r in results),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"geometric mean time ratio medimg/MONAI: hd95 {out['geomean_ratio_hd95_vs_monai']:.3f}, "
          f"nsd {out['geomean_ratio_nsd_vs_monai']:.3f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
