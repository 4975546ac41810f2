"""Classical baselines (issue 3): accuracy on real data per image type, and speed against reference libraries.

These are the numbers the learned models must beat. Nothing was tuned on the evaluation images here: every method
runs with the parameters already in the library (the pipeline constants and the functions' defaults).

Accuracy (real data from ../shared/data, or $MEDIMG_DATA):

* nuclei_dsb2018: every ``--nuclei-every``-th image in sorted file-name order (default 2: 267 of 534 images).
  Image type by a fixed rule: an RGB image whose channels differ (mean |R-G| + |G-B| > 1 grey level) is
  "colour (H&E / stained)"; a grey image with median intensity < 100 is "fluorescence" (dark background);
  otherwise "bright-field (grey)". Three foreground steps share the nuclei pipeline's pre- and post-processing
  (luminance, Gaussian sigma 1 px; holes filled, objects < 15 px removed, watershed with markers >= 3 px apart):
  (a) Otsu = ``medimg.pipelines.nuclei.segment_nuclei`` itself;
  (b) FCM: ``fuzzy_c_means`` with 2 clusters on the smoothed image;
  (c) Chan-Vese: ``chan_vese`` with its defaults (100 iterations, checkerboard start) on the smoothed image.
  Polarity is the pipeline's rule for all three: nuclei are the bright phase unless it covers more than half of
  the image, then the dark one. Scores per image (semantic Dice of label > 0, instance F1 at IoU 0.5, DSB mean
  AP over IoU 0.5:0.05:0.95) are averaged per type and overall.
* fetal_head_hc18: ``fit_head_ellipse`` + ``ellipse_circumference_mm`` (pixel size from pixel_size_and_HC.csv)
  on every image of fetuses with index >= 080 (the fetus index is the file name's first 3 digits; images of
  fetuses 000-079 were used to choose the pipeline's percentile and sigma, so they are left out). Dice of the
  filled ellipse against masks/<name>_Mask.png (RGB 0/255, channel 0 used), absolute HC difference in mm.
  Failure = no ellipse fitted (Dice 0, no HC); images with Dice < 0.5 are counted as gross errors as well.
* hippocampus: every ``--hippocampus-every``-th case (default 1: all 208). FCM (3 clusters, whole crop) scored by
  the cluster with the best Dice against label > 0; region growing = ``confidence_connected`` (defaults) seeded
  at the deepest voxel of label > 0, which uses the ground truth to place the seed.

Speed (same run, median of ``--repeats`` runs, ratio = medimg / peer, < 1 means medimg is faster):

* FCM, 3 clusters, m = 2, exactly ``--fcm-iterations`` iterations for all (medimg with tol 1e-12), on the
  voxelmorph brain 'vol' (160x192x224) and on it resampled (linear) to 256^3: medimg (histogram iterations +
  one membership pass) vs a plain numpy voxel-wise FCM (float32) vs scikit-fuzzy ``cmeans`` (if installed).
* watershed: ``watershed_instances`` with given markers (one per reference nucleus, at its deepest point) vs
  ``skimage.segmentation.watershed`` on the negated distance transform (distance transform included in both),
  summed over the nuclei subset's reference masks; plus medimg with automatic markers (absolute).
* graph cut: ``graph_cut`` (PyMaxflow) on the brain, white matter vs rest from sparse seeds in the eroded
  reference labels, at half and full resolution: absolute time and voxels/s (no direct peer).

    python benchmarks/classical.py                    # writes benchmarks/results/classical.json, ~8-10 min on 2 cores
    python benchmarks/classical.py --nuclei-every 10 --repeats 1 --out /tmp/classical.json   # quick check
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
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

NUCLEI_METHODS = ("otsu", "fcm", "chan_vese")
NUCLEI_TYPES = ("fluorescence", "bright-field (grey)", "colour (H&E / stained)")
HC18_TUNING_FETUSES = 80  # fetuses 000-079 were used to choose the pipeline's two parameters


def _quiet() -> None:
    warnings.filterwarnings("ignore")


def _timeit(fn, repeats: int):
    times, value = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), value


# --------------------------------------------------------------------------------------------------- nuclei
def _grey(voxels: np.ndarray) -> np.ndarray:
    """Luminance (BT.601) of (C, 1, Y, X) voxels, as the nuclei pipeline computes it."""
    v = voxels[:, 0].astype(np.float32)
    return 0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2] if v.shape[0] >= 3 else v[0]


def nuclei_type(voxels: np.ndarray) -> str:
    """The documented grouping rule (see the module docstring)."""
    if voxels.shape[0] >= 3:
        rgb = voxels[:3, 0].astype(np.float32)
        if float(np.abs(rgb[0] - rgb[1]).mean() + np.abs(rgb[1] - rgb[2]).mean()) > 1.0:
            return "colour (H&E / stained)"
    return "fluorescence" if float(np.median(_grey(voxels))) < 100 else "bright-field (grey)"


def _minority_phase(bright: np.ndarray) -> np.ndarray:
    """The pipeline's polarity rule: nuclei are the bright phase unless it covers more than half the image."""
    return ~bright if bright.mean() > 0.5 else bright


