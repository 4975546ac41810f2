"""Denoising and contrast filters for intensity images (never for label maps).

Each filter works channel by channel, keeps the voxel grid and returns float32, apart from :func:`median`, which keeps
the dtype. Sizes in mm respect anisotropic spacing; sizes in voxels say so in their name. Per-axis values are
given x first like ``Geometry.spacing``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk

from medimg.core.checks import per_axis_xyz, require_finite, require_intensity
from medimg.core.errors import InvalidParameterError
from medimg.core.image import Image

__all__ = ["anisotropic_diffusion", "clahe", "estimate_noise_sigma", "gaussian", "median", "nl_means"]


def _to_float(array: np.ndarray) -> np.ndarray:
    return array if np.issubdtype(array.dtype, np.floating) else array.astype(np.float32)


def _channel_sitk(array_zyx: np.ndarray, image: Image) -> sitk.Image:
    """One channel as a 2D (Z == 1) or 3D SimpleITK image with the image's spacing (direction is irrelevant)."""
    geo = image.geometry
    if image.is_2d:
        img = sitk.GetImageFromArray(np.ascontiguousarray(array_zyx[0]))
        img.SetSpacing(geo.spacing[:2])
    else:
        img = sitk.GetImageFromArray(np.ascontiguousarray(array_zyx))
        img.SetSpacing(geo.spacing)
    return img


def _from_channel_sitk(img: sitk.Image, image: Image) -> np.ndarray:
    arr = sitk.GetArrayFromImage(img)
    return arr[None] if image.is_2d else arr


def gaussian(image: Image, *, sigma_mm: float | Sequence[float]) -> Image:
    """Gaussian smoothing with a standard deviation in mm along each index axis.

    Computed with ``scipy.ndimage.gaussian_filter`` using ``sigma_vox = sigma_mm / spacing`` per axis, border mode
    "nearest" and truncation at 4 sigma (the tests check it against SimpleITK's Gaussian filters). A 2D image is
    smoothed in-plane only. A zero sigma leaves that axis untouched.

    Args:
        image: intensity image (C, Z, Y, X).
        sigma_mm: one number or (sx, sy, sz) in mm, >= 0.

    Returns:
        A float image (float32 for integer input) on the same grid.

    Example:
        >>> img = Image.from_array(np.zeros((3, 4, 5), np.int16))
        >>> gaussian(img, sigma_mm=1.0).dtype
        dtype('float32')
    """
    from scipy import ndimage

    require_intensity(image, "gaussian")
    sigma = per_axis_xyz(sigma_mm, "sigma_mm", allow_zero=True)
    sigma_vox = [s / sp for s, sp in zip(sigma, image.geometry.spacing)]
    if image.is_2d:
        sigma_vox[2] = 0.0
    sigma_zyx = tuple(sigma_vox[::-1])
    vox = _to_float(image.voxels)
    out = np.stack([ndimage.gaussian_filter(vox[c], sigma_zyx, mode="nearest", truncate=4.0)
                    for c in range(vox.shape[0])])
    return image.derive(out, operation="gaussian", params={"sigma_mm": sigma, "sigma_vox": tuple(sigma_vox)})


def median(image: Image, *, radius_vox: int | Sequence[int] = 1) -> Image:
    """Median filter over a box of ``2 * radius_vox + 1`` voxels per axis (SimpleITK ``Median``).

    Borders repeat the edge voxel (the same as ``scipy.ndimage.median_filter(mode="nearest")``).

    Args:
        image: intensity image (C, Z, Y, X).
        radius_vox: one integer or (rx, ry, rz) in voxels, >= 0; the z radius is ignored for 2D.

    Returns:
        An image of the same dtype on the same grid.
    """
    require_intensity(image, "median")
    radius = [int(r) for r in per_axis_xyz(radius_vox, "radius_vox", allow_zero=True, integer=True)]
    if image.is_2d:
        radius[2] = 0
    vox = image.voxels
    work = vox.astype(np.uint8) if vox.dtype == bool else vox
    out = []
    for c in range(vox.shape[0]):
        res = sitk.Median(_channel_sitk(work[c], image), radius[:2] if image.is_2d else radius)
        out.append(_from_channel_sitk(res, image))
    return image.derive(np.stack(out).astype(vox.dtype), operation="median",
                        params={"radius_vox": tuple(radius)})


