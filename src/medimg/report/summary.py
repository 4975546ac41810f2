"""A JSON-friendly description of an Image that holds no identifying values."""

from __future__ import annotations

from typing import Any

import numpy as np

from medimg.core.geometry import is_oblique
from medimg.core.image import Image, to_jsonable

__all__ = ["image_summary", "SAFE_METADATA_KEYS"]

#: Metadata keys that never identify a patient and may appear in summaries, logs and reports.
SAFE_METADATA_KEYS = (
    "source_format", "modality", "window", "rescale", "transfer_syntax", "manufacturer",
    "acquisition", "spacing_source", "photometric",
)


def image_summary(image: Image, *, stats: bool = True) -> dict[str, Any]:
    """Format-independent facts about ``image``: size, spacing, orientation, intensity range, safe metadata.

    UIDs, names, IDs and dates are left out on purpose.

    >>> from medimg.testing import phantom
    >>> image_summary(phantom())["size_xyz"]
    [24, 20, 12]
    """
    g = image.geometry
    z, y, x = image.spatial_shape
    out: dict[str, Any] = {
        "size_xyz": [x, y, z],
        "channels": image.n_channels,
        "dimensions": 2 if image.is_2d else 3,
        "dtype": str(image.dtype),
        "kind": image.kind.value,
        "spacing_mm": [round(s, 6) for s in g.spacing],
        "origin_mm": [round(o, 4) for o in g.origin],
        "direction": np.round(g.direction_matrix, 6).tolist(),
        "orientation": g.orientation,
        "oblique": is_oblique(g.direction_matrix),
        "space": g.space.value,
        "extent_mm": [round(n * s, 3) for n, s in zip((x, y, z), g.spacing)],
    }
    if stats:
        v = image.voxels
        finite = np.isfinite(v) if np.issubdtype(v.dtype, np.floating) else None
        vals = v[finite] if finite is not None else v
        if vals.size:
            out["intensity"] = {
                "min": float(vals.min()), "max": float(vals.max()), "mean": round(float(vals.mean()), 4),
                "p01": float(np.percentile(vals, 1)), "p99": float(np.percentile(vals, 99)),
            }
        if finite is not None and not finite.all():
            out["non_finite_voxels"] = int((~finite).sum())
    meta = {k: to_jsonable(image.metadata[k]) for k in SAFE_METADATA_KEYS if image.metadata.get(k) is not None}
    if meta:
        out["metadata"] = meta
    if image.history:
        out["history"] = [op.to_dict() for op in image.history]
    return out
