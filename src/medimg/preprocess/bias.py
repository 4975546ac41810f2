"""Bias-field (intensity non-uniformity) correction with N4 (SimpleITK ``N4BiasFieldCorrectionImageFilter``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from medimg.core.checks import mask_array, require_finite, require_intensity
from medimg.core.errors import InvalidParameterError
from medimg.core.image import Image
from medimg.io.sitk_bridge import to_sitk

__all__ = ["n4_bias_correction"]


def n4_bias_correction(
    image: Image,
    *,
    mask: Image | np.ndarray | None = None,
    shrink_factor: int = 2,
    iterations: Sequence[int] = (50, 50, 30),
    return_field: bool = False,
) -> Image:
    """Correct a smooth multiplicative bias field with N4 (Tustison et al., IEEE TMI 2010).

    N4 is fitted on a copy shrunk by ``shrink_factor`` (fast); the log bias field is then evaluated on the full
    grid (``GetLogBiasFieldAsImage``) and the image is divided by ``exp(log field)``. Voxels <= 0 are left out of
    the fit (N4 works on log intensities) but are divided like the others.

    Args:
        image: intensity image (C, Z, Y, X), e.g. MR; channels are corrected independently.
        mask: voxels to fit on, a (Z, Y, X) array or single-channel Image on the same grid; default an Otsu
            foreground mask of each channel.
        shrink_factor: integer downsampling factor for the fit (>= 1), capped at each axis size.
        iterations: maximum iterations per fitting level; the number of entries is the number of levels.
        return_field: return the estimated multiplicative bias field (same grid, float32) instead of the
            corrected image. The return type is an Image either way.

    Returns:
        The corrected image (float32), or the bias field when ``return_field`` is True.

    Raises:
        InvalidParameterError: label image, bad shrink factor/iterations, empty mask, NaN voxels.
    """
    require_intensity(image, "n4_bias_correction")
    if not isinstance(shrink_factor, (int, np.integer)) or isinstance(shrink_factor, bool) or shrink_factor < 1:
        raise InvalidParameterError(
            "invalid shrink factor", parameter="shrink_factor", expected="an integer >= 1",
            found=repr(shrink_factor), fix="e.g. shrink_factor=2 (1 = no shrinking)",
        )
    try:
        levels = [int(v) for v in iterations]
        ok = len(levels) > 0 and all(v >= 1 and float(v) == w for v, w in zip(levels, iterations))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InvalidParameterError(
            "invalid iterations", parameter="iterations", expected="a non-empty list of integers >= 1",
            found=repr(iterations), fix="e.g. iterations=(50, 50, 30) for three fitting levels",
        )
    require_finite(image.voxels, "n4_bias_correction")
    user_mask = mask_array(image, mask)
    corrected, fields = [], []
    for c in range(image.n_channels):
        full = sitk.Cast(to_sitk(image, channel=c), sitk.sitkFloat32)
        arr = sitk.GetArrayFromImage(full)
        if user_mask is None:
            fit = sitk.GetArrayFromImage(sitk.OtsuThreshold(full, 0, 1, 200)) > 0
        else:
            fit = user_mask[0] if image.is_2d else user_mask
        fit = fit & (arr > 0)
        if not fit.any():
            raise InvalidParameterError(
                "no positive voxels inside the mask", parameter="mask",
                expected="foreground voxels with intensity > 0", found=f"none in channel {c}",
                fix="pass a mask over the object, or check the image is not all <= 0",
            )
        mask_img = sitk.GetImageFromArray(fit.astype(np.uint8))
        mask_img.CopyInformation(full)
        factors = [int(min(shrink_factor, n)) for n in full.GetSize()]
        small = sitk.Shrink(full, factors)
        small_mask = sitk.Shrink(mask_img, factors)
        n4 = sitk.N4BiasFieldCorrectionImageFilter()
        n4.SetMaximumNumberOfIterations(levels)
        n4.Execute(small, small_mask)
        log_field = sitk.GetArrayFromImage(n4.GetLogBiasFieldAsImage(full)).astype(np.float64)
        field = np.exp(log_field)
        corrected.append((arr / field).astype(np.float32))
        fields.append(field.astype(np.float32))
    result = np.stack(fields if return_field else corrected)
    if image.is_2d:
        result = result[:, None]
    params = {"shrink_factor": int(shrink_factor), "iterations": tuple(levels), "masked": user_mask is not None,
              "return_field": bool(return_field)}
    return image.derive(result, operation="n4_bias_correction", params=params)
