"""medimg.io.dicom on real data: brain MRI series (oblique), a JPEG 2000 CT series, pydicom's test files."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file
from scipy.ndimage import map_coordinates

from medimg.core.errors import DicomError, ImageWriteError, SeriesSelectionError
from medimg.core.geometry import Geometry
from medimg.io.dicom import SeriesInfo, read_dicom, scan_dicom, write_dicom_series
from medimg.testing import phantom, require_data

CT_DIR = ("ct_mr_samples_totalsegmentator", "tests", "reference_files", "example_ct_dicom")
REF = ("ct_mr_samples_totalsegmentator", "tests", "reference_files")


@pytest.fixture(scope="module")
def study1() -> Path:
    return require_data("brain_mri_dicom", "Study1")


@pytest.fixture(scope="module")
def ct_dir() -> Path:
    return require_data(*CT_DIR)


@pytest.fixture(scope="module")
def ct_image(ct_dir):
    return read_dicom(ct_dir)


def _independent(folder: Path):
    """Geometry and values computed straight from pydicom tags (no medimg code)."""
    dss = [pydicom.dcmread(f) for f in sorted(folder.iterdir()) if f.is_file()]
    iop = np.array(dss[0].ImageOrientationPatient, float)
    r, c = iop[:3] / np.linalg.norm(iop[:3]), iop[3:] / np.linalg.norm(iop[3:])
    n = np.cross(r, c)
    proj = [float(np.array(d.ImagePositionPatient, float) @ n) for d in dss]
    dss = [d for _, d in sorted(zip(proj, dss), key=lambda t: t[0])]
    proj = sorted(proj)
    ps = [float(v) for v in dss[0].PixelSpacing]
    spacing = (ps[1], ps[0], (proj[-1] - proj[0]) / (len(proj) - 1))
    origin = np.array(dss[0].ImagePositionPatient, float)
    vals = np.stack([d.pixel_array * float(d.get("RescaleSlope", 1) or 1) + float(d.get("RescaleIntercept", 0) or 0)
                     for d in dss])
    return spacing, origin, np.column_stack([r, c, n]), vals


# ---- discovery and selection -------------------------------------------------------------------------------
def test_scan_study_lists_five_series(study1):
    series = scan_dicom(study1)
    assert len(series) == 5
    assert all(isinstance(s, SeriesInfo) for s in series)
    assert sorted(s.description for s in series) == sorted(["T1post", "T1pre_reg", "FLAIR_reg", "T2_reg", "HippoCrop"])
    for s in series:
        summary = s.summary()
        assert summary["n_files"] == s.n_files == s.n_frames
        assert not any(k in summary for k in ("patient_name", "patient_id", "birth_date", "accession"))
        ds = pydicom.dcmread(s.files[0], stop_before_pixels=True)
        assert str(ds.PatientID) not in str(summary.values())


def test_study_folder_needs_series_selection(study1):
    with pytest.raises(SeriesSelectionError) as info:
        read_dicom(study1)
    err = info.value
    assert len(err.series) == 5
    assert "--series <index or SeriesInstanceUID>" in str(err)
    assert str(study1) in str(err)
    for entry in err.series:
        assert {"index", "description", "modality", "size", "series_uid"} <= set(entry)
    assert "\n" not in str(err)


def test_series_by_index_and_uid_agree(study1):
    series = scan_dicom(study1)
    a = read_dicom(study1, series=2)
    b = read_dicom(study1, series=series[2].series_uid)
    assert a.metadata["series_uid"] == series[2].series_uid
    assert np.array_equal(a.voxels, b.voxels)
    with pytest.raises(SeriesSelectionError):
        read_dicom(study1, series=9)
    with pytest.raises(SeriesSelectionError):
        read_dicom(study1, series="1.2.3.4")


@pytest.mark.parametrize("index", range(5))
def test_brain_series_match_independent_reading_and_simpleitk(study1, index):
    info = scan_dicom(study1)[index]
    folder = info.files[0].parent
    img = read_dicom(folder)
    spacing, origin, direction, vals = _independent(folder)
    assert img.spatial_shape == vals.shape
    assert np.allclose(img.geometry.spacing, spacing, atol=1e-4)
    assert np.allclose(img.geometry.origin, origin, atol=1e-4)
    assert np.allclose(img.geometry.direction_matrix, direction, atol=1e-5)
    assert np.array_equal(img.array, vals.astype(img.dtype))
    assert img.metadata["modality"] == "MR"
    assert img.metadata["source_format"] == "dicom"
    assert img.metadata["series_description"] == info.description

    # SimpleITK (GDCM) agrees on these well-formed series.
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    ref = reader.Execute()
    assert np.allclose(img.geometry.spacing, ref.GetSpacing(), atol=1e-3)
    assert np.allclose(img.geometry.origin, ref.GetOrigin(), atol=1e-3)
    assert np.allclose(img.geometry.direction_matrix.ravel(), ref.GetDirection(), atol=1e-4)
    assert np.array_equal(img.array, sitk.GetArrayFromImage(ref))


def test_brain_oblique_geometry_kept(study1):
    img = read_dicom(study1, series=0)
    d = img.geometry.direction_matrix
    assert abs(d[1, 2]) > 0.2  # the slice normal is tilted: not an axis-aligned stack
    assert img.geometry.spacing[2] == pytest.approx(6.5, abs=1e-3)


# ---- the JPEG 2000 CT series ---------------------------------------------------------------------------------
def test_ct_jpeg2000_decodes_to_hu(ct_image, ct_dir):
    img = ct_image
    assert img.spatial_shape == (20, 512, 512)
    assert img.dtype == np.int16
    assert img.metadata["transfer_syntax"] == "1.2.840.10008.1.2.4.90"
    assert img.metadata["rescale"] == (1.0, -1024.0)
    assert img.metadata["window"] == (40.0, 300.0)
    assert img.metadata["spacing_source"] == "PixelSpacing"
    assert img.metadata["acquisition"]["kvp"] == 120.0
    assert img.geometry.is_close(Geometry(spacing=(0.9765625, 0.9765625, 2.0),
                                          origin=(-249.51171875, -437.51171875, -804.5)))
    # values = pydicom's own decoding with the rescale applied, in the order of the slice positions
    _, _, _, vals = _independent(ct_dir)
    assert np.array_equal(img.array, vals.astype(np.int16))
    assert img.array.min() >= -1024 and 1000 < img.array.max() < 3100


def test_ct_grid_matches_totalsegmentator_dicom_conversion(ct_image):
    """TotalSegmentator's segmentation of this very series lies on the same voxel grid (y flipped in its NIfTI)."""
    seg_img = nib.load(require_data(*REF, "example_seg_dicom.nii.gz"))
    lps = seg_img.affine.copy()
    lps[:2] *= -1  # RAS -> LPS
    corners = np.array(np.meshgrid([0, 511], [0, 511], [0, 19], indexing="ij")).reshape(3, -1).T
    phys = corners @ lps[:3, :3].T + lps[:3, 3]
    idx = ct_image.geometry.physical_to_index(phys)
    expected = corners.astype(float).copy()
    expected[:, 1] = 511 - expected[:, 1]
    assert np.allclose(idx, expected, atol=1e-4)
    # organ HU on the segmentation are plausible (independent check of decoding + rescale)
    seg = np.transpose(np.asarray(seg_img.dataobj), (2, 1, 0))[:, ::-1, :]
    hu = ct_image.array
    for label in (1, 5):  # spleen, liver (contrast-enhanced soft tissue)
        assert 30 < np.median(hu[seg == label]) < 150
    for label in (69, 70):  # humerus / bone
        assert np.median(hu[seg == label]) > 300
    assert np.median(hu[0, :20, :20]) < -900  # air outside the body


