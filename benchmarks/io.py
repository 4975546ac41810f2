"""I/O benchmark: medimg.io.read against SimpleITK and nibabel on the shared real data, in the same run.

For every (reader, input) pair a fresh Python process imports the libraries, reads the input once to measure
the peak resident memory added by the read (ru_maxrss after minus before), then times ``--repeats`` further
reads and keeps the median. Ratios medimg / peer are what to look at: the machines are noisy.

    python benchmarks/io.py                       # writes benchmarks/results/io.json
    python benchmarks/io.py --repeats 3 --out /tmp/io.json

Peers:
* DICOM series: SimpleITK ImageSeriesReader (GDCM), file names from GetGDCMSeriesFileNames (sorted by GDCM).
  medimg additionally validates spacing, gaps, orientation and sizes, and keeps the metadata it needs.
* NIfTI: nibabel (``get_fdata`` is not used; ``np.asanyarray(img.dataobj)`` like medimg) and SimpleITK.ReadImage.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

_CHILD = r"""
import json, resource, sys, time
import numpy as np
kind, reader, path, repeats = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def read_medimg():
    from medimg.io import read
    return np.asarray(read(path).voxels)

def read_sitk():
    import SimpleITK as sitk
    if kind == "dicom":
        r = sitk.ImageSeriesReader()
        r.SetFileNames(r.GetGDCMSeriesFileNames(path))
        return sitk.GetArrayFromImage(r.Execute())
    return sitk.GetArrayFromImage(sitk.ReadImage(path))

def read_nibabel():
    import nibabel as nib
    return np.asanyarray(nib.load(path).dataobj)

fn = {"medimg": read_medimg, "simpleitk": read_sitk, "nibabel": read_nibabel}[reader]
# import everything the reader needs before the memory baseline
import SimpleITK, nibabel, pydicom  # noqa: F401
import medimg.io, medimg.io.dicom, medimg.io.nifti  # noqa: F401
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter(); arr = fn(); first = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
shape = list(arr.shape); nbytes = int(arr.nbytes); del arr
times = []
for _ in range(repeats):
    t0 = time.perf_counter(); a = fn(); times.append(time.perf_counter() - t0); del a
print(json.dumps({"first_s": first, "times_s": times, "peak_rss_added_mib": (peak - before) / 1024,
                  "shape": shape, "array_mib": nbytes / 2**20}))
"""


def _data_root() -> Path:
    sys.path.insert(0, str(REPO / "src"))
    from medimg.testing import data_root

    root = data_root()
    if root is None:
        sys.exit("shared data not found: set MEDIMG_DATA")
    return root


def cases(root: Path) -> list[tuple[str, str, Path]]:
    """(kind, name, path) for every input measured."""
    out: list[tuple[str, str, Path]] = []
    for series in sorted((root / "brain_mri_dicom" / "Study1").iterdir()):
        if series.is_dir():
            out.append(("dicom", f"brain MR {series.name}", series))
    ct = root / "ct_mr_samples_totalsegmentator/tests/reference_files/example_ct_dicom"
    out.append(("dicom", "CT 20x512^2 JPEG 2000", ct))
    ref = root / "ct_mr_samples_totalsegmentator/tests/reference_files"
    out.append(("nifti", "CT example_ct.nii.gz 122x101x112", ref / "example_ct.nii.gz"))
    out.append(("nifti", "MR example_mr_sm.nii.gz", ref / "example_mr_sm.nii.gz"))
    out.append(("nifti", "TotalSeg labels example_seg.nii.gz", ref / "example_seg.nii.gz"))
    hip = sorted((root / "hippocampus" / "imagesTr").glob("*.nii.gz"))[:1]
    out += [("nifti", f"hippocampus {p.name}", p) for p in hip]
    return out


def measure(kind: str, reader: str, path: Path, repeats: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    proc = subprocess.run([sys.executable, "-c", _CHILD, kind, reader, str(path), str(repeats)],
                          capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["median_s"] = statistics.median(res["times_s"]) if res["times_s"] else res["first_s"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "io.json")
    args = ap.parse_args()
    root = _data_root()
    rows = []
    for kind, name, path in cases(root):
        peers = ["simpleitk"] if kind == "dicom" else ["nibabel", "simpleitk"]
        row = {"kind": kind, "input": name, "medimg": measure(kind, "medimg", path, args.repeats)}
        for peer in peers:
            row[peer] = measure(kind, peer, path, args.repeats)
            m, p = row["medimg"], row[peer]
            if "error" not in m and "error" not in p:
                row[f"time_ratio_vs_{peer}"] = round(m["median_s"] / p["median_s"], 3)
                row[f"mem_ratio_vs_{peer}"] = round(
                    max(m["peak_rss_added_mib"], 0.1) / max(p["peak_rss_added_mib"], 0.1), 3)
        rows.append(row)
        ms = {r: row[r].get("median_s", float("nan")) * 1000 for r in ["medimg", *peers]}
        peer_text = "  ".join(f"{p} {ms[p]:8.1f} ms (x{row.get(f'time_ratio_vs_{p}', 'n/a')})" for p in peers)
        print(f"{kind:5s} {name:40s} medimg {ms['medimg']:8.1f} ms  {peer_text}", flush=True)
    import nibabel
    import pydicom
    import SimpleITK

    result = {
        "benchmark": "io",
        "command": f"python benchmarks/io.py --repeats {args.repeats}",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "versions": {"SimpleITK": SimpleITK.Version.VersionString(), "nibabel": nibabel.__version__,
                     "pydicom": pydicom.__version__},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
