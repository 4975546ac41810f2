"""Registration benchmarks (issue 6): hippocampus pairs, a real brain with known deformations, and a cross-modal
rigid recovery. Classical methods are `medimg.classical.register` (SimpleITK's framework); "learned" is the zoo's
hippocampus_registration model (`medimg.tasks.register.LearnedRegistration`, trained by
`make zoo-hippocampus-registration` on fold 0 training cases only).

    python benchmarks/registration.py hippocampus [--pairs 20] [--model DIR]  # inter-subject MRI crops (L2R 2020 t4)
    python benchmarks/registration.py brain [--deformations 2] [--model DIR]  # VoxelMorph T1, known smooth fields
    python benchmarks/registration.py hippocampus-seeds --models A,B  # learned rows of other training seeds
    python benchmarks/registration.py brain-train-data [--out runs/reg/brain_mri_nifti]  # data of the learned model
    python benchmarks/registration.py crossmodal [--trials 3]   # T1 post vs T2 after a known rigid misalignment
    python benchmarks/tables.py registration

1. Hippocampus: a fixed list of pairs (benchmarks/splits/hippocampus_pairs.json, seeded) drawn from the 42
   validation cases of fold 0 of the shipped hippocampus model's split, so that a learned model trained on fold 0
   can be scored on the same pairs; never a case with itself. Dice of labels 1 and 2 (mean) between the fixed
   labels and the moving labels warped (nearest neighbour), before (identity in physical space: the crops sit
   wherever their scans put them), after affine, B-spline and demons (each pre-aligned by affine with moments
   initialisation), after learned (one network pass after centre alignment) and learned_affine (the same network
   after the classical affine); folding fraction of the deformable fields; seconds per pair (registration only,
   no I/O; learned: after one untimed warm-up pair, the model loaded once, as `medimg register --pairs` does).
2. Brain: the VoxelMorph test scan (1 mm, 160x192x224, 30 evaluation labels), downsampled to 2 mm for time, is
   warped by a random smooth B-spline deformation S (seeded, control points every 40 mm, displacement std 3 mm):
   moving(y) = fixed(S(y)). A registration T should satisfy S(T(x)) = x, so the recovered-field error is
   |S(T(x)) - x| (mm) at 5,000 random brain voxels; Dice over the 30 labels between the fixed labels and the
   moving labels warped back. "learned" (with --model) is a supervised model trained only on simulated fields of
   another patient's scans (brain_mri_dicom T1 pre/post, T2, FLAIR, written as NIfTI by `brain-train-data`;
   recipe in BENCHMARKS.md): the evaluation brain is never seen in training.
3. Cross-modal: brain_mri_dicom Study1 T1 post (fixed) and T2 (moving; the series are co-registered), the T2
   moved by a known random rigid transform (up to 5 degrees and 6 mm); Mattes mutual information rigid
   registration; error |S(T(x)) - x| (mm) over brain voxels (T1 above its 60th percentile).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "registration.json"
DATA = Path(os.environ.get("MEDIMG_DATA", REPO.parent / "shared" / "data"))
PAIRS = HERE / "splits" / "hippocampus_pairs.json"


def _write_section(name: str, section: dict[str, Any]) -> None:
    import SimpleITK as sitk
    from _results import write_section

    write_section(RESULTS, name, section, {"simpleitk": sitk.Version_VersionString(),
                                           "itk_threads": sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()})


def _mean_dice(a: np.ndarray, b: np.ndarray, labels) -> float:
    from medimg.metrics import dice

    return float(np.mean([dice(a == k, b == k) for k in labels]))


def _deformable_stats(result) -> dict[str, float]:
    from medimg.classical.registration import jacobian_summary

    j = jacobian_summary(result.displacement_field())
    return {"folding_fraction": j["folding_fraction"], "std_log_jacobian": j["std_log_jacobian"]}


def hippocampus(args: argparse.Namespace) -> None:
    import SimpleITK as sitk

    from medimg.classical.registration import register, warp
    from medimg.io import read
    from medimg.tasks.register.predictor import LearnedRegistration

    root = DATA / "hippocampus"
    t_load = time.perf_counter()
    learned = LearnedRegistration.load(args.model)
    load_s = time.perf_counter() - t_load
    if PAIRS.exists():
        pairs = json.loads(PAIRS.read_text())["pairs"]
    else:
        split = json.loads((REPO / "src" / "medimg" / "zoo" / "hippocampus" / "splits.json").read_text())
        cases = sorted(split["folds"][0]["val"])
        rng = np.random.default_rng(0)
        pairs = []
        while len(pairs) < 40:
            i, j = rng.choice(len(cases), size=2, replace=False)
            if [cases[i], cases[j]] not in pairs:
                pairs.append([cases[i], cases[j]])
        PAIRS.parent.mkdir(parents=True, exist_ok=True)
        PAIRS.write_text(json.dumps({"source": "fold 0 validation cases of src/medimg/zoo/hippocampus/splits.json",
                                     "seed": 0, "order": "fixed, moving", "pairs": pairs}, indent=1))
    rows = []
    methods = ("affine", "bspline", "demons", "learned", "learned_affine")
    warm = pairs[0]
    learned.register(*(read(root / "imagesTr" / f"{case}_0000.nii.gz") for case in warm))  # warm-up, untimed
    for fixed_id, moving_id in pairs[: args.pairs]:
        (fi, fl), (mi, ml) = _case(root, fixed_id), _case(root, moving_id)
        fixed_lab = np.asarray(fl.voxels[0])
        row: dict[str, Any] = {"fixed": fixed_id, "moving": moving_id}
        row["before"] = {"dice": _mean_dice(np.asarray(warp(ml, sitk.Transform(3, sitk.sitkIdentity), fi,
                                                            labels=True).voxels[0]), fixed_lab, (1, 2))}
        for method in methods:
            if method.startswith("learned"):
                res = learned.register(fi, mi, prealign="affine" if method == "learned_affine" else "center")
            else:
                res = register(fi, mi, method=method, metric="mattes", init="moments", levels=(2, 1),
                               bspline_grid_mm=12.0, seed=0)
            warped = np.asarray(warp(ml, res.transform, fi, labels=True).voxels[0])
            entry = {"dice": _mean_dice(warped, fixed_lab, (1, 2)), "seconds": res.seconds,
                     "metric_after": res.metric_after}
            if method != "affine":
                entry.update(_deformable_stats(res))
            row[method] = entry
        rows.append(row)
        print(fixed_id, moving_id, {k: round(v["dice"], 3) for k, v in row.items() if isinstance(v, dict)})
    summary = {}
    for method in ("before", *methods):
        d = [r[method]["dice"] for r in rows]
        summary[method] = {"dice_mean": statistics.fmean(d), "dice_std": statistics.pstdev(d)}
        if method != "before":
            summary[method]["seconds_mean"] = statistics.fmean(r[method]["seconds"] for r in rows)
        if method not in ("before", "affine"):
            summary[method]["folding_fraction_mean"] = statistics.fmean(r[method]["folding_fraction"] for r in rows)
            summary[method]["folding_fraction_max"] = max(r[method]["folding_fraction"] for r in rows)
    for method in ("learned", "learned_affine"):
        summary[method]["speedup_vs_bspline"] = summary["bspline"]["seconds_mean"] / summary[method]["seconds_mean"]
        summary[method]["dice_minus_bspline"] = summary[method]["dice_mean"] - summary["bspline"]["dice_mean"]
    _write_section("hippocampus", {"pairs_file": str(PAIRS.relative_to(REPO)), "n_pairs": len(rows),
                                   "settings": "classical: Mattes MI, moments init, levels (2, 1), B-spline grid "
                                               "12 mm, seed 0; learned: model " + str(args.model) + " (" +
                                               ", ".join(learned.folds) + "), model load "
                                               f"{load_s:.2f} s (once, not in seconds per pair)",
                                   "learned_training": _learned_training(learned.folder),
                                   "summary": summary, "rows": rows})


def hippocampus_seeds(args: argparse.Namespace) -> None:
    """The learned rows again for models trained with the same recipe and other seeds (same pairs): the spread of
    the learned Dice over training seeds, against the classical rows of the 'hippocampus' section."""
    from medimg.classical.registration import jacobian_summary, warp
    from medimg.io import read
    from medimg.tasks.register.predictor import LearnedRegistration

    root = DATA / "hippocampus"
    pairs = json.loads(PAIRS.read_text())["pairs"][: args.pairs]
    models = {}
    for name in args.models.split(","):
        learned = LearnedRegistration.load(name)
        learned.register(*(read(root / "imagesTr" / f"{case}_0000.nii.gz") for case in pairs[0]))  # warm-up
        dices, secs, folds = [], [], []
        for fixed_id, moving_id in pairs:
            (fi, fl), (mi, ml) = _case(root, fixed_id), _case(root, moving_id)
            res = learned.register(fi, mi)
            dices.append(_mean_dice(np.asarray(warp(ml, res.transform, fi, labels=True).voxels[0]),
                                    np.asarray(fl.voxels[0]), (1, 2)))
            secs.append(res.seconds)
            folds.append(jacobian_summary(res.displacement_field())["folding_fraction"])
        models[name] = {"dice_mean": statistics.fmean(dices), "dice_std_over_pairs": statistics.pstdev(dices),
                        "seconds_mean": statistics.fmean(secs), "folding_fraction_max": max(folds),
                        "training": _learned_training(learned.folder)}
        print(name, {k: v for k, v in models[name].items() if k != "training"})
    means = [m["dice_mean"] for m in models.values()]
    _write_section("hippocampus_seeds", {
        "pairs_file": str(PAIRS.relative_to(REPO)), "n_pairs": len(pairs), "models": models,
        "dice_mean_over_seeds": statistics.fmean(means),
        "dice_std_over_seeds": statistics.stdev(means) if len(means) > 1 else None,
        "dice_range_over_seeds": [min(means), max(means)]})


def _case(root: Path, case: str):
    from medimg.io import read

    return read(root / "imagesTr" / f"{case}_0000.nii.gz"), read(root / "labelsTr" / f"{case}.nii.gz")


def _learned_training(folder: Path) -> dict[str, Any]:
    """What the learned model was trained on and how long (from its fold metrics)."""
    out = {}
    for m in sorted(folder.glob("fold_*/metrics.json")):
        d = json.loads(m.read_text())
        out[m.parent.name] = {k: d.get(k) for k in ("n_train", "n_val", "iterations", "training_minutes",
                                                    "threads", "seed", "mode", "similarity", "prealign")}
    return out


def _random_bspline(reference, *, grid_mm: float, std_mm: float, seed: int):
    import SimpleITK as sitk

    img = reference
    size_mm = [sz * sp for sz, sp in zip(img.GetSize(), img.GetSpacing())]
    mesh = [max(1, int(round(s / grid_mm))) for s in size_mm]
    tx = sitk.BSplineTransformInitializer(img, mesh, order=3)
    rng = np.random.default_rng(seed)
    params = rng.normal(0.0, std_mm, size=len(tx.GetParameters()))
    tx.SetParameters(tuple(float(v) for v in params))
    return tx


def _composition_error(true_tx, result, points_mm: np.ndarray) -> np.ndarray:
    """|S(T(x)) - x| in mm for each point x (LPS), T the registration, S the known deformation of the moving."""
    errs = []
    for p in points_mm:
        q = result.transform.TransformPoint(tuple(float(v) for v in p))
        r = true_tx.TransformPoint(q)
        errs.append(float(np.linalg.norm(np.asarray(r) - p)))
    return np.asarray(errs)


def _brain_points(image, mask: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` random voxel centres (LPS mm) inside ``mask`` (Z, Y, X) of ``image``."""
    from medimg.io.sitk_bridge import to_sitk

    s = to_sitk(image)
    idx = np.argwhere(mask)  # (z, y, x)
    pick = idx[np.random.default_rng(seed).choice(len(idx), size=min(n, len(idx)), replace=False)]
    return np.array([s.TransformIndexToPhysicalPoint((int(x), int(y), int(z))) for z, y, x in pick])