def test_ct_dicom_and_reference_nifti_do_not_overlap(ct_image):
    """example_ct.nii.gz is not this series: their physical extents are disjoint along z (LPS)."""
    ref = nib.load(require_data(*REF, "example_ct.nii.gz"))
    lps = ref.affine.copy()
    lps[:2] *= -1
    ijk = np.array(np.meshgrid(*[[0, n - 1] for n in ref.shape], indexing="ij")).reshape(3, -1).T
    ref_z = (ijk @ lps[:3, :3].T + lps[:3, 3])[:, 2]
    g = ct_image.geometry
    dcm_z = g.index_to_physical(np.array([[0, 0, 0], [511, 511, 19]]))[:, 2]
    assert ref_z.min() > dcm_z.max() + 500  # NIfTI z in [94, 427] mm, DICOM z in [-804.5, -766.5] mm
    # so sampling the DICOM volume at the NIfTI voxel centres finds no point inside it
    centres = np.array(np.meshgrid(*[np.arange(0, n, 8) for n in ref.shape], indexing="ij")).reshape(3, -1).T
    idx = g.physical_to_index(centres @ lps[:3, :3].T + lps[:3, 3])
    inside = np.all((idx >= 0) & (idx <= np.array([511, 511, 19])), axis=1)
    assert not inside.any()
    sampled = map_coordinates(ct_image.array.astype(float), idx[:, ::-1].T, order=1, cval=np.nan)
    assert np.isnan(sampled).all()


