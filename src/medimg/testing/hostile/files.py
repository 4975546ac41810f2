"""A hostile-input corpus for medimg's command line: every case writes its own small files into a folder.

Each :class:`Case` has an id, the issue-12 area that owns its fix (``dicom``, ``readers``, ``predict``,
``register``), the command lines to run it through and the outcome expected:

* ``refuse``: exit code 2, exactly one line on stderr naming the file or parameter (one of ``names``), no
  traceback, nothing written anywhere in the case folder, every input byte unchanged;
* ``ok``: exit code 0 and the inputs unchanged (a valid edge case), plus the case's own ``check`` of the outputs;
* ``ok_or_refuse``: either of the two above (a clean refusal or a clean result are both right);
* ``warn_or_refuse``: a refusal, or exit code 0 with a warning on stderr naming one of ``names``.

``markers`` are files that must never appear (code in a pickle that creates one has run). Cases with
``isolate=True`` (memory and time bombs, native crashes) must be run in a subprocess under a memory limit;
big declared sizes come from tiny headers or from compressed streams built in milliseconds, so the files on
disk stay small (at most a few MB).

Example:
    >>> import tempfile
    >>> from medimg.testing.hostile import CASES, build
    >>> with tempfile.TemporaryDirectory() as d:
    ...     built = build("nifti_dim0_9", d)
    ...     built.runs[0][0]
    'info'
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Case", "Built", "CASES", "AREAS", "build", "write_corpus", "write_seeds", "FUZZ_SUFFIXES"]

AREAS = ("dicom", "readers", "predict", "register")
#: the reader fuzz targets and the file suffix each writes its bytes to
FUZZ_SUFFIXES = {"dicom": (".dcm",), "nii": (".nii",), "nii_gz": (".nii.gz",), "npz": (".npz",),
                 "itk": (".mha", ".nrrd"), "raster": (".png", ".tif")}


@dataclass
class Built:
    """What a case wrote: the command lines (argv for ``medimg``), the words the error may name, and checks."""

    runs: list[list[str]]
    names: tuple[str, ...]
    markers: list[Path] = field(default_factory=list)
    check: Callable[[], None] | None = None
    one_line: bool = True  # False: a command that reports a list of problems (verify) may print several lines


@dataclass(frozen=True)
class Case:
    id: str
    area: str
    summary: str
    expect: str
    make: Callable[[Path], Built]
    isolate: bool = False
    fuzz: str | None = None  # the fuzz target whose seed corpus gets this case's input (tiny files only)


# ---- small file builders ------------------------------------------------------------------------------------
def _nifti_bytes(shape=(4, 5, 6), dtype=np.int16, *, data: np.ndarray | None = None, nifti2: bool = False,
                 pixdim=(1.0, 1.0, 1.0)) -> bytearray:
    import nibabel as nib

    arr = np.zeros(shape, dtype) if data is None else data
    cls = nib.Nifti2Image if nifti2 else nib.Nifti1Image
    img = cls(arr, np.diag([*pixdim, 1.0]))
    img.header.set_zooms(pixdim[: arr.ndim])
    return bytearray(img.to_bytes())


def _set_dims_nifti1(raw: bytearray, dims: list[int], datatype: int | None = None, bitpix: int | None = None):
    struct.pack_into("<8h", raw, 40, *(dims + [1] * (8 - len(dims))))
    if datatype is not None:
        struct.pack_into("<h", raw, 70, datatype)
    if bitpix is not None:
        struct.pack_into("<h", raw, 72, bitpix)
    return raw


def _raw_deflate_zeros(prefix: bytes, n_mb: int, *, zlib_wrap: bool = False) -> tuple[bytes, int, int]:
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


def _gzip_bomb(path: Path, prefix: bytes, n_mb: int) -> None:
    stream, crc, size = _raw_deflate_zeros(prefix, n_mb)
    with open(path, "wb") as fh:
        fh.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + stream + struct.pack("<II", crc, size & 0xFFFFFFFF))


def _zip_one(path: Path, name: str, plain_or_stream: bytes, *, crc: int | None = None, size: int | None = None):
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


def _npy_header(shape: tuple[int, ...], descr: str = "|u1", *, text: str | None = None) -> bytes:
    d = text if text is not None else f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}"
    pad = 64 - (10 + len(d) + 1) % 64
    d = d + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(d)) + d.encode("latin1")


def _dicom(rows: int = 8, cols: int = 8, *, pixels: bool = True, slice_thickness: bool = True, **attrs):
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


def _dicom_bytes(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _elem(group: int, elem: int, vr: bytes, value: bytes, *, length: int | None = None) -> bytes:
    """One explicit-VR little-endian element (``length`` overrides the true value length)."""
    n = len(value) if length is None else length
    if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"OD", b"OL", b"UC", b"UR", b"OV"):
        return struct.pack("<HH2sHI", group, elem, vr, 0, n) + value
    return struct.pack("<HH2sH", group, elem, vr, n) + value


def _encapsulated(fragment: bytes) -> bytes:
    items = struct.pack("<HHI", 0xFFFE, 0xE000, 0) + struct.pack("<HHI", 0xFFFE, 0xE000, len(fragment)) + fragment
    return struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF) + items + struct.pack("<HHI", 0xFFFE,
                                                                                               0xE0DD, 0)


def _compressed_dicom(path: Path, ts: str, fragment: bytes) -> None:
    ds = _dicom(pixels=False)
    ds.file_meta.TransferSyntaxUID = ts
    path.write_bytes(_dicom_bytes(ds) + _encapsulated(fragment))


def _sample_nifti(path: Path) -> Path:
    """The hippocampus MR sample shipped with medimg (a 3D NIfTI, 36x50x35), copied."""
    src = Path(__file__).resolve().parents[2] / "data" / "hippocampus_sample" / "hippocampus_001.nii.gz"
    shutil.copy(src, path)
    return path


def _labels(path: Path, arr: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> Path:
    import nibabel as nib

    nib.save(nib.Nifti1Image(arr, np.diag([*spacing, 1.0])), path)
    return path


def _nuclei_png(path: Path) -> Path:
    """A 64x64 8-bit image with three bright discs (the nuclei pipeline runs on it in about a second)."""
    from PIL import Image as PILImage

    yy, xx = np.mgrid[:64, :64]
    a = np.zeros((64, 64), np.uint8)
    for cy, cx in ((16, 16), (40, 44), (20, 48)):
        a[(yy - cy) ** 2 + (xx - cx) ** 2 < 36] = 200
    PILImage.fromarray(a).save(path)
    return path


def _model_folder(dest: Path, *, weights: bytes | None = None) -> Path:
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


class _Marker:
    """Pickled, creates the file named by ``path`` when loaded: proof that loading ran code."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _pickle_bomb(marker: Path) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save({"model": _Marker(marker), "iteration": 0, "elapsed_s": 0.0, "history": []}, buf)
    return buf.getvalue()


