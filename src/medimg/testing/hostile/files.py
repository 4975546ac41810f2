"""Small file builders for the hostile-input corpus: NIfTI headers and bytes, gzip and zip bombs (built in
milliseconds from precomputed CRCs), .npy headers, DICOM datasets and raw elements, encapsulated pixel data, label
maps, PNG and multi-page TIFF files, model folders, a pickle that would create a marker file, segmentation datasets,
and a check that CSV cells are escaped.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["nifti_bytes", "set_dims_nifti1", "raw_deflate_zeros", "gzip_bomb", "zip_one", "npy_header",
           "dicom_dataset", "dicom_bytes", "dicom_elem", "encapsulated", "compressed_dicom", "sample_nifti",
           "write_labels", "nuclei_png", "model_folder", "Marker", "pickle_bomb", "seg_dataset",
           "csv_cells_are_escaped", "tiff_pages"]


def nifti_bytes(shape=(4, 5, 6), dtype=np.int16, *, data: np.ndarray | None = None, nifti2: bool = False,
                pixdim=(1.0, 1.0, 1.0)) -> bytearray:
    import nibabel as nib

    arr = np.zeros(shape, dtype) if data is None else data
    cls = nib.Nifti2Image if nifti2 else nib.Nifti1Image
    img = cls(arr, np.diag([*pixdim, 1.0]))
    img.header.set_zooms(pixdim[: arr.ndim])
    return bytearray(img.to_bytes())


def set_dims_nifti1(raw: bytearray, dims: list[int], datatype: int | None = None, bitpix: int | None = None):
    struct.pack_into("<8h", raw, 40, *(dims + [1] * (8 - len(dims))))
    if datatype is not None:
        struct.pack_into("<h", raw, 70, datatype)
    if bitpix is not None:
        struct.pack_into("<h", raw, 72, bitpix)
    return raw


def raw_deflate_zeros(prefix: bytes, n_mb: int, *, zlib_wrap: bool = False) -> tuple[bytes, int, int]:
    """A deflate stream of ``prefix`` + ``n_mb`` MiB of zeros built from one repeated block (milliseconds).

    Returns (stream, crc32 of the whole plain text, length of the plain text).
    """
    mb = bytes(2**20)
    c = zlib.compressobj(9, zlib.DEFLATED, 15 if zlib_wrap else -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(mb) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(mb) + c.flush(zlib.Z_FULL_FLUSH)
    assert block == again  # a full flush makes identical input compress identically
    tail = c.flush(zlib.Z_FINISH)
    zeros_crc, zeros_len, step_crc, step_len, n = 0, 0, zlib.crc32(mb), 2**20, n_mb
    while n:  # the CRC of n_mb MiB of zeros by doubling, without touching 4 GB
        if n & 1:
            zeros_crc, zeros_len = _crc32_combine(zeros_crc, step_crc, step_len), zeros_len + step_len
        step_crc, step_len, n = _crc32_combine(step_crc, step_crc, step_len), 2 * step_len, n >> 1
    crc = _crc32_combine(zlib.crc32(prefix), zeros_crc, zeros_len)
    return head + block * n_mb + tail, crc, len(prefix) + n_mb * 2**20


def _gf2_times(mat: list[int], vec: int) -> int:
    out, i = 0, 0
    while vec:
        if vec & 1:
            out ^= mat[i]
        vec >>= 1
        i += 1
    return out


def _crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """zlib's crc32_combine: the CRC of A+B from crc(A), crc(B) and len(B)."""
    if len2 == 0:
        return crc1
    odd = [0xEDB88320] + [1 << n for n in range(31)]
    even = [_gf2_times(odd, odd[n]) for n in range(32)]
    odd = [_gf2_times(even, even[n]) for n in range(32)]
    while True:
        even = [_gf2_times(odd, odd[n]) for n in range(32)]
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = [_gf2_times(even, even[n]) for n in range(32)]
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return (crc1 ^ crc2) & 0xFFFFFFFF


def gzip_bomb(path: Path, prefix: bytes, n_mb: int) -> None:
    stream, crc, size = raw_deflate_zeros(prefix, n_mb)
    with open(path, "wb") as fh:
        fh.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + stream + struct.pack("<II", crc, size & 0xFFFFFFFF))


def zip_one(path: Path, name: str, plain_or_stream: bytes, *, crc: int | None = None, size: int | None = None):
    """A zip with one deflated member; with ``crc``/``size`` the bytes are an already-built raw deflate stream."""
    if crc is None:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        stream = c.compress(plain_or_stream) + c.flush()
        crc, size = zlib.crc32(plain_or_stream) & 0xFFFFFFFF, len(plain_or_stream)
    else:
        stream = plain_or_stream
    fn = name.encode()
    local = struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, len(stream), size, len(fn), 0) + fn
    central = struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21, crc, len(stream), size, len(fn),
                          0, 0, 0, 0, 0, 0) + fn
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local) + len(stream), 0)
    path.write_bytes(local + stream + central + end)


def npy_header(shape: tuple[int, ...], descr: str = "|u1", *, text: str | None = None) -> bytes:
    d = text if text is not None else f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}"
    pad = 64 - (10 + len(d) + 1) % 64
    d = d + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(d)) + d.encode("latin1")