# ---- pydicom test files --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "JPEG-LL.dcm", "693_J2KR.dcm"])
def test_pydicom_single_files(name):
    path = get_testdata_file(name)
    ds = pydicom.dcmread(path)
    img = read_dicom(path)
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    expected = ds.pixel_array * slope + intercept
    assert img.shape == (1, 1) + expected.shape
    assert np.array_equal(img.array[0], expected)
    ps = [float(v) for v in ds.PixelSpacing]
    assert img.geometry.spacing[:2] == pytest.approx((ps[1], ps[0]))
    assert img.metadata["rescale"] == (slope, intercept)
    if "ImagePositionPatient" in ds:
        assert np.allclose(img.geometry.origin, [float(v) for v in ds.ImagePositionPatient])


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                  "MR_small_implicit.dcm", "MR_small_bigendian.dcm"])
def test_compressed_variants_equal_uncompressed(name):
    ref = read_dicom(get_testdata_file("MR_small.dcm"))
    img = read_dicom(get_testdata_file(name))
    assert np.array_equal(img.voxels, ref.voxels)
    assert img.geometry.is_close(ref.geometry)


def test_ct_small_is_hu():
    img = read_dicom(get_testdata_file("CT_small.dcm"))
    assert img.metadata["modality"] == "CT"
    assert img.metadata["rescale"] == (1.0, -1024.0)
    assert img.array.min() < -500 < 0 < img.array.max()


def test_enhanced_ct_multiframe():
    path = get_testdata_file("eCT_Supplemental.dcm")
    ds = pydicom.dcmread(path)
    img = read_dicom(path)
    assert img.shape == (1, 2, 512, 512)
    # frames sorted along the normal (0, 0, -1): z = -149 first, then -159
    assert np.allclose(img.geometry.origin, (99.5, -301.5, -149.0))
    assert np.allclose(img.geometry.direction_matrix, np.diag([-1.0, 1.0, -1.0]))
    assert img.geometry.spacing == pytest.approx((0.388672, 0.388672, 10.0))
    frames = ds.pixel_array.astype(float) - 1024.0  # PixelValueTransformationSequence: slope 1, intercept -1024
    assert np.array_equal(img.array, frames[::-1])
    assert img.metadata["rescale"] == (1.0, -1024.0)
    assert img.metadata["acquisition"]["slice_thickness"] == 10.0


