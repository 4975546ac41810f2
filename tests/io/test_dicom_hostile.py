"""medimg.io.dicom on hostile and silently-wrong files (issue 12, items 8 and 13), each built on the fly: every
case ends in one DicomError (never another exception type, a hang or a huge allocation), or in a value that says
what was assumed."""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEGLSLossless, RLELossless, generate_uid

from medimg.core.errors import DicomError
from medimg.io.dicom import read_dicom, scan_dicom
from medimg.testing import require_data

# the hostile files written here carry invalid values on purpose
pytestmark = pytest.mark.filterwarnings("ignore:.*(Invalid value for VR|value length).*:UserWarning")


def _ct(path: Path, *, z: float = 0.0, series_uid: str | None = None, rows: int = 8, cols: int = 6,
        **overrides) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    sop = generate_uid()
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop
    ds.Modality = "CT"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.7"
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.ImagePositionPatient = ["0", "0", f"{z:g}"]
    ds.PixelSpacing = ["0.5", "0.5"]
    ds.SliceThickness = "2"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope, ds.RescaleIntercept = "1", "-1024"
    ds.PixelData = np.arange(rows * cols, dtype=np.int16).tobytes()
    for key, value in overrides.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def _patch(path: Path, old: bytes, new: bytes) -> Path:
    data = path.read_bytes()
    assert data.count(old) >= 1
    path.write_bytes(data.replace(old, new, 1))
    return path


def _refused(path: Path, *words: str) -> str:
    with pytest.raises(DicomError) as info:
        read_dicom(path)
    text = str(info.value)
    for w in words:
        assert w.lower() in text.lower(), text
    assert "\n" not in text
    return text


# ---- item 8: non-image objects say what they are --------------------------------------------------------------
@pytest.mark.parametrize("name,kind", [
    ("seg_image_ct_binary.dcm", "Segmentation (SEG)"),
    ("seg_image_ct_binary_fractional.dcm", "Segmentation (SEG)"),
    ("sr_document.dcm", "Structured Report (SR)"),
])
def test_seg_and_sr_files_say_what_they_are(name, kind):
    path = require_data("dicom_seg_sr_highdicom", "data", "test_files", name)
    text = _refused(path, kind, "not an image", "issue 14")
    assert "without a DICOM image header" not in text


def test_rt_objects_say_what_they_are():
    from pydicom.data import get_testdata_file

    _refused(Path(get_testdata_file("rtstruct.dcm")), "RT Structure Set (RTSTRUCT)")
    _refused(Path(get_testdata_file("rtdose.dcm")), "RT Dose (RTDOSE)")


def test_folder_of_seg_objects_names_them(tmp_path):
    src = require_data("dicom_seg_sr_highdicom", "data", "test_files", "seg_image_ct_binary.dcm")
    (tmp_path / "a.dcm").write_bytes(src.read_bytes())
    _refused(tmp_path, "no DICOM images", "Segmentation (SEG)")


# ---- item 13: exceptions that escaped the one-line contract ----------------------------------------------------
def test_unknown_transfer_syntax(tmp_path):
    path = _ct(tmp_path / "a.dcm")
    _patch(path, ExplicitVRLittleEndian.encode() + b"\0", b"1.2.3.4.5.6.7.8.9.10")
    _refused(path, "unknown transfer syntax", "1.2.3.4.5.6.7.8.9.10")


@pytest.mark.parametrize("tag,vr", [((0x0020, 0x0037), b"DS"), ((0x0008, 0x0018), b"UI"), ((0x0002, 0x0003), b"UI")])
def test_unknown_vr_fails_inside_the_reader(tag, vr, tmp_path):
    path = _ct(tmp_path / "a.dcm")
    _patch(path, struct.pack("<HH", *tag) + vr, struct.pack("<HH", *tag) + b"ZZ")
    _refused(path, "unreadable DICOM", "ZZ")


@pytest.mark.parametrize("tag", [(0x0028, 0x0010), (0x0028, 0x0100)])  # Rows, BitsAllocated
def test_bad_value_length_fails_inside_the_reader(tag, tmp_path):
    path = _ct(tmp_path / "a.dcm")
    head = struct.pack("<HH", *tag) + b"US"
    data = path.read_bytes()
    i = data.index(head)
    path.write_bytes(data[:i + 6] + struct.pack("<H", 3) + data[i + 8:])  # 3 bytes for a 2-byte value
    _refused(path, "unreadable DICOM file", "BytesLengthException")


