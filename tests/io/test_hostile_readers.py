"""Hostile and damaged inputs for the non-DICOM readers (issue 12, item 13).

Every file is built here, small: "big" ones only *declare* a huge array in a tiny header. Each must be refused by
``medimg.io.read`` with one :class:`ImageReadError` naming the file, before anything large is allocated, and by
the command line with exit code 2 and one line on stderr.
"""

from __future__ import annotations

import gzip
import io
import logging
import struct
import zipfile
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image as PILImage

from medimg.cli.main import main
from medimg.core import ImageReadError, ImageWriteError, InvalidParameterError
from medimg.io import read, write
from medimg.testing import phantom, require_data


# ---- builders ----------------------------------------------------------------------------------------------------
def _nii(shape, dtype=np.float32, data: bytes = b"") -> bytes:
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(dtype)
    hdr.set_data_shape(shape)
    bio = io.BytesIO()
    hdr.write_to(bio)
    return bio.getvalue().ljust(352, b"\0") + data


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _npz_member(shape, body: bytes, descr: str = "<f4") -> bytes:
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_DEFLATED) as z:
        head = io.BytesIO()
        np.lib.format.write_array_header_1_0(head, {"descr": descr, "fortran_order": False, "shape": shape})
        z.writestr("image.npy", head.getvalue() + body)
    return bio.getvalue()


