"""Classification benchmarks (issue 5): AdrenalMNIST3D, BUSI, MRI sequence type and inference speed.

Every model is trained by `medimg train classify` (commands below, also in BENCHMARKS.md) and scored here on
samples it never saw in training nor in calibration: the temperature of each model is fitted on the validation
samples of its own training fold, and the scores below come from a separate held-out set.

    python benchmarks/classification.py prepare          # BUSI split file + CSV, MRI slices (under runs/cls/)

    # 1. AdrenalMNIST3D: train on folds of the official train split (950 train / 238 calibration each), score on
    #    the official val split (98 volumes; each fold alone and the ensemble of the folds).
    NPZ=../shared/data/adrenalmnist3d/adrenalmnist3d_64_trainval.npz
    medimg train classify $NPZ --split train -o runs/cls/adrenal64 --fold 0 --minutes 15 --seed 0
    for k in 0 1 2; do   # the shipped model (make zoo-adrenal): a 3-fold ensemble at 28^3
      medimg train classify $NPZ --split train -o runs/cls/adrenal28 --fold $k --minutes 15 --seed 0 \
          --set 'input_size=[28,28,28]'
    done
    python benchmarks/classification.py adrenal --models runs/cls/adrenal64 runs/cls/adrenal28

    # 2. BUSI (3 classes): seeded stratified 80/20 split (benchmarks/splits/busi_split.json); three models.
    for m in resnet18 vgg16 mobilenetv3_small; do
      medimg train classify runs/cls/busi.csv --split train -o runs/cls/busi_$m --fold 0 --minutes 6 \
          --seed 0 --set model=$m
    done
    python benchmarks/classification.py busi --models runs/cls/busi_resnet18 runs/cls/busi_vgg16 \
        runs/cls/busi_mobilenetv3_small

    # 3. MRI sequence type from pixels (T1 post / T1 pre / FLAIR / T2), one study: upper slab trains, lower tests.
    medimg train classify runs/cls/mri_slices --split train -o runs/cls/mri --fold 0 --minutes 3 --seed 0
    python benchmarks/classification.py mri --model runs/cls/mri

    # 4. Inference speed of every registered classifier in fp32 and bf16, with MONAI's ResNet-18 / DenseNet-121.
    python benchmarks/classification.py speed

Each sub-command updates its own section of benchmarks/results/classification.json.

Held-out metrics per model: macro one-vs-rest AUC, accuracy, balanced accuracy, per-class sensitivity and
specificity, confusion matrix, ECE / Brier / log loss before and after temperature scaling, the AUROC of the
uncertainty for telling errors from correct decisions (predictive entropy of the calibrated probabilities, and
entropy and mutual information of test-time augmentation), and two explanation sanity checks on a fixed subset:
the cascading weight-randomisation test (Spearman correlation of the Grad-CAM map with the trained model's map as
blocks are re-initialised from the head down; a map that depends on the weights falls towards 0) and the deletion
curve (area under the class probability as the most salient pixels are removed first, against random order;
lower is better).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "classification.json"
DATA = Path(os.environ.get("MEDIMG_DATA", REPO.parent / "shared" / "data"))
RUNS = REPO / "runs" / "cls"
BUSI_SPLIT = HERE / "splits" / "busi_split.json"
MRI_SERIES = {"T1post": "12-T1post-05670", "T1pre": "34909-T1prereg-84610", "FLAIR": "36459-FLAIRreg-76244",
              "T2": "37916-T2reg-88910"}


# ---------------------------------------------------------------------------------------------------------------
# data preparation
# ---------------------------------------------------------------------------------------------------------------
def busi_split(root: Path, *, seed: int = 0, test_fraction: float = 0.2) -> dict[str, Any]:
    """Stratified split of the BUSI class folders: the same file names for the same seed on every machine."""
    from medimg.tasks.classify import open_classification_dataset

    ds = open_classification_dataset(root)
    rng = np.random.default_rng(seed)
    test: list[str] = []
    train: list[str] = []
    labels = np.asarray(ds.labels)
    for k in range(len(ds.class_names)):
        ids = sorted(sid for sid, y in zip(ds.ids, labels) if int(y) == k)
        order = rng.permutation(len(ids))
        n_test = int(round(test_fraction * len(ids)))
        test += [ids[i] for i in sorted(order[:n_test])]
        train += [ids[i] for i in sorted(order[n_test:])]
    return {"dataset": "breast_ultrasound_busi", "seed": seed, "test_fraction": test_fraction,
            "method": "per class: numpy default_rng(seed).permutation of the sorted ids, first round(0.2 n) to test",
            "n_train": len(train), "n_test": len(test), "train": sorted(train), "test": sorted(test)}


def prepare(args: argparse.Namespace) -> None:
    """Write the BUSI split file (committed) and CSV, and the MRI slices (runs/cls/, not committed)."""
    from medimg.io import read, write
    from medimg.preprocess.spatial import resample_to

    RUNS.mkdir(parents=True, exist_ok=True)
    root = DATA / "breast_ultrasound_busi"
    split = busi_split(root)
    if BUSI_SPLIT.exists():
        saved = json.loads(BUSI_SPLIT.read_text())
        if saved["test"] != split["test"]:
            sys.exit(f"{BUSI_SPLIT}: the saved split differs from the one computed now; delete it to re-split")
    else:
        BUSI_SPLIT.parent.mkdir(parents=True, exist_ok=True)
        BUSI_SPLIT.write_text(json.dumps(split, indent=1))
    with open(RUNS / "busi.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        for part in ("train", "test"):
            for sid in split[part]:
                w.writerow([str(root / sid), sid.split("/")[0], part])
    print(f"BUSI: {split['n_train']} train / {split['n_test']} test -> {RUNS / 'busi.csv'}, {BUSI_SPLIT}")

    # MRI: the four co-registered series of Study1 on the FLAIR grid (no size or aspect cue), one 2D image per
    # slice; the upper half of the slices (by index) trains, the lower half tests.
    study = DATA / "brain_mri_dicom" / "Study1"
    ref = read(study / MRI_SERIES["FLAIR"])
    out = RUNS / "mri_slices"
    for name, folder in MRI_SERIES.items():
        image = resample_to(read(study / folder), ref, interpolation="linear")
        vox = np.asarray(image.voxels, np.float32)[0]
        half = vox.shape[0] // 2
        for z in range(vox.shape[0]):
            part = "train" if z < half else "test"
            dst = out / part / name / f"{name}_z{z:02d}.nii.gz"
            dst.parent.mkdir(parents=True, exist_ok=True)
            slice_image = image.derive(vox[None, z:z + 1], operation="slice", params={"z": z})
            if not dst.exists():
                write(slice_image, dst)
    print(f"MRI: {len(MRI_SERIES)} series x {ref.spatial_shape[0]} slices -> {out}/(train|test)/<series>/")


# ---------------------------------------------------------------------------------------------------------------
# evaluation of one trained model on held-out samples
# ---------------------------------------------------------------------------------------------------------------
def _cascade_layers(net: Any) -> list[str]:
    """Head first, then the backbone's stages from the last to the first, then its stem (those with parameters)."""
    backbone = getattr(net, "backbone", None)
    if backbone is None:  # e.g. slice_lstm: every layer, from the last the forward pass calls
        return []
    names = ["head"]
    for name, module in reversed(list(backbone.named_children())):
        children = list(module.named_children()) if name == "stages" else []
        for child, sub in (reversed(children) if children else [("", module)]):
            if any(True for _ in sub.parameters()):
                names.append(f"backbone.{name}" + (f".{child}" if child else ""))
    return names


