"""Deterministic preprocessing operations: window, normalise, resample, reorient, crop/pad, filters, bias field.

Every operation is a pure function ``op(image, *, options) -> Image`` that leaves its input alone and records
itself in the returned image's history. Label maps are never interpolated linearly nor filtered.
"""

from medimg.preprocess.bias import n4_bias_correction
from medimg.preprocess.filters import (
    anisotropic_diffusion,
    clahe,
    estimate_noise_sigma,
    gaussian,
    median,
    nl_means,
)
from medimg.preprocess.intensity import WINDOW_PRESETS, normalize, window
from medimg.preprocess.spatial import (
    INTERPOLATIONS,
    crop,
    crop_to_foreground,
    pad_to_shape,
    reorient,
    resample,
    resample_to,
)

__all__ = [
    "INTERPOLATIONS",
    "WINDOW_PRESETS",
    "anisotropic_diffusion",
    "clahe",
    "crop",
    "crop_to_foreground",
    "estimate_noise_sigma",
    "gaussian",
    "median",
    "n4_bias_correction",
    "nl_means",
    "normalize",
    "pad_to_shape",
    "reorient",
    "resample",
    "resample_to",
    "window",
]