def _seg_dataset(root: Path, n: int = 2) -> Path:
    """A tiny nnU-Net raw dataset (n cases of 16^3 voxels, labels 0/1)."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.normal(100, 10, (16, 16, 16)).astype(np.float32)
        lab = np.zeros((16, 16, 16), np.uint8)
        lab[4:12, 4:12, 4:12] = 1
        img[lab == 1] += 50
        _labels(root / "imagesTr" / f"case_{i:03d}_0000.nii.gz", img)
        _labels(root / "labelsTr" / f"case_{i:03d}.nii.gz", lab)
    meta = {"name": "hostile", "channel_names": {"0": "MR"}, "labels": {"background": 0, "thing": 1},
            "numTraining": n, "file_ending": ".nii.gz",
            "training": [{"image": f"./imagesTr/case_{i:03d}.nii.gz", "label": f"./labelsTr/case_{i:03d}.nii.gz"}
                         for i in range(n)]}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def _csv_cells_are_escaped(*csvs: Path) -> None:
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


# ---- the cases ----------------------------------------------------------------------------------------------
CASES: dict[str, Case] = {}


def _case(id: str, area: str, expect: str, summary: str, *, isolate: bool = False,  # noqa: A002
          fuzz: str | None = None):
    assert area in AREAS and expect in ("refuse", "ok", "ok_or_refuse", "warn_or_refuse")

    def deco(fn: Callable[[Path], Built]) -> Callable[[Path], Built]:
        assert id not in CASES, id
        CASES[id] = Case(id, area, summary, expect, fn, isolate, fuzz)
        return fn

    return deco


def _read_runs(f: Path, root: Path, *commands: str) -> list[list[str]]:
    runs = []
    for c in commands:
        if c == "info":
            runs.append(["info", str(f)])
        else:
            runs.append(["convert", str(f), str(root / "converted.nii.gz")])
    return runs


# -- predict / train ------------------------------------------------------------------------------------------
@_case("predict_pickle_model_pt", "predict", "refuse",
       "a model.pt pickle whose __reduce__ creates a file, given to predict")
def _(root: Path) -> Built:
    marker = root / "PWNED"
    model = _model_folder(root / "model", weights=_pickle_bomb(marker))
    img = _sample_nifti(root / "in.nii.gz")
    return Built([["predict", str(model), str(img), str(root / "pred.nii.gz")]], ("model.pt",), [marker])


@_case("train_resume_pickle_checkpoint", "predict", "refuse",
       "train segment --resume with crafted checkpoint.pt/model.pt pickles in the model folder")
def _(root: Path) -> Built:
    marker = root / "PWNED"
    ds = _seg_dataset(root / "dataset")
    out = root / "model"
    (out / "fold_0").mkdir(parents=True)
    bomb = _pickle_bomb(marker)
    (out / "fold_0" / "checkpoint.pt").write_bytes(bomb)
    (out / "fold_0" / "model.pt").write_bytes(bomb)
    argv = ["train", "segment", str(ds), "-o", str(out), "--resume", "--folds", "2", "--fold", "0",
            "--iterations", "2", "--threads", "1"]
    return Built([argv], (".pt", "checkpoint", "fold_0"), [marker])


@_case("predict_garbage_model_pt", "predict", "refuse", "model.pt of random bytes")
def _(root: Path) -> Built:
    model = _model_folder(root / "model", weights=np.random.default_rng(1).bytes(4096))
    img = _sample_nifti(root / "in.nii.gz")
    return Built([["predict", str(model), str(img), str(root / "pred.nii.gz")]], ("model.pt",))


@_case("predict_broken_postprocess_json", "predict", "refuse", "postprocess.json that is not JSON")
def _(root: Path) -> Built:
    model = _model_folder(root / "model")
    (model / "postprocess.json").write_text('{"largest_component_classes": [1,')
    img = _sample_nifti(root / "in.nii.gz")
    return Built([["predict", str(model), str(img), str(root / "pred.nii.gz")]], ("postprocess.json",))


@_case("predict_plan_256gb", "predict", "refuse", "plan.json whose patch needs about 256 GB", isolate=True)
def _(root: Path) -> Built:
    model = _model_folder(root / "model")
    plan = json.loads((model / "plan.json").read_text())
    plan["patch_size"] = [1024, 1024, 1024]
    plan["batch_size"] = 64
    (model / "plan.json").write_text(json.dumps(plan))
    img = _sample_nifti(root / "in.nii.gz")
    return Built([["predict", str(model), str(img), str(root / "pred.nii.gz")]], ("plan.json", "patch", "GB"))


@_case("predict_bad_probabilities_path", "predict", "refuse",
       "predict with a --probabilities path of an unknown extension leaves no prediction behind")
def _(root: Path) -> Built:
    img = _sample_nifti(root / "in.nii.gz")
    argv = ["predict", "hippocampus", str(img), str(root / "pred.nii.gz"), "--probabilities",
            str(root / "probs.xyz")]
    return Built([argv], ("probs.xyz", "--probabilities"))


@_case("train_dataset_as_output", "predict", "refuse", "train segment DATASET -o DATASET")
def _(root: Path) -> Built:
    ds = _seg_dataset(root / "dataset")
    return Built([["train", "segment", str(ds), "-o", str(ds), "--folds", "2", "--iterations", "2", "--threads",
                   "1"]],
                 ("dataset", "-o", "--out"))


@_case("analyze_input_inside_output", "predict", "refuse",
       "analyze OUT/in.png -o OUT, OUT an earlier analyze output (replacing OUT would delete the input)")
def _(root: Path) -> Built:
    (root / "out").mkdir()
    (root / "out" / "measurements.json").write_text('{"format": "medimg_analyze", "measurements": []}')
    img = _nuclei_png(root / "out" / "in.png")
    return Built([["analyze", str(img), "-o", str(root / "out"), "--pipeline", "nuclei"]], ("out", "input", "in.png"))


@_case("analyze_keeps_user_partial", "predict", "ok_or_refuse",
       "a user's own .OUT.partial folder beside OUT is never deleted")
def _(root: Path) -> Built:
    img = _nuclei_png(root / "in.png")
    (root / ".out.partial").mkdir()
    (root / ".out.partial" / "notes.txt").write_text("mine")

    def check() -> None:
        assert (root / ".out.partial" / "notes.txt").read_text() == "mine"

    return Built([["analyze", str(img), "-o", str(root / "out"), "--pipeline", "nuclei"]], ("out",), check=check)


# -- register / evaluate / measure / warp ---------------------------------------------------------------------
def _mha(path: Path, arr: np.ndarray, spacing=(1.0, 1.0, 1.0), extra: str = "") -> Path:
    dims = " ".join(str(n) for n in arr.shape[::-1])
    head = (f"ObjectType = Image\nNDims = {arr.ndim}\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
            f"ElementSpacing = {' '.join(str(s) for s in spacing)}\nDimSize = {dims}\n{extra}"
            f"ElementType = MET_FLOAT\nElementDataFile = LOCAL\n")
    path.write_bytes(head.encode() + arr.astype("<f4").tobytes())
    return path


def _blob(shape=(12, 12, 12), shift=0) -> np.ndarray:
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return (100.0 * ((z - 6) ** 2 + (y - 6 - shift) ** 2 + (x - 6) ** 2 < 16)).astype(np.float32)


@_case("register_negative_spacing", "register", "warn_or_refuse",
       "register a fixed NIfTI whose only spacing, pixdim, is negative")
def _(root: Path) -> Built:
    raw = _nifti_bytes(data=_blob())
    struct.pack_into("<3f", raw, 80, -1.0, -1.0, -1.0)
    struct.pack_into("<2h", raw, 252, 0, 0)  # no qform/sform: pixdim is the spacing
    f = root / "fixed.nii"
    f.write_bytes(bytes(raw))
    m = _labels(root / "moving.nii.gz", _blob(shift=1))
    return Built([["register", str(f), str(m), "-o", str(root / "out"), "--method", "rigid", "--iterations", "5",
                   "--levels", "1"]], ("fixed.nii", "pixdim", "spacing"))


@_case("evaluate_two_empty_masks", "register", "ok_or_refuse", "evaluate two all-zero masks")
def _(root: Path) -> Built:
    p = _labels(root / "pred.nii.gz", np.zeros((8, 8, 8), np.uint8))
    g = _labels(root / "gt.nii.gz", np.zeros((8, 8, 8), np.uint8))
    return Built([["evaluate", str(p), str(g), "-o", str(root / "out")]], ("pred.nii.gz", "gt.nii.gz", "empty"))


@_case("evaluate_negative_labels", "register", "refuse", "evaluate label maps holding -1")
def _(root: Path) -> Built:
    a = np.zeros((8, 8, 8), np.int16)
    a[2:5, 2:5, 2:5] = -1
    p = _labels(root / "pred.nii.gz", a)
    g = _labels(root / "gt.nii.gz", a.copy())
    return Built([["evaluate", str(p), str(g), "-o", str(root / "out")]], ("pred.nii.gz", "gt.nii.gz", "negative"))


@_case("evaluate_csv_injection", "register", "ok", "case ids starting with = + - @ are escaped in per_case.csv")
def _(root: Path) -> Built:
    a = np.zeros((8, 8, 8), np.uint8)
    a[2:6, 2:6, 2:6] = 1
    for d in ("pred", "gt"):
        (root / d).mkdir()
        for name in ("=cmd|' -C calc'!A0", "+SUM(1)", "@now", "-2+3"):
            _labels(root / d / f"{name}.nii.gz", a)

    def check() -> None:
        _csv_cells_are_escaped(*sorted((root / "out").glob("*.csv")))

    return Built([["evaluate", str(root / "pred"), str(root / "gt"), "-o", str(root / "out")]], (), check=check)


@_case("register_csv_injection", "register", "ok", "pair names starting with = + - @ are escaped in summary.csv")
def _(root: Path) -> Built:
    f = _labels(root / "=cmd.nii.gz", _blob())
    m = _labels(root / "@mov.nii.gz", _blob(shift=1))
    (root / "pairs.csv").write_text(f"fixed,moving\n{f.name},{m.name}\n")

    def check() -> None:
        _csv_cells_are_escaped(root / "out" / "summary.csv")

    argv = ["register", "--pairs", str(root / "pairs.csv"), "-o", str(root / "out"), "--method", "rigid",
            "--iterations", "5", "--levels", "1"]
    return Built([argv], (), check=check)


@_case("measure_json_then_bad_csv", "register", "refuse",
       "measure --json A --csv DIR (an existing folder) leaves no A behind")
def _(root: Path) -> Built:
    img = _labels(root / "img.nii.gz", _blob())
    lab = _labels(root / "lab.nii.gz", (_blob() > 0).astype(np.uint8))
    (root / "csvdir").mkdir()
    argv = ["measure", str(img), str(lab), "--json", str(root / "a.json"), "--csv", str(root / "csvdir")]
    return Built([argv], ("csvdir", "--csv"))


@_case("warp_huge_bspline_tfm", "register", "refuse", "a 200-byte B-spline .tfm declaring a huge grid",
       isolate=True)
def _(root: Path) -> Built:
    img = _labels(root / "img.nii.gz", _blob())
    tfm = root / "huge.tfm"
    tfm.write_text("#Insight Transform File V1.0\n#Transform 0\nTransform: BSplineTransform_double_3_3\n"
                   "Parameters: 0 0 0\nFixedParameters: 100000000 100000000 100000000 0 0 0 1 1 1 "
                   "1 0 0 0 1 0 0 0 1\n")
    return Built([["warp", str(img), str(tfm), "--reference", str(img), "-o", str(root / "warped.nii.gz")]],
                 ("huge.tfm",))


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
    f.write_bytes(_dicom_bytes(_dicom(6, 6, PatientID="OTHER-PATIENT", PatientName="Other^Patient")))
    return f


@_case("dicomdir_absolute_reference", "dicom", "refuse", "DICOMDIR whose ReferencedFileID is an absolute path")
def _(root: Path) -> Built:
    other = _outside_patient(root)
    (root / "in").mkdir()
    _dicomdir(root / "in" / "DICOMDIR", str(other))
    return Built([["info", str(root / "in" / "DICOMDIR")], ["convert", str(root / "in" / "DICOMDIR"),
                                                               str(root / "out.nii.gz")]], ("DICOMDIR",))


@_case("dicomdir_dotdot_reference", "dicom", "refuse", "DICOMDIR whose ReferencedFileID is 'sub/../../outside/...'")
def _(root: Path) -> Built:
    _outside_patient(root)
    (root / "in" / "sub").mkdir(parents=True)
    _dicomdir(root / "in" / "DICOMDIR", ["sub/../../outside", "OTHER"])
    return Built([["info", str(root / "in" / "DICOMDIR")], ["convert", str(root / "in" / "DICOMDIR"),
                                                               str(root / "out.nii.gz")]], ("DICOMDIR",))


@_case("deid_symlink_out_of_folder", "dicom", "ok_or_refuse",
       "deid of a folder holding a symlink to another patient's file outside it")
def _(root: Path) -> Built:
    other = _outside_patient(root)
    (root / "in").mkdir()
    (root / "in" / "a.dcm").write_bytes(_dicom_bytes(_dicom()))
    os.symlink(os.path.relpath(other, root / "in"), root / "in" / "b.dcm")

    def check() -> None:
        written = [p for p in (root / "out").rglob("*") if p.is_file()]
        assert len(written) == 1, f"deid followed a symlink out of the input folder: {written}"

    return Built([["deid", str(root / "in"), str(root / "out")]], ("b.dcm", "symlink", "link"), check=check)


@_case("dicom_number_of_frames_1e8", "dicom", "refuse", "DICOM declaring NumberOfFrames 100000000", isolate=True,
       fuzz="dicom")
def _(root: Path) -> Built:
    f = root / "frames.dcm"
    f.write_bytes(_dicom_bytes(_dicom(NumberOfFrames=100000000)))
    return Built(_read_runs(f, root, "info", "convert"), ("frames.dcm",))


@_case("dicom_unknown_transfer_syntax", "dicom", "refuse", "transfer syntax UID nobody knows", fuzz="dicom")
def _(root: Path) -> Built:
    raw = _dicom_bytes(_dicom())
    known = b"1.2.840.10008.1.2.1\x00"
    assert raw.count(known) == 1
    f = root / "ts.dcm"
    f.write_bytes(raw.replace(known, b"1.2.840.99999.9.9.9\x00"))
    return Built(_read_runs(f, root, "info", "convert"), ("ts.dcm",))


@_case("dicom_unknown_vr", "dicom", "ok_or_refuse", "an element with the VR 'ZZ'", fuzz="dicom")
def _(root: Path) -> Built:
    ds = _dicom(pixels=False)
    pix = (np.arange(64, dtype=np.uint16)).tobytes()
    f = root / "vr.dcm"
    f.write_bytes(_dicom_bytes(ds) + _elem(0x0029, 0x1010, b"ZZ", b"abcd") + _elem(0x7FE0, 0x0010, b"OW", pix))
    return Built(_read_runs(f, root, "info", "convert") + [["deid", str(f), str(root / "deid.dcm")]], ("vr.dcm",))


@_case("dicom_bad_value_length", "dicom", "refuse", "an element whose value length runs past the file end",
       fuzz="dicom")
def _(root: Path) -> Built:
    ds = _dicom(pixels=False)
    f = root / "length.dcm"
    f.write_bytes(_dicom_bytes(ds) + _elem(0x0029, 0x1010, b"LO", b"abcd", length=0x7FF0)
                  + _elem(0x7FE0, 0x0010, b"OW", bytes(128)))
    return Built(_read_runs(f, root, "info", "convert"), ("length.dcm",))


@_case("deid_deeply_nested_sequences", "dicom", "ok_or_refuse", "3000 nested sequences given to deid",
       fuzz="dicom")
def _(root: Path) -> Built:
    depth = 3000
    seq_open = struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF) + struct.pack("<HHI", 0xFFFE, 0xE000,
                                                                                         0xFFFFFFFF)
    seq_close = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    ds = _dicom(pixels=False)
    f = root / "nested.dcm"
    f.write_bytes(_dicom_bytes(ds) + seq_open * depth + seq_close * depth + _elem(0x7FE0, 0x0010, b"OW", bytes(128)))
    return Built([["deid", str(f), str(root / "deid.dcm")]], ("nested.dcm", "sequence"))


@_case("dicom_jpeg2000_garbage", "dicom", "refuse", "JPEG 2000 transfer syntax with random pixel data",
       fuzz="dicom")
def _(root: Path) -> Built:
    f = root / "j2k.dcm"
    _compressed_dicom(f, "1.2.840.10008.1.2.4.90", b"\xff\x4f\xff\x51" + np.random.default_rng(2).bytes(200))
    return Built(_read_runs(f, root, "convert"), ("j2k.dcm",))


@_case("dicom_rle_garbage", "dicom", "refuse", "RLE Lossless transfer syntax with random pixel data", fuzz="dicom")
def _(root: Path) -> Built:
    f = root / "rle.dcm"
    _compressed_dicom(f, "1.2.840.10008.1.2.5", struct.pack("<16I", 1, 64, *([0] * 14))
                      + np.random.default_rng(3).bytes(40))
    return Built(_read_runs(f, root, "convert"), ("rle.dcm",))


@_case("dicom_jpegls_garbage", "dicom", "refuse", "JPEG-LS transfer syntax with garbage pixel data", fuzz="dicom")
def _(root: Path) -> Built:
    f = root / "jls.dcm"
    _compressed_dicom(f, "1.2.840.10008.1.2.4.80", b"\xff\xd8\xff\xf7" + bytes(60) + b"\xff\xd9")
    return Built(_read_runs(f, root, "convert"), ("jls.dcm",))


@_case("dicom_rescale_slope_zero", "dicom", "refuse", "RescaleSlope 0", fuzz="dicom")
def _(root: Path) -> Built:
    f = root / "slope0.dcm"
    f.write_bytes(_dicom_bytes(_dicom(RescaleSlope=0)))
    return Built(_read_runs(f, root, "convert"), ("slope0.dcm", "RescaleSlope"))


@_case("dicom_rescale_slope_nan", "dicom", "refuse", "RescaleSlope NaN", fuzz="dicom")
def _(root: Path) -> Built:
    raw = _dicom_bytes(_dicom(RescaleSlope="77.77"))
    assert raw.count(b"77.77 ") == 1
    f = root / "slopenan.dcm"
    f.write_bytes(raw.replace(b"77.77 ", b"NaN   "))
    return Built(_read_runs(f, root, "convert"), ("slopenan.dcm", "RescaleSlope"))


@_case("dicom_single_slice_no_thickness", "dicom", "warn_or_refuse",
       "a single slice without SliceThickness (the 1 mm default must be said)", fuzz="dicom")
def _(root: Path) -> Built:
    f = root / "single.dcm"
    f.write_bytes(_dicom_bytes(_dicom(slice_thickness=False)))
    return Built(_read_runs(f, root, "convert"), ("SliceThickness", "slice thickness", "thickness"))


@_case("dicom_folder_of_200_non_dicom", "dicom", "refuse", "a folder of 200 .dcm files that are not DICOM: one line")
def _(root: Path) -> Built:
    (root / "in").mkdir()
    rng = np.random.default_rng(4)
    for i in range(200):
        (root / "in" / f"IM{i:04d}.dcm").write_bytes(rng.bytes(300))
    return Built([["info", str(root / "in")], ["convert", str(root / "in"), str(root / "out.nii.gz")]], ("in",))


# -- readers: NIfTI, NPZ, MetaImage, NRRD, PNG, TIFF, dataset folders -------------------------------------------
@_case("metaimage_absolute_element_data_file", "readers", "refuse",
       "a .mhd header whose ElementDataFile is an absolute path outside its folder")
def _(root: Path) -> Built:
    (root / "outside").mkdir()
    secret = root / "outside" / "secret.raw"
    secret.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 2)
    (root / "in").mkdir()
    f = root / "in" / "evil.mhd"
    f.write_text(f"ObjectType = Image\nNDims = 2\nDimSize = 8 8\nElementType = MET_UCHAR\n"
                 f"ElementDataFile = {secret}\n")
    return Built(_read_runs(f, root, "info", "convert"), ("evil.mhd", "ElementDataFile"))


@_case("metaimage_ndims_huge", "readers", "refuse", "a MetaImage header with NDims 99999999999996", isolate=True,
       fuzz="itk")
def _(root: Path) -> Built:
    f = root / "ndims.mha"
    f.write_bytes(b"ObjectType = Image\nNDims = 99999999999996\nDimSize = 2 2\nElementType = MET_UCHAR\n"
                  b"ElementDataFile = LOCAL\n" + bytes(4))
    return Built(_read_runs(f, root, "info", "convert"), ("ndims.mha", "NDims"))


@_case("metaimage_ndims_int64_max", "readers", "refuse",
       "a 140-byte .mha with NDims 2**63-1 and a damaged tag (found by the fuzzer; SimpleITK segfaults)",
       isolate=True)
def _(root: Path) -> Built:
    f = root / "ndims64.mha"
    f.write_bytes(b"ObjectType = Image\nNDims =9223372036854775807\nBinaryData = True\nElementSpacing = 1 1 2\n"
                  b"DimSize = 3 2 2\nEleme\x7f\xffType = MET_SHORT\nElementDa\x00\x00\x00\x00")
    return Built(_read_runs(f, root, "info"), ("ndims64.mha", "NDims"))


@_case("dataset_symlink_out_of_folder", "readers", "refuse",
       "a training dataset whose image is a symlink to a file outside the dataset")
def _(root: Path) -> Built:
    ds = _seg_dataset(root / "dataset")
    (root / "outside").mkdir()
    target = root / "outside" / "other.nii.gz"
    shutil.move(ds / "imagesTr" / "case_001_0000.nii.gz", target)
    os.symlink(os.path.relpath(target, ds / "imagesTr"), ds / "imagesTr" / "case_001_0000.nii.gz")
    return Built([["verify", str(ds)]], ("case_001", "symlink", "outside"), one_line=False)


@_case("dataset_json_dotdot_path", "readers", "refuse", "verify a dataset.json whose training path is ../evil")
def _(root: Path) -> Built:
    ds = _seg_dataset(root / "dataset")
    shutil.copy(ds / "imagesTr" / "case_000_0000.nii.gz", root / "evil_0000.nii.gz")
    shutil.copy(ds / "imagesTr" / "case_000_0000.nii.gz", root / "evil.nii.gz")
    meta = json.loads((ds / "dataset.json").read_text())
    meta["training"][0]["image"] = "../evil.nii.gz"
    (ds / "dataset.json").write_text(json.dumps(meta))
    return Built([["verify", str(ds)]], ("dataset.json", "evil"), one_line=False)


@_case("nii_gz_gzip_bomb", "readers", "refuse", "a 4 MB .nii.gz that inflates to 4 GB of voxels", isolate=True)
def _(root: Path) -> Built:
    head = _set_dims_nifti1(_nifti_bytes((1, 1, 1), np.uint8), [3, 2048, 2048, 1024])
    f = root / "bomb.nii.gz"
    _gzip_bomb(f, bytes(head[:352]), 4096)
    return Built(_read_runs(f, root, "convert"), ("bomb.nii.gz",))


@_case("nii_gz_tiny_declares_huge", "readers", "refuse", "a 100-byte .nii.gz whose header declares 8 GB",
       isolate=True, fuzz="nii_gz")
def _(root: Path) -> Built:
    head = _set_dims_nifti1(_nifti_bytes((1, 1, 1), np.uint8), [3, 2048, 2048, 2048])
    f = root / "tiny.nii.gz"
    f.write_bytes(gzip.compress(bytes(head[:352]), mtime=0))
    return Built(_read_runs(f, root, "info", "convert"), ("tiny.nii.gz",))


@_case("nii_tiny_declares_huge", "readers", "refuse", "an 874-byte .nii whose header declares 8 GB", isolate=True,
       fuzz="nii")
def _(root: Path) -> Built:
    raw = _set_dims_nifti1(_nifti_bytes((8, 8, 8), np.uint8), [3, 2048, 2048, 2048])
    f = root / "tiny.nii"
    f.write_bytes(bytes(raw))
    return Built(_read_runs(f, root, "info", "convert"), ("tiny.nii",))


@_case("nifti_dim0_9", "readers", "refuse", "NIfTI with dim[0] = 9", fuzz="nii")
def _(root: Path) -> Built:
    f = root / "dim9.nii"
    raw = _nifti_bytes()
    struct.pack_into("<h", raw, 40, 9)
    f.write_bytes(bytes(raw))
    return Built(_read_runs(f, root, "info", "convert"), ("dim9.nii",))


@_case("nifti_unknown_datatype", "readers", "refuse", "NIfTI with datatype code 1234", fuzz="nii")
def _(root: Path) -> Built:
    f = root / "dtype.nii"
    f.write_bytes(bytes(_set_dims_nifti1(_nifti_bytes(), [3, 4, 5, 6], datatype=1234)))
    return Built(_read_runs(f, root, "info", "convert"), ("dtype.nii",))


@_case("nifti2_huge_dims", "readers", "refuse", "NIfTI-2 with dims of 2**62", fuzz="nii")
def _(root: Path) -> Built:
    raw = _nifti_bytes(nifti2=True)
    struct.pack_into("<8q", raw, 16, 3, 2**62, 2**62, 2**62, 1, 1, 1, 1)
    f = root / "huge2.nii"
    f.write_bytes(bytes(raw))
    return Built(_read_runs(f, root, "info", "convert"), ("huge2.nii",))


@_case("nifti_complex_voxels", "readers", "refuse", "NIfTI with complex64 voxels", fuzz="nii")
def _(root: Path) -> Built:
    f = root / "complex.nii"
    f.write_bytes(bytes(_nifti_bytes(data=np.ones((4, 5, 6), np.complex64))))
    return Built(_read_runs(f, root, "convert"), ("complex.nii", "complex"))


@_case("nifti_pixdim_zero", "readers", "warn_or_refuse", "NIfTI with pixdim 0 (not a 1 mm 'header' spacing)",
       fuzz="nii")
def _(root: Path) -> Built:
    raw = _nifti_bytes()
    struct.pack_into("<3f", raw, 80, 0.0, 0.0, 0.0)
    struct.pack_into("<h", raw, 252, 0)  # qform_code 0: the pixdim is the only spacing
    struct.pack_into("<h", raw, 254, 0)  # sform_code 0
    f = root / "pixdim0.nii"
    f.write_bytes(bytes(raw))
    return Built(_read_runs(f, root, "convert"), ("pixdim", "spacing"))


@_case("npz_bomb", "readers", "refuse", "a 4 MB .npz that inflates to 3.5 GB", isolate=True)
def _(root: Path) -> Built:
    stream, crc, size = _raw_deflate_zeros(_npy_header((3584, 1024, 1024)), 3584)
    f = root / "bomb.npz"
    _zip_one(f, "voxels.npy", stream, crc=crc, size=size)
    return Built(_read_runs(f, root, "info", "convert"), ("bomb.npz",))


@_case("npz_bad_header", "readers", "refuse", "a .npz member whose .npy header does not parse", fuzz="npz")
def _(root: Path) -> Built:
    f = root / "header.npz"
    _zip_one(f, "voxels.npy", _npy_header((), text="{'descr': '<f4', 'fortran_order': False, 'shape': (4, 5") +
             bytes(80))
    return Built(_read_runs(f, root, "info", "convert"), ("header.npz",))


@_case("npz_nan_voxels", "readers", "refuse", "NaN voxels in a .npz", fuzz="npz")
def _(root: Path) -> Built:
    a = np.ones((4, 5, 6), np.float32)
    a[1, 2, 3] = np.nan
    f = root / "nan.npz"
    np.savez(f, voxels=a)
    return Built(_read_runs(f, root, "convert"), ("nan.npz", "NaN"))


@_case("nrrd_nan_voxels", "readers", "refuse", "NaN voxels in a .nrrd", fuzz="itk")
def _(root: Path) -> Built:
    a = np.ones((4, 5, 6), "<f4")
    a[1, 2, 3] = np.nan
    f = root / "nan.nrrd"
    f.write_bytes(b"NRRD0004\ntype: float\ndimension: 3\nsizes: 6 5 4\nspacings: 1 1 1\nencoding: raw\n"
                  b"endian: little\n\n" + a.tobytes())
    return Built(_read_runs(f, root, "convert"), ("nan.nrrd", "NaN"))


@_case("tiff_nan_voxels", "readers", "refuse", "NaN pixels in a float TIFF", fuzz="raster")
def _(root: Path) -> Built:
    from PIL import Image as PILImage

    a = np.ones((6, 7), np.float32)
    a[2, 3] = np.nan
    f = root / "nan.tif"
    PILImage.fromarray(a, mode="F").save(f)
    return Built(_read_runs(f, root, "convert"), ("nan.tif", "NaN"))


def _tiff_pages(path: Path, n_pages: int, width: int, height: int) -> None:
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


@_case("tiff_multipage_bomb", "readers", "refuse", "a multi-page TIFF of 256 pages of 4096x4096 (4 GB)",
       isolate=True)
def _(root: Path) -> Built:
    f = root / "pages.tif"
    _tiff_pages(f, 256, 4096, 4096)
    return Built([["convert", str(f), str(root / "out.nii.gz")],
                  ["analyze", str(f), "-o", str(root / "out")]], ("pages.tif",))


def _png_zeros(path: Path, w: int, h: int) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = zlib.compress(bytes((w + 1) * h), 9)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
    return path


@_case("png_12000_squared", "readers", "ok_or_refuse", "measure on a 12000x12000 PNG stays within 2 GB",
       isolate=True)
def _(root: Path) -> Built:
    f = _png_zeros(root / "big.png", 12000, 12000)
    lab = _png_zeros(root / "big_labels.png", 12000, 12000)
    return Built([["measure", str(f), str(lab), "--json", str(root / "m.json")]], ("big.png", "big_labels.png"))


# ---- public API ---------------------------------------------------------------------------------------------
def build(case_id: str, folder: str | os.PathLike[str]) -> Built:
    """Write case ``case_id`` into ``folder`` (created; should be empty) and return its runs and checks."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    return CASES[case_id].make(root)


