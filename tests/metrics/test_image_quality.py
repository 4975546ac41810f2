"""PSNR and SSIM against scikit-image on a real CT slab."""

import numpy as np
import pytest

from medimg.core import Image
from medimg.metrics import image_quality as iq

skm = pytest.importorskip("skimage.metrics")


@pytest.fixture(scope="module")
def ct(shared_data):
    nib = pytest.importorskip("nibabel")
    path = shared_data / "ct_mr_samples_totalsegmentator" / "tests" / "reference_files" / "example_ct_sm.nii.gz"
    if not path.exists():
        pytest.skip("CT sample missing")
    vol = np.transpose(np.asarray(nib.load(str(path)).dataobj)).astype(np.float64)
    mid = vol.shape[0] // 2
    return np.clip(vol[max(mid - 10, 0):mid + 10], -1000, 1000)


@pytest.mark.realdata
def test_psnr_ssim_match_skimage_2d_and_3d(ct):
    rng = np.random.default_rng(0)
    noisy = ct + rng.normal(0, 30, ct.shape)
    assert iq.psnr(noisy, ct, data_range=2000) == pytest.approx(skm.peak_signal_noise_ratio(ct, noisy,
                                                                                             data_range=2000))
    kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=2000)
    assert iq.ssim(noisy[10], ct[10], data_range=2000) == pytest.approx(skm.structural_similarity(ct[10], noisy[10],
                                                                                                 **kw), rel=1e-6)
    assert iq.ssim(noisy, ct, data_range=2000) == pytest.approx(skm.structural_similarity(ct, noisy, **kw), rel=1e-6)
    img = Image.from_array(ct[10:11])
    assert iq.ssim(img, img) == pytest.approx(1.0)


def test_identical_and_default_range():
    a = np.linspace(0, 1, 400).reshape(20, 20)
    assert iq.psnr(a, a) == np.inf
    assert iq.psnr(a + 0.1, a) == pytest.approx(20.0)
