"""Quality checks of a registration: the checkerboard of fixed and warped images, the report figures (checkerboard,
difference, deformation grid) and the inverse consistency of a transform."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import SimpleITK as sitk

from medimg.classical.registration_checks import check_on_grid
from medimg.classical.registration_transforms import (
    RegistrationResult,
    displacement_field,
    is_deformable,
    transform_parts,
)
from medimg.core.errors import InvalidParameterError
from medimg.core.image import Image
from medimg.io.sitk_bridge import to_sitk

__all__ = ["checkerboard", "registration_figures", "inverse_consistency"]


def _spatial(image: Image | np.ndarray, parameter: str) -> np.ndarray:
    """(Y, X) for 2D Images, (Z, Y, X) for 3D Images; plain arrays are returned as given (2D or 3D)."""
    if isinstance(image, Image):
        if image.n_channels != 1:
            raise InvalidParameterError("expected one channel", parameter=parameter, expected="1 channel",
                                        found=f"{image.n_channels}", fix="pick one channel first")
        arr = np.asarray(image.voxels[0])
        return arr[0] if image.is_2d else arr
    arr = np.asarray(image)
    if arr.ndim not in (2, 3):
        raise InvalidParameterError("expected a 2D or 3D array", parameter=parameter, expected="(Y, X) or (Z, Y, X)",
                                    found=arr.shape, fix="give one channel of an image on the fixed grid")
    return arr


def checkerboard(fixed: Image | np.ndarray, warped: Image | np.ndarray, *, squares: int = 8) -> np.ndarray:
    """Checkerboard of two images on one grid: tiles alternate between ``fixed`` and ``warped``.

    Intensities are copied unchanged (no rescaling), as float64. Each axis is cut into ``squares`` tiles
    (the last one may be smaller); a tile comes from ``fixed`` when the sum of its tile indices is even.

    Args:
        fixed, warped: Images on the same grid (one channel), or arrays (Y, X) / (Z, Y, X) of one shape.
        squares: tiles per axis (>= 1).

    Returns:
        (Y, X) array for 2D inputs, (Z, Y, X) for 3D.

    Raises:
        InvalidParameterError: shapes differ, ``squares`` < 1.

    >>> checkerboard(np.zeros((4, 4)), np.ones((4, 4)), squares=2).tolist()[0]
    [0.0, 0.0, 1.0, 1.0]
    """
    a, b = _spatial(fixed, "fixed"), _spatial(warped, "warped")
    if a.shape != b.shape:
        raise InvalidParameterError("fixed and warped differ in shape", parameter="warped", expected=a.shape,
                                    found=b.shape, fix="resample the moving image onto the fixed grid (warp)")
    if int(squares) < 1:
        raise InvalidParameterError("invalid squares", parameter="squares", expected="an integer >= 1",
                                    found=squares, fix="give e.g. 8")
    n = int(squares)
    parity = np.zeros(a.shape, dtype=np.int64)
    for axis, size in enumerate(a.shape):
        tile = max(1, math.ceil(size / n))
        idx = np.arange(size) // tile
        shape = [1] * a.ndim
        shape[axis] = size
        parity = parity + idx.reshape(shape)
    return np.where(parity % 2 == 0, a.astype(np.float64), b.astype(np.float64))


def _middle_slice(arr: np.ndarray) -> np.ndarray:
    return arr if arr.ndim == 2 else arr[arr.shape[0] // 2]


def _render(draw: Any, *, width_px: int, height_px: int) -> np.ndarray:
    """Run ``draw(fig)`` on a matplotlib (Agg) figure and return its pixels as (H, W, 3) uint8."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    draw(fig)
    canvas.draw()
    return np.ascontiguousarray(np.asarray(canvas.buffer_rgba())[..., :3])


