"""Sliding-window inference benchmark: medimg vs MONAI, fp32 and bf16 autocast, on a 3D U-Net and a brain MRI.

Input: voxelmorph test_scan.npz 'vol' (160x192x224 T1 brain MRI, from ../shared/data or $MEDIMG_DATA), z-scored.
Network: a 3D U-Net built here with torch.nn (4 levels, 16/32/64/128 channels, two 3x3x3 conv + InstanceNorm +
LeakyReLU per level, max-pool down, transposed-conv up, 4 output classes), random weights (seed 0), eval mode; or
``medimg.models.build_network("unet3d", ...)`` if that exists. Patch 96^3, overlap 0.5, 2 patches per batch.

Each of four runs happens in a fresh interpreter so that its peak RSS (VmHWM) is its own:
* medimg fp32 / bf16: ``sliding_window_predict(..., autocast_bf16=False / True)`` (channels-last patches, default);
* MONAI fp32 / bf16: ``sliding_window_inference(mode="gaussian", sigma_scale=0.125, overlap=0.5, sw_batch_size=2)``
  with a predictor that returns softmax probabilities, under ``torch.inference_mode()`` and, for bf16, under the
  same ``torch.autocast("cpu", dtype=torch.bfloat16)``.
One run each (each takes 1-2 minutes); the first batch includes oneDNN set-up for both. Reported: wall time, peak
RSS and its growth over the RSS before the call, time and memory ratios (medimg / MONAI, < 1 = medimg better),
argmax agreement (fraction of equal voxels) between pairs, and achieved GFLOP/s of the convolutions (FLOPs counted
analytically from module shapes with forward hooks) against an estimated theoretical peak of this CPU.

    python benchmarks/inference.py            # writes benchmarks/results/inference.json, ~6 minutes on 2 cores
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
N_CLASSES = 4
RUNS = ("medimg_fp32", "monai_fp32", "medimg_bf16", "monai_bf16")  # interleaved: drifts in load hit both


def build_unet():
    """The benchmark network: medimg.models.build_network if present, else a local 3D U-Net."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    try:
        from medimg.models import build_network  # type: ignore[attr-defined]

        return build_network("unet3d", in_channels=1, out_channels=N_CLASSES, base_channels=16, levels=4).eval()
    except (ImportError, KeyError, TypeError, ValueError):
        pass

    def block(cin, cout):
        return nn.Sequential(
            nn.Conv3d(cin, cout, 3, padding=1), nn.InstanceNorm3d(cout, affine=True), nn.LeakyReLU(0.01, inplace=True),
            nn.Conv3d(cout, cout, 3, padding=1), nn.InstanceNorm3d(cout, affine=True), nn.LeakyReLU(0.01, inplace=True),
        )

    class UNet3d(nn.Module):
        def __init__(self, cin=1, k=N_CLASSES, base=16, levels=4):
            super().__init__()
            ch = [base * 2**i for i in range(levels)]
            self.enc = nn.ModuleList(block(cin if i == 0 else ch[i - 1], c) for i, c in enumerate(ch))
            self.pool = nn.MaxPool3d(2)
            self.up = nn.ModuleList(nn.ConvTranspose3d(ch[i], ch[i - 1], 2, stride=2) for i in range(levels - 1, 0, -1))
            self.dec = nn.ModuleList(block(2 * ch[i - 1], ch[i - 1]) for i in range(levels - 1, 0, -1))
            self.head = nn.Conv3d(ch[0], k, 1)

        def forward(self, x):
            skips = []
            for i, enc in enumerate(self.enc):
                x = enc(x if i == 0 else self.pool(x))
                skips.append(x)
            for up, dec, skip in zip(self.up, self.dec, reversed(skips[:-1])):
                x = dec(torch.cat([up(x), skip], 1))
            return self.head(x)

    return UNet3d().eval()


def conv_flops(net, patch) -> int:
    """FLOPs (2 per multiply-add) of the convolutions of one forward pass of a (1, 1, *patch) input."""
    import torch
    from torch import nn

    total = 0

    def hook(module, inputs, output):
        nonlocal total
        k = math.prod(module.kernel_size)
        cin_per_group = module.in_channels // module.groups
        if isinstance(module, nn.ConvTranspose3d):
            total += 2 * math.prod(inputs[0].shape) * module.out_channels // module.groups * k
        else:
            total += 2 * math.prod(output.shape) * cin_per_group * k

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))]
    try:
        meta = build_unet().to("meta")
        for h in handles:
            h.remove()
        handles = [m.register_forward_hook(hook) for m in meta.modules()
                   if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))]
        with torch.no_grad():
            meta(torch.empty((1, 1, *patch), device="meta"))
    finally:
        for h in handles:
            h.remove()
    return total


