"""`medimg info` and `medimg convert` on DICOM (issue 12, items 8, 9 and 13): the series table, one-line decoder
errors on stderr (checked in a subprocess, where pydicom's own logging and warnings would reach the terminal),
derived-image marking and what converted outputs keep of the patient's identity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, RLELossless, generate_uid

import medimg
from medimg.cli.main import main
from medimg.testing import require_data
from medimg.testing.cli import one_line_error

SRC = Path(medimg.__file__).resolve().parents[1]  # the sources under test, in the subprocess too

# values that identify the patient in the marked series; none may reach an output unless asked for
MARKS = {
    "name": "Marked^Patientname",
    "id": "MARK-ID-93817",
    "birth": "19471103",
    "private": "PRIVATE-MARK-5521",
    "description": "DESC-MARK-Smith",
    "institution": "INSTITUTION-MARK",
    "study_uid": "1.2.826.0.1.3680043.8.498.4242424242",
    "frame_uid": "1.2.826.0.1.3680043.8.498.4343434343",
    "series_uid": "1.2.826.0.1.3680043.8.498.4444444444",
    "folder": "MARKEDPATH-Smith",
}


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run medimg in a fresh interpreter: stderr as a user would see it (logging handlers, warnings)."""
    environ = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "medimg", *args], capture_output=True, text=True, env=environ,
                          timeout=300)


def _marked_series(root: Path, n: int = 3) -> Path:
    folder = root / MARKS["folder"]
    folder.mkdir(parents=True)
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        sop = generate_uid()
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop
        ds.PatientName = MARKS["name"]
        ds.PatientID = MARKS["id"]
        ds.PatientBirthDate = MARKS["birth"]
        ds.InstitutionName = MARKS["institution"]
        ds.StudyDate = "20240102"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.Modality = "CT"
        ds.StudyInstanceUID = MARKS["study_uid"]
        ds.SeriesInstanceUID = MARKS["series_uid"]
        ds.FrameOfReferenceUID = MARKS["frame_uid"]
        ds.SeriesDescription = MARKS["description"]
        ds.SeriesNumber = 3
        ds.private_block(0x0011, "MARKCREATOR", create=True).add_new(0x01, "LO", MARKS["private"])
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.ImagePositionPatient = ["0", "0", str(2 * k)]
        ds.PixelSpacing = ["0.5", "0.5"]
        ds.SliceThickness = "2"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = 8, 6
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleSlope, ds.RescaleIntercept = "1", "-1024"
        ds.PixelData = (np.arange(48, dtype=np.int16) + 100 * k).tobytes()
        pydicom.dcmwrite(folder / f"{k}.dcm", ds, enforce_file_format=True)
    return folder


def _output_text(path: Path) -> str:
    """Every byte of an output, decompressed (npz members), as latin-1 text."""
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    chunks = []
    for f in files:
        if not f.is_file():
            continue
        chunks.append(f.read_bytes().decode("latin-1"))
        if f.suffix == ".npz":
            with zipfile.ZipFile(f) as z:
                chunks.extend(z.read(m).decode("latin-1") for m in z.namelist())
            with np.load(f, allow_pickle=False) as arrays:  # text arrays are UTF-32 inside the members
                chunks.extend(str(arrays[k]) for k in arrays.files if arrays[k].dtype.kind in "US")
    return "\n".join(chunks)


# ---- item 9: info ---------------------------------------------------------------------------------------------
def test_info_series_table_size_column(capsys):
    study = require_data("brain_mri_dicom", "Study1")
    assert main(["info", str(study)]) == 0
    out = capsys.readouterr().out
    assert "512x512x22" in out and "xxx" not in out
    rows = [line for line in out.splitlines() if line.startswith("    ") and "MR" in line]
    assert len(rows) == 5 and sum("512x512x22" in r for r in rows) == 4


def test_info_prints_series_description_only_when_asked(capsys):
    study = require_data("brain_mri_dicom", "Study1")
    assert main(["info", str(study)]) == 0
    out = capsys.readouterr().out
    assert "T1post" not in out and "FLAIR" not in out and "series number" in out
    assert main(["info", str(study), "--series", "0", "--json"]) == 0
    assert "T1post" not in capsys.readouterr().out
    assert main(["info", str(study), "--show-identifiers"]) == 0
    assert "T1post" in capsys.readouterr().out
    assert main(["info", str(study), "--series", "0", "--show-identifiers"]) == 0
    assert "description:  T1post" in capsys.readouterr().out


def test_series_choice_error_holds_no_description(tmp_path, capsys):
    study = require_data("brain_mri_dicom", "Study1")
    assert main(["convert", str(study), str(tmp_path / "x.nii.gz")]) == 2
    line = one_line_error(capsys.readouterr().err, "--series", "512x512x22")
    assert "T1post" not in line and "FLAIR" not in line