def brain(args: argparse.Namespace) -> None:
    from medimg.classical.registration import register, warp
    from medimg.core.image import Image
    from medimg.io.sitk_bridge import to_sitk
    from medimg.metrics import dice

    z = np.load(DATA / "brain_t1_labels_voxelmorph" / "data" / "test_scan.npz")
    eval_labels = np.load(DATA / "brain_t1_labels_voxelmorph" / "data" / "labels.npz")["labels"]
    vol = z["vol"].astype(np.float32)[::2, ::2, ::2]
    seg = z["seg"].astype(np.int16)[::2, ::2, ::2]
    fixed = Image.from_array(vol[None], spacing=(2.0, 2.0, 2.0))
    fixed_lab = Image.from_array(seg[None], spacing=(2.0, 2.0, 2.0), kind="label")
    points = _brain_points(fixed, seg > 0, 5000, seed=0)
    learned = None
    if args.model:
        from medimg.tasks.register.predictor import LearnedRegistration

        learned = LearnedRegistration.load(args.model)
        learned.register(fixed, warp(fixed, _random_bspline(to_sitk(fixed), grid_mm=40.0, std_mm=3.0, seed=99),
                                     fixed))  # warm-up (untimed), on a deformation that is not evaluated
    rows = []
    for k in range(args.deformations):
        true_tx = _random_bspline(to_sitk(fixed), grid_mm=40.0, std_mm=3.0, seed=100 + k)
        moving = warp(fixed, true_tx, fixed)
        moving_lab = warp(fixed_lab, true_tx, fixed, labels=True)
        true_err = np.array([np.linalg.norm(np.asarray(true_tx.TransformPoint(tuple(p))) - p) for p in points])
        row: dict[str, Any] = {"deformation_seed": 100 + k, "true_displacement_mm_mean": float(true_err.mean()),
                               "true_displacement_mm_max": float(true_err.max())}
        ml = np.asarray(moving_lab.voxels[0])
        row["before"] = {"dice": float(np.mean([dice(ml == v, seg == v) for v in eval_labels])),
                         "field_error_mm_mean": float(true_err.mean())}
        for method in ("affine", "bspline", "demons") + (("learned",) if learned is not None else ()):
            if method == "learned":
                res = learned.register(fixed, moving)
            else:
                res = register(fixed, moving, method=method, metric="mattes", levels=(4, 2, 1),
                               bspline_grid_mm=20.0, sampling_fraction=0.05, seed=0)
            back = np.asarray(warp(moving_lab, res.transform, fixed, labels=True).voxels[0])
            err = _composition_error(true_tx, res, points)
            entry = {"dice": float(np.mean([dice(back == v, seg == v) for v in eval_labels])),
                     "field_error_mm_mean": float(err.mean()), "field_error_mm_p95": float(np.percentile(err, 95)),
                     "seconds": res.seconds}
            if method != "affine":
                entry.update(_deformable_stats(res))
            row[method] = entry
        rows.append(row)
        print({m: (round(v["dice"], 3), round(v["field_error_mm_mean"], 2)) for m, v in row.items()
               if isinstance(v, dict)})
    _write_section("brain", {"data": "brain_t1_labels_voxelmorph test_scan, every 2nd voxel (2 mm, 80x96x112)",
                             "deformation": "random cubic B-spline, control points every 40 mm, coefficient std 3 mm",
                             "settings": "Mattes MI, geometry init, levels (4, 2, 1), B-spline grid 20 mm, 5 % of the "
                                         "voxels sampled, seed 0" + (f"; learned: {args.model}" if learned else ""),
                             "learned_training": _learned_training(learned.folder) if learned else None,
                             "rows": rows})