def test_decoder_panic_is_one_error_but_interrupts_pass(tmp_path, monkeypatch):
    path = _ct(tmp_path / "a.dcm")

    class PanicException(BaseException):  # what pyo3 raises when a Rust decoder panics
        pass

    def panic(self):
        raise PanicException("called `Option::unwrap()` on a `None` value")

    monkeypatch.setattr(Dataset, "pixel_array", property(panic))
    _refused(path, "cannot decode pixel data", "Explicit VR Little Endian", "panicked")

    def interrupt(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Dataset, "pixel_array", property(interrupt))
    with pytest.raises(KeyboardInterrupt):
        read_dicom(path)


def rle_panic_file(path: Path) -> Path:
    """An RLE frame whose segments decode to far more bytes than the image holds: pylibjpeg-rle (Rust) panics
    ('index out of bounds') and prints the panic to file descriptor 2."""
    path = _ct(path, rows=64, cols=64)
    ds = pydicom.dcmread(path)
    segment = bytes([0x81, 0x07]) * 200  # replicate runs of 128 bytes each
    header = struct.pack("<16I", 2, 64, 64 + len(segment), *([0] * 13))
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.PixelData = encapsulate([header + segment + segment])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_real_decoder_panic_is_one_error_and_its_print_is_held_back(tmp_path, capfd):
    pytest.importorskip("rle")  # pylibjpeg-rle, the Rust RLE decoder
    path = rle_panic_file(tmp_path / "a.dcm")
    _refused(path, "cannot decode pixel data", "RLE Lossless", "panicked")
    assert "panicked" not in capfd.readouterr().err


@pytest.mark.parametrize("syntax", [RLELossless, pydicom.uid.JPEG2000Lossless, JPEGLSLossless])
def test_garbage_compressed_data_is_one_line_without_decoder_logging(syntax, tmp_path, caplog):
    path = _ct(tmp_path / "a.dcm")
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([bytes(range(64)) * 3])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    with caplog.at_level(logging.DEBUG, logger="pydicom"):
        caplog.clear()
        _refused(path, "cannot decode pixel data", str(syntax), "Fix")
    assert not [r for r in caplog.records if r.name.startswith("pydicom") and r.levelno >= logging.WARNING]


def test_decoder_returning_zeros_for_garbage_is_refused(tmp_path, monkeypatch):
    path = _ct(tmp_path / "a.dcm")
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\x00" * 64])  # no SOI / SOF marker: not a JPEG-LS stream
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    monkeypatch.setattr(Dataset, "pixel_array", property(lambda self: np.zeros((8, 6), np.int16)))
    _refused(path, "all-zero", "JPEG-LS")
    monkeypatch.setattr(Dataset, "pixel_array", property(lambda self: np.zeros((3,), np.int16)))
    _refused(path, "too short")


