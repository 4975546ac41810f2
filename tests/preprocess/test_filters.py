"""Tests for medimg.preprocess.filters, each checked against SimpleITK / scipy / scikit-image doing the same."""

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from medimg.core import Image, InvalidParameterError
from medimg.io.sitk_bridge import to_sitk
from medimg.preprocess import anisotropic_diffusion, clahe, gaussian, median, nl_means
from medimg.preprocess.filters import estimate_noise_sigma
from medimg.testing import label_phantom, phantom

INNER = (slice(None), slice(3, -3), slice(3, -3), slice(3, -3))


@pytest.fixture(scope="module")
def img():
    return phantom((16, 20, 24), spacing=(0.8, 0.9, 2.0), dtype=np.float32)


def _flat_noise_std(image):
    """Noise level inside the soft-tissue shell of the phantom (truth 40 HU), away from its edges."""
    lab = label_phantom(image.spatial_shape, spacing=image.geometry.spacing).voxels[0]
    shell = ndimage.binary_erosion(lab == 1, iterations=1)
    return float(image.voxels[0][shell].std())


# ---- gaussian ---------------------------------------------------------------------------------------------------
def test_gaussian_matches_scipy_with_sigma_over_spacing(img):
    out = gaussian(img, sigma_mm=(1.6, 1.8, 2.0))
    ref = ndimage.gaussian_filter(img.voxels[0], (1.0, 2.0, 2.0), mode="nearest")
    np.testing.assert_allclose(out.voxels[0], ref, rtol=1e-5, atol=1e-3)
    assert out.history[-1].params["sigma_vox"] == [2.0, 2.0, 1.0]


def test_gaussian_matches_sitk_gaussians_in_mm(img):
    sigma = 1.5
    out = gaussian(img, sigma_mm=sigma).voxels[0]
    rec = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(to_sitk(img), [sigma] * 3))
    disc = sitk.GetArrayFromImage(sitk.DiscreteGaussian(to_sitk(img), [sigma**2] * 3, 64, 0.001, True))
    dyn = float(np.ptp(img.voxels))
    assert np.max(np.abs(out[INNER[1:]] - rec[INNER[1:]])) < 0.02 * dyn
    assert np.max(np.abs(out[INNER[1:]] - disc[INNER[1:]])) < 0.01 * dyn


def test_gaussian_types_and_2d():
    out = gaussian(phantom(), sigma_mm=1.0)
    assert out.dtype == np.float32
    img2d = phantom((1, 20, 24), dtype=np.float64)
    out2d = gaussian(img2d, sigma_mm=(0.8, 0.9, 5.0))
    ref = ndimage.gaussian_filter(img2d.voxels[0, 0], (1.0, 1.0), mode="nearest")
    np.testing.assert_allclose(out2d.voxels[0, 0], ref, atol=1e-9)
    assert out2d.dtype == np.float64


# ---- median -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("radius", [1, (1, 2, 1)])
def test_median_matches_scipy(radius):
    img = phantom()
    out = median(img, radius_vox=radius)
    r = (radius,) * 3 if isinstance(radius, int) else radius
    size = tuple(2 * v + 1 for v in r[::-1])
    ref = ndimage.median_filter(img.voxels[0], size=size, mode="nearest")
    np.testing.assert_array_equal(out.voxels[0], ref)
    assert out.dtype == img.dtype


def test_median_2d():
    img = phantom((1, 20, 24))
    out = median(img, radius_vox=2)
    np.testing.assert_array_equal(out.voxels[0, 0], ndimage.median_filter(img.voxels[0, 0], size=5, mode="nearest"))


# ---- non-local means --------------------------------------------------------------------------------------------
def test_nl_means_matches_skimage_and_denoises(img):
    from skimage.restoration import denoise_nl_means

    out = nl_means(img, patch_size=3, patch_distance=2)
    arr = img.voxels[0].astype(np.float64)
    sigma = estimate_noise_sigma(arr)
    assert out.history[-1].params["used"][0]["sigma"] == pytest.approx(sigma)
    ref = denoise_nl_means(arr, h=0.8 * sigma, sigma=sigma, patch_size=3, patch_distance=2, fast_mode=True)
    np.testing.assert_allclose(out.voxels[0], ref, rtol=1e-5, atol=1e-2)
    assert out.dtype == np.float32
    assert _flat_noise_std(out) < 0.8 * _flat_noise_std(img)


@pytest.mark.parametrize("shape", [(40, 48), (16, 20, 24)])
def test_noise_sigma_estimate(shape):
    noise = np.random.default_rng(1).normal(0, 7.0, size=shape)
    # the wavelet MAD estimator is biased low by ~10% on volumes this small
    assert estimate_noise_sigma(noise + 100) == pytest.approx(7.0, rel=0.15)
    from skimage.restoration import estimate_sigma

    assert estimate_noise_sigma(noise) == pytest.approx(estimate_sigma(noise))