def test_multiframe_without_pixel_spacing_needs_spacing():
    path = get_testdata_file("emri_small.dcm")
    with pytest.raises(DicomError, match="pixel spacing"):
        read_dicom(path)
    img = read_dicom(path, spacing=(0.5, 0.5, 3.0))
    assert img.shape == (1, 10, 64, 64)
    assert img.metadata["spacing_source"] == "user"
    assert img.geometry.spacing == pytest.approx((0.5, 0.5, 1.2))  # SpacingBetweenSlices from the file
    assert "geometry_note" in img.metadata
    assert np.array_equal(img.array, pydicom.dcmread(path).pixel_array)
    rle = read_dicom(get_testdata_file("emri_small_RLE.dcm"), spacing=(0.5, 0.5, 3.0))
    assert np.array_equal(rle.voxels, img.voxels)


@pytest.mark.parametrize("name", ["SC_rgb.dcm", "SC_ybr_full_uncompressed.dcm"])
def test_colour_images_have_three_channels(name):
    img = read_dicom(get_testdata_file(name))
    assert img.shape == (3, 1, 100, 100)
    assert img.metadata["photometric"] == "RGB"
    rgb = read_dicom(get_testdata_file("SC_rgb.dcm"))
    diff = np.abs(img.voxels.astype(int) - rgb.voxels.astype(int))
    assert diff.max() <= 8 and diff.mean() < 2  # YBR -> RGB conversion rounds; unconverted would be far off


def test_ultrasound_without_spacing_is_refused_then_read_with_spacing():
    path = get_testdata_file("US1_J2KR.dcm")
    with pytest.raises(DicomError, match="no pixel spacing") as info:
        read_dicom(path)
    assert "US1_J2KR.dcm" in str(info.value)
    img = read_dicom(path, spacing=(0.2, 0.2, 1.0))
    assert img.shape == (3, 1, 480, 640) and img.is_2d
    assert img.geometry.spacing == (0.2, 0.2, 1.0)


def test_dicomdir():
    path = Path(get_testdata_file("DICOMDIR"))
    series = scan_dicom(path)
    assert len(series) >= 10
    cr = [i for i, s in enumerate(series) if s.modality == "CR"]
    img = read_dicom(path, series=cr[0])
    assert img.is_2d and img.metadata["modality"] == "CR"
    # pydicom's DICOMDIR fixture keeps only a few slices of each CT series: the gaps are reported...
    routine = [i for i, s in enumerate(series) if s.description == "Routine Brain"][0]
    with pytest.raises(DicomError, match="slice gap"):
        read_dicom(path, series=routine)
    # ...and can be filled on request, which the history records
    filled = read_dicom(path, series=routine, on_gap="resample")
    assert filled.history[-1].name == "dicom_fill_slice_gaps"
    assert filled.dtype == np.float32


# ---- messy folders and zip archives --------------------------------------------------------------------------
def test_messy_folder_and_zip(study1, tmp_path):
    src = scan_dicom(study1)[4].files[0].parent  # HippoCrop, small
    messy = tmp_path / "messy"
    (messy / "nested" / "deeper").mkdir(parents=True)
    for i, f in enumerate(sorted(src.iterdir())):
        shutil.copy(f, messy / ("nested/deeper" if i % 2 else "nested") / f"img{i:03d}")  # no suffix
    (messy / "notes.txt").write_text("not dicom")
    (messy / ".DS_Store").write_bytes(b"\0\1\2" * 100)
    (messy / "nested" / "DICOMDIR").write_bytes(b"junk")
    (messy / "nested" / "thumb.png").write_bytes(b"\x89PNG....")
    direct = read_dicom(src)
    series = scan_dicom(messy)
    assert len(series) == 1 and series[0].n_files == len(list(src.iterdir()))
    assert np.array_equal(read_dicom(messy).voxels, direct.voxels)

    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in messy.rglob("*"):
            zf.write(f, f.relative_to(messy).as_posix())
    series = scan_dicom(archive)
    assert len(series) == 1
    assert all(str(f).startswith(str(archive)) for f in series[0].files)
    img = read_dicom(archive)
    assert np.array_equal(img.voxels, direct.voxels)
    assert img.geometry.is_close(direct.geometry)
    assert img.metadata["source_path"] == str(archive)


