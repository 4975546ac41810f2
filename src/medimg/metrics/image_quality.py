"""Image quality metrics: PSNR and SSIM (2D or 3D), for enhancement, denoising and synthesis.

``data_range`` is the span of values the images could take (e.g. 4095 for 12-bit CT, 1.0 for [0, 1] images).
It is never guessed from the dtype: by default it is ``max - min`` of the *reference*, stated in the docstring
so that results can be compared. Inputs are Images or arrays of the same shape; nothing is rescaled.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from medimg.core.errors import GeometryMismatchError, InvalidParameterError
from medimg.metrics._inputs import as_spatial_array

__all__ = ["psnr", "ssim", "mse"]


def _pair(image: Any, reference: Any) -> tuple[np.ndarray, np.ndarray]:
    a, _ = as_spatial_array(image, name="image")
    b, _ = as_spatial_array(reference, name="reference")
    if a.shape != b.shape:
        raise GeometryMismatchError("image and reference differ in size", expected=f"shape {b.shape}",
                                    found=f"shape {a.shape}", fix="resample the image onto the reference grid")
    return a.astype(np.float64), b.astype(np.float64)


def _range(reference: np.ndarray, data_range: float | None) -> float:
    dr = float(reference.max() - reference.min()) if data_range is None else float(data_range)
    if not np.isfinite(dr) or dr <= 0:
        raise InvalidParameterError("invalid data range", parameter="data_range", expected="a positive number",
                                    found=dr, fix="give data_range, e.g. 1.0 for images in [0, 1]")
    return dr


def mse(image: Any, reference: Any) -> float:
    """Mean squared error."""
    a, b = _pair(image, reference)
    return float(np.mean((a - b) ** 2))


def psnr(image: Any, reference: Any, *, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB: 10 log10(data_range^2 / MSE); ``inf`` for identical images.

    >>> ref = np.linspace(0, 1, 16).reshape(4, 4)
    >>> round(psnr(ref + 0.01, ref, data_range=1.0), 6)
    40.0
    """
    a, b = _pair(image, reference)
    err = float(np.mean((a - b) ** 2))
    dr = _range(b, data_range)
    return float("inf") if err == 0 else float(10 * np.log10(dr**2 / err))


def ssim(image: Any, reference: Any, *, data_range: float | None = None, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03, return_map: bool = False) -> float | tuple[float, np.ndarray]:
    """Structural similarity (Wang et al. 2004) with a Gaussian window, in 2D or 3D.

    The local statistics use a Gaussian of ``sigma`` voxels truncated at 3.5 sigma, reflecting at the border,
    with population (not sample) covariances; the mean leaves out a border of (window - 1) / 2 voxels. This is
    ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``.

    Returns:
        mean SSIM, or (mean SSIM, SSIM map) with ``return_map=True``.
    """
    a, b = _pair(image, reference)
    dr = _range(b, data_range)
    c1, c2 = (k1 * dr) ** 2, (k2 * dr) ** 2

    def filt(x: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(x, sigma=sigma, truncate=3.5, mode="reflect")

    ux, uy = filt(a), filt(b)
    vx = filt(a * a) - ux * ux
    vy = filt(b * b) - uy * uy
    vxy = filt(a * b) - ux * uy
    smap = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    pad = (2 * int(3.5 * sigma + 0.5)) // 2
    if any(n <= 2 * pad for n in smap.shape):
        raise InvalidParameterError("image too small for the SSIM window", parameter="image",
                                    expected=f"every axis > {2 * pad} voxels", found=smap.shape,
                                    fix="use a smaller sigma")
    inner = smap[tuple(slice(pad, n - pad) for n in smap.shape)]
    mean = float(inner.mean())
    return (mean, smap) if return_map else mean
