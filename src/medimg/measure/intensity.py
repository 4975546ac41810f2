"""Intensity statistics inside a mask: mean, std, min, max and percentiles, in the image's units.

Values are never rescaled: a CT image in HU gives HU. Keys carry the unit: ``mean_hu`` for CT
(``metadata["modality"] == "CT"``), ``mean_intensity`` otherwise; multi-channel images get one set per channel
with a ``_c<k>`` suffix. Non-finite voxels (NaN, inf) are left out and counted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medimg.core.enums import Modality
from medimg.core.image import Image

__all__ = ["intensity_unit", "intensity_stats", "STAT_NAMES"]

#: Statistic names in output order (percentiles use numpy's linear interpolation).
STAT_NAMES = ("mean", "std", "min", "max", "p5", "p25", "median", "p75", "p95")
_PERCENTILES = {"p5": 5.0, "p25": 25.0, "median": 50.0, "p75": 75.0, "p95": 95.0}


def intensity_unit(image: Image) -> str:
    """Key suffix for the image's values: "hu" for CT, "intensity" otherwise."""
    return "hu" if Modality.parse(image.metadata.get("modality")) == Modality.CT else "intensity"


def intensity_stats(image: Image, mask: np.ndarray) -> dict[str, Any]:
    """Statistics of ``image`` inside ``mask`` (Z, Y, X) on the same grid.

    Returns:
        ``{"mean_hu": ..., "std_hu": ..., "min_hu": ..., ..., "p95_hu": ...}`` (or ``_intensity``; ``_c<k>``
        per channel when C > 1). An empty mask gives None for every statistic (JSON null, empty CSV cell).
        ``n_nonfinite`` is added when some voxels in the mask are NaN or infinite.

    Example:
        >>> img = Image.from_array(np.arange(8, dtype=np.int16).reshape(2, 2, 2), metadata={"modality": "CT"})
        >>> intensity_stats(img, img.array >= 4)["mean_hu"]
        5.5
    """
    unit = intensity_unit(image)
    m = np.asarray(mask, dtype=bool)
    out: dict[str, Any] = {}
    nonfinite = 0
    for c in range(image.n_channels):
        suffix = f"_{unit}" + (f"_c{c}" if image.n_channels > 1 else "")
        values = np.asarray(image.voxels[c])[m]
        if np.issubdtype(values.dtype, np.floating):
            finite = np.isfinite(values)
            nonfinite += int((~finite).sum())
            values = values[finite]
        if values.size == 0:
            out.update({f"{name}{suffix}": None for name in STAT_NAMES})
            continue
        values = values.astype(np.float64, copy=False)
        pct = np.percentile(values, list(_PERCENTILES.values()))
        out[f"mean{suffix}"] = float(values.mean())
        out[f"std{suffix}"] = float(values.std())
        out[f"min{suffix}"] = float(values.min())
        out[f"max{suffix}"] = float(values.max())
        for name, value in zip(_PERCENTILES, pct):
            out[f"{name}{suffix}"] = float(value)
    if nonfinite:
        out["n_nonfinite"] = nonfinite
    return out