def _instances_from_foreground(fg: np.ndarray, geometry) -> np.ndarray:
    """The nuclei pipeline's post-processing: fill holes, drop objects < 15 px, watershed (markers >= 3 px)."""
    from medimg.classical import connected_components, fill_holes, watershed_instances
    from medimg.core.enums import Kind
    from medimg.core.image import Image
    from medimg.pipelines.nuclei import MIN_AREA_PX, MIN_SEPARATION_PX

    mask = fill_holes(Image(voxels=fg.astype(np.uint8)[None, None], geometry=geometry, kind=Kind.LABEL))
    mask = connected_components(mask, min_size_vox=MIN_AREA_PX)
    mask = mask.derive((mask.voxels > 0).astype(np.uint8), operation="binarise")
    sep_mm = MIN_SEPARATION_PX * min(geometry.spacing[:2])
    return np.asarray(watershed_instances(mask, min_distance_mm=sep_mm).voxels[0, 0])


def _nuclei_one(path: str) -> dict:
    """Segment one DSB image with the three methods and score each against its instance map."""
    _quiet()
    from scipy import ndimage

    from medimg.classical import chan_vese, fuzzy_c_means
    from medimg.core.errors import MedimgError
    from medimg.core.image import Image
    from medimg.io import read
    from medimg.metrics import dice, dsb_average_precision, instance_f1
    from medimg.pipelines.nuclei import segment_nuclei

    p = Path(path)
    image = read(p, spacing=(1.0, 1.0))
    gt = np.asarray(read(p.parent.parent / "labels" / p.name, spacing=(1.0, 1.0)).voxels[0, 0]).astype(np.int64)
    smooth = ndimage.gaussian_filter(_grey(image.voxels), 1.0)
    simg = Image(voxels=smooth[None, None], geometry=image.geometry)
    row = {"id": p.stem, "type": nuclei_type(image.voxels), "shape": list(gt.shape),
           "n_gt": int(len(np.unique(gt)) - 1)}

    def otsu():
        return np.asarray(segment_nuclei(image)[0].voxels[0, 0])

    def fcm():
        labels = np.asarray(fuzzy_c_means(simg, n_clusters=2).labels.voxels[0, 0])
        return _instances_from_foreground(_minority_phase(labels == 1), image.geometry)

    def cv():
        phase = np.asarray(chan_vese(simg).voxels[0, 0]) > 0
        if phase.all() or not phase.any():
            return np.zeros(phase.shape, np.uint16)
        bright = phase if smooth[phase].mean() >= smooth[~phase].mean() else ~phase
        return _instances_from_foreground(_minority_phase(bright), image.geometry)

    for name, fn in (("otsu", otsu), ("fcm", fcm), ("chan_vese", cv)):
        t0 = time.perf_counter()
        try:
            pred = fn().astype(np.int64)
            error = None
        except MedimgError as exc:  # e.g. a constant image: score the empty prediction, keep the reason
            pred, error = np.zeros_like(gt), str(exc)[:200]
        seconds = time.perf_counter() - t0
        f1 = instance_f1(pred, gt, iou_thresholds=(0.5,))[0.5]
        row[name] = {"dice": dice(pred > 0, gt > 0), "f1_50": f1["f1"], "tp": int(f1["tp"]), "fp": int(f1["fp"]),
                     "fn": int(f1["fn"]), "dsb_map": dsb_average_precision(pred, gt),
                     "n_pred": int(len(np.unique(pred)) - 1), "seconds": round(seconds, 4)}
        if error:
            row[name]["error"] = error
    return row


