"""NRRD/MHA (SimpleITK), PNG/JPEG/TIFF (Pillow) and NPZ readers and writers."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image as PILImage

from medimg.core import Image, ImageReadError, ImageWriteError, InvalidParameterError, Kind
from medimg.io.itk_formats import read_itk, write_itk
from medimg.io.npz import load_medmnist, read_npz, write_npz
from medimg.io.raster import read_raster, write_raster
from medimg.io.sitk_bridge import from_sitk
from medimg.testing import label_phantom, phantom, require_data


def _assert_same(a: Image, b: Image, *, atol_mm: float = 1e-6) -> None:
    assert a.shape == b.shape
    assert a.geometry.is_close(b.geometry, atol_mm=atol_mm, atol_direction=1e-9), a.geometry.differences(
        b.geometry, atol_mm=atol_mm, atol_direction=1e-9)
    np.testing.assert_array_equal(np.asarray(a.voxels), np.asarray(b.voxels))


def _names_file(exc: pytest.ExceptionInfo, path) -> None:
    assert exc.value.path == str(path)
    assert str(path) in str(exc.value)


# ==== NRRD / MetaImage ========================================================================================
@pytest.mark.parametrize("ext", [".nrrd", ".nhdr", ".mha", ".mhd"])
@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32, np.float64])
def test_itk_round_trip(tmp_path, ext, dtype):
    img = phantom((6, 9, 11), dtype=dtype)
    path = tmp_path / f"x{ext}"
    write_itk(img, path)
    out = read_itk(path)
    _assert_same(out, img)
    assert out.dtype == img.dtype
    assert out.metadata["source_format"] == ("nrrd" if ext in (".nrrd", ".nhdr") else "mha")
    assert out.metadata["spacing_source"] == "header"


@pytest.mark.parametrize("ext", [".nrrd", ".mha"])
def test_itk_vector_image_to_channels(tmp_path, ext):
    img = phantom((5, 6, 7), channels=3, dtype=np.float32)
    write_itk(img, tmp_path / f"v{ext}")
    out = read_itk(tmp_path / f"v{ext}", kind="probability")
    _assert_same(out, img)
    assert out.kind == Kind.PROBABILITY


@pytest.mark.parametrize("oblique", [True, False])
def test_itk_2d_round_trip_keeps_plane(tmp_path, oblique):
    img = phantom((1, 9, 11), oblique=oblique)
    write_itk(img, tmp_path / "s.mha")
    out = read_itk(tmp_path / "s.mha")
    assert out.is_2d
    _assert_same(out, img)


def test_itk_bool_written_as_uint8(tmp_path):
    mask = label_phantom((4, 5, 6))
    mask = mask.replace(voxels=mask.voxels > 0)
    write_itk(mask, tmp_path / "m.nrrd")
    out = read_itk(tmp_path / "m.nrrd", kind="label")
    np.testing.assert_array_equal(out.voxels, mask.voxels.astype(np.uint8))
    assert out.kind == Kind.LABEL


def test_itk_matches_simpleitk_reader(tmp_path):
    img = phantom((6, 9, 11))
    write_itk(img, tmp_path / "x.nrrd")
    _assert_same(read_itk(tmp_path / "x.nrrd"), from_sitk(sitk.ReadImage(str(tmp_path / "x.nrrd"))))


@pytest.mark.realdata
def test_itk_real_2d_mha():
    path = require_data("registration_2d_ct_itkelastix", "examples", "data", "CT_2D_head_fixed.mha")
    img = read_itk(path)
    assert img.shape == (1, 1, 256, 256)
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    np.testing.assert_array_equal(img.voxels[0, 0], ref)


@pytest.mark.parametrize("name", ["bad.nrrd", "bad.mha", "bad.nhdr", "bad.mhd"])
def test_itk_random_bytes(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(1).bytes(500))
    with pytest.raises(ImageReadError) as exc:
        read_itk(path)
    _names_file(exc, path)


def test_itk_truncated_mha(tmp_path):
    good = tmp_path / "good.mha"
    write_itk(phantom((6, 9, 11), dtype=np.float32), good)
    raw = good.read_bytes()
    path = tmp_path / "cut.mha"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ImageReadError) as exc:
        read_itk(path)
    _names_file(exc, path)


def test_itk_empty_file(tmp_path):
    path = tmp_path / "empty.nrrd"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError) as exc:
        read_itk(path)
    _names_file(exc, path)


def test_itk_write_wrong_extension(tmp_path):
    with pytest.raises(ImageWriteError) as exc:
        write_itk(phantom((3, 4, 5)), tmp_path / "x.png")
    _names_file(exc, tmp_path / "x.png")


# ==== PNG / JPEG / TIFF =======================================================================================
def _rng():
    return np.random.default_rng(7)


@pytest.mark.parametrize("ext", [".png", ".tif", ".tiff"])
@pytest.mark.parametrize(
    "array",
    [
        _rng().integers(0, 256, (20, 30)).astype(np.uint8),
        _rng().integers(0, 65536, (20, 30)).astype(np.uint16),
        _rng().integers(0, 256, (3, 1, 20, 30)).astype(np.uint8),
        _rng().integers(0, 256, (4, 1, 20, 30)).astype(np.uint8),
        _rng().integers(0, 2, (20, 30)).astype(bool),
    ],
    ids=["uint8", "uint16", "rgb", "rgba", "bool"],
)
def test_raster_lossless_round_trip(tmp_path, ext, array):
    img = Image.from_array(array)
    path = tmp_path / f"x{ext}"
    write_raster(img, path)
    out = read_raster(path, spacing=(0.5, 0.25))
    assert out.dtype == img.dtype
    np.testing.assert_array_equal(out.voxels, img.voxels)
    assert out.spacing == (0.5, 0.25, 1.0)
    assert out.metadata["spacing_source"] == "user"
    assert out.metadata["source_format"] == ("png" if ext == ".png" else "tiff")


def test_jpeg_round_trip_is_close(tmp_path):
    yy, xx = np.mgrid[0:32, 0:48]
    arr = (xx * 4 + yy * 2).astype(np.uint8)
    write_raster(Image.from_array(arr), tmp_path / "x.jpg")
    out = read_raster(tmp_path / "x.jpg")
    assert out.metadata["source_format"] == "jpeg"
    assert out.dtype == np.uint8 and out.shape == (1, 1, 32, 48)
    assert np.abs(out.voxels[0, 0].astype(int) - arr).max() <= 4


def test_default_spacing_recorded_not_warned(tmp_path, caplog):
    """The 1 mm stand-in is recorded; the reader does not warn (the caller knows whether it applies a spacing
    later, and measurements switch to pixel units), issue 12 item 4."""
    write_raster(Image.from_array(np.zeros((4, 5), np.uint8)), tmp_path / "x.png")
    with caplog.at_level(logging.WARNING, logger="medimg.io.raster"):
        a = read_raster(tmp_path / "x.png")
    assert a.spacing == (1.0, 1.0, 1.0)
    assert a.metadata["spacing_source"] == "default_1mm"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_opaque_alpha_dropped(tmp_path):
    rgba = np.dstack([_rng().integers(0, 256, (10, 12, 3)), np.full((10, 12), 255)]).astype(np.uint8)
    PILImage.fromarray(rgba).save(tmp_path / "a.png")
    out = read_raster(tmp_path / "a.png")
    assert out.shape == (3, 1, 10, 12)
    np.testing.assert_array_equal(np.moveaxis(out.voxels[:, 0], 0, -1), rgba[..., :3])


def test_palette_png_label_keeps_indices(tmp_path):
    idx = _rng().integers(0, 4, (10, 12)).astype(np.uint8)
    pal = PILImage.frombytes("P", (12, 10), idx.tobytes())
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 12))
    pal.save(tmp_path / "p.png")
    lab = read_raster(tmp_path / "p.png", kind="label")
    np.testing.assert_array_equal(lab.voxels[0, 0], idx)
    assert read_raster(tmp_path / "p.png").shape == (3, 1, 10, 12)


def test_multipage_tiff_is_3d(tmp_path):
    pages = [_rng().integers(0, 65536, (8, 9)).astype(np.uint16) + i for i in range(4)]
    frames = [PILImage.fromarray(p) for p in pages]
    frames[0].save(tmp_path / "m.tif", save_all=True, append_images=frames[1:])
    out = read_raster(tmp_path / "m.tif", spacing=(0.5, 0.5, 2.0))
    assert out.shape == (1, 4, 8, 9) and out.dtype == np.uint16
    np.testing.assert_array_equal(out.voxels[0], np.stack(pages))
    assert out.spacing == (0.5, 0.5, 2.0)


def test_multipage_tiff_different_sizes_is_an_error(tmp_path):
    a = PILImage.fromarray(np.zeros((8, 9), np.uint8))
    b = PILImage.fromarray(np.zeros((4, 4), np.uint8))
    a.save(tmp_path / "m.tif", save_all=True, append_images=[b])
    with pytest.raises(ImageReadError, match="differ") as exc:
        read_raster(tmp_path / "m.tif")
    _names_file(exc, tmp_path / "m.tif")


@pytest.mark.realdata
def test_real_png_uint16_instance_labels():
    root = require_data("nuclei_dsb2018", "labels")
    path = min(root.glob("*.png"))
    lab = read_raster(path, kind="label")
    assert lab.dtype == np.uint16 and lab.is_2d and lab.n_channels == 1
    np.testing.assert_array_equal(lab.voxels[0, 0], np.asarray(PILImage.open(path)))
    assert lab.voxels.max() > 1


@pytest.mark.realdata
def test_real_jpeg_rgb_and_hc18_png():
    jpg = min(require_data("blood_cells_bccd", "JPEGImages").glob("*.jpg"))
    img = read_raster(jpg, spacing=(0.1, 0.1))
    assert img.shape == (3, 1, 480, 640) and img.dtype == np.uint8
    png = min(require_data("fetal_head_hc18", "images").glob("*.png"))
    us = read_raster(png)
    assert us.n_channels == 1 and us.spatial_shape == (1, 540, 800)


def test_raster_wrong_content(tmp_path):
    path = tmp_path / "fake.png"
    path.write_bytes(b"<html>not an image</html>" * 10)
    with pytest.raises(ImageReadError) as exc:
        read_raster(path)
    _names_file(exc, path)
    assert exc.value.__cause__ is not None


def test_raster_truncated(tmp_path):
    good = tmp_path / "good.png"
    write_raster(Image.from_array(_rng().integers(0, 256, (64, 64)).astype(np.uint8)), good)
    raw = good.read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ImageReadError) as exc:
        read_raster(path)
    _names_file(exc, path)


def test_raster_empty_file(tmp_path):
    path = tmp_path / "e.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError):
        read_raster(path)


def test_raster_write_refuses_3d(tmp_path):
    with pytest.raises(ImageWriteError, match="slice") as exc:
        write_raster(phantom((3, 4, 5), dtype=np.uint8), tmp_path / "x.png")
    _names_file(exc, tmp_path / "x.png")


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.int32])
def test_raster_write_refuses_other_dtypes(tmp_path, dtype):
    with pytest.raises(ImageWriteError, match="normalise"):
        write_raster(Image.from_array(np.zeros((4, 5), dtype)), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_jpeg_refuses_labels_and_uint16(tmp_path):
    lab = Image.from_array(np.zeros((4, 5), np.uint8), kind="label")
    with pytest.raises(ImageWriteError, match="lossy"):
        write_raster(lab, tmp_path / "x.jpg")
    with pytest.raises(ImageWriteError):
        write_raster(Image.from_array(np.zeros((4, 5), np.uint16)), tmp_path / "x.jpg")


def test_raster_bad_spacing(tmp_path):
    write_raster(Image.from_array(np.zeros((4, 5), np.uint8)), tmp_path / "x.png")
    with pytest.raises(InvalidParameterError):
        read_raster(tmp_path / "x.png", spacing=(0.0, 1.0))


# ==== NPZ =====================================================================================================
@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32, np.float64, bool])
def test_npz_round_trip_exact(tmp_path, dtype):
    img = phantom((5, 6, 7), dtype=dtype, channels=2)
    img = img.derive(img.voxels, operation="identity", params={"n": 1}).with_metadata(
        series_uid="1.2.3", keep_identifiers=True, not_json=object())  # identifiers kept only when opted in
    write_npz(img, tmp_path / "x.npz")
    out = read_npz(tmp_path / "x.npz")
    assert out.geometry == img.geometry  # exact, not just close
    assert out.dtype == img.dtype
    np.testing.assert_array_equal(out.voxels, img.voxels)
    assert out.metadata["series_uid"] == "1.2.3" and "not_json" not in out.metadata
    assert out.metadata["source_format"] == "npz"
    assert [op.name for op in out.history] == ["identity"]


def test_npz_keeps_label_kind(tmp_path):
    lab = label_phantom((4, 5, 6))
    write_npz(lab, tmp_path / "l.npz")
    assert read_npz(tmp_path / "l.npz").kind == Kind.LABEL


def test_npz_generic_single_array(tmp_path):
    arr = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    np.savez(tmp_path / "g.npz", volume=arr)
    out = read_npz(tmp_path / "g.npz", spacing=(0.5, 0.5, 2.0))
    np.testing.assert_array_equal(out.voxels[0], arr)
    assert out.spacing == (0.5, 0.5, 2.0) and out.metadata["spacing_source"] == "user"
    default = read_npz(tmp_path / "g.npz")
    assert default.metadata["spacing_source"] == "default_1mm"


def test_npz_several_arrays_need_key(tmp_path):
    np.savez(tmp_path / "g.npz", a=np.zeros((3, 4)), b=np.ones((5, 6, 7)))
    with pytest.raises(InvalidParameterError, match="a .*b") as exc:
        read_npz(tmp_path / "g.npz")
    assert "key" in str(exc.value)
    assert read_npz(tmp_path / "g.npz", key="b").shape == (1, 5, 6, 7)
    assert read_npz(tmp_path / "g.npz", key="b", index=1).shape == (1, 1, 6, 7)


@pytest.mark.realdata
def test_npz_medmnist_real():
    path = require_data("adrenalmnist3d", "adrenalmnist3d_64_trainval.npz")
    with pytest.raises(InvalidParameterError, match="train_images.*1188"):
        read_npz(path)
    with pytest.raises(InvalidParameterError, match="index"):
        read_npz(path, key="val_images")
    img = read_npz(path, key="val_images", index=5)
    assert img.shape == (1, 64, 64, 64) and img.dtype == np.uint8
    assert img.metadata["medmnist_split"] == "val" and img.metadata["medmnist_index"] == 5
    with np.load(path) as ref:
        np.testing.assert_array_equal(img.voxels[0], ref["val_images"][5])
        assert img.metadata["class_label"] == ref["val_labels"][5].tolist()
    splits = load_medmnist(path)
    assert set(splits) == {"train", "val"}
    assert splits["train"][0].shape == (1188, 64, 64, 64) and splits["train"][1].shape == (1188, 1)


def test_npz_medmnist_2d_rgb(tmp_path):
    imgs = _rng().integers(0, 256, (4, 28, 28, 3)).astype(np.uint8)
    np.savez(tmp_path / "m.npz", train_images=imgs, train_labels=np.arange(4)[:, None],
             test_images=imgs[:2], test_labels=np.arange(2)[:, None])
    out = read_npz(tmp_path / "m.npz", key="train", index=3)
    assert out.shape == (3, 1, 28, 28)
    np.testing.assert_array_equal(np.moveaxis(out.voxels[:, 0], 0, -1), imgs[3])
    assert out.metadata["class_label"] == [3]
    assert set(load_medmnist(tmp_path / "m.npz")) == {"train", "test"}


@pytest.mark.realdata
def test_npz_voxelmorph_real():
    path = require_data("brain_t1_labels_voxelmorph", "data", "test_scan.npz")
    img = read_npz(path, key="seg", kind="label")
    assert img.spatial_shape == (160, 192, 224) and img.kind == Kind.LABEL


def test_npz_no_arrays(tmp_path):
    np.savez(tmp_path / "e.npz")
    with pytest.raises(ImageReadError, match="no arrays") as exc:
        read_npz(tmp_path / "e.npz")
    _names_file(exc, tmp_path / "e.npz")


def test_npz_random_bytes_and_truncated(tmp_path):
    path = tmp_path / "r.npz"
    path.write_bytes(np.random.default_rng(2).bytes(300))
    with pytest.raises(ImageReadError) as exc:
        read_npz(path)
    _names_file(exc, path)
    write_npz(phantom((6, 9, 11), dtype=np.float32), tmp_path / "good.npz")
    raw = (tmp_path / "good.npz").read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ImageReadError) as exc:
        read_npz(cut)
    _names_file(exc, cut)


def test_npz_not_medmnist(tmp_path):
    np.savez(tmp_path / "g.npz", a=np.zeros((3, 4)))
    with pytest.raises(ImageReadError, match="MedMNIST"):
        load_medmnist(tmp_path / "g.npz")


def test_npz_write_wrong_extension(tmp_path):
    with pytest.raises(ImageWriteError):
        write_npz(phantom((3, 4, 5)), tmp_path / "x.npy")
