"""`medimg evaluate` on real hippocampus labels (folders matched by case id) and on phantoms."""

import csv
import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from medimg.cli import main as cli_main
from medimg.io.sitk_bridge import to_sitk
from medimg.metrics.evaluate import case_id
from medimg.testing import label_phantom, require_data


def _err_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.mark.realdata
def test_folders_matched_by_case_id(tmp_path, capsys):
    src = require_data("hippocampus", "labelsTr")
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    cases = ["hippocampus_001", "hippocampus_006", "hippocampus_011"]
    for k, c in enumerate(cases):
        shutil.copy(src / f"{c}.nii.gz", gt_dir / f"{c}.nii.gz")
        img = sitk.ReadImage(str(src / f"{c}.nii.gz"))
        arr = np.roll(sitk.GetArrayFromImage(img), k, axis=2)
        out = sitk.GetImageFromArray(arr)
        out.CopyInformation(img)
        if k < 2:  # the third case has no prediction
            sitk.WriteImage(out, str(pred_dir / f"{c}_0000.nii.gz"))
    out = tmp_path / "eval"
    code = cli_main.main(["evaluate", str(pred_dir), str(gt_dir), "-o", str(out), "--seed", "3"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "hippocampus_011" in captured.err  # missing prediction listed
    rows = list(csv.DictReader((out / "per_case.csv").open()))
    assert [(r["case"], r["label"]) for r in rows] == [(c, lab) for c in cases[:2] for lab in ("1", "2")]
    assert float(rows[0]["dice"]) == 1.0 and float(rows[0]["hd95_mm"]) == 0.0
    assert 0 < float(rows[2]["dice"]) < 1
    for col in ("case", "label", "dice", "iou", "hd95_mm", "assd_mm", "nsd", "sensitivity", "volume_diff_ml"):
        assert col in rows[0]
    summary = json.loads((out / "summary.json").read_text())
    d = summary["per_label"]["1"]["dice"]
    assert d["n"] == 2 and d["ci_low"] <= d["mean"] <= d["ci_high"]
    assert summary["seed"] == 3 and summary["missing_predictions"] == ["hippocampus_011"]
    assert (out / "boxplot.png").read_bytes()[:4] == b"\x89PNG"
    # the same seed gives the same summary
    out2 = tmp_path / "eval2"
    assert cli_main.main(["evaluate", str(pred_dir), str(gt_dir), "-o", str(out2), "--seed", "3", "-q"]) == 0
    assert json.loads((out2 / "summary.json").read_text())["per_label"] == summary["per_label"]


def test_pair_with_empty_class_and_labels_option(tmp_path, capsys):
    gt = label_phantom()
    pred = gt.replace(voxels=np.where(gt.voxels == 2, 1, gt.voxels).astype(np.uint8))  # class 2 missing
    gp, pp = tmp_path / "gt.nii.gz", tmp_path / "pred.nii.gz"
    sitk.WriteImage(to_sitk(gt), str(gp))
    sitk.WriteImage(to_sitk(pred), str(pp))
    out = tmp_path / "out"
    assert cli_main.main(["evaluate", str(pp), str(gp), "-o", str(out), "--labels", "1,2,3", "-q"]) == 0
    rows = {r["label"]: r for r in csv.DictReader((out / "per_case.csv").open())}
    assert rows["2"]["hd95_mm"] == "inf" and float(rows["2"]["dice"]) == 0.0
    assert float(rows["3"]["dice"]) == 1.0  # absent from both
    summary = json.loads((out / "summary.json").read_text())
    assert summary["per_label"]["2"]["hd95_mm"]["n_excluded_inf"] == 1
    assert summary["per_label"]["2"]["hd95_mm"]["mean"] is None


def test_grid_mismatch_names_the_case(tmp_path, capsys):
    gt = label_phantom()
    moved = gt.replace(geometry=gt.geometry.replace(origin=(0.0, 0.0, 0.0)))
    (tmp_path / "g").mkdir()
    (tmp_path / "p").mkdir()
    sitk.WriteImage(to_sitk(gt), str(tmp_path / "g" / "case_7.nii.gz"))
    sitk.WriteImage(to_sitk(moved), str(tmp_path / "p" / "case_7.nii.gz"))
    out = tmp_path / "out"
    assert cli_main.main(["evaluate", str(tmp_path / "p"), str(tmp_path / "g"), "-o", str(out)]) == 2
    assert "case_7" in _err_line(capsys)
    assert not out.exists()


def test_no_matching_case_is_an_error(tmp_path, capsys):
    for d, name in (("g", "a.nii.gz"), ("p", "b.nii.gz")):
        (tmp_path / d).mkdir()
        sitk.WriteImage(to_sitk(label_phantom()), str(tmp_path / d / name))
    assert cli_main.main(["evaluate", str(tmp_path / "p"), str(tmp_path / "g"), "-o", str(tmp_path / "o")]) == 2
    assert "no case id" in _err_line(capsys)


def test_case_id():
    assert case_id("x/BraTS_001_0000.nii.gz") == "BraTS_001"
    assert case_id("scan.mha") == "scan" and case_id("img_12.png") == "img_12"