def registration_figures(result: RegistrationResult, moving_before: Image, *, squares: int = 8,
                         grid_step_vox: int | None = None) -> dict[str, np.ndarray]:
    """Figures of a registration on the middle slice of the fixed grid (2D images: the image itself).

    * ``"checkerboard"``: fixed and moving before (left) and fixed and warped after (right), alternating tiles
      (:func:`checkerboard`), both windowed to the fixed image's 1st-99th percentile.
    * ``"difference"``: ``|fixed - moving|`` before and ``|fixed - warped|`` after, one colour scale (0 to the
      99th percentile of the difference before), so the two panels compare directly.
    * ``"deformation grid"`` (deformable transforms only, :func:`is_deformable`: bspline, demons, learned):
      lines of the fixed voxel grid moved to ``T(x)`` (the full transform, pre-alignment included), drawn in
      fixed voxel indices over the fixed slice; in 3D the in-plane (x, y) components of the displacement are drawn.

    Args:
        result: what :func:`register` returned.
        moving_before: the moving image on the fixed grid without any transform (``warp`` with the identity).
        squares: checkerboard tiles per axis.
        grid_step_vox: spacing of the grid lines in voxels (default: about 24 lines across the slice).

    Returns:
        caption -> (H, W, 3) uint8 RGB array, in the order above.

    Raises:
        InvalidParameterError: ``moving_before`` is not on the fixed grid.
    """
    fixed = result.fixed_reference
    if not isinstance(moving_before, Image) or moving_before.spatial_shape != fixed.spatial_shape:
        raise InvalidParameterError(
            "moving_before is not on the fixed grid", parameter="moving_before",
            expected=f"an Image of shape {fixed.spatial_shape}",
            found=getattr(moving_before, "spatial_shape", type(moving_before).__name__),
            fix="warp the moving image with the identity transform onto the fixed image first")
    f = _middle_slice(_spatial(fixed, "fixed")).astype(np.float64)
    before = _middle_slice(_spatial(moving_before, "moving_before")).astype(np.float64)
    after = _middle_slice(_spatial(result.warped, "warped")).astype(np.float64)
    lo, hi = (float(v) for v in np.percentile(f, [1, 99]))
    hi = hi if hi > lo else lo + 1.0
    h, w = f.shape
    scale = max(1.0, 300.0 / max(h, w))  # small images drawn larger
    panel_w, panel_h = int(w * scale), int(h * scale)
    grey = {"cmap": "gray", "vmin": lo, "vmax": hi, "interpolation": "nearest"}

    def pair_of_panels(left: np.ndarray, right: np.ndarray, titles: tuple[str, str], style: dict[str, Any],
                       colorbar: bool = False):
        def draw(fig: Any) -> None:
            axes = fig.subplots(1, 2)
            fig.subplots_adjust(left=0.01, right=0.84 if colorbar else 0.99, bottom=0.01, top=0.92, wspace=0.04)
            im = None
            for ax, img, title in zip(axes, (left, right), titles):
                im = ax.imshow(img, **style)
                ax.set_title(title, fontsize=9)
                ax.set_axis_off()
            if colorbar and im is not None:
                fig.colorbar(im, cax=fig.add_axes((0.87, 0.1, 0.025, 0.75)), label="|difference|")
        return draw

    figures: dict[str, np.ndarray] = {}
    figures["checkerboard"] = _render(
        pair_of_panels(checkerboard(f, before, squares=squares), checkerboard(f, after, squares=squares),
                       ("fixed / moving, before", "fixed / warped, after"), grey),
        width_px=2 * panel_w + 40, height_px=panel_h + 40)
    d_before, d_after = np.abs(f - before), np.abs(f - after)
    vmax = float(np.percentile(d_before, 99)) or float(d_before.max()) or 1.0
    figures["difference"] = _render(
        pair_of_panels(d_before, d_after, ("|fixed - moving|, before", "|fixed - warped|, after"),
                       {"cmap": "magma", "vmin": 0.0, "vmax": vmax, "interpolation": "nearest"}, colorbar=True),
        width_px=2 * panel_w + 140, height_px=panel_h + 40)
    if is_deformable(result.transform):
        fld = result.displacement_field()
        d = 2 if fixed.is_2d else 3
        vox = np.asarray(fld.voxels, np.float64)  # (D, Z, Y, X), physical components in mm
        direction = fixed.geometry.direction_matrix[:d, :d]
        spacing = np.asarray(fixed.geometry.spacing[:d], np.float64)
        idx = np.tensordot(direction.T, vox, axes=(1, 0)) / spacing[:, None, None, None]  # along index axes, voxels
        z = 0 if fixed.is_2d else fixed.spatial_shape[0] // 2
        ux, uy = idx[0, z], idx[1, z]
        step = int(grid_step_vox) if grid_step_vox else max(2, max(h, w) // 24)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        px, py = xx + ux, yy + uy

        def draw_grid(fig: Any) -> None:
            ax = fig.add_axes((0.02, 0.02, 0.96, 0.90))
            ax.imshow(f, **grey)
            for r in range(0, h, step):
                ax.plot(px[r, :], py[r, :], color="yellow", linewidth=0.6)
            for c in range(0, w, step):
                ax.plot(px[:, c], py[:, c], color="yellow", linewidth=0.6)
            ax.set_xlim(-0.5, w - 0.5)
            ax.set_ylim(h - 0.5, -0.5)
            ax.set_title(f"fixed grid deformed by T (every {step} voxels)", fontsize=9)
            ax.set_axis_off()

        figures["deformation grid"] = _render(draw_grid, width_px=panel_w + 20, height_px=panel_h + 40)
    return figures



def _invert_component(tx: sitk.Transform, ref: sitk.Image, *, iterations: int) -> tuple[sitk.Transform, str]:
    if tx.IsLinear():
        return tx.GetInverse(), "exact inverse"
    flt = sitk.TransformToDisplacementFieldFilter()
    flt.SetReferenceImage(ref)
    flt.SetOutputPixelType(sitk.sitkVectorFloat64)
    fwd = flt.Execute(tx)
    inv = sitk.InvertDisplacementField(fwd, maximumNumberOfIterations=int(iterations),
                                       maxErrorToleranceThreshold=0.01, meanErrorToleranceThreshold=0.0001,
                                       enforceBoundaryCondition=True)
    return sitk.DisplacementFieldTransform(sitk.Cast(inv, sitk.sitkVectorFloat64)), \
        f"InvertDisplacementField ({int(iterations)} iterations max)"


def inverse_consistency(transform: sitk.Transform | RegistrationResult, reference: Image | None = None, *,
                        iterations: int = 50, mask: Image | None = None) -> dict[str, Any]:
    """Inverse consistency ``|T^-1(T(x)) - x|`` in mm over the voxel centres ``x`` of ``reference``.

    ``T^-1`` is built part by part: linear parts (rigid, affine, the pre-alignment) use their exact inverse;
    every other part (B-spline, displacement field) is sampled as a displacement field on ``reference``'s grid
    and inverted numerically with ITK's ``InvertDisplacementField`` (fixed-point iteration; the inverse field
    lives on the same grid, with zero displacement at its border). For ``T = A(D(x))`` (a result of
    :func:`register`) the round trip is ``D^-1(A^-1(A(D(x))))``, so it measures how well the numerically
    inverted deformable part undoes the deformable part; for linear transforms it is rounding error only
    (~1e-12 mm). It is not the inverse consistency of registering the pair both ways.

    Args:
        transform: a SimpleITK transform (fixed points -> moving points) or a :class:`RegistrationResult`.
        reference: the fixed image (its grid); default: the result's fixed image.
        iterations: at most this many iterations of the field inversion.
        mask: optional region on the reference grid (e.g. the fixed foreground) to summarise over.

    Returns:
        ``{"mean_mm", "median_mm", "p95_mm", "max_mm", "inverse", "definition"}``.

    >>> ref = Image.from_array(np.zeros((5, 6), np.float32))
    >>> inverse_consistency(sitk.Euler2DTransform((2.0, 3.0), 0.3, (1.0, -2.0)), ref)["max_mm"] < 1e-9
    True
    """
    if isinstance(transform, RegistrationResult):
        reference = transform.fixed_reference if reference is None else reference
        transform = transform.transform
    field_img = displacement_field(transform, reference)  # checks reference and dimensions
    assert reference is not None
    ref = to_sitk(reference.replace(voxels=np.zeros((1,) + reference.spatial_shape, np.uint8)))
    parts = transform_parts(transform)
    inverses, how = [], set()
    for part in reversed(parts):
        inv, kind = _invert_component(part, ref, iterations=iterations)
        inverses.append(inv)
        how.add(kind)
    round_trip = sitk.CompositeTransform(inverses + parts)  # the last is applied first: parts, then inverses
    err = displacement_field(round_trip, reference).voxels.astype(np.float64)
    dist = np.sqrt(np.sum(err**2, axis=0))
    if mask is not None:
        check_on_grid(field_img, mask, "reference", "mask")
        dist = dist[np.asarray(mask.array) != 0]
    dist = dist.ravel()
    return {"mean_mm": float(dist.mean()), "median_mm": float(np.median(dist)),
            "p95_mm": float(np.percentile(dist, 95)), "max_mm": float(dist.max()),
            "inverse": " + ".join(sorted(how)),
            "definition": "|T^-1(T(x)) - x| in mm over the fixed voxel centres; linear parts inverted exactly, "
                          "deformable parts by InvertDisplacementField on the fixed grid"}