def _summarise_nuclei(rows: list[dict]) -> dict:
    groups = {"all": rows, **{t: [r for r in rows if r["type"] == t] for t in NUCLEI_TYPES}}
    out = {}
    for gname, grows in groups.items():
        if not grows:
            continue
        g = {"n_images": len(grows), "n_nuclei": sum(r["n_gt"] for r in grows)}
        for m in NUCLEI_METHODS:
            vals = [r[m] for r in grows]
            tp, fp, fn = (sum(v[k] for v in vals) for k in ("tp", "fp", "fn"))
            g[m] = {"dice": float(np.mean([v["dice"] for v in vals])),
                    "f1_50": float(np.mean([v["f1_50"] for v in vals])),
                    "dsb_map": float(np.mean([v["dsb_map"] for v in vals])),
                    "f1_50_pooled": 2 * tp / max(2 * tp + fp + fn, 1),
                    "seconds_per_image": float(np.mean([v["seconds"] for v in vals])),
                    "errors": sum("error" in v for v in vals)}
        out[gname] = g
    return out


# --------------------------------------------------------------------------------------------------- HC18
def _hc18_one(args: tuple[str, str, float, float]) -> dict:
    _quiet()
    from medimg.io import read
    from medimg.metrics import dice
    from medimg.pipelines.fetal_head import ellipse_circumference_mm, fit_head_ellipse

    image_path, mask_path, pixel_mm, hc_ref = args
    image = read(image_path, spacing=(pixel_mm, pixel_mm))
    frame = image.voxels[:, 0].astype(np.float32).mean(axis=0)  # as the fetal_head pipeline does
    mask = np.asarray(read(mask_path, spacing=(pixel_mm, pixel_mm)).voxels[0, 0]) > 0
    t0 = time.perf_counter()
    fit = fit_head_ellipse(frame)
    row = {"image": Path(image_path).name, "pixel_mm": pixel_mm, "hc_ref_mm": hc_ref}
    if fit is None:
        row.update(fitted=False, dice=0.0, hc_mm=None, abs_diff_mm=None)
    else:
        hc = ellipse_circumference_mm(fit[1], (pixel_mm, pixel_mm))
        row.update(fitted=True, dice=dice(fit[0] > 0, mask), hc_mm=hc, abs_diff_mm=abs(hc - hc_ref))
    row["seconds"] = round(time.perf_counter() - t0, 4)
    return row


def run_hc18(root: Path, pool: ProcessPoolExecutor) -> dict:
    base = root / "fetal_head_hc18"
    with open(base / "pixel_size_and_HC.csv", newline="") as fh:
        ref = list(csv.DictReader(fh))
    jobs = []
    for r in sorted(ref, key=lambda r: r["filename"]):
        name = r["filename"]
        if int(name[:3]) < HC18_TUNING_FETUSES:
            continue
        mask = base / "masks" / name.replace(".png", "_Mask.png")
        jobs.append((str(base / "images" / name), str(mask), float(r["pixel size(mm)"]),
                     float(r["head circumference (mm)"])))
    rows = list(pool.map(_hc18_one, jobs))
    diffs = np.array([r["abs_diff_mm"] for r in rows if r["fitted"]])
    dices = np.array([r["dice"] for r in rows])
    fetuses = {r["image"][:3] for r in rows}
    return {
        "split": f"fetus index >= {HC18_TUNING_FETUSES:03d} (000-{HC18_TUNING_FETUSES - 1:03d} chose the parameters)",
        "n_images": len(rows), "n_fetuses": len(fetuses), "failures_no_fit": int(sum(not r["fitted"] for r in rows)),
        "gross_errors_dice_below_0_5": int((dices < 0.5).sum()),
        "dice_mean": float(dices.mean()), "dice_median": float(np.median(dices)),
        "hc_abs_diff_mm_mean": float(diffs.mean()), "hc_abs_diff_mm_median": float(np.median(diffs)),
        "hc_abs_diff_mm_p90": float(np.percentile(diffs, 90)),
        "hc_within_5mm": float((diffs <= 5).mean()),
        "published_context": "HC18 challenge top methods: ~1.7-2 mm mean absolute HC difference on the hidden test "
                             "set (van den Heuvel et al., PLoS ONE 2018); not comparable (other images, trained).",
        "rows": rows,
    }


