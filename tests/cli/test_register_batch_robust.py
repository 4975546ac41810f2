"""`medimg register --pairs`: a failing pair does not stop the batch, and two runs give identical results
(issue 12, item 6), on real MSD hippocampus crops; plus the one-line errors of item 13 for register/warp."""

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from medimg.cli import main as cli_main
from medimg.testing import one_line_error, require_data

pytestmark = pytest.mark.realdata

CASES = ("001", "006", "011", "014", "015")
#: (fixed, moving): four real pairs and one whose moving image is a 2x2x2-voxel crop of a real scan
PAIRS = (("001", "006"), ("006", "011"), ("011", "014"), ("014", "015"), ("015", "tiny"), ("001", "015"))
FAST = ["--method", "affine", "--levels", "2,1", "--iterations", "20", "-q"]


@pytest.fixture()
def folder(tmp_path):
    root = require_data("hippocampus")
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    for c in CASES:
        shutil.copy(root / "imagesTr" / f"hippocampus_{c}_0000.nii.gz", data / "images" / f"hippo_{c}.nii.gz")
        shutil.copy(root / "labelsTr" / f"hippocampus_{c}.nii.gz", data / "labels" / f"hippo_{c}.nii.gz")
    img = sitk.ReadImage(str(data / "images" / "hippo_006.nii.gz"))
    # too small for the multi-resolution pyramid: ITK refuses it while registering (not while reading)
    sitk.WriteImage(img[15:17, 20:22, 10:12], str(data / "images" / "hippo_tiny.nii.gz"))
    rows = "".join(f"images/hippo_{f}.nii.gz,images/hippo_{m}.nii.gz\n" for f, m in PAIRS)
    (data / "pairs.csv").write_text("fixed,moving\n" + rows)
    return data


def _batch(folder, out, capsys, *extra):
    code = cli_main.main(["register", "--pairs", str(folder / "pairs.csv"), "-o", str(out), *FAST, *extra])
    return code, capsys.readouterr()


def test_a_failing_pair_is_recorded_and_the_batch_goes_on(folder, tmp_path, capsys):
    out = tmp_path / "out"
    code, io = _batch(folder, out, capsys)
    assert code == 3, io.err
    assert "1 of 6 pairs failed, see" in io.err and "summary.csv" in io.err
    assert "hippo_015__hippo_tiny: failed:" in io.err
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["pair"] for r in rows] == [f"hippo_{f}__hippo_{m}" for f, m in PAIRS]
    assert [r["status"] for r in rows] == ["ok"] * 4 + ["failed", "ok"]
    bad = rows[4]
    assert "registration failed inside ITK" in bad["error"] and "\n" not in bad["error"]
    assert bad["metric_after"] == "" and bad["fixed"].endswith("hippo_015.nii.gz")
    for r in rows[:4] + rows[5:]:
        assert r["error"] == "" and r["init"] in ("geometry", "moments")
        assert float(r["metric_after"]) < float(r["metric_before"])
        assert (out / r["pair"] / "transform.tfm").is_file() and (out / r["pair"] / "metrics.json").is_file()
    # the pair after the failure was registered too; the failed pair has no folder
    assert not (out / "hippo_015__hippo_tiny").exists()
    doc = json.loads((out / "summary.json").read_text())
    assert doc["n_pairs"] == 6 and doc["n_failed"] == 1 and doc["settings"]["threads"] == 1
    assert doc["pairs"][4]["status"] == "failed" and doc["pairs"][4]["error"] == bad["error"]
    m = json.loads((out / rows[0]["pair"] / "metrics.json").read_text())
    assert m["params"]["init"] == "geometry" and m["params"]["init_used"] == rows[0]["init"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_two_runs_of_a_batch_give_identical_results(folder, tmp_path, capsys):
    # more threads than one by default in this process: register's own threads=1 must still make runs identical
    old = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(4)
    try:
        (folder / "pairs.csv").write_text("fixed,moving\n" + "".join(
            f"images/hippo_{f}.nii.gz,images/hippo_{m}.nii.gz\n" for f, m in PAIRS if m != "tiny"))
        results = []
        for run in ("a", "b"):
            code, io = _batch(folder, tmp_path / run, capsys, "--init", "moments")
            assert code == 0, io.err
            results.append(list(csv.DictReader((tmp_path / run / "summary.csv").open())))
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(old)
    a, b = results
    assert len(a) == 5
    for ra, rb in zip(a, b):
        assert ra["metric_after"] == rb["metric_after"] and ra["metric_before"] == rb["metric_before"]
        ta = (tmp_path / "a" / ra["pair"] / "transform.tfm").read_text()
        assert ta == (tmp_path / "b" / rb["pair"] / "transform.tfm").read_text()


def test_bad_numbers_and_spacing_are_one_line_exit_2(folder, tmp_path, capsys):
    img = folder / "images"
    base = ["register", str(img / "hippo_001.nii.gz"), str(img / "hippo_006.nii.gz"), "-o", str(tmp_path / "o")]
    for value in ("-5", "0", "nan", "inf"):
        assert cli_main.main(base + ["--method", "bspline", "--bspline-grid-mm", value]) == 2
        one_line_error(capsys.readouterr().err, "--bspline-grid-mm")
    assert cli_main.main(base + ["--threads", "-1"]) == 2
    one_line_error(capsys.readouterr().err, "--threads")
    # a header with a negative spacing: readers turn it into a flipped axis (positive spacing) or refuse it
    raw = (img / "hippo_006.nii.gz")
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(raw))).astype(np.uint8)
    header = (f"NRRD0004\ntype: uint8\ndimension: 3\nsizes: {arr.shape[2]} {arr.shape[1]} {arr.shape[0]}\n"
              "spacings: -1 1 1\nencoding: raw\n\n")
    (tmp_path / "neg.nrrd").write_bytes(header.encode() + arr.tobytes())
    code = cli_main.main(["register", str(img / "hippo_001.nii.gz"), str(tmp_path / "neg.nrrd"), "-o",
                          str(tmp_path / "neg")] + FAST)
    assert code in (0, 2)
    if code == 2:
        one_line_error(capsys.readouterr().err, "neg.nrrd")
    assert not (tmp_path / "o").exists()


