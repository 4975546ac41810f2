"""The hostile cases of the ``dicom`` area: DICOMDIR references out of the folder, huge frame counts, unknown transfer
syntaxes and VRs, bad lengths, garbage compressed data, bad rescale, non-DICOM files. Each registers itself in
:data:`~medimg.testing.hostile.registry.CASES` through :func:`~medimg.testing.hostile.registry.case`.
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path

import numpy as np

from medimg.testing.hostile.files import compressed_dicom, dicom_bytes, dicom_dataset, dicom_elem
from medimg.testing.hostile.registry import Built, case, read_runs


# -- DICOM ----------------------------------------------------------------------------------------------------
def _dicomdir(path: Path, ref) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["hostile-dicomdir", str(ref)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.FileSetID = "HOSTILE"
    ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.FileSetConsistencyFlag = 0
    recs = []
    for kind in ("PATIENT", "STUDY", "SERIES", "IMAGE"):
        r = Dataset()
        r.OffsetOfTheNextDirectoryRecord = 0
        r.RecordInUseFlag = 0xFFFF
        r.OffsetOfReferencedLowerLevelDirectoryEntity = 0
        r.DirectoryRecordType = kind
        if kind == "IMAGE":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r.ReferencedFileID = ref
            r.ReferencedSOPClassUIDInFile = "1.2.840.10008.5.1.4.1.1.2"
            r.ReferencedSOPInstanceUIDInFile = "1.2.3"
            r.ReferencedTransferSyntaxUIDInFile = ExplicitVRLittleEndian
        recs.append(r)
    ds.DirectoryRecordSequence = Sequence(recs)
    with warnings.catch_warnings():  # the hostile ReferencedFileID breaks the CS length rule on purpose
        warnings.simplefilter("ignore")
        ds.save_as(path, enforce_file_format=True)


def _outside_patient(root: Path) -> Path:
    (root / "outside").mkdir(exist_ok=True)
    f = root / "outside" / "OTHER"
    f.write_bytes(dicom_bytes(dicom_dataset(6, 6, PatientID="OTHER-PATIENT", PatientName="Other^Patient")))
    return f


@case("dicomdir_absolute_reference", "dicom", "refuse", "DICOMDIR whose ReferencedFileID is an absolute path")
def _(root: Path) -> Built:
    other = _outside_patient(root)
    (root / "in").mkdir()
    _dicomdir(root / "in" / "DICOMDIR", str(other))
    return Built([["info", str(root / "in" / "DICOMDIR")], ["convert", str(root / "in" / "DICOMDIR"),
                                                               str(root / "out.nii.gz")]], ("DICOMDIR",))


@case("dicomdir_dotdot_reference", "dicom", "refuse", "DICOMDIR whose ReferencedFileID is 'sub/../../outside/...'")
def _(root: Path) -> Built:
    _outside_patient(root)
    (root / "in" / "sub").mkdir(parents=True)
    _dicomdir(root / "in" / "DICOMDIR", ["sub/../../outside", "OTHER"])
    return Built([["info", str(root / "in" / "DICOMDIR")], ["convert", str(root / "in" / "DICOMDIR"),
                                                               str(root / "out.nii.gz")]], ("DICOMDIR",))


@case("deid_symlink_out_of_folder", "dicom", "ok_or_refuse",
      "deid of a folder holding a symlink to another patient's file outside it")
def _(root: Path) -> Built:
    other = _outside_patient(root)
    (root / "in").mkdir()
    (root / "in" / "a.dcm").write_bytes(dicom_bytes(dicom_dataset()))
    os.symlink(os.path.relpath(other, root / "in"), root / "in" / "b.dcm")

    def check() -> None:
        written = [p for p in (root / "out").rglob("*") if p.is_file()]
        assert len(written) == 1, f"deid followed a symlink out of the input folder: {written}"

    return Built([["deid", str(root / "in"), str(root / "out")]], ("b.dcm", "symlink", "link"), check=check)


@case("dicom_number_of_frames_1e8", "dicom", "refuse", "DICOM declaring NumberOfFrames 100000000", isolate=True,
      fuzz="dicom")
def _(root: Path) -> Built:
    f = root / "frames.dcm"
    f.write_bytes(dicom_bytes(dicom_dataset(NumberOfFrames=100000000)))
    return Built(read_runs(f, root, "info", "convert"), ("frames.dcm",))


@case("dicom_unknown_transfer_syntax", "dicom", "refuse", "transfer syntax UID nobody knows", fuzz="dicom")
def _(root: Path) -> Built:
    raw = dicom_bytes(dicom_dataset())
    known = b"1.2.840.10008.1.2.1\x00"
    assert raw.count(known) == 1
    f = root / "ts.dcm"
    f.write_bytes(raw.replace(known, b"1.2.840.99999.9.9.9\x00"))
    return Built(read_runs(f, root, "info", "convert"), ("ts.dcm",))


@case("dicom_unknown_vr", "dicom", "ok_or_refuse", "an element with the VR 'ZZ'", fuzz="dicom")
def _(root: Path) -> Built:
    ds = dicom_dataset(pixels=False)
    pix = (np.arange(64, dtype=np.uint16)).tobytes()
    f = root / "vr.dcm"
    f.write_bytes(dicom_bytes(ds) + dicom_elem(0x0029, 0x1010, b"ZZ", b"abcd") + dicom_elem(0x7FE0, 0x0010, b"OW", pix))
    return Built(read_runs(f, root, "info", "convert") + [["deid", str(f), str(root / "deid.dcm")]], ("vr.dcm",))


@case("dicom_bad_value_length", "dicom", "refuse", "an element whose value length runs past the file end",
      fuzz="dicom")
def _(root: Path) -> Built:
    ds = dicom_dataset(pixels=False)
    f = root / "length.dcm"
    f.write_bytes(dicom_bytes(ds) + dicom_elem(0x0029, 0x1010, b"LO", b"abcd", length=0x7FF0)
                  + dicom_elem(0x7FE0, 0x0010, b"OW", bytes(128)))
    return Built(read_runs(f, root, "info", "convert"), ("length.dcm",))


@case("deid_deeply_nested_sequences", "dicom", "ok_or_refuse", "3000 nested sequences given to deid",
      fuzz="dicom")
def _(root: Path) -> Built:
    depth = 3000
    seq_open = struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF) + struct.pack("<HHI", 0xFFFE, 0xE000,
                                                                                         0xFFFFFFFF)
    seq_close = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    ds = dicom_dataset(pixels=False)
    f = root / "nested.dcm"
    pixels = dicom_elem(0x7FE0, 0x0010, b"OW", bytes(128))
    f.write_bytes(dicom_bytes(ds) + seq_open * depth + seq_close * depth + pixels)
    return Built([["deid", str(f), str(root / "deid.dcm")]], ("nested.dcm", "sequence"))


@case("dicom_jpeg2000_garbage", "dicom", "refuse", "JPEG 2000 transfer syntax with random pixel data",
      fuzz="dicom")
def _(root: Path) -> Built:
    f = root / "j2k.dcm"
    compressed_dicom(f, "1.2.840.10008.1.2.4.90", b"\xff\x4f\xff\x51" + np.random.default_rng(2).bytes(200))
    return Built(read_runs(f, root, "convert"), ("j2k.dcm",))


@case("dicom_rle_garbage", "dicom", "refuse", "RLE Lossless transfer syntax with random pixel data", fuzz="dicom")
def _(root: Path) -> Built:
    f = root / "rle.dcm"
    compressed_dicom(f, "1.2.840.10008.1.2.5", struct.pack("<16I", 1, 64, *([0] * 14))
                     + np.random.default_rng(3).bytes(40))
    return Built(read_runs(f, root, "convert"), ("rle.dcm",))


@case("dicom_jpegls_garbage", "dicom", "refuse", "JPEG-LS transfer syntax with garbage pixel data", fuzz="dicom")
def _(root: Path) -> Built:
    f = root / "jls.dcm"
    compressed_dicom(f, "1.2.840.10008.1.2.4.80", b"\xff\xd8\xff\xf7" + bytes(60) + b"\xff\xd9")
    return Built(read_runs(f, root, "convert"), ("jls.dcm",))


@case("dicom_rescale_slope_zero", "dicom", "refuse", "RescaleSlope 0", fuzz="dicom")
def _(root: Path) -> Built:
    f = root / "slope0.dcm"
    f.write_bytes(dicom_bytes(dicom_dataset(RescaleSlope=0)))
    return Built(read_runs(f, root, "convert"), ("slope0.dcm", "RescaleSlope"))


@case("dicom_rescale_slope_nan", "dicom", "refuse", "RescaleSlope NaN", fuzz="dicom")
def _(root: Path) -> Built:
    raw = dicom_bytes(dicom_dataset(RescaleSlope="77.77"))
    assert raw.count(b"77.77 ") == 1
    f = root / "slopenan.dcm"
    f.write_bytes(raw.replace(b"77.77 ", b"NaN   "))
    return Built(read_runs(f, root, "convert"), ("slopenan.dcm", "RescaleSlope"))


@case("dicom_single_slice_no_thickness", "dicom", "warn_or_refuse",
      "a single slice without SliceThickness (the 1 mm default must be said)", fuzz="dicom")
def _(root: Path) -> Built:
    f = root / "single.dcm"
    f.write_bytes(dicom_bytes(dicom_dataset(slice_thickness=False)))
    return Built(read_runs(f, root, "convert"), ("SliceThickness", "slice thickness", "thickness"))


@case("dicom_folder_of_200_non_dicom", "dicom", "refuse", "a folder of 200 .dcm files that are not DICOM: one line")
def _(root: Path) -> Built:
    (root / "in").mkdir()
    rng = np.random.default_rng(4)
    for i in range(200):
        (root / "in" / f"IM{i:04d}.dcm").write_bytes(rng.bytes(300))
    return Built([["info", str(root / "in")], ["convert", str(root / "in"), str(root / "out.nii.gz")]], ("in",))