def dicom_dataset(rows: int = 8, cols: int = 8, *, pixels: bool = True, slice_thickness: bool = True, **attrs):
    """A small CT image Dataset (explicit VR little endian), with file meta."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["medimg-hostile", str(rows), str(attrs)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.3"
    ds.Modality = "CT"
    ds.PatientName = "Hostile^Case"
    ds.PatientID = "HOSTILE-1"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.InstanceNumber = 1
    ds.ImagePositionPatient = [0.0, 0.0, 0.0]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [0.5, 0.5]
    if slice_thickness:
        ds.SliceThickness = 2.0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    for k, v in attrs.items():
        setattr(ds, k, v)
    if pixels:
        ds.PixelData = (np.arange(rows * cols, dtype=np.uint16) % 4000).tobytes()
    return ds


def dicom_bytes(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def dicom_elem(group: int, elem: int, vr: bytes, value: bytes, *, length: int | None = None) -> bytes:
    """One explicit-VR little-endian element (``length`` overrides the true value length)."""
    n = len(value) if length is None else length
    if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"OD", b"OL", b"UC", b"UR", b"OV"):
        return struct.pack("<HH2sHI", group, elem, vr, 0, n) + value
    return struct.pack("<HH2sH", group, elem, vr, n) + value


def encapsulated(fragment: bytes) -> bytes:
    items = struct.pack("<HHI", 0xFFFE, 0xE000, 0) + struct.pack("<HHI", 0xFFFE, 0xE000, len(fragment)) + fragment
    return struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF) + items + struct.pack("<HHI", 0xFFFE,
                                                                                               0xE0DD, 0)


def compressed_dicom(path: Path, ts: str, fragment: bytes) -> None:
    ds = dicom_dataset(pixels=False)
    ds.file_meta.TransferSyntaxUID = ts
    path.write_bytes(dicom_bytes(ds) + encapsulated(fragment))


def sample_nifti(path: Path) -> Path:
    """The hippocampus MR sample shipped with medimg (a 3D NIfTI, 36x50x35), copied."""
    src = Path(__file__).resolve().parents[2] / "data" / "hippocampus_sample" / "hippocampus_001.nii.gz"
    shutil.copy(src, path)
    return path


def write_labels(path: Path, arr: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> Path:
    import nibabel as nib

    nib.save(nib.Nifti1Image(arr, np.diag([*spacing, 1.0])), path)
    return path


def nuclei_png(path: Path) -> Path:
    """A 64x64 8-bit image with three bright discs (the nuclei pipeline runs on it in about a second)."""
    from PIL import Image as PILImage

    yy, xx = np.mgrid[:64, :64]
    a = np.zeros((64, 64), np.uint8)
    for cy, cx in ((16, 16), (40, 44), (20, 48)):
        a[(yy - cy) ** 2 + (xx - cx) ** 2 < 36] = 200
    PILImage.fromarray(a).save(path)
    return path


def model_folder(dest: Path, *, weights: bytes | None = None) -> Path:
    """A copy of the shipped hippocampus model folder (plan, fingerprint, splits, post-processing, fold_0)."""
    src = Path(__file__).resolve().parents[2] / "zoo" / "hippocampus"
    dest.mkdir(parents=True)
    for f in src.glob("*.json"):
        shutil.copy(f, dest / f.name)
    (dest / "fold_0").mkdir()
    if weights is None:
        shutil.copy(src / "fold_0" / "model.pt", dest / "fold_0" / "model.pt")
    else:
        (dest / "fold_0" / "model.pt").write_bytes(weights)
    return dest


class Marker:
    """Pickled, creates the file named by ``path`` when loaded: proof that loading ran code."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def pickle_bomb(marker: Path) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save({"model": Marker(marker), "iteration": 0, "elapsed_s": 0.0, "history": []}, buf)
    return buf.getvalue()


def seg_dataset(root: Path, n: int = 2) -> Path:
    """A tiny nnU-Net raw dataset (n cases of 16^3 voxels, labels 0/1)."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.normal(100, 10, (16, 16, 16)).astype(np.float32)
        lab = np.zeros((16, 16, 16), np.uint8)
        lab[4:12, 4:12, 4:12] = 1
        img[lab == 1] += 50
        write_labels(root / "imagesTr" / f"case_{i:03d}_0000.nii.gz", img)
        write_labels(root / "labelsTr" / f"case_{i:03d}.nii.gz", lab)
    meta = {"name": "hostile", "channel_names": {"0": "MR"}, "labels": {"background": 0, "thing": 1},
            "numTraining": n, "file_ending": ".nii.gz",
            "training": [{"image": f"./imagesTr/case_{i:03d}.nii.gz", "label": f"./labelsTr/case_{i:03d}.nii.gz"}
                         for i in range(n)]}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def csv_cells_are_escaped(*csvs: Path) -> None:
    import csv

    for f in csvs:
        assert f.exists(), f"{f} was not written"
        with open(f, newline="") as fh:
            for row in csv.reader(fh):
                for cell in row:
                    if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                        try:
                            float(cell)
                        except ValueError:
                            raise AssertionError(f"{f.name}: formula-like cell written unescaped: {cell!r}") from None




def tiff_pages(path: Path, n_pages: int, width: int, height: int) -> None:
    """A multi-page 8-bit TIFF whose pages all point at one shared deflate strip of zeros."""
    strip = zlib.compress(bytes(width * height), 9)
    out = bytearray(b"II*\x00" + struct.pack("<I", 8 + len(strip) + (len(strip) & 1)))
    out += strip + b"\x00" * (len(strip) & 1)
    tags = 9
    for i in range(n_pages):
        here = len(out)
        nxt = 0 if i == n_pages - 1 else here + 2 + tags * 12 + 4
        entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 8), (262, 3, 1), (273, 4, 8),
                   (277, 3, 1), (278, 4, height), (279, 4, len(strip))]
        out += struct.pack("<H", tags)
        for tag, typ, val in entries:
            out += struct.pack("<HHII", tag, typ, 1, val) if typ == 4 else struct.pack("<HHIHH", tag, typ, 1, val, 0)
        out += struct.pack("<I", nxt)
    path.write_bytes(bytes(out))
