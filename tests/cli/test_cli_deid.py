"""``medimg deid``: exit codes, quiet mode, one-line errors, the secret read from the environment."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file

from medimg.cli.main import main
from medimg.testing import require_data


def test_deid_folder_quiet(tmp_path, capsys):
    study = require_data("brain_mri_dicom", "Study1")
    series = min(p for p in study.iterdir() if p.is_dir())
    out = tmp_path / "out"
    assert main(["deid", str(series), str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    files = sorted(out.rglob("*.dcm"))
    assert len(files) == len(list(series.glob("*.dcm")))
    assert pydicom.dcmread(files[0]).PatientIdentityRemoved == "YES"


def test_deid_options_and_summary(tmp_path, capsys, monkeypatch):
    src = get_testdata_file("MR_small.dcm")
    monkeypatch.setenv("MEDIMG_TEST_SECRET", "s3cret-value")
    args = ["deid", src, str(tmp_path / "a.dcm"), "--date-shift", "-7", "--secret-env", "MEDIMG_TEST_SECRET",
            "--patient-id", "SUBJ-9", "--mapping", str(tmp_path / "keys" / "map.json")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "de-identified 1 file(s)" in out and "shifted by -7 days" in out and "s3cret" not in out
    assert main(["deid", src, str(tmp_path / "b.dcm"), "--secret-env", "MEDIMG_TEST_SECRET", "-q"]) == 0
    a, b = pydicom.dcmread(tmp_path / "a.dcm"), pydicom.dcmread(tmp_path / "b.dcm")
    assert a.PatientID == "SUBJ-9" and a.SOPInstanceUID == b.SOPInstanceUID
    assert (tmp_path / "keys" / "map.json").exists()


def test_deid_bad_input_one_line(tmp_path, capsys):
    bad = tmp_path / "notes.txt"
    bad.write_text("not DICOM")
    assert main(["deid", str(bad), str(tmp_path / "out.dcm"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "notes.txt" in err
    assert not (tmp_path / "out.dcm").exists()


def test_deid_missing_secret_env_and_mapping_inside_output(tmp_path, capsys, monkeypatch):
    src = get_testdata_file("CT_small.dcm")
    monkeypatch.delenv("MEDIMG_NO_SUCH_SECRET", raising=False)
    assert main(["deid", src, str(tmp_path / "o.dcm"), "--secret-env", "MEDIMG_NO_SUCH_SECRET", "-q"]) == 2
    err = capsys.readouterr().err
    assert "--secret-env" in err and "Traceback" not in err
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "x.dcm").write_bytes(Path(src).read_bytes())
    out = tmp_path / "out"
    assert main(["deid", str(folder), str(out), "--mapping", str(out / "m.json"), "-q"]) == 2
    assert "mapping" in capsys.readouterr().err and not out.exists()
    assert main(["deid", str(folder), str(folder), "-q"]) == 2


def test_deid_deeply_nested_sequences_one_line(tmp_path, capsys):
    import struct

    src = tmp_path / "deep.dcm"
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.save_as(src, enforce_file_format=True)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    seq = struct.pack("<HH", 0x0040, 0xA730) + b"SQ\0\0" + b"\xff\xff\xff\xff"
    ends = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    body = struct.pack("<HH", 0xFFFA, 0xFFFA) + b"SQ\0\0" + b"\xff\xff\xff\xff" + (item + seq) * 3000
    with open(src, "ab") as fh:  # a 3000-level nesting after the pixel data (RecursionError before)
        fh.write(body + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0) + ends * 3000)
    assert main(["deid", str(src), str(tmp_path / "out.dcm")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "nested deeper than 64 levels" in err, err
    assert "internal error" not in err and not (tmp_path / "out.dcm").exists()