def _rss(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def worker(name: str, volume_path: str, patch, overlap: float, batch_size: int, out_npy: str) -> dict:
    import torch

    net = build_unet()
    vol = np.load(volume_path)["vol"].astype(np.float32)
    vol = (vol - vol.mean()) / vol.std()
    volume = torch.from_numpy(vol)[None]
    calls = []

    def counted(x):
        calls.append(x.shape[0])
        return net(x)

    bf16 = name.endswith("bf16")
    base = _rss("VmRSS")
    t0 = time.perf_counter()
    if name.startswith("medimg"):
        from medimg.infer import sliding_window_predict

        probs = sliding_window_predict(counted, volume, patch_size=tuple(patch), n_classes=N_CLASSES, overlap=overlap,
                                       batch_size=batch_size, autocast_bf16=bf16)
    else:
        from monai.inferers import sliding_window_inference

        def predictor(x):
            return torch.softmax(counted(x).float(), dim=1)

        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            probs = sliding_window_inference(volume[None], tuple(patch), batch_size, predictor, overlap=overlap,
                                             mode="gaussian", sigma_scale=0.125)[0]
        probs = torch.as_tensor(probs)
    seconds = time.perf_counter() - t0
    peak = _rss("VmHWM")
    np.save(out_npy, probs.float().numpy())
    return {"run": name, "seconds": seconds, "peak_rss_mb": peak / 2**20, "rss_growth_mb": (peak - base) / 2**20,
            "patches": int(sum(calls)), "threads": torch.get_num_threads()}


def cpu_peak() -> dict:
    mhz = None
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                mhz = float(line.split(":")[1])
                break
    cores = os.cpu_count() or 1
    ghz = (mhz or 0.0) / 1000
    return {
        "cores": cores, "ghz_from_proc_cpuinfo": ghz,
        "bf16_peak_gflops": cores * ghz * 2 * 32 * 2,
        "fp32_peak_gflops": cores * ghz * 2 * 16 * 2,
        "formula": "cores x GHz x 2 FMA pipes x (32 bf16 | 16 fp32) multiply-adds per 512-bit instruction x 2 FLOP",
        "note": "an estimate: nominal frequency from /proc/cpuinfo (a VM; boost unknown), assumes two full-width "
                "512-bit FMA pipes (AVX-512 BF16 VDPBF16PS: 32 bf16 products accumulated into 16 fp32 lanes)",
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patch", type=int, nargs=3, default=[96, 96, 96])
    ap.add_argument("--overlap", type=float, default=0.5)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS)
    ap.add_argument("--out", default=str(HERE / "results" / "inference.json"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--volume", help=argparse.SUPPRESS)
    ap.add_argument("--npy", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        r = worker(args.worker, args.volume, args.patch, args.overlap, args.batch_size, args.npy)
        print(json.dumps(r))
        return 0

    import monai
    import torch

    from medimg.testing import data_root

    root = data_root()
    if root is None:
        print("shared data not found: set MEDIMG_DATA", file=sys.stderr)
        return 2
    volume_path = root / "brain_t1_labels_voxelmorph" / "data" / "test_scan.npz"
    shape = list(np.load(volume_path)["vol"].shape)
    net = build_unet()
    flops_patch = conv_flops(net, args.patch)
    peak = cpu_peak()
    results, probs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.runs:
            npy = str(Path(tmp) / f"{name}.npy")
            cmd = [sys.executable, __file__, "--worker", name, "--volume", str(volume_path), "--npy", npy,
                   "--patch", *map(str, args.patch), "--overlap", str(args.overlap),
                   "--batch-size", str(args.batch_size)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r["conv_gflops_per_s"] = flops_patch * r["patches"] / r["seconds"] / 1e9
            ref_peak = peak["bf16_peak_gflops"] if name.endswith("bf16") else peak["fp32_peak_gflops"]
            r["fraction_of_peak"] = r["conv_gflops_per_s"] / ref_peak if ref_peak else None
            results[name] = r
            probs[name] = np.load(npy, mmap_mode="r")
            print(f"{name:12s} {r['seconds']:7.1f} s  peak RSS {r['peak_rss_mb']:7.0f} MB (+{r['rss_growth_mb']:.0f})  "
                  f"{r['patches']} patches  {r['conv_gflops_per_s']:.1f} GFLOP/s", flush=True)

        def agree(a, b):
            if a not in probs or b not in probs:
                return None
            pa, pb = probs[a], probs[b]
            return {"argmax_equal_fraction": float((pa.argmax(0) == pb.argmax(0)).mean()),
                    "max_abs_prob_diff": float(np.abs(pa - pb).max()),
                    "mean_abs_prob_diff": float(np.abs(pa - pb).mean())}

        agreement = {
            "medimg_bf16_vs_medimg_fp32": agree("medimg_bf16", "medimg_fp32"),
            "monai_bf16_vs_monai_fp32": agree("monai_bf16", "monai_fp32"),
            "medimg_fp32_vs_monai_fp32": agree("medimg_fp32", "monai_fp32"),
        }
        probs.clear()

    ratios = {}
    for prec in ("fp32", "bf16"):
        a, b = results.get(f"medimg_{prec}"), results.get(f"monai_{prec}")
        if a and b:
            ratios[prec] = {"time_medimg_over_monai": a["seconds"] / b["seconds"],
                            "peak_rss_medimg_over_monai": a["peak_rss_mb"] / b["peak_rss_mb"],
                            "rss_growth_medimg_over_monai": a["rss_growth_mb"] / b["rss_growth_mb"]}
    out = {
        "benchmark": "inference",
        "command": "python benchmarks/inference.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": platform.platform(), "processor": _cpu_name(),
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
                     "monai": monai.__version__},
        "input": {"file": "brain_t1_labels_voxelmorph/data/test_scan.npz['vol'] (z-scored)", "shape": shape},
        "network": {"name": type(net).__name__, "parameters": sum(p.numel() for p in net.parameters()),
                    "conv_gflop_per_patch": flops_patch / 1e9, "classes": N_CLASSES, "weights": "random, seed 0"},
        "settings": {"patch": args.patch, "overlap": args.overlap, "batch_size": args.batch_size,
                     "torch_threads": torch.get_num_threads(), "medimg_channels_last": True},
        "load_average_1_5_15_min_at_end": list(os.getloadavg()),
        "cpu_peak_estimate": peak, "results": results, "ratios": ratios, "agreement": agreement,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    for prec, r in ratios.items():
        print(f"{prec}: time medimg/MONAI {r['time_medimg_over_monai']:.3f}, "
              f"peak RSS {r['peak_rss_medimg_over_monai']:.3f}")
    print(f"agreement: {json.dumps(agreement)}\nwrote {args.out}")
    return 0


def _cpu_name() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    raise SystemExit(main())
