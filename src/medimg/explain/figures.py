"""Figures of saliency maps: a heat map over a grey 2D image, and a montage of the most salient slices of a volume.

Owns :func:`saliency_overlay` (an RGB array), :func:`most_salient_slices`, and the PNG writers
:func:`saliency_overlay_png` and :func:`saliency_montage_png` (matplotlib figures drawn on an Agg canvas, so the
pyplot backend of the caller is left alone; written atomically: a failed write leaves nothing at the destination).
Display scaling never changes the arrays passed in: the image is shown in ``window`` (its own min..max by default)
and the saliency as ``max(s, 0) / max(s)``, so zero evidence is transparent and negative values (occlusion that made
the class more likely) are not shown.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core.errors import ImageWriteError, InvalidParameterError
from medimg.io.files import atomic_output

__all__ = ["saliency_overlay", "most_salient_slices", "saliency_overlay_png", "saliency_montage_png"]

logger = logging.getLogger(__name__)


def _array(value: Any, name: str, ndim: int) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.ndim != ndim or min(arr.shape, default=0) < 1:
        axes = "(Y, X)" if ndim == 2 else "(Z, Y, X)"
        raise InvalidParameterError(
            "wrong shape", parameter=name, expected=f"a non-empty {ndim}D array {axes}", found=arr.shape,
            fix="take one sample and one channel, e.g. x[0, 0] and cam[0]",
        )
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise InvalidParameterError("not a real-valued array", parameter=name, expected="real numbers", found=arr.dtype)
    return arr.astype(np.float64)


def _display_image(image: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    finite = image[np.isfinite(image)]
    if window is None:
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    else:
        try:
            lo, hi = (float(v) for v in window)
        except (TypeError, ValueError) as exc:
            raise InvalidParameterError("not a (low, high) pair", parameter="window", expected="(low, high)",
                                        found=repr(window)) from exc
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise InvalidParameterError("empty display window", parameter="window", expected="low < high",
                                        found=(lo, hi), fix="e.g. window=(-160, 240) for CT soft tissue")
    span = hi - lo if hi > lo else 1.0
    return np.clip(np.nan_to_num((image - lo) / span), 0.0, 1.0)


def _display_saliency(saliency: np.ndarray) -> tuple[np.ndarray, float]:
    """``max(s, 0) / max(s)`` and the maximum (0 maps to all zeros)."""
    sal = np.nan_to_num(saliency, nan=0.0, posinf=0.0, neginf=0.0)
    top = float(sal.max())
    if top <= 0:
        return np.zeros_like(sal), 0.0
    return np.clip(sal, 0.0, None) / top, top


def _colormap(cmap: str) -> Any:
    import matplotlib

    try:
        return matplotlib.colormaps[cmap]
    except KeyError as exc:
        raise InvalidParameterError(
            "unknown colour map", parameter="cmap", expected="a matplotlib colour map name", found=repr(cmap),
            fix='use "inferno" or "jet"',
        ) from exc


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= float(alpha) <= 1.0:
        raise InvalidParameterError("opacity out of range", parameter="alpha", expected="0 <= alpha <= 1",
                                    found=repr(alpha))
    return float(alpha)


def _blend(grey: np.ndarray, heat: np.ndarray, alpha: float, cmap: str) -> np.ndarray:
    """Grey (Y, X) in [0, 1] with heat (Y, X) in [0, 1]: per-pixel opacity ``alpha * heat``; (Y, X, 3) uint8."""
    colours = _colormap(cmap)(heat)[..., :3]
    weight = (alpha * heat)[..., None]
    rgb = (1.0 - weight) * grey[..., None] + weight * colours
    return (np.clip(rgb, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def saliency_overlay(
    image: Any,
    saliency: Any,
    *,
    alpha: float = 0.6,
    window: tuple[float, float] | None = None,
    cmap: str = "inferno",
) -> np.ndarray:
    """A saliency heat map over a grey 2D image, as an RGB array.

    Each pixel mixes the grey image with the colour of its saliency with opacity ``alpha * s`` (``s`` the display
    saliency in [0, 1]), so regions without evidence keep the plain image.

    Args:
        image: (Y, X) intensities, any range.
        saliency: (Y, X) map, higher = more important (e.g. ``grad_cam(...)[0]``).
        alpha: opacity of the most salient pixels, in [0, 1].
        window: image intensities shown from black to white; None for the image's min..max.
        cmap: matplotlib colour map of the saliency ("inferno", "jet", ...).

    Returns:
        (Y, X, 3) uint8 RGB.

    Raises:
        InvalidParameterError: shapes differ or are not 2D, bad ``alpha``, ``window`` or ``cmap``.

    Example:
        >>> image = np.linspace(0, 1, 24).reshape(4, 6)
        >>> saliency = np.zeros((4, 6)); saliency[1, 2] = 1.0
        >>> rgb = saliency_overlay(image, saliency)
        >>> rgb.shape, rgb.dtype.name, bool((rgb[0, 0] == rgb[0, 0, 0]).all())
        ((4, 6, 3), 'uint8', True)
    """
    img = _array(image, "image", 2)
    sal = _array(saliency, "saliency", 2)
    if sal.shape != img.shape:
        raise InvalidParameterError("saliency and image differ in shape", parameter="saliency", expected=img.shape,
                                    found=sal.shape, fix="upsample the map to the image size (grad_cam does)")
    heat, _ = _display_saliency(sal)
    return _blend(_display_image(img, window), heat, _check_alpha(alpha), cmap)


def most_salient_slices(saliency: Any, *, n_slices: int = 6) -> list[int]:
    """Indices of the ``n_slices`` axial slices (first axis, Z) with the largest summed saliency, in ascending order.

    Negative values count as 0, as in the figures. Ties keep the lower index.

    Example:
        >>> s = np.zeros((5, 2, 2)); s[3] = 1.0; s[1] = 0.5
        >>> most_salient_slices(s, n_slices=2)
        [1, 3]
    """
    sal = _array(saliency, "saliency", 3)
    if isinstance(n_slices, bool) or not isinstance(n_slices, (int, np.integer)) or n_slices < 1:
        raise InvalidParameterError("not a positive integer", parameter="n_slices", expected="an integer >= 1",
                                    found=repr(n_slices))
    sums = np.clip(np.nan_to_num(sal), 0.0, None).sum(axis=(1, 2))
    chosen = np.argsort(-sums, kind="stable")[: min(int(n_slices), sal.shape[0])]
    return sorted(int(z) for z in chosen)


def _check_png(path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise ImageWriteError("figures are written as PNG", path=out, expected="a name ending in .png",
                              found=out.suffix or "no extension", fix="name the file e.g. saliency.png")
    return out


def _figure(width: float, height: float) -> Any:
    """A matplotlib figure on its own Agg canvas (no pyplot, no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    with atomic_output(path) as tmp:
        fig.savefig(os.fspath(tmp), format="png", dpi=100)
    logger.info("wrote %s", path)
    return path


def _colourbar(fig: Any, axes: Any, top: float, cmap: str) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    mappable = ScalarMappable(norm=Normalize(0.0, top if top > 0 else 1.0), cmap=_colormap(cmap))
    fig.colorbar(mappable, ax=axes, shrink=0.8, label="saliency")


def saliency_overlay_png(
    image: Any,
    saliency: Any,
    path: str | os.PathLike[str],
    *,
    alpha: float = 0.6,
    window: tuple[float, float] | None = None,
    cmap: str = "inferno",
    title: str | None = None,
) -> Path:
    """Write a 2D saliency overlay (see :func:`saliency_overlay`) with a colour bar as a PNG, atomically.

    Args:
        image: (Y, X) intensities.
        saliency: (Y, X) map.
        path: output file, ending in ``.png``; folders are created.
        alpha: opacity of the most salient pixels.
        window: image display window (low, high); None for min..max.
        cmap: colour map of the saliency.
        title: text above the image.

    Returns:
        the path written.

    Raises:
        InvalidParameterError: see :func:`saliency_overlay`.
        ImageWriteError: ``path`` does not end in .png or cannot be written.

    Example:
        >>> import tempfile
        >>> image = np.linspace(0, 1, 64).reshape(8, 8)
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = saliency_overlay_png(image, image ** 2, Path(folder) / "cam.png")
        ...     path.name, path.stat().st_size > 0
        ('cam.png', True)
    """
    out = _check_png(path)
    rgb = saliency_overlay(image, saliency, alpha=alpha, window=window, cmap=cmap)
    _, top = _display_saliency(_array(saliency, "saliency", 2))
    height, width = rgb.shape[:2]
    scale = 4.0 / max(height, width)
    fig = _figure(width * scale + 1.4, height * scale + 0.6)
    ax = fig.subplots()
    ax.imshow(rgb, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    _colourbar(fig, ax, top, cmap)
    return _save(fig, out)


def saliency_montage_png(
    volume: Any,
    saliency: Any,
    path: str | os.PathLike[str],
    *,
    n_slices: int = 6,
    columns: int = 3,
    alpha: float = 0.6,
    window: tuple[float, float] | None = None,
    cmap: str = "inferno",
    title: str | None = None,
) -> Path:
    """Write the ``n_slices`` most salient axial slices of a volume with their saliency overlay as one PNG.

    Slices are chosen by summed saliency (:func:`most_salient_slices`) and shown in ascending order with their index
    ``z`` in the title. One display window and one saliency scale serve all slices, so they can be compared.

    Args:
        volume: (Z, Y, X) intensities (one channel).
        saliency: (Z, Y, X) map, e.g. ``grad_cam(...)[0]`` of a 3D model.
        path: output file, ending in ``.png``.
        n_slices: number of slices shown (at most Z).
        columns: slices per row.
        alpha: opacity of the most salient voxels.
        window: volume display window (low, high); None for the volume's min..max.
        cmap: colour map of the saliency.
        title: text above the montage.

    Returns:
        the path written.

    Raises:
        InvalidParameterError: shapes differ or are not 3D, bad ``n_slices``, ``columns``, ``alpha``, ``window``.
        ImageWriteError: ``path`` does not end in .png or cannot be written.

    Example:
        >>> import tempfile
        >>> volume = np.random.default_rng(0).random((8, 6, 6))
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = saliency_montage_png(volume, volume, Path(folder) / "montage.png", n_slices=4)
        ...     path.stat().st_size > 0
        True
    """
    out = _check_png(path)
    vol = _array(volume, "volume", 3)
    sal = _array(saliency, "saliency", 3)
    if sal.shape != vol.shape:
        raise InvalidParameterError("saliency and volume differ in shape", parameter="saliency", expected=vol.shape,
                                    found=sal.shape, fix="upsample the map to the volume size (grad_cam does)")
    if isinstance(columns, bool) or not isinstance(columns, (int, np.integer)) or columns < 1:
        raise InvalidParameterError("not a positive integer", parameter="columns", expected="an integer >= 1",
                                    found=repr(columns))
    alpha = _check_alpha(alpha)
    _colormap(cmap)
    slices = most_salient_slices(sal, n_slices=n_slices)
    grey = _display_image(vol, window)
    heat, top = _display_saliency(sal)
    columns = min(int(columns), len(slices))
    rows = -(-len(slices) // columns)
    height, width = vol.shape[1:]
    scale = 2.6 / max(height, width)
    fig = _figure(columns * width * scale + 1.4, rows * (height * scale + 0.35) + 0.4)
    axes = fig.subplots(rows, columns, squeeze=False)
    for n, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if n < len(slices):
            z = slices[n]
            ax.imshow(_blend(grey[z], heat[z], alpha, cmap), interpolation="nearest")
            ax.set_title(f"z = {z}", fontsize=9)
    if title:
        fig.suptitle(title)
    _colourbar(fig, axes, top, cmap)
    return _save(fig, out)
