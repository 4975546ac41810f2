"""The hostile cases of the ``readers`` area: NIfTI, NPZ, MetaImage, NRRD, PNG and TIFF bombs and bad headers, NaN
voxels, dataset folders pointing out of themselves. Each registers itself in
:data:`~medimg.testing.hostile.registry.CASES` through :func:`~medimg.testing.hostile.registry.case`.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np

from medimg.testing.hostile.files import (
    gzip_bomb,
    nifti_bytes,
    npy_header,
    raw_deflate_zeros,
    seg_dataset,
    set_dims_nifti1,
    tiff_pages,
    zip_one,
)
from medimg.testing.hostile.registry import Built, case, read_runs


# -- readers: NIfTI, NPZ, MetaImage, NRRD, PNG, TIFF, dataset folders -------------------------------------------
@case("metaimage_absolute_element_data_file", "readers", "refuse",
      "a .mhd header whose ElementDataFile is an absolute path outside its folder")
def _(root: Path) -> Built:
    (root / "outside").mkdir()
    secret = root / "outside" / "secret.raw"
    secret.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 2)
    (root / "in").mkdir()
    f = root / "in" / "evil.mhd"
    f.write_text(f"ObjectType = Image\nNDims = 2\nDimSize = 8 8\nElementType = MET_UCHAR\n"
                 f"ElementDataFile = {secret}\n")
    return Built(read_runs(f, root, "info", "convert"), ("evil.mhd", "ElementDataFile"))


@case("metaimage_ndims_huge", "readers", "refuse", "a MetaImage header with NDims 99999999999996", isolate=True,
      fuzz="itk")
def _(root: Path) -> Built:
    f = root / "ndims.mha"
    f.write_bytes(b"ObjectType = Image\nNDims = 99999999999996\nDimSize = 2 2\nElementType = MET_UCHAR\n"
                  b"ElementDataFile = LOCAL\n" + bytes(4))
    return Built(read_runs(f, root, "info", "convert"), ("ndims.mha", "NDims"))


@case("metaimage_ndims_int64_max", "readers", "refuse",
      "a 140-byte .mha with NDims 2**63-1 and a damaged tag (found by the fuzzer; SimpleITK segfaults)",
      isolate=True)
def _(root: Path) -> Built:
    f = root / "ndims64.mha"
    f.write_bytes(b"ObjectType = Image\nNDims =9223372036854775807\nBinaryData = True\nElementSpacing = 1 1 2\n"
                  b"DimSize = 3 2 2\nEleme\x7f\xffType = MET_SHORT\nElementDa\x00\x00\x00\x00")
    return Built(read_runs(f, root, "info"), ("ndims64.mha", "NDims"))


@case("dataset_symlink_out_of_folder", "readers", "refuse",
      "a training dataset whose image is a symlink to a file outside the dataset")
def _(root: Path) -> Built:
    ds = seg_dataset(root / "dataset")
    (root / "outside").mkdir()
    target = root / "outside" / "other.nii.gz"
    shutil.move(ds / "imagesTr" / "case_001_0000.nii.gz", target)
    os.symlink(os.path.relpath(target, ds / "imagesTr"), ds / "imagesTr" / "case_001_0000.nii.gz")
    return Built([["verify", str(ds)]], ("case_001", "symlink", "outside"), one_line=False)


@case("dataset_json_dotdot_path", "readers", "refuse", "verify a dataset.json whose training path is ../evil")
def _(root: Path) -> Built:
    ds = seg_dataset(root / "dataset")
    shutil.copy(ds / "imagesTr" / "case_000_0000.nii.gz", root / "evil_0000.nii.gz")
    shutil.copy(ds / "imagesTr" / "case_000_0000.nii.gz", root / "evil.nii.gz")
    meta = json.loads((ds / "dataset.json").read_text())
    meta["training"][0]["image"] = "../evil.nii.gz"
    (ds / "dataset.json").write_text(json.dumps(meta))
    return Built([["verify", str(ds)]], ("dataset.json", "evil"), one_line=False)


@case("nii_gz_gzip_bomb", "readers", "refuse", "a 4 MB .nii.gz that inflates to 4 GB of voxels", isolate=True)
def _(root: Path) -> Built:
    head = set_dims_nifti1(nifti_bytes((1, 1, 1), np.uint8), [3, 2048, 2048, 1024])
    f = root / "bomb.nii.gz"
    gzip_bomb(f, bytes(head[:352]), 4096)
    return Built(read_runs(f, root, "convert"), ("bomb.nii.gz",))


@case("nii_gz_tiny_declares_huge", "readers", "refuse", "a 100-byte .nii.gz whose header declares 8 GB",
      isolate=True, fuzz="nii_gz")
def _(root: Path) -> Built:
    head = set_dims_nifti1(nifti_bytes((1, 1, 1), np.uint8), [3, 2048, 2048, 2048])
    f = root / "tiny.nii.gz"
    f.write_bytes(gzip.compress(bytes(head[:352]), mtime=0))
    return Built(read_runs(f, root, "info", "convert"), ("tiny.nii.gz",))


@case("nii_tiny_declares_huge", "readers", "refuse", "an 874-byte .nii whose header declares 8 GB", isolate=True,
      fuzz="nii")
def _(root: Path) -> Built:
    raw = set_dims_nifti1(nifti_bytes((8, 8, 8), np.uint8), [3, 2048, 2048, 2048])
    f = root / "tiny.nii"
    f.write_bytes(bytes(raw))
    return Built(read_runs(f, root, "info", "convert"), ("tiny.nii",))


@case("nifti_dim0_9", "readers", "refuse", "NIfTI with dim[0] = 9", fuzz="nii")
def _(root: Path) -> Built:
    f = root / "dim9.nii"
    raw = nifti_bytes()
    struct.pack_into("<h", raw, 40, 9)
    f.write_bytes(bytes(raw))
    return Built(read_runs(f, root, "info", "convert"), ("dim9.nii",))


@case("nifti_unknown_datatype", "readers", "refuse", "NIfTI with datatype code 1234", fuzz="nii")
def _(root: Path) -> Built:
    f = root / "dtype.nii"
    f.write_bytes(bytes(set_dims_nifti1(nifti_bytes(), [3, 4, 5, 6], datatype=1234)))
    return Built(read_runs(f, root, "info", "convert"), ("dtype.nii",))


@case("nifti2_huge_dims", "readers", "refuse", "NIfTI-2 with dims of 2**62", fuzz="nii")
def _(root: Path) -> Built:
    raw = nifti_bytes(nifti2=True)
    struct.pack_into("<8q", raw, 16, 3, 2**62, 2**62, 2**62, 1, 1, 1, 1)
    f = root / "huge2.nii"
    f.write_bytes(bytes(raw))
    return Built(read_runs(f, root, "info", "convert"), ("huge2.nii",))


@case("nifti_complex_voxels", "readers", "refuse", "NIfTI with complex64 voxels", fuzz="nii")
def _(root: Path) -> Built:
    f = root / "complex.nii"
    f.write_bytes(bytes(nifti_bytes(data=np.ones((4, 5, 6), np.complex64))))
    return Built(read_runs(f, root, "convert"), ("complex.nii", "complex"))


@case("nifti_pixdim_zero", "readers", "warn_or_refuse", "NIfTI with pixdim 0 (not a 1 mm 'header' spacing)",
      fuzz="nii")
def _(root: Path) -> Built:
    raw = nifti_bytes()
    struct.pack_into("<3f", raw, 80, 0.0, 0.0, 0.0)
    struct.pack_into("<h", raw, 252, 0)  # qform_code 0: the pixdim is the only spacing
    struct.pack_into("<h", raw, 254, 0)  # sform_code 0
    f = root / "pixdim0.nii"
    f.write_bytes(bytes(raw))
    return Built(read_runs(f, root, "convert"), ("pixdim", "spacing"))


@case("npz_bomb", "readers", "refuse", "a 4 MB .npz that inflates to 3.5 GB", isolate=True)
def _(root: Path) -> Built:
    stream, crc, size = raw_deflate_zeros(npy_header((3584, 1024, 1024)), 3584)
    f = root / "bomb.npz"
    zip_one(f, "voxels.npy", stream, crc=crc, size=size)
    return Built(read_runs(f, root, "info", "convert"), ("bomb.npz",))


@case("npz_bad_header", "readers", "refuse", "a .npz member whose .npy header does not parse", fuzz="npz")
def _(root: Path) -> Built:
    f = root / "header.npz"
    zip_one(f, "voxels.npy", npy_header((), text="{'descr': '<f4', 'fortran_order': False, 'shape': (4, 5") +
            bytes(80))
    return Built(read_runs(f, root, "info", "convert"), ("header.npz",))


@case("npz_nan_voxels", "readers", "refuse", "NaN voxels in a .npz", fuzz="npz")
def _(root: Path) -> Built:
    a = np.ones((4, 5, 6), np.float32)
    a[1, 2, 3] = np.nan
    f = root / "nan.npz"
    np.savez(f, voxels=a)
    return Built(read_runs(f, root, "convert"), ("nan.npz", "NaN"))


@case("nrrd_nan_voxels", "readers", "refuse", "NaN voxels in a .nrrd", fuzz="itk")
def _(root: Path) -> Built:
    a = np.ones((4, 5, 6), "<f4")
    a[1, 2, 3] = np.nan
    f = root / "nan.nrrd"
    f.write_bytes(b"NRRD0004\ntype: float\ndimension: 3\nsizes: 6 5 4\nspacings: 1 1 1\nencoding: raw\n"
                  b"endian: little\n\n" + a.tobytes())
    return Built(read_runs(f, root, "convert"), ("nan.nrrd", "NaN"))


@case("tiff_nan_voxels", "readers", "refuse", "NaN pixels in a float TIFF", fuzz="raster")
def _(root: Path) -> Built:
    from PIL import Image as PILImage

    a = np.ones((6, 7), np.float32)
    a[2, 3] = np.nan
    f = root / "nan.tif"
    PILImage.fromarray(a, mode="F").save(f)
    return Built(read_runs(f, root, "convert"), ("nan.tif", "NaN"))


@case("tiff_multipage_bomb", "readers", "refuse", "a multi-page TIFF of 256 pages of 4096x4096 (4 GB)",
      isolate=True)
def _(root: Path) -> Built:
    f = root / "pages.tif"
    tiff_pages(f, 256, 4096, 4096)
    return Built([["convert", str(f), str(root / "out.nii.gz")],
                  ["analyze", str(f), "-o", str(root / "out")]], ("pages.tif",))


def _png_zeros(path: Path, w: int, h: int) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = zlib.compress(bytes((w + 1) * h), 9)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
    return path


@case("png_12000_squared", "readers", "ok_or_refuse", "measure on a 12000x12000 PNG stays within 2 GB",
      isolate=True)
def _(root: Path) -> Built:
    f = _png_zeros(root / "big.png", 12000, 12000)
    lab = _png_zeros(root / "big_labels.png", 12000, 12000)
    return Built([["measure", str(f), str(lab), "--json", str(root / "m.json")]], ("big.png", "big_labels.png"))