def estimate_noise_sigma(array: np.ndarray) -> float:
    """Robust standard deviation of Gaussian noise in a 2D/3D array (Donoho & Johnstone's wavelet MAD).

    Uses ``skimage.restoration.estimate_sigma`` (Daubechies-2 wavelet, PyWavelets).
    """
    from skimage.restoration import estimate_sigma

    return float(estimate_sigma(np.asarray(array, dtype=np.float64), channel_axis=None))


def nl_means(
    image: Image,
    *,
    h: float | None = None,
    patch_size: int = 5,
    patch_distance: int = 6,
    per_slice: bool = False,
    fast_mode: bool = True,
) -> Image:
    """Non-local means denoising (``skimage.restoration.denoise_nl_means``), in the image's own units.

    Patches are cubes of voxels (spacing is not taken into account). When ``h`` is None the noise standard
    deviation is estimated with :func:`estimate_noise_sigma` (wavelet MAD, as ``skimage.restoration.estimate_sigma``)
    and ``h = 0.8 * sigma`` (scikit-image's recommendation); the estimated sigma is also passed to the filter.

    Args:
        image: intensity image (C, Z, Y, X).
        h: filter strength in image units (> 0), or None to estimate it.
        patch_size: patch side in voxels (>= 1).
        patch_distance: search radius in voxels (>= 1).
        per_slice: denoise each axial slice in 2D instead of the volume in 3D.
        fast_mode: scikit-image's fast (uniform-weight) patch distance.

    Returns:
        A float32 image on the same grid; ``params`` record the ``h`` and ``sigma`` used.
    """
    from skimage.restoration import denoise_nl_means

    require_intensity(image, "nl_means")
    for name, v in (("patch_size", patch_size), ("patch_distance", patch_distance)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise InvalidParameterError(
                "invalid patch parameter", parameter=name, expected="an integer >= 1", found=repr(v),
                fix=f"e.g. {name}=5",
            )
    if h is not None and not (np.isfinite(h) and h > 0):
        raise InvalidParameterError(
            "invalid filter strength", parameter="h", expected="a number > 0 or None", found=h,
            fix="pass h=None to estimate it from the noise",
        )
    require_finite(image.voxels, "nl_means")
    vox = image.voxels.astype(np.float64)
    out = []
    used: list[dict[str, Any]] = []
    for c in range(vox.shape[0]):
        stacks = [vox[c, z] for z in range(vox.shape[1])] if (per_slice or image.is_2d) else [vox[c]]
        res = []
        for arr in stacks:
            sigma = estimate_noise_sigma(arr)
            strength = 0.8 * sigma if h is None else float(h)
            if strength <= 0:
                res.append(arr.copy())
                used.append({"h": 0.0, "sigma": sigma})
                continue
            res.append(denoise_nl_means(arr, h=strength, sigma=sigma, patch_size=patch_size,
                                        patch_distance=patch_distance, fast_mode=fast_mode, channel_axis=None))
            used.append({"h": strength, "sigma": sigma})
        out.append(np.stack(res) if (per_slice or image.is_2d) else res[0])
    params = {"h": h, "patch_size": patch_size, "patch_distance": patch_distance, "per_slice": per_slice,
              "fast_mode": fast_mode, "used": used if len(used) <= 8 else used[:8]}
    return image.derive(np.stack(out).astype(np.float32), operation="nl_means", params=params)


def stable_time_step(image: Image) -> float:
    """Largest stable explicit time step for ITK curvature/gradient diffusion: min spacing / 2^(N + 1)."""
    ndim = 2 if image.is_2d else 3
    spacing = image.geometry.spacing[:ndim]
    return float(min(spacing) / 2.0 ** (ndim + 1))


def anisotropic_diffusion(
    image: Image,
    *,
    iterations: int = 5,
    conductance: float = 1.0,
    time_step: float | None = None,
) -> Image:
    """Edge-preserving smoothing with SimpleITK ``CurvatureAnisotropicDiffusion`` (in float32).

    Args:
        image: intensity image (C, Z, Y, X).
        iterations: number of diffusion steps (>= 1).
        conductance: ITK conductance parameter (> 0); lower preserves edges more strongly.
        time_step: explicit time step; by default the largest stable one for the spacing,
            ``min(spacing) / 2^(N + 1)`` (N = 2 or 3); larger values raise.

    Returns:
        A float32 image on the same grid.
    """
    require_intensity(image, "anisotropic_diffusion")
    if not isinstance(iterations, (int, np.integer)) or isinstance(iterations, bool) or iterations < 1:
        raise InvalidParameterError(
            "invalid number of iterations", parameter="iterations", expected="an integer >= 1",
            found=repr(iterations), fix="e.g. iterations=5",
        )
    if not (np.isfinite(conductance) and conductance > 0):
        raise InvalidParameterError(
            "invalid conductance", parameter="conductance", expected="a number > 0", found=conductance,
            fix="e.g. conductance=1.0",
        )
    limit = stable_time_step(image)
    step = limit if time_step is None else float(time_step)
    if not (np.isfinite(step) and 0 < step <= limit * (1 + 1e-9)):
        raise InvalidParameterError(
            "unstable diffusion time step", parameter="time_step", expected=f"0 < time_step <= {limit:.6g}",
            found=time_step, fix="leave time_step=None to use the largest stable step for this spacing",
        )
    require_finite(image.voxels, "anisotropic_diffusion")
    vox = image.voxels.astype(np.float32)
    out = []
    for c in range(vox.shape[0]):
        res = sitk.CurvatureAnisotropicDiffusion(_channel_sitk(vox[c], image), timeStep=step,
                                                 conductanceParameter=float(conductance),
                                                 conductanceScalingUpdateInterval=1,
                                                 numberOfIterations=int(iterations))
        out.append(_from_channel_sitk(res, image))
    params = {"iterations": int(iterations), "conductance": float(conductance), "time_step": step}
    return image.derive(np.stack(out).astype(np.float32), operation="anisotropic_diffusion", params=params)


def clahe(
    image: Image,
    *,
    clip_limit: float = 0.01,
    kernel_size: int | Sequence[int] | None = None,
) -> Image:
    """Contrast-limited adaptive histogram equalisation (``skimage.exposure.equalize_adapthist``).

    Each channel is scaled to [0, 1] by its own min and max, equalised (in 2D or 3D), and mapped back to
    [min, max]: the output has the value range of the input (in its units), but the values between are
    redistributed, so they are no longer calibrated (e.g. no longer HU). A constant channel is returned as is.

    Args:
        image: intensity image (C, Z, Y, X).
        clip_limit: scikit-image clip limit in (0, 1]; higher gives more contrast.
        kernel_size: contextual region size in voxels, one integer or (kx, ky, kz) x first; default
            scikit-image's 1/8 of each dimension.

    Returns:
        A float32 image on the same grid.
    """
    from skimage.exposure import equalize_adapthist

    require_intensity(image, "clahe")
    if not (np.isfinite(clip_limit) and 0 < clip_limit <= 1):
        raise InvalidParameterError(
            "invalid clip limit", parameter="clip_limit", expected="0 < clip_limit <= 1", found=clip_limit,
            fix="e.g. clip_limit=0.01",
        )
    ks: tuple[int, ...] | None = None
    if kernel_size is not None:
        k = [int(v) for v in per_axis_xyz(kernel_size, "kernel_size", integer=True)]
        ks = (k[1], k[0]) if image.is_2d else (k[2], k[1], k[0])
    require_finite(image.voxels, "clahe")
    vox = image.voxels.astype(np.float64)
    out = []
    for c in range(vox.shape[0]):
        arr = vox[c, 0] if image.is_2d else vox[c]
        lo, hi = float(arr.min()), float(arr.max())
        if hi <= lo:
            res = arr.copy()
        else:
            eq = equalize_adapthist((arr - lo) / (hi - lo), kernel_size=ks, clip_limit=clip_limit)
            res = eq * (hi - lo) + lo
        out.append(res[None] if image.is_2d else res)
    params = {"clip_limit": float(clip_limit), "kernel_size": ks}
    return image.derive(np.stack(out).astype(np.float32), operation="clahe", params=params)