def explanation_checks(net: Any, x: np.ndarray, *, seed: int = 0) -> dict[str, Any]:
    import torch

    from medimg.explain.saliency import grad_cam
    from medimg.explain.saliency_checks import deletion_curve, randomisation_check

    xt = torch.from_numpy(np.ascontiguousarray(x))
    net.eval()
    cam = grad_cam(net, xt, target_layer=net.cam_layer)
    rnd = randomisation_check(net, xt, method="grad_cam", target_layer=net.cam_layer,
                              layers=_cascade_layers(net) or None, seed=seed)
    dele = deletion_curve(net, xt, cam, steps=10, n_random=2, seed=seed, batch_size=8)
    return {
        "n_samples": int(len(x)), "randomisation_layers": rnd["layers"],
        "randomisation_spearman": [round(float(v), 4) for v in rnd["spearman"]],
        "randomisation_final_spearman": round(float(rnd["final_spearman"]), 4),
        "deletion_auc_gradcam": round(float(np.mean(dele["auc"])), 4),
        "deletion_auc_random": round(float(np.mean(dele["random_auc"])), 4),
        "deletion_gradcam_below_random_fraction": round(float(np.mean(dele["auc"] < dele["random_auc"])), 4),
    }


def _as_logits(p: np.ndarray, multilabel: bool) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p)) if multilabel else np.log(p)