def test_jpeg_ls_header_followed_by_garbage_is_not_an_all_zero_image(tmp_path):
    from pydicom.data import get_testdata_file
    from pydicom.encaps import generate_frames

    ds = pydicom.dcmread(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"))
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    start_of_scan = frame.index(b"\xff\xda")
    ds.PixelData = encapsulate([frame[:start_of_scan] + b"garbage stream " * 30])  # decoded as zeros, no error
    ds.save_as(tmp_path / "a.dcm", enforce_file_format=True)
    _refused(tmp_path / "a.dcm", "all-zero image", "JPEG-LS")


def test_valid_compressed_all_zero_image_is_accepted(tmp_path):
    path = _ct(tmp_path / "a.dcm")
    ds = pydicom.dcmread(path)
    ds.PixelData = np.zeros((8, 6), np.int16).tobytes()
    ds.compress(RLELossless)  # a blank slice, properly encoded
    ds.save_as(path, enforce_file_format=True)
    img = read_dicom(path)
    assert np.all(img.voxels == -1024)


def test_valid_jpeg_ls_stream_is_read(tmp_path):
    from pydicom.data import get_testdata_file

    img = read_dicom(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"))
    plain = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    assert np.array_equal(img.voxels[0, 0], plain.pixel_array)


# ---- memory and time bombs ----------------------------------------------------------------------------------------
def test_huge_number_of_frames_is_refused_before_decoding(tmp_path):
    path = _ct(tmp_path / "a.dcm", NumberOfFrames=100_000_000)
    _refused(path, "memory budget", "100000000")
    with pytest.raises(DicomError, match="memory budget"):
        scan_dicom(path)


def test_declared_frames_beyond_the_bytes_present(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDIMG_MAX_BYTES", "64G")
    path = _ct(tmp_path / "a.dcm", NumberOfFrames=5000)
    _refused(path, "pixel data shorter than the header declares", "96 bytes")


def test_memory_budget_from_environment(tmp_path, monkeypatch):
    folder = tmp_path / "s"
    uid = generate_uid()
    for k in range(4):
        _ct(folder / f"{k}.dcm", z=2.0 * k, series_uid=uid, rows=64, cols=64)
    assert read_dicom(folder).shape == (1, 4, 64, 64)
    monkeypatch.setenv("MEDIMG_MAX_BYTES", "20K")  # each file fits (8 KiB), the series (32 KiB) does not
    _refused(folder, "series pixel data size exceeds the memory budget", "MEDIMG_MAX_BYTES")


# ---- reading outside the input ------------------------------------------------------------------------------------
def _dicomdir(folder: Path, ref) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.FileSetID = "TEST"
    ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.FileSetConsistencyFlag = 0
    rec = Dataset()
    rec.OffsetOfTheNextDirectoryRecord = 0
    rec.RecordInUseFlag = 0xFFFF
    rec.OffsetOfReferencedLowerLevelDirectoryEntity = 0
    rec.DirectoryRecordType = "IMAGE"
    rec.ReferencedFileID = ref
    ds.DirectoryRecordSequence = [rec]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "DICOMDIR"
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


@pytest.mark.parametrize("ref", ["sub/../../other/a.dcm", ["SUB", "..", "..", "other", "a.dcm"], "/OTHER/A.DCM"])
def test_dicomdir_reference_outside_its_folder_is_refused(ref, tmp_path):
    other = _ct(tmp_path / "other" / "a.dcm")
    if isinstance(ref, str) and ref.startswith("/"):
        ref = str(other)
    path = _dicomdir(tmp_path / "media" / "disk", ref)
    _refused(path, "outside its folder")


def test_dicomdir_reference_through_a_link_out_of_its_folder_is_refused(tmp_path):
    other = _ct(tmp_path / "other" / "a.dcm")
    media = tmp_path / "media"
    media.mkdir()
    os.symlink(other, media / "A.DCM")
    _refused(_dicomdir(media, "A.DCM"), "outside its folder")


def test_dicomdir_reference_inside_is_read(tmp_path):
    _ct(tmp_path / "media" / "IMG" / "A.DCM")
    assert read_dicom(_dicomdir(tmp_path / "media", ["IMG", "A.DCM"])).shape == (1, 1, 8, 6)


def test_folder_scan_does_not_follow_links_out_of_the_folder(tmp_path, caplog):
    uid = generate_uid()
    inside = tmp_path / "in"
    _ct(inside / "1.dcm", z=0, series_uid=uid)
    _ct(inside / "2.dcm", z=2, series_uid=uid)
    other = _ct(tmp_path / "other_patient" / "3.dcm", z=4, series_uid=uid)
    os.symlink(other, inside / "3.dcm")
    with caplog.at_level(logging.WARNING, logger="medimg"):
        series = scan_dicom(inside)
    assert [f.name for f in series[0].files] == ["1.dcm", "2.dcm"]
    assert sum("outside the input folder" in r.getMessage() for r in caplog.records) == 1
    assert read_dicom(inside).shape == (1, 2, 8, 6)


# ---- warnings summarised ------------------------------------------------------------------------------------------
def test_many_unreadable_files_give_one_warning(tmp_path, caplog):
    for k in range(200):
        (tmp_path / f"junk{k:03d}.dcm").write_bytes(b"not dicom " * 20)
    _ct(tmp_path / "image.dcm")
    with caplog.at_level(logging.WARNING, logger="medimg"):
        read_dicom(tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "200 files are not readable DICOM" in warnings[0], warnings
    caplog.clear()
    (tmp_path / "image.dcm").unlink()
    with caplog.at_level(logging.WARNING, logger="medimg"):
        _refused(tmp_path, "no DICOM images", "200 unreadable")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# ---- silently wrong values ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("slope", ["0", "NaN", "inf"])
def test_rescale_slope_zero_or_not_finite_is_refused(slope, tmp_path):
    _refused(_ct(tmp_path / "a.dcm", RescaleSlope=slope), "invalid Rescale Slope", repr(slope))


def test_rescale_intercept_nan_is_refused(tmp_path):
    _refused(_ct(tmp_path / "a.dcm", RescaleIntercept="NaN"), "invalid Rescale Slope/Intercept")


def test_single_slice_without_thickness_records_the_assumption(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="medimg"):
        img = read_dicom(_ct(tmp_path / "a.dcm", SliceThickness=None))
    assert img.geometry.spacing[2] == 1.0
    assert img.metadata["spacing_source_z"] == "default_1mm"
    assert "1 mm is assumed" in img.metadata["geometry_note"]
    assert any("SliceThickness" in r.getMessage() for r in caplog.records)
    stated = read_dicom(_ct(tmp_path / "b.dcm"))
    assert stated.geometry.spacing[2] == 2.0 and stated.metadata["spacing_source_z"] == "SliceThickness"
    assert "geometry_note" not in stated.metadata


def test_deeply_nested_sequences_are_refused(tmp_path):
    path = _ct(tmp_path / "a.dcm")
    ds = pydicom.dcmread(path)
    inner = Dataset()
    inner.CodeValue = "1"
    for _ in range(80):
        outer = Dataset()
        outer.ContentSequence = [inner]
        inner = outer
    ds.ReferencedImageSequence = [inner]
    ds.save_as(path, enforce_file_format=True)
    _refused(path, "nested too deeply")


# ---- declared lengths beyond the file: one DicomError, never a MemoryError (fuzz findings, issue 12 item 13) -----
_READ_LIMITED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from medimg.core.errors import MedimgError
from medimg.io import read
try:
    read(sys.argv[1])
except MedimgError as exc:
    print(exc)
    sys.exit(3)
"""


def _huge_pixel_length(tmp_path: Path) -> Path:
    path = _ct(tmp_path / "px.dcm", rows=128, cols=128)  # 32 KiB of pixels: deferred, read from the file later
    data = bytearray(path.read_bytes())
    i = data.index(b"\xe0\x7f\x10\x00OW")
    struct.pack_into("<I", data, i + 8, 0xFFFFFFF0)
    path.write_bytes(bytes(data))
    return path


def _huge_meta_length(tmp_path: Path) -> Path:
    path = _ct(tmp_path / "meta.dcm")
    data = bytearray(path.read_bytes())
    i = data.index(b"\x02\x00\x03\x00UI")  # MediaStorageSOPInstanceUID, read before anything is deferred
    path.write_bytes(bytes(data[:i]) + b"\x02\x00\x01\x00OB\0\0" + struct.pack("<I", 0xFFFFFFF0) + bytes(data[i:]))
    return path


_FINDINGS = Path(__file__).parents[1] / "fuzz" / "findings"


@pytest.mark.parametrize("case", ["pixel_length", "meta_length", "dicom-2c8ddf3ead-b.dcm", "dicom-96ee3ee2b7-b.dcm"])
def test_declared_length_beyond_the_file_is_one_error_under_a_memory_limit(case, tmp_path):
    import subprocess
    import sys

    if case == "pixel_length":
        path = _huge_pixel_length(tmp_path)
    elif case == "meta_length":
        path = _huge_meta_length(tmp_path)
    else:
        path = tmp_path / case
        path.write_bytes((_FINDINGS / case).read_bytes())
    proc = subprocess.run([sys.executable, "-c", _READ_LIMITED, str(path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 3, f"exit {proc.returncode}: {proc.stderr[-800:]}"  # 1: MemoryError escaped
    assert str(path) in proc.stdout and len(proc.stdout.strip().splitlines()) == 1


def test_valid_file_with_deferred_pixels_still_reads(tmp_path):
    path = _ct(tmp_path / "ok.dcm", rows=128, cols=128)
    assert read_dicom(path).shape[-2:] == (128, 128)
