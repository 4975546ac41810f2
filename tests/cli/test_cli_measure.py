"""Tests for `medimg measure`."""

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from medimg.cli import main as cli_main
from medimg.cli._spacing import pixel_spacing_to_xyz
from medimg.io.sitk_bridge import to_sitk
from medimg.testing import label_phantom, one_line_error, phantom, require_data

REF = ("ct_mr_samples_totalsegmentator", "tests", "reference_files")


def _one_line_error(capsys):
    lines = capsys.readouterr().err.strip().splitlines()
    return one_line_error("\n".join(e for e in lines if "no pixel spacing" not in e))


def test_pixel_spacing_parser():
    assert pixel_spacing_to_xyz("0.5") == (0.5, 0.5, 1.0)
    assert pixel_spacing_to_xyz("0.6,0.4") == (0.4, 0.6, 1.0)  # ROW,COL -> sx = COL, sy = ROW
    for bad in ("a", "0", "1,2,3", "-1"):
        with pytest.raises(ValueError, match="--pixel-spacing"):
            pixel_spacing_to_xyz(bad)


def test_measure_real_ct_prints_table_and_writes_json_csv(tmp_path, capsys):
    ct, seg = require_data(*REF, "example_ct_sm.nii.gz"), require_data(*REF, "example_seg.nii.gz")
    code = cli_main.main(["measure", str(ct), str(seg), "--modality", "CT", "--json", str(tmp_path / "m.json"),
                          "--csv", str(tmp_path / "m.csv")])
    out = capsys.readouterr().out
    assert code == 0
    assert "volume_ml" in out and "mean_hu" in out and "fell back" not in out
    data = json.loads((tmp_path / "m.json").read_text())
    assert data["spacing_mm"] == [3.0, 3.0, 3.0] and len(data["records"]) == 41
    rows = list(csv.DictReader(open(tmp_path / "m.csv", newline="")))
    assert len(rows) == 41 and "surface_area_mm2" in rows[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv", "m.json"]


def test_png_without_spacing_says_it_fell_back(tmp_path, capsys):
    root = require_data("fetal_head_hc18")
    img, mask = root / "images" / "000_HC.png", root / "masks" / "000_HC_Mask.png"
    assert cli_main.main(["measure", str(img), str(mask)]) == 0
    printed = capsys.readouterr()
    assert "no pixel spacing in" in printed.err and "area_px2" in printed.out
    ps = 0.0691358041432
    code = cli_main.main(["measure", str(img), str(mask), "--pixel-spacing", str(ps), "--instances",
                          "--json", str(tmp_path / "hc.json")])
    printed = capsys.readouterr()
    out = printed.out
    assert code == 0 and "no pixel spacing" not in out + printed.err and "instances: 1" in out
    rec = json.loads((tmp_path / "hc.json").read_text())["records"][0]
    assert rec["ellipse_circumference_mm"] == pytest.approx(44.3, abs=2.0)  # CSV reference HC 44.3 mm


def test_mismatched_grid_is_one_line_exit_2(tmp_path, capsys):
    img, lab = tmp_path / "img.nii.gz", tmp_path / "lab.nii.gz"
    sitk.WriteImage(to_sitk(phantom(spacing=(1.0, 1.0, 1.0))), str(img))
    sitk.WriteImage(to_sitk(label_phantom()), str(lab))
    assert cli_main.main(["measure", str(img), str(lab)]) == 2
    err = _one_line_error(capsys)
    assert "do not share a voxel grid" in err and "Fix:" in err


def test_float_labels_are_refused_one_line(tmp_path, capsys):
    img, lab = tmp_path / "img.nii.gz", tmp_path / "probs.nii.gz"
    sitk.WriteImage(to_sitk(phantom()), str(img))
    probs = phantom().replace(voxels=np.random.default_rng(0).random(phantom().shape).astype(np.float32))
    sitk.WriteImage(to_sitk(probs), str(lab))
    out = tmp_path / "m.json"
    assert cli_main.main(["measure", str(img), str(lab), "--json", str(out)]) == 2
    err = _one_line_error(capsys)
    assert "probs.nii.gz" in err and "expected integer labels" in err
    assert not out.exists()