def evaluate_model(model_dir: Path, inputs: Any, *, folds: list[str] | None = None, explain_n: int = 16,
                   tta: bool = True) -> dict[str, Any]:
    """Held-out metrics of a model folder on ``inputs``: one fold, or the ensemble of several (mean probability)."""
    import torch

    from medimg.explain.calibration import apply_temperature
    from medimg.explain.uncertainty import uncertainty_auroc
    from medimg.tasks.classify.evaluate import validation_metrics
    from medimg.tasks.classify.predictor import load, network_logits, predict_samples
    from medimg.tasks.classify.preprocess import preprocess_sample

    model = load(model_dir, folds=folds)
    plan = model.plan
    multilabel = plan.task == "multilabel"
    names = list(plan.class_names)
    labels = np.array([names.index(str(lab)) for lab in inputs.labels])
    t0 = time.perf_counter()
    x = np.stack([preprocess_sample(inputs.load_image(i).voxels, plan) for i in range(len(inputs))])
    prep_s = time.perf_counter() - t0
    before, after = [], []
    t0 = time.perf_counter()
    for net, t in zip(model.networks, model.temperatures):
        z = network_logits(net, x, batch_size=16)
        before.append(apply_temperature(z, 1.0, multilabel=multilabel))
        after.append(apply_temperature(z, t, multilabel=multilabel))
    infer_s = time.perf_counter() - t0
    # the ensemble's probability is the mean over folds (as medimg predict does); a single fold is itself
    kw = dict(task=plan.task, class_names=names)
    m_after = validation_metrics(labels, _as_logits(np.mean(after, axis=0), multilabel), **kw)
    m_before = validation_metrics(labels, _as_logits(np.mean(before, axis=0), multilabel), **kw)
    keep = ("auc_macro", "auc_per_class", "accuracy", "balanced_accuracy", "confusion_matrix", "per_class",
            "uncertainty_auroc")
    out: dict[str, Any] = {k: m_after[k] for k in keep if k in m_after}
    for k in ("ece", "brier", "log_loss"):
        out[f"{k}_before"], out[f"{k}_after"] = m_before[f"{k}_before"], m_after[f"{k}_before"]
    out["auc_macro_before"] = m_before["auc_macro"]
    out.update(model=str(model_dir), folds=model.folds, temperatures=[round(t, 4) for t in model.temperatures],
               n=int(len(labels)), class_counts={n: int((labels == k).sum()) for k, n in enumerate(names)},
               network=f"{plan.model} width {plan.model_width} ({plan.dims}D, {plan.stem} stem)",
               input_size=list(plan.input_size), preprocess_s=round(prep_s, 3),
               images_per_s_network=round(len(labels) / infer_s, 1))
    out["training"] = []
    for fold in model.folds:
        tm = json.loads((model_dir / fold / "metrics.json").read_text())
        out["training"].append({k: tm.get(k) for k in ("fold", "n_train", "n_val", "iterations", "training_minutes",
                                                       "batch_size", "autocast_bf16", "loss", "sampling",
                                                       "stop_reason")})
    if tta:
        t0 = time.perf_counter()
        preds = predict_samples(model, inputs, uncertainty="tta", explain="none")
        out["tta_seconds_per_image"] = round((time.perf_counter() - t0) / len(preds), 4)
        p_tta = np.stack([p.probabilities for p in preds])
        correct = p_tta.argmax(1) == labels
        out["tta_accuracy"] = round(float(correct.mean()), 4)
        if 0 < correct.sum() < len(correct):
            out["tta_uncertainty_auroc_entropy"] = round(uncertainty_auroc([p.entropy for p in preds], correct), 4)
            out["tta_uncertainty_auroc_mutual_information"] = round(
                uncertainty_auroc([p.mutual_information for p in preds], correct), 4)
    if explain_n:
        rng = np.random.default_rng(0)
        idx = np.sort(rng.choice(len(x), size=min(explain_n, len(x)), replace=False))
        torch.manual_seed(0)
        out["explanation"] = explanation_checks(model.networks[0], x[idx])
    return out