# --------------------------------------------------------------------------------------------------- hippocampus
def run_hippocampus(root: Path, every: int) -> dict:
    from scipy import ndimage

    from medimg.classical import confidence_connected, fuzzy_c_means
    from medimg.io import read
    from medimg.metrics import dice

    base = root / "hippocampus"
    cases = sorted(p.name.replace("_0000.nii.gz", "") for p in (base / "imagesTr").glob("*_0000.nii.gz"))[::every]
    rows = []
    for case in cases:
        image = read(base / "imagesTr" / f"{case}_0000.nii.gz")
        gt = np.asarray(read(base / "labelsTr" / f"{case}.nii.gz").voxels[0]) > 0
        labels = np.asarray(fuzzy_c_means(image, n_clusters=3).labels.voxels[0])
        per_cluster = [dice(labels == k, gt) for k in range(3)]
        dist = ndimage.distance_transform_edt(gt, sampling=image.geometry.spacing_zyx)
        seed = tuple(int(v) for v in np.unravel_index(np.argmax(dist), gt.shape))
        region = np.asarray(confidence_connected(image, seeds=seed).voxels[0]) > 0
        rows.append({"case": case, "fcm_best_dice": max(per_cluster), "fcm_best_cluster": int(np.argmax(per_cluster)),
                     "region_dice": dice(region, gt), "seed_zyx": list(seed)})

    def stats(key):
        v = np.array([r[key] for r in rows])
        return {"mean": float(v.mean()), "median": float(np.median(v)), "min": float(v.min()), "max": float(v.max())}

    return {"subset": f"every {every} case(s) in sorted order", "n_cases": len(rows),
            "fcm_3_clusters_best_cluster": stats("fcm_best_dice"),
            "confidence_connected_gt_seed": stats("region_dice"),
            "published_context": "nnU-Net 3d_fullres 5-fold CV Dice 0.90 anterior / 0.88 posterior (per label, "
                                 "not the union; learned)",
            "rows": rows}


# --------------------------------------------------------------------------------------------------- speed
def numpy_fcm(x: np.ndarray, n_clusters: int, m: float, iterations: int) -> np.ndarray:
    """Plain voxel-wise FCM (float32), centres started evenly between min and max; returns sorted centres."""
    v = x.ravel().astype(np.float32)
    lo, hi = float(v.min()), float(v.max())
    c = np.linspace(lo, hi, n_clusters + 2)[1:-1].astype(np.float32)
    p = np.float32(2.0 / (m - 1.0))

    def memberships(c):
        d = np.abs(v[None] - c[:, None]) + np.float32(1e-12)
        u = d ** -p
        u /= u.sum(axis=0, keepdims=True)
        return u

    for _ in range(iterations):
        um = memberships(c) ** np.float32(m)
        c = (um @ v) / um.sum(axis=1)
    memberships(c)  # final memberships of every voxel, as the others return
    return np.sort(c)


