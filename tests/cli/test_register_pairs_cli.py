"""`medimg register --pairs PAIRS.csv -o OUT` on real hippocampus crops (MSD Task04): many pairs at once."""

import csv
import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from medimg.cli import main as cli_main
from medimg.io import read
from medimg.testing import one_line_error, require_data

sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
pytestmark = pytest.mark.realdata

CASES = ("001", "006", "011")


@pytest.fixture()
def folder(tmp_path):
    """Three cases copied to tmp_path/data/{images,labels} (the CSV lives in tmp_path/data)."""
    root = require_data("hippocampus")
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    for c in CASES:
        shutil.copy(root / "imagesTr" / f"hippocampus_{c}_0000.nii.gz", data / "images" / f"hippo_{c}.nii.gz")
        shutil.copy(root / "labelsTr" / f"hippocampus_{c}.nii.gz", data / "labels" / f"hippo_{c}.nii.gz")
    return data


def _csv(path, rows, header=("fixed", "moving", "moving_labels", "fixed_labels")):
    path.write_text(",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows))
    return path


def _row(f, m, labels=True):
    return (f"images/hippo_{f}.nii.gz", f"images/hippo_{m}.nii.gz") + (
        (f"labels/hippo_{m}.nii.gz", f"labels/hippo_{f}.nii.gz") if labels else ("", ""))


def test_pairs_csv_registers_every_pair_into_its_folder_with_a_summary(folder, tmp_path, capsys):
    pairs = _csv(folder / "pairs.csv", [_row("001", "006"), _row("001", "011"), _row("006", "011", labels=False)])
    out = tmp_path / "out"
    code = cli_main.main(["register", "--pairs", str(pairs), "-o", str(out), "--method", "affine", "--metric",
                          "ncc", "--levels", "2,1"])
    assert code == 0, capsys.readouterr().err
    folders = ["hippo_001__hippo_006", "hippo_001__hippo_011", "hippo_006__hippo_011"]
    assert sorted(p.name for p in out.iterdir()) == folders + ["summary.csv", "summary.json"]
    for name in folders[:2]:
        assert sorted(p.name for p in (out / name).iterdir()) == ["figures", "metrics.json", "report.html",
                                                                  "transform.tfm", "warped.nii.gz",
                                                                  "warped_labels.nii.gz"]
        fixed = read(folder / "images" / f"{name.split('__')[0]}.nii.gz")
        assert read(out / name / "warped_labels.nii.gz").spatial_shape == fixed.spatial_shape
    assert sorted(p.name for p in (out / folders[2]).iterdir()) == ["figures", "metrics.json", "report.html",
                                                                   "transform.tfm", "warped.nii.gz"]
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["pair"] for r in rows] == folders
    for r in rows[:2]:
        # measured mean Dice before -> after: 001<-006 0.567 -> 0.75, 001<-011 0.457 -> 0.62
        assert r["method"] == "affine" and float(r["seconds"]) > 0
        assert float(r["metric_after"]) < float(r["metric_before"])
        assert float(r["dice_after"]) > float(r["dice_before"]) + 0.1
    assert rows[2]["dice_before"] == "" and rows[0]["folding_fraction"] == ""
    doc = json.loads((out / "summary.json").read_text())
    assert doc["n_pairs"] == 3 and doc["settings"]["method"] == "affine" and len(doc["pairs"]) == 3
    m = json.loads((out / folders[0] / "metrics.json").read_text())
    assert m["dice"]["mean_after"] == pytest.approx(float(rows[0]["dice_after"]))
    assert "[3/3] hippo_006__hippo_011" in capsys.readouterr().out


def test_pairs_deformable_reports_folding_and_matches_a_single_run(folder, tmp_path, capsys):
    pairs = _csv(folder / "pairs.csv", [_row("001", "006")])
    opts = ["--method", "demons", "--metric", "ncc", "--levels", "2,1", "--iterations", "10", "-q"]
    assert cli_main.main(["register", "--pairs", str(pairs), "-o", str(tmp_path / "many")] + opts) == 0
    row = next(csv.DictReader((tmp_path / "many" / "summary.csv").open()))
    assert 0 <= float(row["folding_fraction"]) < 0.05
    # the same pair on the command line gives the same result (one code path)
    img, lab = folder / "images", folder / "labels"
    assert cli_main.main(["register", str(img / "hippo_001.nii.gz"), str(img / "hippo_006.nii.gz"), "-o",
                          str(tmp_path / "one"), "--labels", str(lab / "hippo_006.nii.gz"), "--fixed-labels",
                          str(lab / "hippo_001.nii.gz")] + opts) == 0, capsys.readouterr().err
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert one["dice"]["mean_after"] == pytest.approx(float(row["dice_after"]))
    assert np.array_equal(read(tmp_path / "one" / "warped_labels.nii.gz").array,
                          read(tmp_path / "many" / "hippo_001__hippo_006" / "warped_labels.nii.gz").array)


def _fails(argv, capsys, *words):
    assert cli_main.main(argv) == 2
    return one_line_error(capsys.readouterr().err, *words)


def test_bad_pairs_are_one_line_exit_2_and_no_output(folder, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["register", "-o", str(out), "--method", "affine", "--metric", "ncc", "--levels", "2,1", "--pairs"]
    missing = _csv(folder / "missing.csv", [_row("001", "006"), ("images/hippo_001.nii.gz", "images/nope.nii.gz",
                                                                 "", "")])
    _fails(base + [str(missing)], capsys, "line 3", "moving", "nope.nii.gz")
    _fails(base + [str(_csv(folder / "cols.csv", [("a", "b")], header=("fixed", "mov")))], capsys,
           "lacks the column", "moving")
    _fails(base + [str(_csv(folder / "empty.csv", [], header=("fixed", "moving")))], capsys, "no rows")
    (folder / "blank.csv").write_text("")
    _fails(base + [str(folder / "blank.csv")], capsys, "blank.csv")
    _fails(base + [str(_csv(folder / "self.csv", [_row("001", "001")]))], capsys, "line 2", "itself")
    _fails(base + [str(_csv(folder / "twice.csv", [_row("001", "006"), _row("001", "006")]))], capsys,
           "lines 2 and 3", "hippo_001__hippo_006")
    # labels of another case's grid: found while registering, after pair 1 was done -> still no OUT
    bad = _csv(folder / "grid.csv", [_row("001", "006"), ("images/hippo_001.nii.gz", "images/hippo_011.nii.gz",
                                                          "labels/hippo_006.nii.gz", "")])
    _fails(base + [str(bad)], capsys, "grid.csv line 3", "--labels", "grid")
    good = str(_csv(folder / "good.csv", [_row("001", "006")]))
    _fails(["register", str(folder / "images" / "hippo_001.nii.gz"), "-o", str(out), "--pairs", good], capsys,
           "cannot be given with --pairs")
    _fails(["register", "-o", str(out)], capsys, "FIXED and MOVING")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