def crossmodal(args: argparse.Namespace) -> None:
    import SimpleITK as sitk

    from medimg.classical.registration import register, warp
    from medimg.io import read
    from medimg.io.sitk_bridge import to_sitk

    study = DATA / "brain_mri_dicom" / "Study1"
    t1 = read(study / "12-T1post-05670")
    t2 = read(study / "37916-T2reg-88910")
    t1f = _as_float(t1)
    mask = np.asarray(t1f.voxels[0]) > np.percentile(np.asarray(t1f.voxels[0]), 60)
    points = _brain_points(t1f, mask, 3000, seed=0)
    ref = to_sitk(t1f)
    centre = ref.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in ref.GetSize()])
    rows = []
    rng = np.random.default_rng(7)
    for _ in range(args.trials):
        angles = np.deg2rad(rng.uniform(-5, 5, size=3))
        shift = rng.uniform(-6, 6, size=3)
        true_tx = sitk.Euler3DTransform(centre, *[float(a) for a in angles], tuple(float(v) for v in shift))
        moving = warp(_as_float(t2), true_tx, _as_float(t2))
        before = np.array([np.linalg.norm(np.asarray(true_tx.TransformPoint(tuple(p))) - p) for p in points])
        res = register(t1f, moving, method="rigid", metric="mattes", levels=(4, 2, 1), sampling_fraction=0.02, seed=0)
        err = _composition_error(true_tx, res, points)
        rows.append({"rotation_deg": np.rad2deg(angles).round(2).tolist(), "translation_mm": shift.round(2).tolist(),
                     "error_mm_before_mean": float(before.mean()), "error_mm_after_mean": float(err.mean()),
                     "error_mm_after_max": float(err.max()), "seconds": res.seconds})
        print(rows[-1])
    _write_section("crossmodal", {"fixed": "T1 post contrast (512x512x22, 0.43 x 0.43 x 6.5 mm)",
                                  "moving": "T2 (same grid), moved by a known rigid transform",
                                  "settings": "rigid, Mattes MI, levels (4, 2, 1), 2 % of the voxels sampled, seed 0",
                                  "rows": rows})