def build_corpus(root: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, text the error must contain)."""
    c: dict[str, tuple[Path, str]] = {}

    def put(name: str, data: bytes, expect: str) -> None:
        (root / name).write_bytes(data)
        c[name] = (root / name, expect)

    put("declares_98TiB.nii.gz", gzip.compress(_nii((30000, 30000, 30000))), "memory budget")  # ~100 bytes
    put("declares_128MiB_has_520B.nii", _nii((512, 512, 128), data=b"\0" * 520), "shorter than its header")
    # gzip bomb: the header declares 1 GiB; 8 MiB of zeros compress to a few KiB, no matter how much more follows
    co = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = co.compress(_nii((1024, 1024, 256))) + b"".join(co.compress(b"\0" * (1 << 20)) for _ in range(8))
    put("bomb.nii.gz", bomb + co.flush(), "memory budget")
    raw = bytearray(_nii((4, 4, 4), data=b"\0" * 256))
    struct.pack_into("<h", raw, 40, 9)  # dim[0] = 9
    put("dim0_9.nii", bytes(raw), "invalid NIfTI header")
    raw = bytearray(_nii((4, 4, 4), data=b"\0" * 256))
    struct.pack_into("<h", raw, 70, 12345)  # unknown datatype code
    put("datatype_12345.nii", bytes(raw), "invalid NIfTI header")
    h2 = nib.Nifti2Header()
    h2.set_data_dtype(np.float32)
    h2.set_data_shape((4, 4, 4))
    bio = io.BytesIO()
    h2.write_to(bio)
    raw = bytearray(bio.getvalue().ljust(544, b"\0"))
    struct.pack_into("<q", raw, 24, 2**62)  # NIfTI-2 dim[1]
    put("nifti2_huge_dims.nii", bytes(raw) + b"\0" * 256, "memory budget")
    put("complex.nii", _nii((3, 3, 3), np.complex64, np.ones(27, np.complex64).tobytes()), "complex")
    put("bomb.npz", _npz_member((1024, 1024, 256), b"\0" * 4096), "memory budget")
    put("short_member.npz", _npz_member((64, 64), b"\0" * 100), "shorter than its header")
    body = b"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 3"  # unterminated: TokenError in numpy
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w") as z:
        z.writestr("image.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", 118) + body.ljust(117) + b"\n" + b"\0" * 36)
    put("bad_header.npz", bio.getvalue(), "unreadable NPZ")
    bio = io.BytesIO()
    np.savez(bio, image=np.array([[1.0, np.nan], [0.0, 2.0]], np.float32))
    put("nan.npz", bio.getvalue(), "non-finite")
    put("nan.nrrd", b"NRRD0004\ntype: float\ndimension: 2\nsizes: 2 2\nencoding: raw\nendian: little\n\n"
        + np.array([1, np.nan, 0, 2], "<f4").tobytes(), "non-finite")
    bio = io.BytesIO()
    PILImage.fromarray(np.array([[1.0, np.nan], [0.0, 2.0]], np.float32)).save(bio, format="TIFF")
    put("nan.tif", bio.getvalue(), "non-finite")
    put("ndims_huge.mha", b"ObjectType = Image\nNDims = 99999999999996\nDimSize = 2 2\nElementType = MET_UCHAR\n"
        b"ElementDataFile = LOCAL\n" + b"\0" * 4, "number of dimensions")
    put("dimsize_huge.mha", b"ObjectType = Image\nNDims = 3\nDimSize = 100000 100000 100000\nElementType = MET_FLOAT\n"
        b"ElementDataFile = LOCAL\n" + b"\0" * 4, "memory budget")
    put("absolute_data_file.mhd", b"ObjectType = Image\nNDims = 2\nDimSize = 16 16\nElementType = MET_UCHAR\n"
        b"ElementDataFile = /etc/passwd\n", "outside the header's folder")
    (root / "secret.raw").write_bytes(b"\1" * 256)
    (root / "sub").mkdir()
    put("sub/parent_data_file.mhd", b"ObjectType = Image\nNDims = 2\nDimSize = 16 16\nElementType = MET_UCHAR\n"
        b"ElementDataFile = ../secret.raw\n", "outside the header's folder")
    put("detached_outside.nhdr", b"NRRD0004\ntype: uchar\ndimension: 2\nsizes: 16 16\nencoding: raw\n"
        b"data file: /etc/passwd\n\n", "outside the header's folder")
    # a 12000 x 12000 RGB PNG declared in ~100 bytes, and a multi-page TIFF counted page by page
    put("12000x12000.png", b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 12000, 12000, 8, 2, 0, 0,
        0)) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 100)) + _png_chunk(b"IEND", b""), "memory budget")
    write(phantom((4, 8, 8)), root / "whole.mha")  # compressed: ITK itself finds the damage, and says so on fd 2
    full = (root / "whole.mha").read_bytes()
    (root / "whole.mha").unlink()
    put("truncated_compressed.mha", full[: len(full) - 200], "unreadable mha")
    bio = io.BytesIO()
    np.savez(bio, image=np.zeros((2, 2)))
    raw = bytearray(bio.getvalue())
    struct.pack_into("<H", raw, raw.find(b"PK\x01\x02") + 8, 1)  # flag: encrypted member (zipfile: RuntimeError)
    put("encrypted.npz", bytes(raw), "unreadable NPZ")
    h = nib.Nifti1Header()
    h.set_data_dtype(np.float32)
    h.set_data_shape((2, 2, 2))
    h["qform_code"], h["quatern_b"], h["quatern_c"], h["quatern_d"] = 1, 1, 1, 1  # |q| > 1: nibabel ValueError
    bio = io.BytesIO()
    h.write_to(bio)
    put("bad_quaternion.nii", bio.getvalue().ljust(352, b"\0") + bytes(32), "NIfTI")
    return c


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("hostile"))


CASES = sorted([
    "declares_98TiB.nii.gz", "declares_128MiB_has_520B.nii", "bomb.nii.gz", "dim0_9.nii", "datatype_12345.nii",
    "nifti2_huge_dims.nii", "complex.nii", "bomb.npz", "short_member.npz", "bad_header.npz", "nan.npz", "nan.nrrd",
    "nan.tif", "ndims_huge.mha", "dimsize_huge.mha", "absolute_data_file.mhd", "sub/parent_data_file.mhd",
    "detached_outside.nhdr", "12000x12000.png", "encrypted.npz", "bad_quaternion.nii",
    "truncated_compressed.mha",
])


@pytest.fixture()
def small_budget(monkeypatch):
    monkeypatch.setenv("MEDIMG_MAX_BYTES", "256M")


def test_corpus_lists_every_case(corpus):
    assert sorted(corpus) == CASES


@pytest.mark.parametrize("name", CASES)
def test_read_refuses_with_one_error_naming_the_file(name, corpus, small_budget):
    path, expect = corpus[name]
    with pytest.raises(ImageReadError) as exc:
        read(path)
    msg = str(exc.value)
    assert str(path) in msg and expect in msg and "\n" not in msg
    if expect == "memory budget":
        assert "MEDIMG_MAX_BYTES" in msg and "declared" in msg


@pytest.mark.parametrize("name", CASES)
def test_cli_one_line_exit_2(name, corpus, small_budget, tmp_path, capfd):
    """capfd: what native libraries (ITK's MetaIO, libtiff) print on file descriptor 2 counts too."""
    path, _ = corpus[name]
    out = tmp_path / "out.nii.gz"
    assert main(["convert", str(path), str(out)]) == 2
    err = capfd.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and path.name in err and "internal error" not in err
    assert not out.exists()


def test_external_data_never_read(corpus, small_budget):
    """The refused headers point at real files: their bytes must not come back as voxels."""
    for name in ("absolute_data_file.mhd", "sub/parent_data_file.mhd"):
        with pytest.raises(ImageReadError, match="outside"):
            read(corpus[name][0])


def test_data_file_beside_the_header_still_reads(tmp_path):
    img = phantom((3, 4, 5))
    write(img, tmp_path / "x.mhd")
    assert read(tmp_path / "x.mhd").shape == img.shape
    write(img, tmp_path / "y.nhdr")
    assert read(tmp_path / "y.nhdr").shape == img.shape


def test_budget_is_the_one_setting(tmp_path, monkeypatch):
    """A real image passes under the default budget and fails once MEDIMG_MAX_BYTES is below its size."""
    img = phantom((8, 16, 16))  # int16: 4 KiB
    for ext in (".nii.gz", ".nii", ".nrrd", ".mha", ".npz"):
        write(img, tmp_path / f"x{ext}")
        assert read(tmp_path / f"x{ext}").shape == img.shape
        monkeypatch.setenv("MEDIMG_MAX_BYTES", "3K")
        with pytest.raises(ImageReadError, match="memory budget"):
            read(tmp_path / f"x{ext}")
        monkeypatch.delenv("MEDIMG_MAX_BYTES")


def test_multipage_tiff_pages_counted_before_decoding(tmp_path, monkeypatch):
    frames = [PILImage.fromarray(np.zeros((100, 100), np.uint8)) for _ in range(4)]
    frames[0].save(tmp_path / "p.tif", save_all=True, append_images=frames[1:], compression="tiff_deflate")
    assert read(tmp_path / "p.tif", spacing=(1, 1)).shape == (1, 4, 100, 100)
    monkeypatch.setenv("MEDIMG_MAX_BYTES", "30000")  # 4 pages x 10000 bytes
    with pytest.raises(ImageReadError, match=r"4 pages"):
        read(tmp_path / "p.tif", spacing=(1, 1))


def test_gzip_bomb_is_not_inflated_beyond_the_declared_size(tmp_path):
    """A small declared image followed by a long run of compressed zeros reads as the declared image only."""
    co = zlib.compressobj(9, zlib.DEFLATED, 31)
    data = co.compress(_nii((4, 4, 4), data=np.arange(64, dtype=np.float32).tobytes()))
    data += b"".join(co.compress(b"\0" * (1 << 20)) for _ in range(64)) + co.flush()  # 64 MiB of trailing zeros
    (tmp_path / "trail.nii.gz").write_bytes(data)
    img = read(tmp_path / "trail.nii.gz")
    assert img.shape == (1, 4, 4, 4) and float(img.voxels.max()) == 63.0


def test_nifti_zero_pixdim_refused(tmp_path):
    img = nib.Nifti1Image(np.ones((3, 3, 3), np.float32), None)
    img.header["pixdim"][1:4] = [0, 0, 0]
    raw = bytearray(img.header.binaryblock)
    (tmp_path / "p0.nii").write_bytes(bytes(raw).ljust(352, b"\0") + np.ones(27, np.float32).tobytes())
    with pytest.raises(ImageReadError, match="voxel size missing"):
        read(tmp_path / "p0.nii")


@pytest.mark.parametrize("ext", [".nii", ".nii.gz", ".nrrd", ".mha", ".npz", ".png", ".tif"])
def test_mutated_files_give_medimg_errors_only(ext, tmp_path, small_budget):
    """A short, seeded mutation fuzz per reader (byte flips, 32-bit extremes, truncation): every outcome is an
    image or a medimg error (found this way: a qform nibabel cannot complete, a TIFF without dimensions, an
    encrypted NPZ member). benchmarks or atheris can run the same at length."""
    import random

    from medimg.core import MedimgError

    img = phantom((3, 5, 6))
    if ext in (".png", ".tif"):
        img = img.replace(voxels=img.voxels[:, :1].astype(np.uint8))
    write(img, tmp_path / f"seed{ext}")
    seed = (tmp_path / f"seed{ext}").read_bytes()
    rng = random.Random(ext)
    target = tmp_path / f"mutant{ext}"
    for _ in range(60):
        b = bytearray(seed)
        for _ in range(rng.randint(1, 8)):
            if not b:
                break
            pos, op = rng.randrange(len(b)), rng.random()
            if op < 0.6:
                b[pos] = rng.randrange(256)
            elif op < 0.8:
                b[pos : pos + 4] = rng.choice([b"\xff\xff\xff\x7f", b"\0\0\0\0", b"\x80\0\0\0", b"9999"])
            else:
                del b[pos:]
        target.write_bytes(bytes(b))
        try:
            read(target, spacing=(1, 1))
        except MedimgError as exc:
            assert "\n" not in str(exc)


# ---- item 9: messages that name what the user can act on ----------------------------------------------------------
def test_png_write_error_names_the_output_not_a_temporary_file(tmp_path):
    out = tmp_path / "out.png"
    with pytest.raises(ImageWriteError) as exc:
        write(phantom((1, 4, 4)), out)  # float32 cannot go into a PNG without rescaling
    assert f"'{out}'" in str(exc.value) and ".part" not in str(exc.value)


def test_medmnist_selection_on_real_data(tmp_path, capsys):
    path = require_data("medmnist_more", "breastmnist_trainval.npz")
    with pytest.raises(InvalidParameterError) as exc:
        read(path)
    msg = str(exc.value)
    assert "--series" in msg and "series='train:0'" in msg and "key=" not in msg
    img = read(path, series="val:3")  # what the message says works in Python ...
    assert img.metadata["medmnist_split"] == "val" and img.metadata["medmnist_index"] == 3
    out = tmp_path / "s.nii.gz"
    assert main(["convert", str(path), str(out), "--series", "val:3"]) == 0  # ... and on the command line
    assert np.array_equal(read(out).voxels, img.voxels)
    assert main(["convert", str(path), str(tmp_path / "t.nii.gz")]) == 2
    assert "--series" in capsys.readouterr().err


def test_npz_selection_parsing():
    from medimg.io.npz import npz_selection

    assert npz_selection("test:12") == ("test", 12)
    assert npz_selection("images") == ("images", None)
    assert npz_selection(3) == (None, 3) and npz_selection(None) == (None, None)
    with pytest.raises(InvalidParameterError, match="series"):
        npz_selection("test:x")


# ---- datasets read only their own files ---------------------------------------------------------------------------
def _dataset(root: Path, image_entry: str, label_entry: str) -> Path:
    from medimg.io.nifti import write_nifti
    from medimg.testing import label_phantom

    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    write_nifti(phantom((4, 6, 7)), root / "imagesTr" / "a.nii.gz")
    write_nifti(label_phantom((4, 6, 7)), root / "labelsTr" / "a.nii.gz")
    info = {"modality": {"0": "MR"}, "labels": {"0": "background", "1": "shell", "2": "core"},
            "training": [{"image": image_entry, "label": label_entry}], "numTraining": 1}
    (root / "dataset.json").write_text(__import__("json").dumps(info))
    return root


@pytest.mark.parametrize("entry", ["../../../../evil/x.nii.gz", "/etc/x.nii.gz", "./imagesTr/../../other.nii.gz"])
def test_dataset_json_paths_outside_the_folder_refused(entry, tmp_path, capsys):
    from medimg.io.datasets import NnUNetDataset

    root = _dataset(tmp_path / "ds", "./imagesTr/a.nii.gz", entry)
    with pytest.raises(ImageReadError, match="outside its folder"):
        NnUNetDataset(root)
    assert main(["verify", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "outside its folder" in err and "dataset.json" in err


def test_dataset_links_out_of_the_folder_refused(tmp_path):
    from medimg.io.datasets import NnUNetDataset

    root = _dataset(tmp_path / "ds", "./imagesTr/a.nii.gz", "./labelsTr/a.nii.gz")
    assert NnUNetDataset(root).cases == ["a"]
    other = tmp_path / "other_patient.nii.gz"
    (root / "labelsTr" / "a.nii.gz").rename(other)
    (root / "labelsTr" / "a.nii.gz").symlink_to(other)
    with pytest.raises(ImageReadError, match="outside its folder"):
        NnUNetDataset(root)


def test_refused_raster_gets_no_spacing_warning_first(corpus, tmp_path, monkeypatch, caplog):
    """The 'no pixel spacing; using 1 mm' warning came before the error line of a file that is then refused."""
    monkeypatch.delenv("MEDIMG_MAX_BYTES", raising=False)
    bad = tmp_path / "cut.png"
    bad.write_bytes(corpus["12000x12000.png"][0].read_bytes())  # under the default budget: decoded, truncated
    with caplog.at_level(logging.WARNING), pytest.raises(ImageReadError, match="truncated"):
        read(bad)
    assert not [r for r in caplog.records if "pixel spacing" in r.getMessage()]
    good = tmp_path / "ok.png"
    PILImage.fromarray(np.zeros((4, 4), np.uint8)).save(good)
    with caplog.at_level(logging.WARNING):
        image = read(good)
    # the reader records the fallback; the CLI says it once, after the read, unless -q (issue 12, item 4)
    assert image.metadata["spacing_source"] == "default_1mm"
    assert not [r for r in caplog.records if "pixel spacing" in r.getMessage()]


@pytest.mark.parametrize("name", ["ndims_huge.mha", "dim0_9.nii"])
def test_classification_header_probe_refuses_hostile_headers(name, corpus, tmp_path):
    """A class-folder dataset probes each file's header without reading it; the MHA probe hung inside ITK and the
    NIfTI probe let nibabel's HeaderDataError escape."""
    from medimg.tasks.classify.data import open_classification_dataset

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        write(phantom((1, 8, 8)).replace(voxels=np.zeros((1, 1, 8, 8), np.uint8)), tmp_path / cls / "ok.png")
    bad = tmp_path / "b" / Path(name).name
    bad.write_bytes(corpus[name][0].read_bytes())
    with pytest.raises(ImageReadError) as exc:
        open_classification_dataset(tmp_path)
    assert bad.name in str(exc.value) and "\n" not in str(exc.value)


# ---- headers SimpleITK crashed on (segfault): refused before ITK sees them, checked in a subprocess ---------------
_MHA = b"ObjectType = Image\nNDims = 3\nBinaryData = True\nDimSize = 3 2 2\nElementType = MET_SHORT\n"
_ITK_CRASHERS = {
    # the fuzzer's reproducer: a second NDims line hid the first one (NDims = 2**63 - 1, which MetaIO read) from the
    # header check, and a garbled field name; MetaIO dereferenced past its arrays (signal 11)
    "fuzz_finding.mha": (Path(__file__).parents[1] / "fuzz" / "findings" / "itk-359ba7da6c.mha").read_bytes(),
    "ndims_twice.mha": b"ObjectType = Image\nNDims = 9223372036854775807\nDimSize = 3 2 2\n" + _MHA[19:]
    + b"ElementDataFile = LOCAL\n" + b"\0" * 24,
    "spacing_short.mha": _MHA + b"ElementSpacing = 1\nElementDataFile = LOCAL\n" + b"\0" * 24,
    "spacing_inf.mha": _MHA + b"ElementSpacing = 1 1 1e999\nElementDataFile = LOCAL\n" + b"\0" * 24,
    "matrix_short.mha": _MHA + b"TransformMatrix = 1 0 0 1\nElementDataFile = LOCAL\n" + b"\0" * 24,
    "headersize_huge.mha": _MHA + b"HeaderSize = 99999999999\nElementDataFile = LOCAL\n" + b"\0" * 24,
    "dimsize_before_ndims.mha": b"ObjectType = Image\nDimSize = 3 2 2\nNDims = 3\nElementType = MET_SHORT\n"
    b"ElementDataFile = LOCAL\n" + b"\0" * 24,
    "sizes_twice.nrrd": b"NRRD0004\ntype: short\ndimension: 3\nsizes: 3 2 2\nsizes: 3 2 2\nencoding: raw\n\n"
    + b"\0" * 24,
    "spacings_nan_count.nrrd": b"NRRD0004\ntype: short\ndimension: 3\nsizes: 3 2 2\nspacings: 1 1\nencoding: raw\n\n"
    + b"\0" * 24,
}
_READ_ONE = """
import sys
from medimg.core import ImageReadError
from medimg.io import read
try:
    read(sys.argv[1])
except ImageReadError as exc:
    print(exc)
    sys.exit(3)
"""


@pytest.mark.parametrize("name", sorted(_ITK_CRASHERS))
def test_itk_header_that_crashed_simpleitk_is_refused_first(name, tmp_path):
    import subprocess
    import sys

    path = tmp_path / name
    path.write_bytes(_ITK_CRASHERS[name])
    proc = subprocess.run([sys.executable, "-c", _READ_ONE, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, f"exit {proc.returncode}: {proc.stderr[-800:]}"  # -11 was the segfault
    assert str(path) in proc.stdout and len(proc.stdout.strip().splitlines()) == 1


def test_itk_headers_written_by_simpleitk_still_read(tmp_path):
    """The stricter header check accepts what SimpleITK writes: 2D, 3D, vector, detached and compressed."""
    for shape, ext in (((1, 6, 7), ".mha"), ((4, 5, 6), ".mha"), ((4, 5, 6), ".mhd"), ((4, 5, 6), ".nrrd"),
                       ((4, 5, 6), ".nhdr"), ((1, 6, 7), ".nrrd")):
        img = phantom(shape)
        write(img, tmp_path / f"x{ext}")
        assert read(tmp_path / f"x{ext}").shape == img.shape
    rgb = phantom((1, 6, 7)).replace(voxels=np.zeros((3, 1, 6, 7), np.uint8))
    for ext in (".mha", ".nrrd"):
        write(rgb, tmp_path / f"rgb{ext}")
        assert read(tmp_path / f"rgb{ext}").shape == rgb.shape


def test_png_chunk_longer_than_the_file_is_one_error_under_a_memory_limit(tmp_path):
    """Pillow allocated a 4 GB IDAT a 64-byte PNG declared (MemoryError under the fuzzer's 2 GB limit)."""
    import subprocess
    import sys

    good = io.BytesIO()
    PILImage.fromarray(np.zeros((4, 4), np.uint8)).save(good, format="PNG")
    raw = bytearray(good.getvalue())
    struct.pack_into(">I", raw, raw.index(b"IDAT") - 4, 0xFB00_0000)
    cases = {"built.png": bytes(raw),
             "finding.png": (Path(__file__).parents[1] / "fuzz" / "findings" / "raster-3876314172-b.png").read_bytes()}
    script = "import resource, sys\nresource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n" + _READ_ONE
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        proc = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 3, f"{name}: exit {proc.returncode}: {proc.stderr[-800:]}"
        assert str(path) in proc.stdout and "truncated" in proc.stdout


def test_metaimage_data_file_name_too_long_is_one_error(tmp_path):
    """Found by benchmarks/fuzz.py after the issue-12 fixes: a 300-byte ElementDataFile name made pathlib's stat
    raise OSError (File name too long) outside the one-line contract."""
    from medimg.core.errors import MedimgError

    header = tmp_path / "x.mhd"
    header.write_bytes(b"ObjectType = Image\nNDims = 2\nDimSize = 2 2\nElementType = MET_UCHAR\n"
                       b"ElementDataFile = " + b"\xff" * 300 + b"\n")
    with pytest.raises(MedimgError, match="data file name"):
        read(header)
