"""Dense displacement fields for learned registration: warping, composition, scaling and squaring, units.

Conventions used by the registration network (:mod:`medimg.models.registration_unet`) and the whole
``medimg.tasks.register`` package:

* An image is a ``(B, C, *spatial)`` tensor, spatial = ``(Y, X)`` in 2D or ``(Z, Y, X)`` in 3D.
* A displacement field ``u`` is a ``(B, D, *spatial)`` tensor with ``D`` = 2 or 3 components in VOXEL units,
  ordered like the spatial axes (``(uy, ux)`` in 2D, ``(uz, uy, ux)`` in 3D), so ``u[:, 0]`` moves along dim 2.
* Warping is a pull-back: ``warp(image, u)(x) = image(x + u(x))``. The field lives on the FIXED grid and says, for
  each fixed voxel, where to sample the moving image (as VoxelMorph and ITK's resampling do).

``medimg.metrics.registration`` expects the other layout (components x, y, z first, in mm);
:func:`to_metric_layout` converts.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medimg.core.errors import InvalidParameterError

__all__ = ["SpatialTransformer", "warp", "identity_grid", "integrate_velocity", "compose", "to_physical",
           "from_physical", "to_metric_layout"]

_MODES = ("bilinear", "nearest")
_PADDINGS = ("border", "zeros")


def _check_field(u: torch.Tensor, name: str = "u") -> int:
    if not isinstance(u, torch.Tensor) or u.ndim not in (4, 5) or u.shape[1] != u.ndim - 2:
        found = tuple(u.shape) if isinstance(u, torch.Tensor) else type(u).__name__
        raise InvalidParameterError("wrong displacement field shape", parameter=name,
                                    expected="(B, 2, Y, X) or (B, 3, Z, Y, X), components in spatial-axis order",
                                    found=found, fix="put the vector components on dim 1")
    return u.ndim - 2


def identity_grid(shape: Sequence[int], *, device: torch.device | None = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Voxel coordinates of a grid: ``(D, *shape)``, component ``i`` holding the index along spatial axis ``i``.

    >>> identity_grid((2, 3))[1]
    tensor([[0., 1., 2.],
            [0., 1., 2.]])
    """
    axes = [torch.arange(s, device=device, dtype=dtype) for s in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))


def warp(image: torch.Tensor, u: torch.Tensor, *, mode: str = "bilinear", padding: str = "border") -> torch.Tensor:
    """Pull-back warp: ``out(x) = image(x + u(x))``, with linear or nearest interpolation.

    Args:
        image: ``(B, C, *spatial)`` tensor, 2D or 3D.
        u: ``(B, D, *spatial)`` displacement in voxels, components in spatial-axis order (z, y, x / y, x).
            The batch size may be 1 to apply one field to every image.
        mode: "bilinear" (trilinear in 3D) or "nearest" (for label maps).
        padding: "border" (repeat the edge) or "zeros" outside the image.

    Returns:
        ``(B, C, *spatial)`` warped image, same dtype as ``image``.

    Raises:
        InvalidParameterError: wrong shapes or options.

    >>> img = torch.arange(5.0).reshape(1, 1, 1, 5)
    >>> u = torch.zeros(1, 2, 1, 5); u[:, 1] = 1.0        # sample one voxel to the right (+x)
    >>> warp(img, u)[0, 0, 0].tolist()
    [1.0, 2.0, 3.0, 4.0, 4.0]
    """
    d = _check_field(u)
    if mode not in _MODES:
        raise InvalidParameterError("unknown interpolation mode", parameter="mode", expected=_MODES, found=mode)
    if padding not in _PADDINGS:
        raise InvalidParameterError("unknown padding", parameter="padding", expected=_PADDINGS, found=padding)
    if image.ndim != d + 2 or tuple(image.shape[2:]) != tuple(u.shape[2:]):
        raise InvalidParameterError("image and field do not share a grid", parameter="image",
                                    expected=f"(B, C, {', '.join(map(str, u.shape[2:]))})",
                                    found=tuple(image.shape), fix="resample the field to the image grid")
    shape = image.shape[2:]
    loc = identity_grid(shape, device=u.device, dtype=u.dtype) + u          # (B, D, *spatial) voxel coordinates
    # align_corners=True: index 0 -> -1, index s-1 -> +1; an axis of size 1 maps to 0.
    scale = torch.tensor([2.0 / (s - 1) if s > 1 else 0.0 for s in shape], device=u.device, dtype=u.dtype)
    loc = loc * scale.view(1, d, *([1] * d)) - 1.0
    loc = torch.where(scale.view(1, d, *([1] * d)) == 0, torch.zeros_like(loc), loc)
    grid = loc.movedim(1, -1).flip(-1)                                      # grid_sample wants (x, y[, z]) last
    if grid.shape[0] != image.shape[0]:
        grid = grid.expand(image.shape[0], *grid.shape[1:])
    src = image if image.is_floating_point() else image.to(u.dtype)         # integer labels: use mode="nearest"
    out = F.grid_sample(src, grid.to(src.dtype), mode=mode, padding_mode=padding, align_corners=True)
    return out.to(image.dtype)