def brain_train_data(args: argparse.Namespace) -> None:
    """The four co-registered 3D series of brain_mri_dicom Study1 (another patient than the evaluation brain) as
    NIfTI files in ``--out``: the training images of the supervised brain model (outside the repository)."""
    from medimg.io import read, write

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for series in sorted((DATA / "brain_mri_dicom" / "Study1").iterdir()):
        if not series.is_dir() or "HCrop" in series.name:
            continue  # the 1 mm hippocampus crop is not a whole-head volume
        write(read(series), out / f"{series.name}.nii.gz")
        print("wrote", out / f"{series.name}.nii.gz")


def _as_float(image):
    return image.derive(np.asarray(image.voxels, np.float32), operation="as_float32")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    hp = sub.add_parser("hippocampus")
    hp.add_argument("--pairs", type=int, default=20)
    hp.add_argument("--model", default="hippocampus_registration",
                    help="learned model folder or zoo name (trained without the pairs' cases)")
    hs = sub.add_parser("hippocampus-seeds")
    hs.add_argument("--models", required=True, help="comma-separated model folders (same recipe, other seeds)")
    hs.add_argument("--pairs", type=int, default=20)
    bp = sub.add_parser("brain")
    bp.add_argument("--deformations", type=int, default=2)
    bp.add_argument("--model", default=None, help="learned model folder (trained without this brain)")
    sub.add_parser("brain-train-data").add_argument("--out", default=str(REPO / "runs" / "reg" / "brain_mri_nifti"))
    sub.add_parser("crossmodal").add_argument("--trials", type=int, default=3)
    args = ap.parse_args(argv)
    {"hippocampus": hippocampus, "brain": brain, "crossmodal": crossmodal, "hippocampus-seeds": hippocampus_seeds,
     "brain-train-data": brain_train_data}[args.cmd](args)


if __name__ == "__main__":
    main()
