"""Intensity operations: CT windowing and normalisation.

Both return float32 images and record themselves in the history. Nothing here changes the voxel grid.
HU stay HU until one of these named operations changes them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from medimg.core.checks import mask_array, require_finite, require_intensity
from medimg.core.enums import Modality
from medimg.core.errors import InvalidParameterError
from medimg.core.image import Image

__all__ = ["WINDOW_PRESETS", "normalize", "window"]

logger = logging.getLogger(__name__)

#: CT window presets in HU as ``name -> (level, width)``.
#: Source: Radiopaedia, "Windowing (CT)", https://radiopaedia.org/articles/windowing-ct (typical values:
#: brain W:80 L:40; subdural W:130-300 L:50-100; lungs W:1500 L:-600; mediastinum W:350 L:50;
#: bone W:1800 L:400; soft tissue/abdomen W:350-400 L:20-60; liver W:150 L:30) and the common
#: PACS presets (subdural L:75 W:215, liver L:60 W:160, abdomen L:50 W:400) which lie inside those ranges.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "abdomen": (50.0, 400.0),
    "liver": (60.0, 160.0),
}

_NORMALIZE_METHODS = ("zscore", "percentile", "minmax")


def window(
    image: Image,
    *,
    level: float | None = None,
    width: float | None = None,
    preset: str | None = None,
    output: str = "unit",
    force: bool = False,
) -> Image:
    """Clip intensities to a window ``[level - width/2, level + width/2]``.

    Args:
        image: intensity image (C, Z, Y, X), HU for CT presets.
        level, width: window centre and width in image units (HU for CT); give both, or a ``preset``.
        preset: a name from :data:`WINDOW_PRESETS` (HU). Only for CT: an image whose metadata ``modality``
            is not "CT" (or is missing) raises unless ``force=True``.
        output: "unit" maps the window to [0, 1]; "hu" keeps the clipped values in the original units.
        force: allow a HU preset on an image not recorded as CT.

    Returns:
        A float32 image on the same grid.

    Raises:
        InvalidParameterError: unknown preset, missing/invalid level or width, label image, non-CT preset use.

    Example:
        >>> img = Image.from_array(np.array([[-1000, 0, 40, 80, 2000]], np.int16), metadata={"modality": "CT"})
        >>> window(img, preset="brain").array.ravel().tolist()
        [0.0, 0.0, 0.5, 1.0, 1.0]
    """
    require_intensity(image, "window")
    if output not in ("unit", "hu"):
        raise InvalidParameterError(
            "unknown window output", parameter="output", expected="'unit' or 'hu'", found=repr(output),
            fix="use output='unit' for [0, 1] or output='hu' for clipped HU",
        )
    if preset is not None:
        if level is not None or width is not None:
            raise InvalidParameterError(
                "both a preset and level/width given", parameter="preset", expected="a preset or level+width",
                found=f"preset={preset!r}, level={level}, width={width}", fix="give only one of them",
            )
        key = str(preset).strip().lower()
        if key not in WINDOW_PRESETS:
            raise InvalidParameterError(
                "unknown window preset", parameter="preset", expected=", ".join(WINDOW_PRESETS),
                found=repr(preset), fix="pick one of the presets or give level= and width= in HU",
            )
        modality = Modality.parse(image.metadata.get("modality"))
        if modality != Modality.CT and not force:
            raise InvalidParameterError(
                "HU window presets apply only to CT", parameter="preset", expected="an image with modality CT",
                found=f"modality {image.metadata.get('modality')!r}",
                fix="give level= and width= in this image's units, set metadata modality='CT' if it is CT, "
                "or pass force=True (CLI: --modality CT)",
            )
        level, width = WINDOW_PRESETS[key]
        preset = key
    if level is None or width is None:
        raise InvalidParameterError(
            "window needs a level and a width", parameter="level" if level is None else "width",
            expected="both level and width, or a preset", found=f"level={level}, width={width}",
            fix="e.g. window(image, level=40, width=80) or window(image, preset='brain')",
        )
    level, width = float(level), float(width)
    if not np.isfinite(level) or not np.isfinite(width) or width <= 0:
        raise InvalidParameterError(
            "invalid window", parameter="width" if np.isfinite(level) else "level",
            expected="finite level and width > 0", found=f"level={level}, width={width}",
            fix="give a positive window width",
        )
    require_finite(image.voxels, "window")
    lo, hi = level - width / 2.0, level + width / 2.0
    vox = np.clip(image.voxels.astype(np.float64), lo, hi)
    if output == "unit":
        vox = (vox - lo) / width
    params: dict[str, Any] = {"level": level, "width": width, "preset": preset, "output": output}
    if force:
        params["force"] = True
    return image.derive(vox.astype(np.float32), operation="window", params=params)


def _check_pair(value: Sequence[float], name: str, lo: float = -np.inf, hi: float = np.inf) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(
            "expected two numbers", parameter=name, expected="(low, high)", found=repr(value),
            fix=f"give {name} as a pair of numbers",
        ) from exc
    if not (np.isfinite(a) and np.isfinite(b) and lo <= a < b <= hi):
        raise InvalidParameterError(
            "invalid range", parameter=name, expected=f"low < high within [{lo}, {hi}]", found=(a, b),
            fix=f"give {name} as (low, high) with low < high",
        )
    return a, b


def normalize(
    image: Image,
    *,
    method: str = "zscore",
    mask: Image | np.ndarray | None = None,
    percentiles: tuple[float, float] = (0.5, 99.5),
    out_range: tuple[float, float] = (0.0, 1.0),
    per_channel: bool = True,
) -> Image:
    """Normalise intensities with statistics taken inside ``mask`` (every voxel by default).

    Methods:
        * "zscore": ``(x - mean) / std``.
        * "minmax": linear map of [min, max] to ``out_range``.
        * "percentile": clip to the given percentiles, then map them linearly to ``out_range``.

    The statistics come from the voxels inside the mask, the mapping is applied to every voxel.
    A constant image (std or range 0) gives a defined result: zeros for "zscore", ``out_range[0]`` otherwise.

    Args:
        image: intensity image (C, Z, Y, X).
        method: "zscore", "percentile" or "minmax".
        mask: optional (Z, Y, X) array or single-channel Image on the same grid; non-zero = use.
        percentiles: (low, high) percentiles in [0, 100] for "percentile".
        out_range: target range for "minmax"/"percentile", e.g. (0, 1) or (-1, 1).
        per_channel: statistics per channel (default) or over all channels together.

    Returns:
        A float32 image on the same grid.

    Raises:
        InvalidParameterError: unknown method, bad ranges, empty/mismatched mask, NaN voxels, label image.

    Example:
        >>> img = Image.from_array(np.array([[0.0, 5.0, 10.0]]))
        >>> normalize(img, method="minmax").array.ravel().tolist()
        [0.0, 0.5, 1.0]
    """
    require_intensity(image, "normalize")
    if method not in _NORMALIZE_METHODS:
        raise InvalidParameterError(
            "unknown normalisation method", parameter="method", expected=", ".join(_NORMALIZE_METHODS),
            found=repr(method), fix="pick one of the listed methods",
        )
    p_lo, p_hi = _check_pair(percentiles, "percentiles", 0.0, 100.0)
    o_lo, o_hi = _check_pair(out_range, "out_range")
    require_finite(image.voxels, "normalize")
    m = mask_array(image, mask)
    vox = image.voxels.astype(np.float64)
    groups = [vox[c : c + 1] for c in range(vox.shape[0])] if per_channel else [vox]
    out = []
    stats = []
    for g in groups:
        sample = g[:, m] if m is not None else g.reshape(g.shape[0], -1)
        sample = sample.ravel()
        if method == "zscore":
            mean, std = float(sample.mean()), float(sample.std())
            res = (g - mean) / std if std > 0 else np.zeros_like(g)
            stats.append({"mean": mean, "std": std})
        else:
            if method == "minmax":
                a, b = float(sample.min()), float(sample.max())
            else:
                a, b = (float(v) for v in np.percentile(sample, [p_lo, p_hi]))
            if b > a:
                res = (np.clip(g, a, b) - a) / (b - a) * (o_hi - o_lo) + o_lo
            else:
                res = np.full_like(g, o_lo)
            stats.append({"low": a, "high": b})
        out.append(res)
    result = np.concatenate(out, axis=0).astype(np.float32)
    params: dict[str, Any] = {"method": method, "per_channel": per_channel, "masked": m is not None,
                              "stats": stats}
    if method == "percentile":
        params["percentiles"] = (p_lo, p_hi)
    if method != "zscore":
        params["out_range"] = (o_lo, o_hi)
    return image.derive(result, operation="normalize", params=params)