class SpatialTransformer(nn.Module):
    """Module form of :func:`warp` (no parameters, any grid size): ``forward(image, u) = image(x + u(x))``.

    Args:
        mode: "bilinear" or "nearest".
        padding: "border" or "zeros".

    >>> st = SpatialTransformer()
    >>> img = torch.rand(1, 1, 4, 4, 4)
    >>> bool(torch.equal(st(img, torch.zeros(1, 3, 4, 4, 4)), img))
    True
    """

    def __init__(self, *, mode: str = "bilinear", padding: str = "border"):
        super().__init__()
        if mode not in _MODES:
            raise InvalidParameterError("unknown interpolation mode", parameter="mode", expected=_MODES, found=mode)
        if padding not in _PADDINGS:
            raise InvalidParameterError("unknown padding", parameter="padding", expected=_PADDINGS, found=padding)
        self.mode = mode
        self.padding = padding

    def forward(self, image: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return warp(image, u, mode=self.mode, padding=self.padding)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, padding={self.padding!r}"


def compose(u1: torch.Tensor, u2: torch.Tensor) -> torch.Tensor:
    """Displacement of ``x -> x + u2(x)`` followed by ``y -> y + u1(y)``: ``u2(x) + u1(x + u2(x))``.

    With pull-back warping this is the order in which warps chain: warping by ``u1`` and then warping the result by
    ``u2`` equals one warp by ``compose(u1, u2)`` (up to interpolation), i.e.
    ``warp(warp(img, u1), u2) ~= warp(img, compose(u1, u2))``.

    Args:
        u1, u2: ``(B, D, *spatial)`` displacements in voxels on the same grid.

    Returns:
        ``(B, D, *spatial)`` displacement in voxels.
    """
    _check_field(u1, "u1")
    _check_field(u2, "u2")
    return u2 + warp(u1, u2, padding="border")


def integrate_velocity(v: torch.Tensor, steps: int = 7) -> torch.Tensor:
    """Displacement of the exponential of a stationary velocity field, by scaling and squaring.

    ``u = v / 2**steps``, then ``steps`` times ``u <- u + u(x + u(x))`` (``compose(u, u)``). A smooth, moderate ``v``
    gives a diffeomorphism (positive Jacobian determinant); a constant ``v`` gives ``u = v`` exactly.

    Args:
        v: ``(B, D, *spatial)`` velocity in voxels, spatial-axis order.
        steps: number of squarings, >= 0 (0 returns ``v``).

    Returns:
        ``(B, D, *spatial)`` displacement in voxels.

    >>> v = torch.full((1, 2, 4, 4), 0.5)
    >>> bool(torch.allclose(integrate_velocity(v), v))
    True
    """
    _check_field(v, "v")
    if not isinstance(steps, int) or steps < 0:
        raise InvalidParameterError("invalid number of squaring steps", parameter="steps",
                                    expected="an integer >= 0", found=steps)
    u = v / (2.0 ** steps)
    for _ in range(steps):
        u = u + warp(u, u, padding="border")
    return u


def _spacing_view(u: torch.Tensor, spacing_zyx: Sequence[float], name: str) -> torch.Tensor:
    d = _check_field(u)
    sp = [float(s) for s in spacing_zyx]
    if len(sp) < d or any(s <= 0 for s in sp):
        raise InvalidParameterError("invalid spacing", parameter=name, expected=f"{d} positive numbers (z, y, x mm)",
                                    found=tuple(spacing_zyx), fix="pass Geometry.spacing_zyx (array order)")
    sp = sp[-d:]
    return torch.tensor(sp, device=u.device, dtype=u.dtype).view(1, d, *([1] * d))


def to_physical(u: torch.Tensor, spacing_zyx: Sequence[float]) -> torch.Tensor:
    """Voxel displacement -> mm along the grid axes (no direction matrix applied), components stay z, y, x.

    Args:
        u: ``(B, D, *spatial)`` displacement in voxels.
        spacing_zyx: voxel size in mm in array order (``Geometry.spacing_zyx``); in 2D the last two values are used.

    >>> to_physical(torch.ones(1, 2, 2, 2), (2.0, 0.5))[0, :, 0, 0].tolist()
    [2.0, 0.5]
    """
    return u * _spacing_view(u, spacing_zyx, "spacing_zyx")


def from_physical(u_mm: torch.Tensor, spacing_zyx: Sequence[float]) -> torch.Tensor:
    """Inverse of :func:`to_physical`: displacement in mm (grid axes, z, y, x) -> voxels."""
    return u_mm / _spacing_view(u_mm, spacing_zyx, "spacing_zyx")


def to_metric_layout(u: torch.Tensor, spacing_zyx: Sequence[float] | None = None) -> torch.Tensor:
    """One field ``(D, *spatial)`` (a batch item) in voxels, z-y-x components -> x-y-z components in mm.

    This is the layout of :func:`medimg.metrics.registration.jacobian_determinant` (pass it ``spacing_mm`` x first);
    without ``spacing_zyx`` the values stay in voxels (spacing 1).

    >>> u = torch.zeros(2, 3, 4); u[1] = 1.0           # ux = 1 voxel
    >>> to_metric_layout(u, (2.0, 0.5))[0, 0, 0].item()
    0.5
    """
    if u.ndim not in (3, 4) or u.shape[0] != u.ndim - 1:
        raise InvalidParameterError("wrong field shape", parameter="u", expected="(2, Y, X) or (3, Z, Y, X)",
                                    found=tuple(u.shape), fix="pass one batch item, u[b]")
    if spacing_zyx is not None:
        u = to_physical(u[None], spacing_zyx)[0]
    return u.flip(0)