def _write_section(name: str, section: dict[str, Any]) -> None:
    import torch
    from _results import write_section

    write_section(RESULTS, name, section, {"torch": torch.__version__, "threads": torch.get_num_threads(),
                                           "cpu": platform.processor() or platform.machine()})


def adrenal(args: argparse.Namespace) -> None:
    from medimg.tasks.classify.inputs import open_prediction_inputs

    npz = DATA / "adrenalmnist3d" / "adrenalmnist3d_64_trainval.npz"
    inputs = open_prediction_inputs(npz, split="val")
    rows = {}
    for m in args.models:
        folds = sorted(p.parent.name for p in Path(m).glob("fold_*/model.pt"))
        print(f"evaluating {m} ({', '.join(folds)}) on the val split ({len(inputs)} volumes)")
        if len(folds) > 1:
            for fold in folds:
                rows[f"{Path(m).name}/{fold}"] = evaluate_model(Path(m), inputs, folds=[fold], explain_n=0, tta=False)
            rows[f"{Path(m).name}/ensemble"] = evaluate_model(Path(m), inputs, explain_n=args.explain_n)
        else:
            rows[Path(m).name] = evaluate_model(Path(m), inputs, explain_n=args.explain_n)
    _write_section("adrenalmnist3d", {
        "data": str(npz.relative_to(DATA)), "train": "fold 0 of 5 of the official train split (seeded, stratified)",
        "calibration": "the fold's 238 validation volumes", "evaluation": "official val split (never trained on)",
        "anchor": "MedMNIST v2 (Yang et al., Sci Data 10:41, 2023), 28^3 test split; see BENCHMARKS.md",
        "models": rows})


def busi(args: argparse.Namespace) -> None:
    from medimg.tasks.classify.inputs import open_prediction_inputs

    inputs = open_prediction_inputs(RUNS / "busi.csv", split="test")
    rows = {}
    for m in args.models:
        print(f"evaluating {m} on the BUSI test split ({len(inputs)} images)")
        rows[Path(m).name] = evaluate_model(Path(m), inputs, explain_n=args.explain_n)
    _write_section("busi", {"split_file": str(BUSI_SPLIT.relative_to(REPO)), "n_test": len(inputs),
                            "calibration": "fold-0 validation images of the training split", "models": rows})


def mri(args: argparse.Namespace) -> None:
    from medimg.tasks.classify.inputs import open_prediction_inputs
    from medimg.tasks.classify.predictor import load, predict_samples

    inputs = open_prediction_inputs(RUNS / "mri_slices", split="test")
    row = evaluate_model(Path(args.model), inputs, explain_n=args.explain_n)
    # series-level decision: mean calibrated probability over the held-out slices of each series
    model = load(args.model)
    preds = predict_samples(model, inputs, uncertainty="tta", explain="none")
    series = {}
    for name in model.class_names:
        p = np.mean([q.probabilities for q in preds if str(q.label) == name], axis=0)
        series[name] = {"pred": model.class_names[int(np.argmax(p))],
                        "probabilities": {c: round(float(v), 4) for c, v in zip(model.class_names, p)}}
    row["series_decision"] = series
    row["series_correct"] = int(sum(v["pred"] == k for k, v in series.items()))
    _write_section("mri_sequence", {
        "data": "brain_mri_dicom/Study1: 4 co-registered series of one patient, 22 slices each, resampled to the "
                "FLAIR grid; slices 0-10 train (fold 0: calibration on its validation slices), 11-21 test",
        "model": row})