def run_speed(root: Path, nuclei_paths: list[str], repeats: int, fcm_iterations: int) -> dict:
    from scipy import ndimage
    from skimage.segmentation import watershed

    from medimg.classical import fuzzy_c_means, graph_cut, watershed_instances
    from medimg.core.image import Image
    from medimg.io import read
    from medimg.metrics import dice

    try:
        import skfuzzy
    except ImportError:
        skfuzzy = None
    out: dict = {"repeats": repeats}
    brain = np.load(root / "brain_t1_labels_voxelmorph" / "data" / "test_scan.npz")
    vol = brain["vol"].astype(np.float32)
    seg = brain["seg"].astype(np.int32)
    vol256 = ndimage.zoom(vol, [256 / s for s in vol.shape], order=1).astype(np.float32)

    # -- FCM
    fcm_rows = []
    for name, v in (("brain 160x192x224", vol), ("brain resampled 256^3", vol256)):
        img = Image.from_array(v)
        fuzzy_c_means(img, n_clusters=3, max_iter=2)  # warm-up at full size: the first call pays ~1 s extra
        r = {"input": name, "voxels": int(v.size), "iterations": fcm_iterations}
        r["medimg_s"], res = _timeit(lambda img=img: fuzzy_c_means(img, n_clusters=3, max_iter=fcm_iterations,
                                                                  tol=1e-12), repeats)
        r["medimg_centres"] = res.centers.ravel().tolist()
        r["medimg_n_iter"] = res.n_iter
        conv_s, conv = _timeit(lambda img=img: fuzzy_c_means(img, n_clusters=3), repeats)
        r.update(medimg_default_s=conv_s, medimg_default_n_iter=conv.n_iter)
        r["numpy_s"], c_np = _timeit(lambda v=v: numpy_fcm(v, 3, 2.0, fcm_iterations), repeats)
        r["numpy_centres"] = c_np.tolist()
        r["ratio_vs_numpy"] = r["medimg_s"] / r["numpy_s"]
        if skfuzzy is not None:
            def sk(v=v):
                cntr = skfuzzy.cmeans(v.reshape(1, -1), 3, 2.0, error=0.0, maxiter=fcm_iterations, seed=0)[0]
                return np.sort(cntr.ravel())
            r["skfuzzy_s"], c_sk = _timeit(sk, repeats)
            r["skfuzzy_centres"] = c_sk.tolist()
            r["ratio_vs_skfuzzy"] = r["medimg_s"] / r["skfuzzy_s"]
        fcm_rows.append(r)
        print(f"  FCM {name:24s} medimg {r['medimg_s']:7.3f} s  numpy {r['numpy_s']:7.3f} s "
              f"(x{r['ratio_vs_numpy']:.3f})"
              + (f"  skfuzzy {r['skfuzzy_s']:7.3f} s (x{r['ratio_vs_skfuzzy']:.4f})" if skfuzzy else ""), flush=True)
    out["fcm"] = fcm_rows
    out["skfuzzy"] = skfuzzy.__version__ if skfuzzy else "not installed: skipped"

    # -- watershed on the reference nuclei masks, one marker per reference nucleus
    cases = []
    for p in nuclei_paths:
        gt = np.asarray(read(Path(p).parent.parent / "labels" / Path(p).name, spacing=(1.0, 1.0)).voxels[0, 0])
        gt = gt.astype(np.int64)
        mask = gt > 0
        if not mask.any():
            continue
        ids = np.unique(gt[mask])
        dist = ndimage.distance_transform_edt(mask)
        markers = np.zeros(gt.shape, np.int32)
        for lab, pos in zip(ids, ndimage.maximum_position(dist, gt, ids)):
            markers[pos] = lab
        cases.append((mask, markers, Image.from_array(mask.astype(np.uint8), kind="label"),
                      Image.from_array(markers, kind="label")))

    def ours():
        return [np.asarray(watershed_instances(mi, markers=ki).voxels[0, 0]) for _, _, mi, ki in cases]

    def peer():
        return [watershed(-ndimage.distance_transform_edt(m), markers=k, mask=m) for m, k, _, _ in cases]

    def ours_auto():
        return [watershed_instances(mi, min_distance_mm=3.0) for _, _, mi, _ in cases]

    t_ours, a = _timeit(ours, repeats)
    t_peer, b = _timeit(peer, repeats)
    t_auto, _ = _timeit(ours_auto, repeats)
    same = sum(int((x == y).all()) for x, y in zip(a, b))
    pixels = sum(m.size for m, _, _, _ in cases)
    out["watershed"] = {"images": len(cases), "pixels": pixels, "medimg_given_markers_s": t_ours,
                        "skimage_s": t_peer, "ratio_vs_skimage": t_ours / t_peer,
                        "identical_outputs": f"{same}/{len(cases)}", "medimg_auto_markers_s": t_auto}
    print(f"  watershed {len(cases)} images: medimg {t_ours:.3f} s  skimage {t_peer:.3f} s (x{t_ours / t_peer:.3f}), "
          f"identical {same}/{len(cases)}; automatic markers {t_auto:.3f} s", flush=True)

    # -- graph cut: white matter (labels 2, 41) vs the rest, seeds every 4th voxel of the eroded references
    gc_rows = []
    wm = np.isin(seg, (2, 41))
    for name, v, w in (("brain half resolution 80x96x112", vol[::2, ::2, ::2], wm[::2, ::2, ::2]),
                       ("brain 160x192x224", vol, wm)):
        grid = np.zeros(w.shape, bool)
        grid[::4, ::4, ::4] = True
        fg = ndimage.binary_erosion(w, iterations=2) & grid
        bg = ndimage.binary_erosion(~w, iterations=2) & grid
        img = Image.from_array(v)
        fgi = Image.from_array(fg.astype(np.uint8), kind="label")
        bgi = Image.from_array(bg.astype(np.uint8), kind="label")
        t, res = _timeit(lambda img=img, fgi=fgi, bgi=bgi: graph_cut(img, foreground_seeds=fgi,
                                                                       background_seeds=bgi), repeats)
        gc_rows.append({"input": name, "voxels": int(v.size), "seconds": t, "voxels_per_s": v.size / t,
                        "seeds_fg": int(fg.sum()), "seeds_bg": int(bg.sum()),
                        "dice_white_matter": dice(np.asarray(res.voxels[0]) > 0, w)})
        print(f"  graph cut {name:32s} {t:7.3f} s  {v.size / t / 1e6:.2f} Mvoxel/s  Dice WM "
              f"{gc_rows[-1]['dice_white_matter']:.3f}", flush=True)
    out["graph_cut"] = gc_rows
    return out


