"""`medimg evaluate` on hostile inputs (issue 12, item 13): two empty masks, negative labels, formula-like case
ids (CSV injection); built from a real MSD hippocampus label map."""

import csv
import shutil

import nibabel as nib
import numpy as np

from medimg.cli.main import main
from medimg.testing import one_line_error, require_data


def _label_like(src, path, array):
    img = nib.load(str(src))
    header = img.header.copy()
    header.set_data_dtype(array.dtype)
    nib.save(nib.Nifti1Image(array, img.affine, header), str(path))
    return path


def test_two_empty_masks_score_dice_1_without_a_traceback(tmp_path, capsys):
    src = require_data("hippocampus", "labelsTr", "hippocampus_001.nii.gz")
    zeros = np.zeros(nib.load(str(src)).shape, np.uint8)
    (tmp_path / "p").mkdir()
    (tmp_path / "g").mkdir()
    _label_like(src, tmp_path / "p" / "case.nii.gz", zeros)
    _label_like(src, tmp_path / "g" / "case.nii.gz", zeros)
    assert main(["evaluate", str(tmp_path / "p"), str(tmp_path / "g"), "-o", str(tmp_path / "ev"), "-q"]) == 0, \
        capsys.readouterr().err
    rows = list(csv.DictReader((tmp_path / "ev" / "per_case.csv").open()))
    assert len(rows) == 1 and rows[0]["label"] == "1"
    assert float(rows[0]["dice"]) == 1.0 and float(rows[0]["hd95_mm"]) == 0.0
    assert (tmp_path / "ev" / "summary.json").is_file() and (tmp_path / "ev" / "boxplot.png").is_file()


def test_negative_labels_are_refused_with_one_line(tmp_path, capsys):
    src = require_data("hippocampus", "labelsTr", "hippocampus_001.nii.gz")
    arr = np.asarray(nib.load(str(src)).dataobj).astype(np.int16)
    arr[arr == 2] = -1
    bad = _label_like(src, tmp_path / "neg.nii.gz", arr)
    assert main(["evaluate", str(bad), str(src), "-o", str(tmp_path / "ev")]) == 2
    one_line_error(capsys.readouterr().err, "neg.nii.gz", "negative")
    assert not (tmp_path / "ev").exists()


def test_formula_like_case_ids_are_escaped_in_per_case_csv(tmp_path, capsys):
    src = require_data("hippocampus", "labelsTr", "hippocampus_001.nii.gz")
    names = ["=HYPERLINK(1)", "@SUM(1)", "+cmd", "-3.5", "case_1"]
    for folder in ("p", "g"):
        (tmp_path / folder).mkdir()
        for n in names:
            shutil.copy(src, tmp_path / folder / f"{n}.nii.gz")
    assert main(["evaluate", str(tmp_path / "p"), str(tmp_path / "g"), "-o", str(tmp_path / "ev"), "-q",
                 "--bootstrap", "10"]) == 0, capsys.readouterr().err
    text = (tmp_path / "ev" / "per_case.csv").read_text()
    cases = {r["case"] for r in csv.DictReader(text.splitlines())}
    assert cases == {"'=HYPERLINK(1)", "'@SUM(1)", "'+cmd", "-3.5", "case_1"}
    for line in text.splitlines()[1:]:
        assert line[0] not in "=+@\t\r", line