def speed(args: argparse.Namespace) -> None:
    import torch

    from medimg.models import ClassifierSpec, build_classifier
    from medimg.tasks.classify.predictor import network_logits

    torch.manual_seed(0)
    configs = [("resnet18", 2), ("resnet34", 2), ("vgg16", 2), ("densenet121", 2), ("mobilenetv3_small", 2),
               ("resnet18", 3), ("resnet18_25d", 3), ("resnet18_acs", 3), ("slice_lstm", 3),
               ("mobilenetv3_small", 3), ("densenet121", 3)]
    size = {2: (224, 224), 3: (64, 64, 64)}
    batch = {2: 16, 3: 4}
    rows = []

    def rate(net: Any, x: np.ndarray, bf16: bool) -> float:
        """Best of 3 timed rounds (images/s): other processes on the machine only ever slow a round down."""
        network_logits(net, x[:2], batch_size=2, autocast_bf16=bf16)  # warm-up
        best = 0.0
        for _ in range(3):
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < args.seconds / 3 or n < len(x):
                network_logits(net, x, batch_size=len(x), autocast_bf16=bf16)
                n += len(x)
            best = max(best, n / (time.perf_counter() - t0))
        return best

    for name, dims in configs:
        extra = {"slices": size[3][0]} if name == "resnet18_25d" else {}
        net = build_classifier(ClassifierSpec(name=name, dims=dims, in_channels=1, n_classes=2,
                                              width=16 if name == "mobilenetv3_small" else 64, stem="imagenet",
                                              **extra))
        x = np.random.default_rng(0).standard_normal((batch[dims], 1, *size[dims])).astype(np.float32)
        row = {"model": name, "dims": dims, "input": "x".join(map(str, size[dims])), "batch": batch[dims],
               "parameters_m": round(sum(p.numel() for p in net.parameters()) / 1e6, 2),
               "fp32_images_per_s": round(rate(net, x, False), 2), "bf16_images_per_s": round(rate(net, x, True), 2)}
        row["bf16_speedup"] = round(row["bf16_images_per_s"] / row["fp32_images_per_s"], 2)
        rows.append(row)
        print(row)
    peers = []
    try:
        from monai.networks.nets import DenseNet121, resnet18

        for label, make, dims, ours in [
                # conv1_t_stride=2: the ImageNet stem (7x7 stride-2 convolution + max pooling) that ours uses;
                # MONAI's default stride 1 would do 4x (2D) / 8x (3D) the work and flatter the comparison
                ("MONAI resnet18 2D", lambda: resnet18(spatial_dims=2, n_input_channels=1, num_classes=2,
                                                       conv1_t_stride=2), 2, "resnet18"),
                ("MONAI DenseNet121 2D", lambda: DenseNet121(spatial_dims=2, in_channels=1, out_channels=2), 2,
                 "densenet121"),
                ("MONAI resnet18 3D", lambda: resnet18(spatial_dims=3, n_input_channels=1, num_classes=2,
                                                       conv1_t_stride=2), 3, "resnet18")]:
            net = make()
            x = np.random.default_rng(0).standard_normal((batch[dims], 1, *size[dims])).astype(np.float32)
            own = build_classifier(ClassifierSpec(name=ours, dims=dims, in_channels=1, n_classes=2, width=64,
                                                  stem="imagenet"))
            row = {"peer": label, "dims": dims}
            for precision, bf16 in (("fp32", False), ("bf16", True)):
                # ours and the peer measured back to back, twice, best of each: the same machine state
                mine_r = rate(own, x, bf16)
                peer_r = rate(net, x, bf16)
                mine_r, peer_r = max(mine_r, rate(own, x, bf16)), max(peer_r, rate(net, x, bf16))
                row[f"{precision}_images_per_s"] = round(peer_r, 2)
                row[f"medimg_{precision}_images_per_s"] = round(mine_r, 2)
                row[f"medimg_{precision}_ratio"] = round(mine_r / peer_r, 2)
            peers.append(row)
            print(row)
    except ImportError as exc:  # MONAI is an optional benchmark dependency
        peers.append({"error": f"MONAI not installed: {exc}"})
    _write_section("speed", {"note": "random weights, standard width (64; MobileNetV3-Small 16), ImageNet stem, "
                                     "1 input channel, 2 classes; network forward only (no preprocessing); "
                                     f"best of 3 rounds of {args.seconds / 3:g} s per cell; peers measured back to "
                                     "back with the same medimg network", "rows": rows, "peers": peers})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("prepare")
    for name in ("adrenal", "busi"):
        p = sub.add_parser(name)
        p.add_argument("--models", nargs="+", required=True)
        p.add_argument("--explain-n", type=int, default=16)
    p = sub.add_parser("mri")
    p.add_argument("--model", required=True)
    p.add_argument("--explain-n", type=int, default=16)
    p = sub.add_parser("speed")
    p.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args(argv)
    {"prepare": prepare, "adrenal": adrenal, "busi": busi, "mri": mri, "speed": speed}[args.cmd](args)


if __name__ == "__main__":
    main()
