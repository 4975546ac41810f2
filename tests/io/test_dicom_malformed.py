"""medimg.io.dicom on a malformed corpus generated in tmp_path: each case raises the right error, names the file
or folder, and writes nothing."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medimg.core.errors import (
    DicomError,
    ImageReadError,
    InvalidParameterError,
    SeriesSelectionError,
    UnsafeArchiveError,
)
from medimg.io.dicom import read_dicom, scan_dicom

IOP_AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
IOP_OBLIQUE = (1.0, 0.0, 0.0, 0.0, np.cos(0.3), -np.sin(0.3))


def _slice(path: Path, *, z: float, series_uid: str, study_uid: str, iop=IOP_AXIAL, rows: int = 8, cols: int = 6,
           pixel_spacing: bool = True, value: int = 0, description: str = "synthetic") -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    sop = generate_uid()
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop
    ds.PatientName = "Secret^Patient"
    ds.PatientID = "ID-SECRET-1"
    ds.Modality = "CT"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = study_uid + ".1"
    ds.SeriesDescription = description
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1  # deliberately useless for ordering
    r, c = np.array(iop[:3]), np.array(iop[3:])
    normal = np.cross(r, c)
    ds.ImageOrientationPatient = [f"{v:.6f}" for v in iop]
    ds.ImagePositionPatient = [f"{v:.4f}" for v in (np.array([-10.0, 20.0, 5.0]) + normal * z)]
    if pixel_spacing:
        ds.PixelSpacing = ["0.5", "0.75"]
    ds.SliceThickness = "2"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope, ds.RescaleIntercept = "1", "-1024"
    ds.PixelData = np.full((rows, cols), value, np.int16).tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def _series(folder: Path, zs, *, uid: str | None = None, **kwargs) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    uid = uid or generate_uid()
    study = kwargs.pop("study_uid", "1.2.826.0.1.3680043.8.498.1")
    # file names in reverse physical order so that name order is wrong
    for i, z in enumerate(zs):
        _slice(folder / f"s{len(zs) - i:03d}.dcm", z=z, series_uid=uid, study_uid=study, value=100 + i, **kwargs)
    return folder


def _listing(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*")}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return tmp_path


def _check(exc: BaseException, name: str) -> None:
    msg = str(exc)
    assert name in msg, msg
    assert "\n" not in msg
    assert "Secret" not in msg and "ID-SECRET" not in msg


def test_good_synthetic_series_sorted_by_position(corpus):
    folder = _series(corpus / "ok", [0.0, 2.0, 4.0, 6.0], iop=IOP_OBLIQUE)
    img = read_dicom(folder)
    assert img.spatial_shape == (4, 8, 6)
    assert img.geometry.spacing == pytest.approx((0.75, 0.5, 2.0), abs=1e-4)
    # values written 100, 101, ... in position order: sorting used positions, not names
    assert list(img.array[:, 0, 0]) == [100 - 1024 + i for i in range(4)]
    assert np.allclose(img.geometry.direction_matrix[:, 1], IOP_OBLIQUE[3:], atol=1e-6)


def test_empty_file(corpus):
    f = corpus / "empty.dcm"
    f.write_bytes(b"")
    with pytest.raises(ImageReadError) as info:
        read_dicom(f)
    _check(info.value, "empty.dcm")


def test_random_bytes(corpus):
    f = corpus / "noise.dcm"
    f.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(DicomError) as info:
        read_dicom(f)
    _check(info.value, "noise.dcm")


def test_truncated_file(corpus):
    folder = _series(corpus / "trunc", [0.0])
    f = next(folder.iterdir())
    data = f.read_bytes()
    f.write_bytes(data[: len(data) - 40])  # pixel data cut short
    with pytest.raises(DicomError) as info:
        read_dicom(f)
    _check(info.value, f.name)
    f.write_bytes(data[:200])  # header cut short
    with pytest.raises(DicomError) as info:
        read_dicom(f)
    _check(info.value, f.name)


def test_missing_pixel_spacing(corpus):
    folder = _series(corpus / "nops", [0.0, 2.0, 4.0], pixel_spacing=False)
    with pytest.raises(DicomError, match="no pixel spacing") as info:
        read_dicom(folder)
    _check(info.value, "nops")
    assert "spacing=" in str(info.value)
    img = read_dicom(folder, spacing=(0.4, 0.6, 9.0))
    assert img.geometry.spacing == pytest.approx((0.4, 0.6, 2.0), abs=1e-4)
    assert img.metadata["spacing_source"] == "user"


def test_missing_slice(corpus):
    folder = _series(corpus / "missing", [0.0, 2.0, 4.0, 8.0, 10.0])
    with pytest.raises(DicomError, match="missing slice") as info:
        read_dicom(folder)
    msg = str(info.value)
    _check(info.value, "missing")
    assert "9.000 mm" in msg and "13.000 mm" in msg and "slices 2 and 3" in msg  # z = 5 + position
    assert 'on_gap="resample"' in msg and "--allow-gaps" in msg
    img = read_dicom(folder, on_gap="resample")
    assert img.spatial_shape[0] == 6
    assert img.geometry.spacing[2] == pytest.approx(2.0, abs=1e-3)
    # the filled slice is the linear interpolation of its neighbours (values 102 and 103 - 1024)
    assert img.array[3, 0, 0] == pytest.approx(102.5 - 1024)
    assert img.history[-1].name == "dicom_fill_slice_gaps"


def test_uneven_gaps(corpus):
    folder = _series(corpus / "uneven", [0.0, 2.0, 4.0, 6.5, 8.5, 10.5])
    with pytest.raises(DicomError, match="uneven slice spacing") as info:
        read_dicom(folder)
    _check(info.value, "uneven")


def test_two_series_in_one_folder(corpus):
    folder = corpus / "two"
    _series(folder / "a", [0.0, 2.0], description="first")
    _series(folder / "b", [0.0, 2.0], description="second")
    with pytest.raises(SeriesSelectionError) as info:
        read_dicom(folder)
    _check(info.value, "two")
    assert len(info.value.series) == 2
    assert {s["description"] for s in info.value.series} == {"first", "second"}
    assert "Secret" not in repr(info.value.series)
    # files of both series mixed in one folder are still separated by SeriesInstanceUID
    flat = corpus / "flat"
    _series(flat, [0.0, 2.0], uid="1.2.3.4.1")
    for i, z in enumerate([0.0, 2.0, 4.0]):
        _slice(flat / f"x{i}.dcm", z=z, series_uid="1.2.3.4.2", study_uid="1.2.3")
    assert sorted(s.n_files for s in scan_dicom(flat)) == [2, 3]
    assert read_dicom(flat, series="1.2.3.4.2").spatial_shape[0] == 3


def test_folder_without_images(corpus):
    folder = corpus / "docs"
    folder.mkdir()
    (folder / "readme.txt").write_text("hello")
    (folder / ".DS_Store").write_bytes(b"\0" * 50)
    (folder / "DICOMDIR").write_bytes(b"x" * 10)
    with pytest.raises(DicomError, match="no DICOM images") as info:
        scan_dicom(folder)
    _check(info.value, "docs")
    (folder / "broken.dcm").write_bytes(b"\1" * 300)
    with pytest.raises(DicomError, match="unreadable") as info:
        read_dicom(folder)
    _check(info.value, "broken.dcm")


def test_unreadable_file_next_to_good_series_is_skipped(corpus, caplog):
    folder = _series(corpus / "mixed", [0.0, 2.0, 4.0])
    (folder / "bad.dcm").write_bytes(b"garbage" * 30)
    with caplog.at_level("WARNING", logger="medimg.io.dicom"):
        img = read_dicom(folder)
    assert img.spatial_shape[0] == 3
    assert "bad.dcm" in caplog.text
    assert "Secret" not in caplog.text


def test_mixed_orientations(corpus):
    folder = _series(corpus / "mixori", [0.0, 2.0, 4.0], uid="1.2.3.9")
    _slice(folder / "tilted.dcm", z=6.0, series_uid="1.2.3.9", study_uid="1.2.3", iop=IOP_OBLIQUE)
    with pytest.raises(DicomError, match="mixed slice orientations") as info:
        read_dicom(folder)
    _check(info.value, "tilted.dcm")


def test_mixed_sizes(corpus):
    folder = _series(corpus / "mixsize", [0.0, 2.0, 4.0], uid="1.2.3.8")
    _slice(folder / "big.dcm", z=6.0, series_uid="1.2.3.8", study_uid="1.2.3", rows=10)
    with pytest.raises(DicomError, match="mixed image sizes") as info:
        read_dicom(folder)
    _check(info.value, "big.dcm")


def test_duplicate_positions(corpus):
    folder = _series(corpus / "dup", [0.0, 2.0, 2.0, 4.0])
    with pytest.raises(DicomError, match="same position") as info:
        read_dicom(folder)
    _check(info.value, "dup")


def test_bad_options(corpus):
    folder = _series(corpus / "opts", [0.0, 2.0])
    with pytest.raises(InvalidParameterError):
        read_dicom(folder, on_gap="ignore")
    with pytest.raises(InvalidParameterError):
        read_dicom(folder, spacing=(1.0, -1.0, 1.0))


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("member", ["../evil.dcm", "/abs/evil.dcm", "ok/../../evil.dcm"])
def test_zip_with_escaping_paths(corpus, member):
    z = _zip(corpus / "evil.zip", {"ok.txt": b"x", member: b"payload"})
    before = _listing(corpus.parent)
    with pytest.raises(UnsafeArchiveError) as info:
        read_dicom(z)
    _check(info.value, "evil.zip")
    assert member in str(info.value)
    assert _listing(corpus.parent) == before
    assert not (corpus.parent / "evil.dcm").exists()


def test_zip_bomb(corpus):
    z = _zip(corpus / "bomb.zip", {"zeros.dcm": bytes(50 * 1024**2)})
    assert os.path.getsize(z) < 200 * 1024
    with pytest.raises(UnsafeArchiveError, match="ratio") as info:
        scan_dicom(z)
    _check(info.value, "bomb.zip")
    assert "zeros.dcm" in str(info.value)


def test_nothing_written_on_errors(corpus):
    folder = _series(corpus / "nw", [0.0, 2.0, 5.0])
    before = _listing(corpus)
    for kwargs in ({}, {"series": 3}):
        with pytest.raises(DicomError):
            read_dicom(folder, **kwargs)
    assert _listing(corpus) == before


def test_sheared_stack_gantry_tilt(corpus):
    folder = corpus / "tilt"
    folder.mkdir()
    for i, z in enumerate([0.0, 2.0, 4.0]):
        _slice(folder / f"t{i}.dcm", z=z, series_uid="1.2.3.7", study_uid="1.2.3")
        ds = pydicom.dcmread(folder / f"t{i}.dcm")
        pos = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [f"{pos[0]:.4f}", f"{pos[1] + 0.5 * i:.4f}", f"{pos[2]:.4f}"]  # y drifts
        ds.save_as(folder / f"t{i}.dcm")
    with pytest.raises(DicomError, match="gantry tilt") as info:
        read_dicom(folder)
    _check(info.value, "tilt")