# --------------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nuclei-every", type=int, default=2, help="use every N-th DSB image (sorted names)")
    ap.add_argument("--hippocampus-every", type=int, default=1, help="use every N-th hippocampus case")
    ap.add_argument("--fcm-iterations", type=int, default=10, help="fixed FCM iterations in the speed comparison")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2, help="processes for the per-image accuracy loops")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--out", default=str(HERE / "results" / "classical.json"))
    args = ap.parse_args(argv)
    _quiet()

    from medimg.testing import data_root

    root = data_root()
    if root is None:
        print("shared data not found: set MEDIMG_DATA", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    load_start = os.getloadavg()[0]  # other jobs on the machine slow the timings: recorded with them
    paths = sorted(str(p) for p in (root / "nuclei_dsb2018" / "images").glob("*.png"))[::args.nuclei_every]
    by_size = sorted(paths, key=lambda p: -os.path.getsize(p))  # big images first: better load balance
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        rows = sorted(pool.map(_nuclei_one, by_size), key=lambda r: r["id"])
        nuclei = {"subset": f"every {args.nuclei_every} image(s) in sorted file-name order", "n_images": len(rows),
                  "summary": _summarise_nuclei(rows), "rows": rows}
        for g, s in nuclei["summary"].items():
            print(f"nuclei {g:24s} n={s['n_images']:3d}  " + "  ".join(
                f"{m}: Dice {s[m]['dice']:.3f} F1 {s[m]['f1_50']:.3f} mAP {s[m]['dsb_map']:.3f}"
                for m in NUCLEI_METHODS), flush=True)
        hc18 = run_hc18(root, pool)
    print(f"HC18 {hc18['n_images']} images ({hc18['n_fetuses']} fetuses): Dice mean {hc18['dice_mean']:.3f} median "
          f"{hc18['dice_median']:.3f}; |HC diff| mean {hc18['hc_abs_diff_mm_mean']:.2f} mm median "
          f"{hc18['hc_abs_diff_mm_median']:.2f} mm; no fit {hc18['failures_no_fit']}, Dice < 0.5 "
          f"{hc18['gross_errors_dice_below_0_5']}", flush=True)
    hip = run_hippocampus(root, args.hippocampus_every)
    print(f"hippocampus {hip['n_cases']} cases: FCM best cluster Dice "
          f"{hip['fcm_3_clusters_best_cluster']['mean']:.3f}, confidence connected (GT seed) Dice "
          f"{hip['confidence_connected_gt_seed']['mean']:.3f}", flush=True)
    speed = None if args.skip_speed else run_speed(root, paths, args.repeats, args.fcm_iterations)

    import scipy
    import SimpleITK
    import skimage

    versions = {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
                "scikit-image": skimage.__version__, "SimpleITK": SimpleITK.Version.VersionString()}
    from importlib.metadata import PackageNotFoundError, version

    for package in ("PyMaxflow", "scikit-fuzzy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    cmd = ["python benchmarks/classical.py"] + [a for a in (argv if argv is not None else sys.argv[1:])]
    result = {
        "benchmark": "classical", "command": " ".join(cmd), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_1min_start": load_start, "load_average_1min_end": os.getloadavg()[0]},
        "versions": versions, "workers": args.workers,
        "tuning": "none on these images: pipeline constants and library defaults only; HC18 parameters were "
                  "chosen on fetuses 000-079, which are excluded",
        "nuclei": nuclei, "hc18": hc18, "hippocampus": hip, "speed": speed,
        "total_seconds": time.perf_counter() - t_start,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"total {result['total_seconds']:.0f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