def test_info_notes_an_assumed_slice_thickness(tmp_path, capsys):
    src = _marked_series(tmp_path, n=1) / "0.dcm"
    ds = pydicom.dcmread(src)
    del ds.SliceThickness
    ds.save_as(src, enforce_file_format=True)
    assert main(["info", str(src)]) == 0
    out = capsys.readouterr().out
    assert "note:" in out and "1 mm is assumed" in out
    assert main(["info", str(src), "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)["metadata"]
    assert meta["spacing_source_z"] == "default_1mm"


def test_jpeg_extended_12_bit_that_cannot_be_decoded_is_one_line():
    path = get_testdata_file("JPEG-lossy.dcm")  # 12-bit JPEG Extended that pylibjpeg-libjpeg and Pillow reject
    assert pydicom.dcmread(path).BitsStored == 12
    for command in (["info", path], ["convert", path, os.devnull + ".nii.gz"]):
        result = _cli(*command)
        assert result.returncode == 2
        line = one_line_error(result.stderr, "cannot decode pixel data", "JPEG Extended", "1.2.840.10008.1.2.4.51",
                              "Fix:")
        assert "gdcmconv" in line


def test_garbage_rle_data_is_one_line_on_stderr(tmp_path):
    path = _marked_series(tmp_path, n=1) / "0.dcm"
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.PixelData = encapsulate([bytes(range(64)) * 3])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    result = _cli("info", str(path))
    assert result.returncode == 2
    one_line_error(result.stderr, "cannot decode pixel data", "RLE Lossless")


def test_rust_decoder_panic_is_one_line_on_stderr(tmp_path):
    import struct

    pytest.importorskip("rle")  # pylibjpeg-rle (Rust) panics on segments longer than the image
    path = _marked_series(tmp_path, n=1) / "0.dcm"
    ds = pydicom.dcmread(path)
    segment = bytes([0x81, 0x07]) * 200
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.PixelData = encapsulate([struct.pack("<16I", 2, 64, 64 + len(segment), *([0] * 13)) + segment * 2])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    result = _cli("info", str(path), env={"RUST_BACKTRACE": "1"})
    assert result.returncode == 2
    one_line_error(result.stderr, "cannot decode pixel data", "RLE Lossless", "panicked")


def test_folder_of_non_dicom_files_is_one_line(tmp_path):
    for k in range(200):
        (tmp_path / f"junk{k:03d}.dcm").write_bytes(b"garbage " * 30)
    result = _cli("info", str(tmp_path))
    assert result.returncode == 2
    one_line_error(result.stderr, "no DICOM images found", "200 unreadable")


def test_seg_object_is_named_on_the_command_line(capsys):
    path = require_data("dicom_seg_sr_highdicom", "data", "test_files", "seg_image_ct_binary.dcm")
    assert main(["info", str(path)]) == 2
    one_line_error(capsys.readouterr().err, "Segmentation (SEG)", "not an image", "issue 14")


# ---- item 8: a converted image is derived ------------------------------------------------------------------------
def test_convert_to_dicom_marks_the_images_derived(tmp_path, capsys):
    series = _marked_series(tmp_path / "in")
    out = tmp_path / "out"
    assert main(["convert", str(series), str(out), "-q"]) == 0
    files = sorted(out.iterdir())
    assert len(files) == 3
    ds = pydicom.dcmread(files[0])
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"]
    assert ds.SOPClassUID == CTImageStorage
    assert "medimg" in ds.DerivationDescription


def test_convert_real_ct_with_class_in_file_meta_only(tmp_path):
    ct = require_data("ct_mr_samples_totalsegmentator", "tests", "reference_files", "example_ct_dicom")
    out = tmp_path / "ct"
    assert main(["convert", str(ct), str(out), "-q"]) == 0
    ds = pydicom.dcmread(sorted(out.iterdir())[0])
    assert ds.SOPClassUID == CTImageStorage  # not Secondary Capture
    assert list(ds.ImageType[:2]) == ["DERIVED", "SECONDARY"]


# ---- item 13: identifying metadata -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["out.npz", "out_dicom"])
def test_convert_outputs_keep_no_identifying_values(name, tmp_path):
    series = _marked_series(tmp_path / "in")
    out = tmp_path / name
    assert main(["convert", str(series), str(out), "-q"]) == 0
    text = _output_text(out)
    leaked = [k for k, v in MARKS.items() if v in text]
    assert leaked == []
    if out.is_dir():
        ds = pydicom.dcmread(sorted(out.iterdir())[0])
        assert ds.PatientIdentityRemoved == "YES"
        assert not [e for e in ds if e.tag.is_private]


@pytest.mark.parametrize("name", ["out.npz", "out_dicom"])
def test_convert_keep_identifiers_keeps_them(name, tmp_path):
    series = _marked_series(tmp_path / "in")
    out = tmp_path / name
    assert main(["convert", str(series), str(out), "-q", "--keep-identifiers"]) == 0
    text = _output_text(out)
    assert MARKS["study_uid"] in text and MARKS["frame_uid"] in text and MARKS["description"] in text
    if out.is_dir():
        assert MARKS["name"] in text and MARKS["id"] in text and MARKS["private"] in text
    else:
        assert MARKS["folder"] in text  # the source path
        assert '"keep_identifiers"' not in text  # the opt-in flag itself is never stored


def test_convert_real_series_to_npz_drops_identifiers(tmp_path):
    study = require_data("brain_mri_dicom", "Study1")
    src = pydicom.dcmread(sorted((study / "12-T1post-05670").iterdir())[0], stop_before_pixels=True)
    out = tmp_path / "t1.npz"
    assert main(["convert", str(study), str(out), "--series", "0", "-q"]) == 0
    text = _output_text(out)
    for value in (str(src.PatientName), str(src.PatientID), str(src.StudyInstanceUID), str(src.SeriesInstanceUID),
                  str(src.FrameOfReferenceUID), str(study)):
        assert value not in text