def _warp(tmp_path, transform):
    image = require_data("hippocampus", "imagesTr", "hippocampus_001_0000.nii.gz")
    return subprocess.run([sys.executable, "-m", "medimg", "warp", str(image), str(transform), "--reference",
                           str(image), "-o", str(tmp_path / "w.nii.gz")], capture_output=True, text=True,
                          timeout=300)


def test_warp_refuses_a_bspline_file_declaring_a_huge_grid(tmp_path):
    # 167 bytes: ITK's reader aborts the process ("double free or corruption") on this file
    bomb = tmp_path / "bomb.tfm"
    bomb.write_text("#Insight Transform File V1.0\n#Transform 0\nTransform: BSplineTransform_double_3_3\n"
                    "Parameters: 0 0 0\nFixedParameters: 100000 100000 100000 0 0 0 1 1 1 1 0 0 0 1 0 0 0 1\n")
    proc = _warp(tmp_path, bomb)
    assert proc.returncode == 2, proc.stderr
    one_line_error(proc.stderr, "bomb.tfm", "grid of 100000 x 100000 x 100000")
    for name, text in (
        ("nan.tfm", "#Insight Transform File V1.0\nTransform: AffineTransform_double_3_3\n"
                    "Parameters: 1 0 0 0 1 0 0 0 nan 0 0 0\nFixedParameters: 0 0 0\n"),
        ("dims.tfm", "#Insight Transform File V1.0\nTransform: AffineTransform_double_99_99\n"
                     "Parameters: 1\nFixedParameters: 0\n"),
        ("fixed.tfm", "#Insight Transform File V1.0\nTransform: BSplineTransform_double_3_3\n"
                      "Parameters: 0 0 0\nFixedParameters: 1 1 1\n"),
    ):
        (tmp_path / name).write_text(text)
        proc = _warp(tmp_path, tmp_path / name)
        assert proc.returncode == 2, (name, proc.stderr)
        one_line_error(proc.stderr, name)
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4)
    proc = _warp(tmp_path, garbage)
    assert proc.returncode == 2, proc.stderr
    one_line_error(proc.stderr, "garbage.h5")
    assert not (tmp_path / "w.nii.gz").exists()


def test_warp_still_reads_real_transforms(tmp_path):
    ref = sitk.ReadImage(str(require_data("hippocampus", "imagesTr", "hippocampus_001_0000.nii.gz")))
    bspline = sitk.BSplineTransformInitializer(ref, [2, 3, 2])
    bspline.SetParameters(list(np.linspace(-1, 1, len(bspline.GetParameters()))))
    composite = sitk.CompositeTransform([sitk.AffineTransform(3), bspline])
    for name in ("b.tfm", "c.tfm", "c.h5"):
        sitk.WriteTransform(bspline if name == "b.tfm" else composite, str(tmp_path / name))
        proc = _warp(tmp_path, tmp_path / name)
        assert proc.returncode == 0, (name, proc.stderr)
        (tmp_path / "w.nii.gz").unlink()
