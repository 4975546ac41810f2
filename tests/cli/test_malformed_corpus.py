"""The malformed-input corpus, end to end through the command line.

Every entry must give exit code 2, one line on stderr that names the offending file or folder, no traceback,
and no output written. The corpus is generated here from real DICOM files of ../shared/data.
"""

import gzip
import io
import os
import shutil
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medimg.cli.main import main
from medimg.testing import require_data

SERIES = ("brain_mri_dicom", "Study1", "12-T1post-05670")


def _copy_series(dst: Path, n: int | None = None) -> list[Path]:
    src = require_data(*SERIES)
    dst.mkdir(parents=True)
    files = sorted(src.glob("*.dcm"))[:n]
    for f in files:
        shutil.copy(f, dst / f.name)
    return sorted(dst.iterdir())


def _by_position(folder: Path) -> list[Path]:
    files = list(folder.iterdir())
    ds = {f: pydicom.dcmread(f, stop_before_pixels=True) for f in files}
    normal = np.cross(*np.reshape(np.asarray(ds[files[0]].ImageOrientationPatient, float), (2, 3)))
    return sorted(files, key=lambda f: float(np.dot(normal, np.asarray(ds[f].ImagePositionPatient, float))))


def make_corpus(root: Path) -> dict[str, tuple[Path, str]]:
    """name -> (input path, text the error must contain)."""
    c: dict[str, tuple[Path, str]] = {}
    (root / "empty.dcm").write_bytes(b"")
    c["empty file"] = (root / "empty.dcm", "empty")
    (root / "random.nii.gz").write_bytes(os.urandom(4096))
    c["random bytes"] = (root / "random.nii.gz", "random.nii.gz")
    (root / "random.bin").write_bytes(os.urandom(4096))
    c["random bytes, unknown extension"] = (root / "random.bin", "random.bin")
    one = sorted(require_data(*SERIES).glob("*.dcm"))[0]
    data = one.read_bytes()
    (root / "truncated.dcm").write_bytes(data[: len(data) // 2])
    c["truncated DICOM"] = (root / "truncated.dcm", "truncated.dcm")

    nospacing = root / "no_spacing"
    for f in _copy_series(nospacing):
        ds = pydicom.dcmread(f)
        del ds.PixelSpacing
        ds.save_as(f)
    c["series without PixelSpacing"] = (nospacing, "PixelSpacing")

    gap = root / "missing_slice"
    _copy_series(gap)
    _by_position(gap)[5].unlink()
    c["series with a missing slice"] = (gap, "gap")

    two = root / "two_series"
    _copy_series(two / "a", 6)
    t2 = require_data("brain_mri_dicom", "Study1", "37916-T2reg-88910")
    (two / "b").mkdir()
    for f in sorted(t2.glob("*.dcm"))[:6]:
        shutil.copy(f, two / "b" / f.name)
    c["two series in one folder"] = (two, "--series")

    noimg = root / "no_images"
    noimg.mkdir()
    (noimg / "notes.txt").write_text("not an image")
    c["folder without images"] = (noimg, "no_images")

    nan = np.zeros((4, 5, 6), np.float32)
    nan[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(nan, np.eye(4)), root / "nan.nii.gz")
    c["NIfTI with NaN"] = (root / "nan.nii.gz", "nan.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3, 2, 2), np.float32), np.eye(4)), root / "five_d.nii.gz")
    c["5-D NIfTI"] = (root / "five_d.nii.gz", "five_d.nii.gz")
    raw = gzip.compress((root / "nan.nii.gz").read_bytes())  # valid gzip around gzip: not a NIfTI header
    (root / "double.nii.gz").write_bytes(raw)
    c["gzip that is not NIfTI"] = (root / "double.nii.gz", "double.nii.gz")
    nii = (root / "five_d.nii.gz").read_bytes()
    (root / "cut.nii.gz").write_bytes(nii[: len(nii) // 2])
    c["truncated NIfTI"] = (root / "cut.nii.gz", "cut.nii.gz")

    c["missing path"] = (root / "does_not_exist.nii.gz", "does_not_exist")

    slip = root / "slip.zip"
    with zipfile.ZipFile(slip, "w") as z:
        z.writestr("../evil.dcm", data)
    c["zip with ../ path"] = (slip, "slip.zip")
    bomb = root / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.dcm", b"\0" * (64 * 2**20))
    c["zip bomb"] = (bomb, "bomb.zip")
    trunc_zip = root / "cut.zip"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.dcm", data)
    trunc_zip.write_bytes(buf.getvalue()[:1000])
    c["truncated zip"] = (trunc_zip, "cut.zip")
    return c


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


CASES = [
    "empty file", "random bytes", "random bytes, unknown extension", "truncated DICOM",
    "series without PixelSpacing", "series with a missing slice", "two series in one folder",
    "folder without images", "NIfTI with NaN", "5-D NIfTI", "gzip that is not NIfTI", "truncated NIfTI",
    "missing path", "zip with ../ path", "zip bomb", "truncated zip",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_clean_line_and_writes_nothing(case, corpus, tmp_path, capsys):
    src, must_contain = corpus[case]
    before = sorted(p.name for p in src.parent.iterdir())
    out = tmp_path / "out" / "result.nii.gz"
    assert main(["convert", str(src), str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "internal error" not in err, err
    assert must_contain.lower() in err.lower(), err
    assert not out.exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    assert sorted(p.name for p in src.parent.iterdir()) == before  # nothing written beside the input
    if case != "two series in one folder":  # info lists the series instead
        assert main(["info", str(src)]) == 2  # info refuses it the same way
    capsys.readouterr()


def test_output_equal_to_input_is_refused(tmp_path, capsys):
    src = tmp_path / "a.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(4)), src)
    before = src.read_bytes()
    assert main(["convert", str(src), str(src)]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert src.read_bytes() == before


def test_dicom_output_inside_input_folder_is_refused(tmp_path, capsys):
    series = tmp_path / "series"
    _copy_series(series)
    before = sorted(p.name for p in series.iterdir())
    assert main(["convert", str(series), str(series / "out")]) == 2
    assert "inside the input" in capsys.readouterr().err
    assert sorted(p.name for p in series.iterdir()) == before
