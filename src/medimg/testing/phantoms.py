"""Tiny synthetic images with anisotropic spacing and a non-identity direction, for unit tests."""

from __future__ import annotations

import numpy as np

from medimg.core.enums import Kind
from medimg.core.image import Image

__all__ = ["oblique_direction", "phantom", "label_phantom"]


def oblique_direction(angle_deg: float = 20.0) -> np.ndarray:
    """An orthonormal direction matrix rotated about two axes (columns = i, j, k directions)."""
    a = np.deg2rad(angle_deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    b = a / 2
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


def phantom(
    shape: tuple[int, int, int] = (12, 20, 24),
    *,
    spacing: tuple[float, float, float] = (0.8, 0.9, 2.5),
    origin: tuple[float, float, float] = (-10.0, 5.0, 30.0),
    oblique: bool = True,
    dtype: np.dtype | type = np.int16,
    channels: int = 1,
    seed: int = 0,
) -> Image:
    """A small CT-like volume: air background (-1000), a soft-tissue ellipsoid (~40 HU) with a bright core.

    ``shape`` is (Z, Y, X); ``spacing`` is (sx, sy, sz) in mm. Values are HU-like, plus a little noise.
    """
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r = np.sqrt((x / 0.8) ** 2 + (y / 0.7) ** 2 + (z / 0.9) ** 2)
    vol = np.full(shape, -1000.0)
    vol[r < 1] = 40.0
    vol[r < 0.4] = 400.0
    vol += rng.normal(0, 10, size=shape)
    vols = [vol + 5 * c for c in range(channels)]
    arr = np.stack(vols).astype(dtype)
    return Image.from_array(
        arr, spacing=spacing, origin=origin, direction=oblique_direction() if oblique else np.eye(3),
        metadata={"modality": "CT"},
    )


def label_phantom(shape: tuple[int, int, int] = (12, 20, 24), **kwargs) -> Image:
    """A label map on the same grid as :func:`phantom`: 0 background, 1 shell, 2 core."""
    img = phantom(shape, **kwargs)
    v = img.voxels[0]
    lab = np.zeros(v.shape, np.uint8)
    lab[v > -500] = 1
    lab[v > 200] = 2
    return Image(voxels=lab[None], geometry=img.geometry, kind=Kind.LABEL)