def write_corpus(folder: str | os.PathLike[str], ids: list[str] | None = None) -> dict[str, Built]:
    """Write every case (or those in ``ids``) into ``folder/<id>/``."""
    return {cid: build(cid, Path(folder) / cid) for cid in (ids or list(CASES))}


def write_seeds(folder: str | os.PathLike[str]) -> dict[str, list[Path]]:
    """Seed files for the reader fuzz targets: small valid files per target, plus the hostile inputs of at most
    16 kB whose case names the target. Returns target -> files."""
    from PIL import Image as PILImage

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    seeds: dict[str, list[Path]] = {t: [] for t in FUZZ_SUFFIXES}

    def add(target: str, name: str, data: bytes) -> None:
        p = root / target / name
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(data)
        seeds[target].append(p)

    add("dicom", "valid.dcm", _dicom_bytes(_dicom(6, 5)))
    small = _nifti_bytes((4, 5, 6), np.int16, data=np.arange(120, dtype=np.int16).reshape(4, 5, 6))
    add("nii", "valid.nii", bytes(small))
    add("nii", "valid2.nii", bytes(_nifti_bytes((3, 4, 2), np.float32, nifti2=True)))
    add("nii_gz", "valid.nii.gz", gzip.compress(bytes(small), mtime=0))
    buf = io.BytesIO()
    np.savez_compressed(buf, voxels=np.arange(60, dtype=np.float32).reshape(3, 4, 5))
    add("npz", "valid.npz", buf.getvalue())
    add("itk", "valid.mha", b"ObjectType = Image\nNDims = 3\nBinaryData = True\nElementSpacing = 1 1 2\n"
        b"DimSize = 3 2 2\nElementType = MET_SHORT\nElementDataFile = LOCAL\n" + bytes(24))
    add("itk", "valid.nrrd", b"NRRD0004\ntype: short\ndimension: 3\nsizes: 3 2 2\nspacings: 1 1 2\n"
        b"encoding: raw\nendian: little\n\n" + bytes(24))
    for target, fmt, name in (("raster", "PNG", "valid.png"), ("raster", "TIFF", "valid.tif")):
        b = io.BytesIO()
        PILImage.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8)).save(b, format=fmt)
        add(target, name, b.getvalue())
    small_tif = root / "raster" / "pages.tif"
    _tiff_pages(small_tif, 3, 8, 6)
    seeds["raster"].append(small_tif)
    for case in CASES.values():
        if case.fuzz is None or case.isolate:
            continue
        tmp = root / ".cases" / case.id
        build(case.id, tmp)
        for f in sorted(tmp.rglob("*")):
            ext = next((e for e in FUZZ_SUFFIXES[case.fuzz] if f.name.endswith(e)), None)
            if f.is_file() and not f.is_symlink() and ext and f.stat().st_size <= 16384:
                add(case.fuzz, f"{case.id}{ext}", f.read_bytes())
    shutil.rmtree(root / ".cases", ignore_errors=True)
    return seeds
