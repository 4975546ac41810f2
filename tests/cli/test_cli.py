import json
import subprocess
import sys

import numpy as np
import pytest

from medimg.cli.main import main
from medimg.testing import one_line_error, require_data

CT_DICOM = ("ct_mr_samples_totalsegmentator", "tests", "reference_files", "example_ct_dicom")


def _one_line_error(capsys):
    return one_line_error(capsys.readouterr().err)

def test_help_is_light():
    code = (
        "import sys\n"
        "from medimg.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('SimpleITK', 'pydicom', 'torch', 'nibabel', 'skimage', 'scipy') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for name in ("info", "convert", "preprocess", "deid", "demo"):
        assert name in out
    assert "HEAVY []" in out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2


def test_missing_input_is_one_line_exit_2(capsys, tmp_path):
    assert main(["info", str(tmp_path / "nope.nii.gz")]) == 2
    err = _one_line_error(capsys)
    assert "nope.nii.gz" in err and "no such file" in err


def test_bad_option_value(capsys, tmp_path):
    src = tmp_path / "a.npz"
    np.savez(src, image=np.zeros((4, 4), np.uint8))
    assert main(["convert", str(src), str(tmp_path / "b.nii.gz"), "--spacing", "abc"]) == 2
    assert "--spacing" in _one_line_error(capsys)
    assert not (tmp_path / "b.nii.gz").exists()


def test_unknown_output_extension(capsys, tmp_path):
    src = tmp_path / "a.npz"
    np.savez(src, image=np.zeros((4, 4), np.uint8))
    assert main(["convert", str(src), str(tmp_path / "b.xyz")]) == 2
    assert "b.xyz" in _one_line_error(capsys)
    assert list(tmp_path.iterdir()) == [src]


def test_info_ct_series_has_no_identifying_values(capsys):
    ct = require_data(*CT_DICOM)
    assert main(["info", str(ct)]) == 0
    out = capsys.readouterr().out
    assert "CT" in out and "512 x 512 x 20" in out
    assert "JPEG 2000" in out or "1.2.840.10008.1.2.4.90" in out
    for forbidden in ("PatientName", "1.3.12.2.1107", "20221208"):
        assert forbidden not in out


def test_info_lists_several_series(capsys):
    study = require_data("brain_mri_dicom", "Study1")
    assert main(["info", str(study), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert len(listing["series"]) == 5
    assert {s["modality"] for s in listing["series"]} == {"MR"}
    assert main(["info", str(study), "--series", "0"]) == 0
    assert "MR" in capsys.readouterr().out


def test_convert_dicom_to_nifti_and_refuses_input(capsys, tmp_path):
    from medimg.io import read

    ct = require_data(*CT_DICOM)
    out = tmp_path / "ct.nii.gz"
    assert main(["convert", str(ct), str(out), "--quiet"]) == 0
    a, b = read(ct), read(out)
    a.check_same_grid(b)
    np.testing.assert_array_equal(a.voxels, b.voxels)
    # a converted file must never be written over its own input
    assert main(["convert", str(out), str(out)]) == 2
    assert "overwrite" in _one_line_error(capsys)
    np.testing.assert_array_equal(read(out).voxels, a.voxels)


def test_convert_folder_with_several_series_asks_for_one(capsys, tmp_path):
    study = require_data("brain_mri_dicom", "Study1")
    assert main(["convert", str(study), str(tmp_path / "x.nii.gz")]) == 2
    err = _one_line_error(capsys)
    assert "--series" in err
    assert not (tmp_path / "x.nii.gz").exists()


def test_demo_writes_outputs_and_replaces_only_its_own(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quiet"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert "summary.json" in names and "ct.nii.gz" in names and "montage_lung_bone.png" in names
    summary = json.loads((out / "summary.json").read_text())
    assert summary["image"]["size_xyz"] == [512, 512, 20]
    assert summary["image"]["metadata"]["modality"] == "CT"
    assert -1100 < summary["image"]["intensity"]["min"] < -900  # air in HU, rescale applied
    assert main(["demo", "--out", str(out), "--quiet"]) == 0  # a previous demo folder is replaced
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert main(["demo", "--out", str(other)]) == 2
    assert "demo" in _one_line_error(capsys)
    assert [p.name for p in other.iterdir()] == ["keep.txt"]
    assert not list(tmp_path.glob(".*partial"))


@pytest.mark.parametrize("argv", [["convert"], ["info"]])
def test_argparse_errors_exit_2(argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


def test_missing_output_is_one_line_exit_2(capsys):
    """deid IN without OUT or -o: the output is optional for argparse (OUT or -o OUT), so medimg says it."""
    assert main(["deid", "only-one"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "-o/--out" in err[0]
