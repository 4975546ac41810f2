"""Inference with the shipped (trained) hippocampus model: medimg vs MONAI vs nnU-Net v2, time, memory and Dice.

Same network, same weights (the zoo's ``hippocampus`` fold 0), same patch (the plan's 40x56x40), same overlap 0.5,
same Gaussian weighting (sigma 1/8 of the patch), 2 torch threads. Inputs are preprocessed once by the model's
plan (outside the timed region), so every runner times only its sliding-window call.

Runners, each in a fresh interpreter (so that its peak RSS, VmHWM, is its own), interleaved:
* ``medimg_bf16``: ``sliding_window_predict`` as ``medimg predict`` calls it (bf16 autocast, channels-last);
* ``medimg_fp32``: the same with ``autocast_bf16=False``;
* ``monai_fp32``: ``monai.inferers.sliding_window_inference(mode="gaussian", sigma_scale=0.125, overlap=0.5)``
  under ``torch.inference_mode()``, as its documentation shows it (fp32);
* ``monai_bf16``: the same call inside ``torch.autocast("cpu", dtype=torch.bfloat16)``, which MONAI leaves to
  the caller;
* ``nnunet_fp32``: nnU-Net v2's ``nnUNetPredictor.predict_sliding_window_return_logits`` on the CPU (mirroring
  off, Gaussian on, step 0.5), given our network through ``manual_initialization``. nnU-Net disables autocast on
  the CPU, so this is fp32. Needs nnunetv2 importable: its pip dependencies pull a CUDA torch, so install it
  beside ours without dependencies, e.g.
  ``pip install --no-deps --target /tmp/nnu nnunetv2==2.8.1 acvl_utils==0.2.6 dynamic_network_architectures==0.4.4
  batchgenerators==0.25.5 batchgeneratorsv2==0.3.6 tqdm blosc2 numexpr msgpack ndindex httpx idna pandas`` and
  pass ``--nnunet-path /tmp/nnu``; without it the runner is skipped and says so.

Part A: the 42 validation cases of fold 0 (never trained on): milliseconds per case (median and mean over
cases; two warm-up cases first), mean Dice per class against the reference labels, argmax agreement with
``monai_fp32``. Part B: the whole 160x192x224 brain of brain_t1_labels_voxelmorph (z-scored) with the same
network, as the large-volume memory check (the issue asks for well under 4 GB): seconds and peak RSS.
The achieved convolution GFLOP/s (FLOPs counted from module shapes with forward hooks) is compared with an
estimate of this CPU's bf16 peak.

    python benchmarks/inference_hippocampus.py [--nnunet-path /tmp/nnu]   # ~5 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
from inference import _rss, cpu_peak  # noqa: E402 - the sibling benchmark script

RUNNERS = ("medimg_bf16", "monai_fp32", "nnunet_fp32", "monai_bf16", "medimg_fp32")


def _make_runner(name: str, net, plan, nnunet_path: str | None):
    """A function (C, Z, Y, X) float32 tensor -> (K, Z, Y, X) scores (probabilities or logits) for ``name``."""
    import torch

    patch = tuple(plan.patch_size)
    if name.startswith("medimg"):
        from medimg.infer.sliding import sliding_window_predict

        bf16 = name.endswith("bf16")
        return lambda v: sliding_window_predict(net, v, patch_size=patch, n_classes=plan.n_classes, overlap=0.5,
                                                batch_size=plan.batch_size, autocast_bf16=bf16)
    if name.startswith("monai"):
        from monai.inferers import sliding_window_inference

        bf16 = name.endswith("bf16")

        def monai(v):
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = sliding_window_inference(v[None], patch, plan.batch_size,
                                               lambda x: torch.softmax(net(x).float(), 1), overlap=0.5,
                                               mode="gaussian", sigma_scale=0.125)
            return torch.as_tensor(out)[0]

        return monai
    sys.path.insert(0, nnunet_path)
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    config = {"patch_size": list(patch), "spacing": [1.0, 1.0, 1.0], "data_identifier": "medimg",
              "preprocessor_name": "DefaultPreprocessor", "batch_size": plan.batch_size,
              "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False],
              "resampling_fn_data": "resample_data_or_seg_to_shape",
              "resampling_fn_seg": "resample_data_or_seg_to_shape",
              "resampling_fn_probabilities": "resample_data_or_seg_to_shape", "resampling_fn_data_kwargs": {},
              "resampling_fn_seg_kwargs": {}, "resampling_fn_probabilities_kwargs": {},
              "architecture": {"network_class_name": "medimg", "arch_kwargs": {}, "_kw_requires_import": []},
              "batch_dice": False}
    plans = {"dataset_name": "hippocampus", "plans_name": "medimg", "configurations": {"3d_fullres": config},
             "label_manager": "LabelManager", "image_reader_writer": "SimpleITKIO",
             "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
             "original_median_spacing_after_transp": [1.0, 1.0, 1.0],
             "original_median_shape_after_transp": [36, 50, 35], "foreground_intensity_properties_per_channel": {},
             "experiment_planner_used": "medimg"}
    manager = PlansManager(plans)
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                                perform_everything_on_device=False, device=torch.device("cpu"), allow_tqdm=False)
    labels = {n: i for i, n in enumerate(plan.class_names)}
    predictor.manual_initialization(net, manager, manager.get_configuration("3d_fullres"), None,
                                    {"labels": labels, "channel_names": {"0": "MRI"}}, "medimg", (0, 1, 2))
    return lambda v: torch.as_tensor(predictor.predict_sliding_window_return_logits(v))


def worker(name: str, cases_json: str, out_npz: str, nnunet_path: str | None) -> dict:
    import torch

    torch.set_num_threads(2)
    sys.path.insert(0, str(REPO / "src"))
    from medimg.tasks.segment.predictor import load_model
    from medimg.zoo import resolve_model

    model = load_model(resolve_model("hippocampus"), folds=["fold_0"])
    net, plan = model.networks[0], model.plan
    run = _make_runner(name, net, plan, nnunet_path)
    data = np.load(cases_json.replace(".json", ".npz"))
    ids = json.loads(Path(cases_json).read_text())
    vols = [torch.from_numpy(data[f"img_{i}"]) for i in range(len(ids))]
    for v in vols[:2]:  # warm-up: oneDNN primitive creation
        run(v)
    ms, preds = [], {}
    base = _rss("VmRSS")
    for i, v in enumerate(vols):
        t0 = time.perf_counter()
        scores = run(v)
        ms.append((time.perf_counter() - t0) * 1000)
        preds[f"pred_{i}"] = scores.float().argmax(0).numpy().astype(np.uint8)
    case_peak = _rss("VmHWM")
    brain = torch.from_numpy(data["brain"])
    t0 = time.perf_counter()
    brain_pred = run(brain).float().argmax(0).numpy().astype(np.uint8)
    brain_s = time.perf_counter() - t0
    np.savez_compressed(out_npz, brain=brain_pred, **preds)
    return {"runner": name, "ms_per_case": ms, "rss_before_cases_mb": base / 2**20,
            "peak_rss_after_cases_mb": case_peak / 2**20, "brain_seconds": brain_s,
            "peak_rss_after_brain_mb": _rss("VmHWM") / 2**20, "threads": torch.get_num_threads()}


def conv_flops(net, patch) -> int:
    """FLOPs (2 per multiply-add) of the convolutions of one forward pass of a (1, C, *patch) input."""
    import torch
    from torch import nn

    total = 0

    def hook(module, inputs, output):
        nonlocal total
        k = math.prod(module.kernel_size)
        if isinstance(module, nn.ConvTranspose3d):
            total += 2 * math.prod(inputs[0].shape) * module.out_channels // module.groups * k
        else:
            total += 2 * math.prod(output.shape) * (module.in_channels // module.groups) * k

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))]
    try:
        with torch.inference_mode():
            net(torch.zeros((1, net.spec.in_channels, *patch)))
    finally:
        for h in handles:
            h.remove()
    return total


def n_patches(shape, patch) -> int:
    sys.path.insert(0, str(REPO / "src"))
    from medimg.infer.sliding import tile_starts

    padded = [max(s, p) for s, p in zip(shape, patch)]
    return math.prod(len(t) for t in tile_starts(padded, patch, overlap=0.5))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nnunet-path", default=None, help="folder where nnunetv2 was installed with --no-deps --target")
    ap.add_argument("--runners", nargs="+", default=list(RUNNERS), choices=RUNNERS)
    ap.add_argument("--max-cases", type=int, default=None)
    ap.add_argument("--out", default=str(HERE / "results" / "inference_hippocampus.json"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--cases", help=argparse.SUPPRESS)
    ap.add_argument("--npz", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.cases, args.npz, args.nnunet_path)))
        return 0

    sys.path.insert(0, str(REPO / "src"))
    import monai
    import torch

    from medimg.metrics import dice
    from medimg.tasks.segment.data import SegDataset
    from medimg.tasks.segment.predictor import load_model
    from medimg.tasks.segment.preprocess import preprocess_case
    from medimg.testing import data_root
    from medimg.zoo import resolve_model

    root = data_root()
    model_dir = resolve_model("hippocampus")
    model = load_model(model_dir, folds=["fold_0"])
    plan, net = model.plan, model.networks[0]
    val = json.loads((model_dir / "splits.json").read_text())["folds"][0]["val"][: args.max_cases]
    ds = SegDataset.open(root / "hippocampus")
    images, labels = [], []
    for case in val:
        img, lab = ds.load(case)
        x, y, _ = preprocess_case(img, lab, plan)[:3]
        images.append(x.astype(np.float32))
        labels.append(np.asarray(y)[0] if np.asarray(y).ndim == 4 else np.asarray(y))
    vol = np.load(root / "brain_t1_labels_voxelmorph" / "data" / "test_scan.npz")["vol"].astype(np.float32)
    brain = ((vol - vol.mean()) / vol.std())[None]
    flops = conv_flops(net, tuple(plan.patch_size))
    patches_cases = sum(n_patches(x.shape[1:], plan.patch_size) for x in images)
    patches_brain = n_patches(brain.shape[1:], plan.patch_size)
    peak = cpu_peak()

    results, preds = {}, {}
    env = dict(os.environ, OMP_NUM_THREADS="2")
    with tempfile.TemporaryDirectory() as tmp:
        cases_json = Path(tmp) / "cases.json"
        cases_json.write_text(json.dumps(val))
        np.savez(Path(tmp) / "cases.npz", brain=brain, **{f"img_{i}": x for i, x in enumerate(images)})
        for name in args.runners:
            if name.startswith("nnunet"):
                if args.nnunet_path is None:
                    results[name] = {"skipped": "nnunetv2 not given: pass --nnunet-path (see the docstring)"}
                    print(f"{name}: skipped (no --nnunet-path)")
                    continue
            npz = Path(tmp) / f"{name}.npz"
            cmd = [sys.executable, __file__, "--worker", name, "--cases", str(cases_json), "--npz", str(npz)]
            if args.nnunet_path:
                cmd += ["--nnunet-path", args.nnunet_path]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if out.returncode != 0:
                results[name] = {"failed": out.stderr.strip().splitlines()[-1:]}
                print(f"{name}: failed: {out.stderr.strip()[-400:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            ms = np.array(r["ms_per_case"])
            r.update(ms_per_case_median=float(np.median(ms)), ms_per_case_mean=float(ms.mean()),
                     conv_gflops_per_s_cases=flops * patches_cases / (ms.sum() / 1000) / 1e9,
                     conv_gflops_per_s_brain=flops * patches_brain / r["brain_seconds"] / 1e9)
            ref_peak = peak["bf16_peak_gflops"] if name.endswith("bf16") else peak["fp32_peak_gflops"]
            r["fraction_of_peak_brain"] = r["conv_gflops_per_s_brain"] / ref_peak if ref_peak else None
            with np.load(npz) as z:
                preds[name] = {k: z[k] for k in z.files}
            per_case = [[dice(preds[name][f"pred_{i}"] == c, labels[i] == c) for c in range(1, plan.n_classes)]
                        for i in range(len(val))]
            arr = np.array(per_case)
            r["dice_mean_per_class"] = dict(zip(plan.class_names[1:], arr.mean(0).round(4).tolist()))
            r["dice_std_per_class"] = dict(zip(plan.class_names[1:], arr.std(0).round(4).tolist()))
            results[name] = r
            print(f"{name:12s} {r['ms_per_case_median']:7.1f} ms/case (median)  peak RSS "
                  f"{r['peak_rss_after_cases_mb']:6.0f} MB  brain {r['brain_seconds']:6.1f} s "
                  f"{r['peak_rss_after_brain_mb']:6.0f} MB  Dice {r['dice_mean_per_class']}", flush=True)

    ok = {k: v for k, v in results.items() if "ms_per_case" in v}
    ratios, agreement = {}, {}
    ref = "medimg_bf16"
    for name, r in ok.items():
        if name == ref or ref not in ok:
            continue
        ratios[f"{name}_over_{ref}"] = {
            "time_per_case": r["ms_per_case_median"] / ok[ref]["ms_per_case_median"],
            "time_brain": r["brain_seconds"] / ok[ref]["brain_seconds"],
            "peak_rss_brain": r["peak_rss_after_brain_mb"] / ok[ref]["peak_rss_after_brain_mb"]}
    for name in ok:
        if name != "monai_fp32" and "monai_fp32" in preds:
            agreement[f"{name}_vs_monai_fp32"] = {
                "cases_argmax_equal": float(np.mean([(preds[name][f"pred_{i}"] == preds["monai_fp32"][f"pred_{i}"])
                                                     .mean() for i in range(len(val))])),
                "brain_argmax_equal": float((preds[name]["brain"] == preds["monai_fp32"]["brain"]).mean())}
    versions = {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
                "monai": monai.__version__}
    if args.nnunet_path:
        versions["nnunetv2"] = _dist_version(args.nnunet_path)
    out = {
        "benchmark": "inference_hippocampus",
        "command": "python benchmarks/inference_hippocampus.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.platform(), "versions": versions,
        "model": {"zoo": "hippocampus", "fold": "fold_0", "parameters": sum(p.numel() for p in net.parameters()),
                  "patch": list(plan.patch_size), "batch_size": plan.batch_size,
                  "conv_gflop_per_patch": flops / 1e9},
        "cases": {"n": len(val), "which": "fold 0 validation cases (splits.json of the zoo model)",
                  "patches": patches_cases},
        "brain": {"shape": list(brain.shape[1:]), "patches": patches_brain},
        "load_average_1_5_15_min_at_end": list(os.getloadavg()), "cpu_peak_estimate": peak,
        "results": results, "ratios": ratios, "agreement": agreement,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    for k, r in ratios.items():
        print(f"{k}: per case {r['time_per_case']:.2f}x, brain {r['time_brain']:.2f}x, "
              f"brain peak RSS {r['peak_rss_brain']:.2f}x")
    print(f"wrote {args.out}")
    return 0


def _dist_version(path: str) -> str:
    for p in Path(path).glob("nnunetv2-*.dist-info"):
        return p.name.split("-")[1].removesuffix(".dist-info")
    return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
