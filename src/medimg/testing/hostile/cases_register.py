"""The hostile cases of the ``register`` area: register, evaluate, measure and warp on bad spacing, empty or negative
labels, CSV injection, huge transforms. Each registers itself in :data:`~medimg.testing.hostile.registry.CASES`
through :func:`~medimg.testing.hostile.registry.case`.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from medimg.testing.hostile.files import csv_cells_are_escaped, nifti_bytes, write_labels
from medimg.testing.hostile.registry import Built, case


# -- register / evaluate / measure / warp ---------------------------------------------------------------------
def _mha(path: Path, arr: np.ndarray, spacing=(1.0, 1.0, 1.0), extra: str = "") -> Path:
    dims = " ".join(str(n) for n in arr.shape[::-1])
    head = (f"ObjectType = Image\nNDims = {arr.ndim}\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
            f"ElementSpacing = {' '.join(str(s) for s in spacing)}\nDimSize = {dims}\n{extra}"
            f"ElementType = MET_FLOAT\nElementDataFile = LOCAL\n")
    path.write_bytes(head.encode() + arr.astype("<f4").tobytes())
    return path


def _blob(shape=(12, 12, 12), shift=0) -> np.ndarray:
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return (100.0 * ((z - 6) ** 2 + (y - 6 - shift) ** 2 + (x - 6) ** 2 < 16)).astype(np.float32)


@case("register_negative_spacing", "register", "warn_or_refuse",
      "register a fixed NIfTI whose only spacing, pixdim, is negative")
def _(root: Path) -> Built:
    raw = nifti_bytes(data=_blob())
    struct.pack_into("<3f", raw, 80, -1.0, -1.0, -1.0)
    struct.pack_into("<2h", raw, 252, 0, 0)  # no qform/sform: pixdim is the spacing
    f = root / "fixed.nii"
    f.write_bytes(bytes(raw))
    m = write_labels(root / "moving.nii.gz", _blob(shift=1))
    return Built([["register", str(f), str(m), "-o", str(root / "out"), "--method", "rigid", "--iterations", "5",
                   "--levels", "1"]], ("fixed.nii", "pixdim", "spacing"))


@case("evaluate_two_empty_masks", "register", "ok_or_refuse", "evaluate two all-zero masks")
def _(root: Path) -> Built:
    p = write_labels(root / "pred.nii.gz", np.zeros((8, 8, 8), np.uint8))
    g = write_labels(root / "gt.nii.gz", np.zeros((8, 8, 8), np.uint8))
    return Built([["evaluate", str(p), str(g), "-o", str(root / "out")]], ("pred.nii.gz", "gt.nii.gz", "empty"))


@case("evaluate_negative_labels", "register", "refuse", "evaluate label maps holding -1")
def _(root: Path) -> Built:
    a = np.zeros((8, 8, 8), np.int16)
    a[2:5, 2:5, 2:5] = -1
    p = write_labels(root / "pred.nii.gz", a)
    g = write_labels(root / "gt.nii.gz", a.copy())
    return Built([["evaluate", str(p), str(g), "-o", str(root / "out")]], ("pred.nii.gz", "gt.nii.gz", "negative"))


@case("evaluate_csv_injection", "register", "ok", "case ids starting with = + - @ are escaped in per_case.csv")
def _(root: Path) -> Built:
    a = np.zeros((8, 8, 8), np.uint8)
    a[2:6, 2:6, 2:6] = 1
    for d in ("pred", "gt"):
        (root / d).mkdir()
        for name in ("=cmd|' -C calc'!A0", "+SUM(1)", "@now", "-2+3"):
            write_labels(root / d / f"{name}.nii.gz", a)

    def check() -> None:
        csv_cells_are_escaped(*sorted((root / "out").glob("*.csv")))

    return Built([["evaluate", str(root / "pred"), str(root / "gt"), "-o", str(root / "out")]], (), check=check)


@case("register_csv_injection", "register", "ok", "pair names starting with = + - @ are escaped in summary.csv")
def _(root: Path) -> Built:
    f = write_labels(root / "=cmd.nii.gz", _blob())
    m = write_labels(root / "@mov.nii.gz", _blob(shift=1))
    (root / "pairs.csv").write_text(f"fixed,moving\n{f.name},{m.name}\n")

    def check() -> None:
        csv_cells_are_escaped(root / "out" / "summary.csv")

    argv = ["register", "--pairs", str(root / "pairs.csv"), "-o", str(root / "out"), "--method", "rigid",
            "--iterations", "5", "--levels", "1"]
    return Built([argv], (), check=check)


@case("measure_json_then_bad_csv", "register", "refuse",
      "measure --json A --csv DIR (an existing folder) leaves no A behind")
def _(root: Path) -> Built:
    img = write_labels(root / "img.nii.gz", _blob())
    lab = write_labels(root / "lab.nii.gz", (_blob() > 0).astype(np.uint8))
    (root / "csvdir").mkdir()
    argv = ["measure", str(img), str(lab), "--json", str(root / "a.json"), "--csv", str(root / "csvdir")]
    return Built([argv], ("csvdir", "--csv"))


@case("warp_huge_bspline_tfm", "register", "refuse", "a 200-byte B-spline .tfm declaring a huge grid",
      isolate=True)
def _(root: Path) -> Built:
    img = write_labels(root / "img.nii.gz", _blob())
    tfm = root / "huge.tfm"
    tfm.write_text("#Insight Transform File V1.0\n#Transform 0\nTransform: BSplineTransform_double_3_3\n"
                   "Parameters: 0 0 0\nFixedParameters: 100000000 100000000 100000000 0 0 0 1 1 1 "
                   "1 0 0 0 1 0 0 0 1\n")
    return Built([["warp", str(img), str(tfm), "--reference", str(img), "-o", str(root / "warped.nii.gz")]],
                 ("huge.tfm",))