# ---- writing -------------------------------------------------------------------------------------------------
def test_write_round_trip_ct(ct_image, tmp_path):
    out = tmp_path / "ct_out"
    write_dicom_series(ct_image, out)
    files = sorted(out.iterdir())
    assert len(files) == 20
    ds = pydicom.dcmread(files[0])
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    back = read_dicom(out)
    assert back.geometry.is_close(ct_image.geometry, atol_mm=1e-3)
    assert np.array_equal(back.voxels, ct_image.voxels)
    assert back.metadata["series_uid"] != ct_image.metadata["series_uid"]
    # de-identified by default: new study and frame-of-reference UIDs, not linkable to the source
    assert back.metadata["frame_of_reference_uid"] != ct_image.metadata["frame_of_reference_uid"]
    assert back.metadata["modality"] == "CT"
    assert ds.SOPClassUID == pydicom.uid.CTImageStorage  # the source states it in its file meta only
    assert list(ds.ImageType[:2]) == ["DERIVED", "SECONDARY"] and ds.DerivationDescription


def test_write_keep_identifiers_keeps_study_and_frame_of_reference(ct_image, tmp_path):
    write_dicom_series(ct_image, tmp_path / "kept", keep_identifiers=True)
    back = read_dicom(tmp_path / "kept")
    assert back.metadata["frame_of_reference_uid"] == ct_image.metadata["frame_of_reference_uid"]
    assert back.metadata["series_uid"] != ct_image.metadata["series_uid"]


def test_write_round_trip_oblique_brain(study1, tmp_path):
    img = read_dicom(study1, series=3)
    write_dicom_series(img, tmp_path / "t2")
    back = read_dicom(tmp_path / "t2")
    assert back.geometry.is_close(img.geometry, atol_mm=1e-3)
    assert np.array_equal(back.voxels, img.voxels)
    assert back.metadata["study_uid"] != img.metadata["study_uid"]  # de-identified by default


def test_write_float_values_within_quantisation(ct_image, tmp_path):
    small = ct_image.derive(ct_image.voxels[:, :3].astype(np.float32) * 0.37 + 0.25, operation="scale")
    write_dicom_series(small, tmp_path / "f")
    back = read_dicom(tmp_path / "f")
    slope = back.metadata["rescale"][0]
    assert slope < 0.05
    assert np.abs(back.voxels - small.voxels).max() <= slope / 2 + 1e-3


def test_write_needs_template_and_single_channel(tmp_path):
    with pytest.raises(ImageWriteError, match="NIfTI"):
        write_dicom_series(phantom(), tmp_path / "x")
    template = read_dicom(get_testdata_file("CT_small.dcm")).metadata["dicom_template"]
    with pytest.raises(ImageWriteError, match="channel"):
        write_dicom_series(phantom(channels=2), tmp_path / "y", template=template)
    # a synthetic oblique phantom written with a template keeps its geometry
    ph = phantom()
    write_dicom_series(ph, tmp_path / "z", template=template)
    back = read_dicom(tmp_path / "z")
    assert back.geometry.is_close(ph.geometry, atol_mm=1e-3)
    assert np.array_equal(back.voxels, ph.voxels)


def test_write_round_trip_enhanced_and_2d(tmp_path):
    enhanced = read_dicom(get_testdata_file("eCT_Supplemental.dcm"))
    write_dicom_series(enhanced, tmp_path / "e")
    back = read_dicom(tmp_path / "e")
    assert back.geometry.is_close(enhanced.geometry)
    assert np.array_equal(back.voxels, enhanced.voxels)
    assert pydicom.dcmread(next((tmp_path / "e").iterdir())).SOPClassUID == pydicom.uid.CTImageStorage
    flat = read_dicom(get_testdata_file("CT_small.dcm"))
    write_dicom_series(flat, tmp_path / "2d")
    back = read_dicom(tmp_path / "2d")
    assert back.is_2d and np.array_equal(back.voxels, flat.voxels)
    assert back.geometry.is_close(flat.geometry)