def test_nl_means_per_slice(img):
    out = nl_means(img, h=8.0, patch_size=3, patch_distance=2, per_slice=True)
    assert out.shape == img.shape
    assert _flat_noise_std(out) < _flat_noise_std(img)
    with pytest.raises(InvalidParameterError) as info:
        nl_means(img, h=-1)
    assert info.value.parameter == "h"
    with pytest.raises(InvalidParameterError) as info:
        nl_means(img, patch_size=0)
    assert info.value.parameter == "patch_size"


# ---- anisotropic diffusion --------------------------------------------------------------------------------------
def test_anisotropic_diffusion_matches_sitk_and_keeps_edges(img):
    out = anisotropic_diffusion(img, iterations=5, conductance=1.0)
    step = min(img.geometry.spacing) / 16
    assert out.history[-1].params["time_step"] == pytest.approx(step)
    ref = sitk.CurvatureAnisotropicDiffusion(to_sitk(img), step, 1.0, 1, 5)
    np.testing.assert_allclose(out.voxels[0], sitk.GetArrayFromImage(ref), rtol=1e-5, atol=1e-3)
    assert out.dtype == np.float32
    assert _flat_noise_std(out) < _flat_noise_std(img)
    # the air / tissue step (~1000 HU) survives
    assert np.percentile(out.voxels, 99) - np.percentile(out.voxels, 1) > 900


def test_anisotropic_diffusion_invalid(img):
    with pytest.raises(InvalidParameterError) as info:
        anisotropic_diffusion(img, time_step=1.0)
    assert info.value.parameter == "time_step"
    with pytest.raises(InvalidParameterError) as info:
        anisotropic_diffusion(img, iterations=0)
    assert info.value.parameter == "iterations"
    with pytest.raises(InvalidParameterError) as info:
        anisotropic_diffusion(img, conductance=-1)
    assert info.value.parameter == "conductance"


# ---- CLAHE ------------------------------------------------------------------------------------------------------
def test_clahe_matches_skimage_in_original_range(img):
    from skimage.exposure import equalize_adapthist

    out = clahe(img, clip_limit=0.02, kernel_size=8)
    v = img.voxels[0].astype(np.float64)
    lo, hi = v.min(), v.max()
    ref = equalize_adapthist((v - lo) / (hi - lo), kernel_size=8, clip_limit=0.02) * (hi - lo) + lo
    np.testing.assert_allclose(out.voxels[0], ref, rtol=1e-5, atol=1e-2)
    assert out.dtype == np.float32
    assert out.voxels.min() >= lo - 1e-3 and out.voxels.max() <= hi + 1e-3


def test_clahe_2d_and_constant():
    from skimage.exposure import equalize_adapthist

    img2d = phantom((1, 32, 32), dtype=np.float32)
    out = clahe(img2d)
    v = img2d.voxels[0, 0].astype(np.float64)
    lo, hi = v.min(), v.max()
    np.testing.assert_allclose(out.voxels[0, 0], equalize_adapthist((v - lo) / (hi - lo), clip_limit=0.01)
                               * (hi - lo) + lo, atol=1e-2)
    const = Image.from_array(np.full((4, 8, 8), 3.0))
    np.testing.assert_array_equal(clahe(const).voxels, 3.0)
    with pytest.raises(InvalidParameterError) as info:
        clahe(img2d, clip_limit=0)
    assert info.value.parameter == "clip_limit"


# ---- common rules -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("op", "kwargs"),
    [
        (gaussian, {"sigma_mm": 1.0}),
        (median, {}),
        (nl_means, {}),
        (anisotropic_diffusion, {}),
        (clahe, {}),
    ],
)
def test_filters_refuse_labels_and_keep_input(op, kwargs):
    with pytest.raises(InvalidParameterError, match="label"):
        op(label_phantom(), **kwargs)
    small = phantom((6, 8, 10), dtype=np.float32)
    before = small.voxels.copy()
    out = op(small, **kwargs)
    np.testing.assert_array_equal(small.voxels, before)
    assert out.geometry == small.geometry and out.shape == small.shape
    assert len(out.history) == 1 and small.history == ()


def test_invalid_sizes():
    with pytest.raises(InvalidParameterError) as info:
        gaussian(phantom(), sigma_mm=-1)
    assert info.value.parameter == "sigma_mm"
    with pytest.raises(InvalidParameterError) as info:
        median(phantom(), radius_vox=1.5)
    assert info.value.parameter == "radius_vox"
