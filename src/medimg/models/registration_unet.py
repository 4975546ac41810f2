"""A small VoxelMorph-style U-Net that predicts a dense displacement (or velocity) field from a fixed/moving pair."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medimg.core.errors import InvalidParameterError
from medimg.models.blocks import conv_nd
from medimg.models.spatial import integrate_velocity, warp

__all__ = ["RegistrationUNet"]

_SLOPE = 0.2


class _ConvAct(nn.Sequential):
    """3x3(x3) convolution with bias -> LeakyReLU(0.2), no normalisation (as VoxelMorph: norms blur the
    intensity relations the field is estimated from)."""

    def __init__(self, dims: int, cin: int, cout: int, stride: int = 1):
        super().__init__(conv_nd(dims, cin, cout, 3, stride=stride, bias=True), nn.LeakyReLU(_SLOPE, inplace=True))


class RegistrationUNet(nn.Module):
    """U-Net from ``cat(fixed, moving)`` to a field on the fixed grid, plus the moving image warped by it.

    Encoder: one full-resolution convolution, then ``len(features) - 1`` stride-2 convolutions; decoder: nearest
    upsampling, skip concatenation, convolution; two extra convolutions at full resolution, then a final
    convolution to ``dims`` components initialised ~N(0, 1e-5) with zero bias, so the initial field is ~identity.

    Args:
        dims: 2 or 3.
        in_channels: channels of ONE image (fixed and moving each); the network sees ``2 * in_channels``.
        features: channels per level, e.g. ``(16, 32, 32, 32)`` (4 levels: spatial sizes must be multiples of 8).
        integrate: if True the network output is a stationary velocity, integrated by scaling and squaring
            (:func:`integrate_velocity`) into a diffeomorphic displacement.
        steps: squaring steps when ``integrate``.
        mode, padding: interpolation of the moving image (see :func:`warp`).

    ``forward(fixed, moving)`` returns ``(warped, u)``: ``warped = moving(x + u(x))`` ``(B, C, *spatial)`` and the
    displacement ``u`` ``(B, dims, *spatial)`` in voxels, components in spatial-axis order. With ``integrate`` the
    velocity is available as ``self.last_velocity`` after a forward pass (for regularising it).

    >>> net = RegistrationUNet(2, features=(4, 8))
    >>> warped, u = net(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))
    >>> tuple(u.shape), bool(u.abs().max() < 1e-2)
    ((1, 2, 8, 8), True)
    """

    def __init__(self, dims: int, *, in_channels: int = 1, features: Sequence[int] = (16, 32, 32, 32),
                 integrate: bool = False, steps: int = 7, mode: str = "bilinear", padding: str = "border"):
        super().__init__()
        if dims not in (2, 3):
            raise InvalidParameterError("dims must be 2 or 3", parameter="dims", expected="2 | 3", found=dims)
        features = tuple(int(f) for f in features)
        if len(features) < 1 or any(f < 1 for f in features):
            raise InvalidParameterError("invalid features", parameter="features",
                                        expected="one or more positive channel counts", found=features)
        self.dims, self.in_channels, self.features = dims, in_channels, features
        self.integrate, self.steps, self.mode, self.padding = integrate, steps, mode, padding
        self.encoder = nn.ModuleList()
        cin = 2 * in_channels
        for level, f in enumerate(features):
            self.encoder.append(_ConvAct(dims, cin, f, stride=1 if level == 0 else 2))
            cin = f
        self.decoder = nn.ModuleList()
        for level in range(len(features) - 2, -1, -1):
            self.decoder.append(_ConvAct(dims, cin + features[level], features[level]))
            cin = features[level]
        self.refine = nn.Sequential(_ConvAct(dims, cin, features[0]), _ConvAct(dims, features[0], features[0]))
        self.head = conv_nd(dims, features[0], dims, 3, bias=True)
        nn.init.normal_(self.head.weight, mean=0.0, std=1e-5)
        nn.init.zeros_(self.head.bias)
        self.last_velocity: torch.Tensor | None = None

    @property
    def divisor(self) -> int:
        """Spatial sizes must be multiples of this."""
        return 2 ** (len(self.features) - 1)

    def _check(self, fixed: torch.Tensor, moving: torch.Tensor) -> None:
        axes = "(B, C, Y, X)" if self.dims == 2 else "(B, C, Z, Y, X)"
        for name, x in (("fixed", fixed), ("moving", moving)):
            if x.ndim != self.dims + 2 or x.shape[1] != self.in_channels:
                raise InvalidParameterError("network input has the wrong shape", parameter=name,
                                            expected=f"{axes} with C = {self.in_channels}", found=tuple(x.shape))
        if fixed.shape != moving.shape:
            raise InvalidParameterError("fixed and moving shapes differ", parameter="moving",
                                        expected=tuple(fixed.shape), found=tuple(moving.shape),
                                        fix="resample the moving image to the fixed grid first")
        if any(s % self.divisor for s in fixed.shape[2:]):
            raise InvalidParameterError("spatial size not divisible by 2**(levels - 1)", parameter="fixed",
                                        expected=f"multiples of {self.divisor}", found=tuple(fixed.shape[2:]),
                                        fix="pad or crop to a multiple, or use fewer levels")

    def predict_field(self, fixed: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        """Raw network output ``(B, dims, *spatial)``: displacement, or velocity when ``integrate``."""
        self._check(fixed, moving)
        x = torch.cat([fixed, moving], dim=1)
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        skips.pop()
        for block in self.decoder:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = block(torch.cat([x, skips.pop()], dim=1))
        return self.head(self.refine(x))

    def forward(self, fixed: torch.Tensor, moving: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        field = self.predict_field(fixed, moving)
        if self.integrate:
            self.last_velocity = field
            field = integrate_velocity(field, self.steps)
        return warp(moving, field, mode=self.mode, padding=self.padding), field
