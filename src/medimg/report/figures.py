"""Figures for people: a labelled montage of 2D slices (uint8 RGB array, written by medimg.io)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from medimg.core.errors import InvalidParameterError

__all__ = ["montage"]


def montage(
    tiles: Sequence[np.ndarray],
    *,
    columns: int,
    labels: Sequence[str] | None = None,
    gap_px: int = 4,
) -> np.ndarray:
    """Arrange 2D tiles with values in [0, 1] on a grid; returns a (H, W, 3) uint8 RGB array.

    Args:
        tiles: 2D arrays (Y, X) in [0, 1]; all the same shape. Row-major order.
        columns: tiles per row.
        labels: optional text drawn in the top-left corner of each tile.
        gap_px: black gap between tiles.
    """
    if not tiles:
        raise InvalidParameterError("no tiles", parameter="tiles", expected="at least one 2D array", found=0)
    shape = tiles[0].shape
    if any(t.shape != shape or t.ndim != 2 for t in tiles):
        raise InvalidParameterError(
            "tiles differ in shape", parameter="tiles", expected=f"2D arrays of shape {shape}",
            found=[t.shape for t in tiles], fix="resample the slices to one shape first",
        )
    if columns < 1:
        raise InvalidParameterError("columns must be >= 1", parameter="columns", expected=">= 1", found=columns)
    rows = -(-len(tiles) // columns)
    h, w = shape
    canvas = np.zeros((rows * h + (rows + 1) * gap_px, columns * w + (columns + 1) * gap_px, 3), np.uint8)
    for n, tile in enumerate(tiles):
        r, c = divmod(n, columns)
        y0, x0 = gap_px + r * (h + gap_px), gap_px + c * (w + gap_px)
        canvas[y0:y0 + h, x0:x0 + w] = (np.clip(np.nan_to_num(tile), 0, 1) * 255 + 0.5).astype(np.uint8)[..., None]
    if labels:
        from PIL import Image as PILImage
        from PIL import ImageDraw

        pil = PILImage.fromarray(canvas)
        draw = ImageDraw.Draw(pil)
        for n, text in enumerate(labels[: len(tiles)]):
            r, c = divmod(n, columns)
            y0, x0 = gap_px + r * (h + gap_px), gap_px + c * (w + gap_px)
            draw.rectangle([x0, y0, x0 + 7 * len(text) + 6, y0 + 14], fill=(0, 0, 0))
            draw.text((x0 + 3, y0 + 2), text, fill=(255, 220, 0))
        canvas = np.asarray(pil)
    return canvas


#: Colours of labels 1, 2, ... in overlays (RGB), repeated when there are more labels.
LABEL_COLOURS = np.array([
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40),
], dtype=np.uint8)


def overlay(
    background: np.ndarray,
    labels: np.ndarray,
    *,
    alpha: float = 0.35,
    contour: bool = True,
) -> np.ndarray:
    """Colour a 2D label map over a grey background; returns (H, W, 3) uint8.

    Args:
        background: (H, W) values in [0, 1] (window/normalise first), or (H, W, 3) uint8 RGB.
        labels: (H, W) integer labels, 0 = nothing; label k gets ``LABEL_COLOURS[(k - 1) % 12]``.
        alpha: opacity of the filled labels (0 = contours only).
        contour: draw the label borders fully opaque.
    """
    labels = np.asarray(labels)
    if background.ndim == 2:
        if background.shape != labels.shape:
            raise InvalidParameterError("background and labels differ in shape", parameter="labels",
                                        expected=background.shape, found=labels.shape)
        grey = (np.clip(np.nan_to_num(background), 0, 1) * 255 + 0.5).astype(np.uint8)
        rgb = np.repeat(grey[..., None], 3, axis=-1).astype(np.float32)
    else:
        if background.shape[:2] != labels.shape:
            raise InvalidParameterError("background and labels differ in shape", parameter="labels",
                                        expected=background.shape[:2], found=labels.shape)
        rgb = background[..., :3].astype(np.float32)
    lab = labels.astype(np.int64)
    fg = lab > 0
    if fg.any():
        colours = LABEL_COLOURS[(lab[fg] - 1) % len(LABEL_COLOURS)].astype(np.float32)
        rgb[fg] = (1 - alpha) * rgb[fg] + alpha * colours
        if contour:
            from scipy import ndimage

            edge = fg & ~ndimage.binary_erosion(fg, border_value=0)
            # borders between touching instances too
            shifted = np.zeros_like(lab)
            shifted[:-1] = lab[1:]
            edge |= fg & (shifted != lab) & (shifted > 0)
            shifted = np.zeros_like(lab)
            shifted[:, :-1] = lab[:, 1:]
            edge |= fg & (shifted != lab) & (shifted > 0)
            rgb[edge] = LABEL_COLOURS[(lab[edge] - 1) % len(LABEL_COLOURS)]
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
