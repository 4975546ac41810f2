"""NIfTI reader/writer: round trips, RAS<->LPS, voxel order, agreement with SimpleITK, real files, errors."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medimg.core import Image, ImageReadError, ImageWriteError, Kind
from medimg.io.nifti import read_nifti, write_nifti
from medimg.io.sitk_bridge import from_sitk
from medimg.testing import label_phantom, phantom, require_data

TS = ("ct_mr_samples_totalsegmentator", "tests", "reference_files")


def _assert_same(a: Image, b: Image, *, atol_mm: float = 1e-4) -> None:
    assert a.shape == b.shape
    assert a.geometry.is_close(b.geometry, atol_mm=atol_mm, atol_direction=1e-6), a.geometry.differences(
        b.geometry, atol_mm=atol_mm, atol_direction=1e-6)
    np.testing.assert_array_equal(np.asarray(a.voxels), np.asarray(b.voxels))


def _names_file(exc: pytest.ExceptionInfo, path) -> None:
    assert exc.value.path == str(path)
    assert str(path) in str(exc.value)


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.int32, np.float32, np.float64])
def test_round_trip_keeps_geometry_and_voxels(tmp_path, ext, dtype):
    img = phantom((6, 9, 11), dtype=dtype)
    path = tmp_path / f"x{ext}"
    write_nifti(img, path)
    out = read_nifti(path)
    _assert_same(out, img)
    assert out.dtype == img.dtype
    assert out.metadata["source_format"] == "nifti"
    assert out.metadata["source_path"] == str(path)
    assert out.metadata["spacing_source"] == "header"
    assert out.kind == Kind.INTENSITY


def test_written_header_has_sform_qform_and_units(tmp_path):
    img = phantom((4, 5, 6))
    path = tmp_path / "x.nii.gz"
    write_nifti(img, path)
    hdr = nib.load(path).header
    assert int(hdr["sform_code"]) == 1 and int(hdr["qform_code"]) == 1
    assert hdr.get_xyzt_units() == ("mm", "sec")
    np.testing.assert_allclose(hdr.get_sform(), hdr.get_qform(), atol=1e-4)


def test_lps_ras_flip_and_voxel_order(tmp_path):
    """A NIfTI written by nibabel with a known RAS affine reads as its LPS counterpart, axes transposed."""
    data = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)  # (i, j, k) = (x, y, z)
    ras = np.diag([2.0, 3.0, 4.0, 1.0])
    ras[:3, 3] = (10.0, 20.0, 30.0)
    path = tmp_path / "known.nii"
    nimg = nib.Nifti1Image(data, ras)
    nimg.set_sform(ras, code=1)
    nib.save(nimg, path)
    img = read_nifti(path)
    assert img.shape == (1, 4, 3, 2)
    assert img.spacing == (2.0, 3.0, 4.0)
    assert img.geometry.origin == (-10.0, -20.0, 30.0)
    np.testing.assert_array_equal(img.geometry.direction_matrix, np.diag([-1.0, -1.0, 1.0]))
    assert img.geometry.orientation == "RAS"
    for i, j, k in [(0, 0, 0), (1, 2, 3), (1, 0, 2)]:
        assert img.voxels[0, k, j, i] == data[i, j, k]
    # physical point of voxel (1, 2, 3) agrees with nibabel's after the flip
    ras_point = nib.affines.apply_affine(ras, (1, 2, 3))
    np.testing.assert_allclose(img.geometry.index_to_physical((1, 2, 3)), ras_point * [-1, -1, 1])


def test_multichannel_writes_4d(tmp_path):
    img = phantom((5, 6, 7), channels=3, dtype=np.float32)
    path = tmp_path / "x.nii.gz"
    write_nifti(img, path)
    assert nib.load(path).shape == (7, 6, 5, 3)
    _assert_same(read_nifti(path), img)


def test_2d_round_trip(tmp_path):
    img = phantom((1, 9, 11))
    path = tmp_path / "x.nii.gz"
    write_nifti(img, path)
    out = read_nifti(path)
    assert out.is_2d
    _assert_same(out, img)


def test_labels_are_integer_and_keep_kind(tmp_path):
    lab = label_phantom((6, 9, 11))
    path = tmp_path / "lab.nii.gz"
    write_nifti(lab.replace(voxels=lab.voxels.astype(np.float32)), path)
    assert np.issubdtype(nib.load(path).get_data_dtype(), np.integer)
    out = read_nifti(path)
    assert out.kind == Kind.LABEL
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out.voxels, lab.voxels)
    assert read_nifti(path, kind="intensity").kind == Kind.INTENSITY


def test_non_integer_label_refused(tmp_path):
    lab = label_phantom((4, 5, 6))
    bad = lab.replace(voxels=lab.voxels.astype(np.float32) + 0.5)
    with pytest.raises(ImageWriteError, match="non-integer"):
        write_nifti(bad, tmp_path / "bad.nii.gz")


def test_bool_and_int64_written_as_smaller_types(tmp_path):
    img = phantom((4, 5, 6), dtype=np.int64)
    write_nifti(img, tmp_path / "a.nii")
    out = read_nifti(tmp_path / "a.nii")
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out.voxels, img.voxels)
    mask = img.replace(voxels=img.voxels > 0)
    write_nifti(mask, tmp_path / "m.nii")
    np.testing.assert_array_equal(read_nifti(tmp_path / "m.nii").voxels, mask.voxels.astype(np.uint8))


def test_simpleitk_reads_our_files_identically(tmp_path):
    img = phantom((6, 9, 11), dtype=np.float32)
    path = tmp_path / "x.nii.gz"
    write_nifti(img, path)
    _assert_same(from_sitk(sitk.ReadImage(str(path))), img)


def test_qform_used_when_sform_code_zero(tmp_path):
    img = phantom((4, 5, 6))
    path = tmp_path / "q.nii"
    write_nifti(img, path)
    nimg = nib.load(path)
    nimg.set_sform(np.eye(4), code=0)
    nib.save(nimg, tmp_path / "q2.nii")
    out = read_nifti(tmp_path / "q2.nii")
    assert out.metadata["affine_source"] == "qform"
    assert out.geometry.is_close(img.geometry, atol_mm=1e-4, atol_direction=1e-5)


def _sheared(tmp_path, amount: float, qform: bool):
    data = np.zeros((4, 5, 6), np.int16)
    aff = np.eye(4)
    aff[0, 1] = amount
    nimg = nib.Nifti1Image(data, aff)
    nimg.set_sform(aff, code=1)
    nimg.set_qform(np.eye(4), code=1 if qform else 0)
    path = tmp_path / f"shear_{amount}_{qform}.nii"
    nib.save(nimg, path)
    return path


def test_sheared_sform_falls_back_to_qform(tmp_path):
    out = read_nifti(_sheared(tmp_path, 0.3, qform=True))
    assert out.metadata["affine_source"] == "qform"


def test_tiny_shear_is_projected(tmp_path):
    out = read_nifti(_sheared(tmp_path, 5e-4, qform=False))
    assert out.metadata["affine_source"] == "sform_projected"


def test_large_shear_without_qform_is_an_error(tmp_path):
    path = _sheared(tmp_path, 0.3, qform=False)
    with pytest.raises(ImageReadError, match="shear") as exc:
        read_nifti(path)
    _names_file(exc, path)


def test_scaling_is_applied(tmp_path):
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    nimg = nib.Nifti1Image(data, np.eye(4))
    nimg.header.set_slope_inter(2.0, -5.0)
    path = tmp_path / "scaled.nii"
    nib.save(nimg, path)
    out = read_nifti(path)
    np.testing.assert_allclose(out.voxels[0], (data * 2.0 - 5.0).transpose(2, 1, 0))


# ---- real files, compared with SimpleITK's NIfTI reader ------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.parametrize(
    "parts",
    [
        ("hippocampus", "imagesTr", "hippocampus_001_0000.nii.gz"),
        ("hippocampus", "labelsTr", "hippocampus_001.nii.gz"),
        TS + ("example_ct.nii.gz",),
        TS + ("example_ct_sm.nii.gz",),
        TS + ("example_mr_sm.nii.gz",),
    ],
    ids=lambda parts: parts[-1],
)
def test_real_files_match_simpleitk(parts):
    path = require_data(*parts)
    ours = read_nifti(path)
    ref = from_sitk(sitk.ReadImage(str(path)))
    assert ours.geometry.space.value == "LPS"
    _assert_same(ours, ref, atol_mm=1e-3)


@pytest.mark.realdata
def test_real_ct_round_trip(tmp_path):
    path = require_data(*TS, "example_ct.nii.gz")
    img = read_nifti(path)
    assert img.spatial_shape == (112, 101, 122)
    assert img.spacing == pytest.approx((3.0, 3.0, 3.0))
    write_nifti(img, tmp_path / "ct.nii.gz")
    _assert_same(read_nifti(tmp_path / "ct.nii.gz"), img)


# ---- errors --------------------------------------------------------------------------------------------------
def test_empty_file(tmp_path):
    path = tmp_path / "empty.nii.gz"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError) as exc:
        read_nifti(path)
    _names_file(exc, path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError) as exc:
        read_nifti(tmp_path / "nope.nii")
    _names_file(exc, tmp_path / "nope.nii")


@pytest.mark.parametrize("name", ["random.nii.gz", "random.nii"])
def test_random_bytes(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(ImageReadError) as exc:
        read_nifti(path)
    _names_file(exc, path)


def test_gzip_of_random_bytes(tmp_path):
    path = tmp_path / "notnifti.nii.gz"
    path.write_bytes(gzip.compress(b"hello" * 100))
    with pytest.raises(ImageReadError, match="not a NIfTI") as exc:
        read_nifti(path)
    _names_file(exc, path)


def test_truncated_nii_gz(tmp_path):
    good = tmp_path / "good.nii.gz"
    write_nifti(phantom((6, 9, 11), dtype=np.float32, seed=3), good)
    raw = good.read_bytes()
    path = tmp_path / "cut.nii.gz"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ImageReadError, match="truncated") as exc:
        read_nifti(path)
    _names_file(exc, path)
    assert exc.value.__cause__ is not None


def test_truncated_uncompressed_nii(tmp_path):
    good = tmp_path / "good.nii"
    write_nifti(phantom((6, 9, 11)), good)
    raw = good.read_bytes()
    path = tmp_path / "cut.nii"
    path.write_bytes(raw[: len(raw) - 500])
    with pytest.raises(ImageReadError) as exc:
        read_nifti(path)
    _names_file(exc, path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_voxels(tmp_path, bad):
    data = np.zeros((4, 5, 6), np.float32)
    data[0, 0, :3] = bad
    path = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    with pytest.raises(ImageReadError, match="3 NaN/Inf voxels") as exc:
        read_nifti(path)
    _names_file(exc, path)
    assert "Fix:" in str(exc.value)


def test_5d_is_an_error(tmp_path):
    path = tmp_path / "five.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((3, 4, 5, 2, 3), np.float32), np.eye(4)), path)
    with pytest.raises(ImageReadError, match="2-4 dims") as exc:
        read_nifti(path)
    _names_file(exc, path)


def test_5d_with_trailing_singletons_reads(tmp_path):
    path = tmp_path / "five1.nii"
    nib.save(nib.Nifti1Image(np.ones((3, 4, 5, 1, 1), np.float32), np.eye(4)), path)
    assert read_nifti(path).shape == (1, 5, 4, 3)


def test_write_wrong_extension(tmp_path):
    with pytest.raises(ImageWriteError, match="extension") as exc:
        write_nifti(phantom((3, 4, 5)), tmp_path / "x.nrrd")
    _names_file(exc, tmp_path / "x.nrrd")


def test_rgb24_nifti_reads_as_three_channels():
    """TotalSegmentator's spine report is an RGB24 NIfTI; it was refused as 'unsupported voxel type'."""
    path = require_data(*TS, "spine_report", "example_ct_report", "spine_report.nii.gz")
    img = read_nifti(path)
    ref = np.asanyarray(nib.load(path).dataobj)  # structured (R, G, B) uint8, x-y-z order
    assert img.shape == (3, 1) + ref.shape[1::-1] and img.dtype == np.uint8
    for c, name in enumerate("RGB"):
        np.testing.assert_array_equal(img.voxels[c, 0], ref[name][:, :, 0].T)
