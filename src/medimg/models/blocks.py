"""Building blocks shared by the registered networks, for 2D and 3D alike.

Everything here is dimension-agnostic (``dims`` 2 or 3) and tuned for the CPU: convolutions without a bias when a
norm follows (the norm's affine shift makes it redundant), in-place LeakyReLU, no ``.contiguous()`` copies, so
a model moved to ``torch.channels_last_3d`` stays in that layout, and no ops that break bf16 autocast.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from medimg.core.errors import InvalidParameterError
from medimg.models.spec import NetworkSpec

__all__ = [
    "conv_nd", "make_norm", "ConvNormAct", "SqueezeExcitation", "ConvBlock", "UpSample",
    "AttentionGate", "ASPP", "SegmentationHeads", "init_weights", "check_input",
]

NEG_SLOPE = 1e-2

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_TCONV = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_DROPOUT = {2: nn.Dropout2d, 3: nn.Dropout3d}
_INSTANCE = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
_BATCH = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def conv_nd(dims: int, cin: int, cout: int, kernel: int | Sequence[int] = 3, *, stride: int | Sequence[int] = 1,
            dilation: int = 1, bias: bool = False) -> nn.Module:
    """A 2D/3D convolution with 'same' padding (output size = input size / stride).

    1x1 convolutions stay ``nn.Conv``: a batched-matmul replacement measured slower (fwd+bwd of the default 3D
    U-Net: 556 vs 493 ms fp32, 370 vs 281 ms bf16, 1 thread).
    """
    kernel = (kernel,) * dims if isinstance(kernel, int) else tuple(kernel)
    padding = tuple(dilation * (k - 1) // 2 for k in kernel)
    return _CONV[dims](cin, cout, kernel, stride=stride, padding=padding, dilation=dilation, bias=bias)


def make_norm(norm: str, dims: int, channels: int) -> nn.Module:
    """Instance norm (affine, no running stats), batch norm, or group norm with up to 8 groups."""
    if norm == "instance":
        return _INSTANCE[dims](channels, eps=1e-5, affine=True)
    if norm == "batch":
        return _BATCH[dims](channels)
    if norm == "group":
        return nn.GroupNorm(math.gcd(channels, 8), channels)
    raise InvalidParameterError("unknown norm", parameter="norm", expected="instance | batch | group", found=norm)


class ConvNormAct(nn.Sequential):
    """conv -> norm -> LeakyReLU (the activation can be left out)."""

    def __init__(self, dims: int, cin: int, cout: int, *, kernel: int | Sequence[int] = 3,
                 stride: int | Sequence[int] = 1, dilation: int = 1, norm: str = "instance", act: bool = True):
        layers = [conv_nd(dims, cin, cout, kernel, stride=stride, dilation=dilation), make_norm(norm, dims, cout)]
        if act:
            layers.append(nn.LeakyReLU(NEG_SLOPE, inplace=True))
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    """Channel re-weighting from globally pooled features (Hu et al. 2018)."""

    def __init__(self, dims: int, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.reduce = conv_nd(dims, channels, hidden, 1, bias=True)
        self.expand = conv_nd(dims, hidden, channels, 1, bias=True)
        self.act = nn.LeakyReLU(NEG_SLOPE, inplace=True)
        self._spatial = tuple(range(2, 2 + dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean(dim=self._spatial, keepdim=True)
        return x * torch.sigmoid(self.expand(self.act(self.reduce(w))))


class ConvBlock(nn.Module):
    """Two 3x3(x3) convolutions; ``block`` = "plain", "residual" (pre-activation sum) or "se".

    The first convolution carries the stride (strided-conv downsampling). Spatial dropout, when > 0, sits between
    the two convolutions, so MC dropout can switch it on at inference.
    """

    def __init__(self, dims: int, cin: int, cout: int, *, block: str = "residual", norm: str = "instance",
                 stride: int | Sequence[int] = 1, dropout: float = 0.0, dilation: int = 1):
        super().__init__()
        self.residual = block in ("residual", "se")
        self.conv1 = ConvNormAct(dims, cin, cout, stride=stride, norm=norm, dilation=dilation)
        self.dropout = _DROPOUT[dims](dropout) if dropout > 0 else None
        self.conv2 = ConvNormAct(dims, cout, cout, norm=norm, act=not self.residual, dilation=dilation)
        self.se = SqueezeExcitation(dims, cout) if block == "se" else None
        self.shortcut: nn.Module | None = None
        if self.residual:
            strided = any(s != 1 for s in ((stride,) if isinstance(stride, int) else stride))
            if strided or cin != cout:
                self.shortcut = ConvNormAct(dims, cin, cout, kernel=1, stride=stride, norm=norm, act=False)
            self.act = nn.LeakyReLU(NEG_SLOPE, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        if self.dropout is not None:
            out = self.dropout(out)
        out = self.conv2(out)
        if not self.residual:
            return out
        if self.se is not None:
            out = self.se(out)
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.act(out + identity)


class UpSample(nn.Module):
    """Transposed convolution with kernel = stride = the pool kernel it undoes."""

    def __init__(self, dims: int, cin: int, cout: int, kernel: Sequence[int]):
        super().__init__()
        self.conv = _TCONV[dims](cin, cout, tuple(kernel), stride=tuple(kernel), bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class AttentionGate(nn.Module):
    """Additive attention gate on a skip connection (Oktay et al. 2018).

    The gating signal is the upsampled decoder feature at the skip's resolution (as MONAI's AttentionUnet does),
    which avoids the strided projection and interpolation of the original and is cheaper on the CPU.
    Returns ``skip * alpha`` with ``alpha`` in (0, 1), one weight per voxel.
    """

    def __init__(self, dims: int, skip_channels: int, gate_channels: int, *, norm: str = "instance"):
        super().__init__()
        inter = max(skip_channels // 2, 1)
        self.theta = ConvNormAct(dims, skip_channels, inter, kernel=1, norm=norm, act=False)
        self.phi = ConvNormAct(dims, gate_channels, inter, kernel=1, norm=norm, act=False)
        self.psi = conv_nd(dims, inter, 1, 1, bias=True)
        self.act = nn.LeakyReLU(NEG_SLOPE, inplace=True)

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        alpha = torch.sigmoid(self.psi(self.act(self.theta(skip) + self.phi(gate))))
        return skip * alpha


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (Chen et al. 2017) for a small bottleneck.

    Parallel branches: a 1x1 conv, one 3x3(x3) conv per dilation ``rate`` and a global-average-pool branch; their
    concatenation is projected back to ``channels``. The default rates (1, 2, 3) fit feature maps of 4-16 voxels,
    where DeepLab's (6, 12, 18) would mostly see padding. The pooled branch has no norm (one voxel per channel).
    """

    def __init__(self, dims: int, channels: int, *, rates: Sequence[int] = (1, 2, 3), norm: str = "instance",
                 dropout: float = 0.0):
        super().__init__()
        self.branches = nn.ModuleList([ConvNormAct(dims, channels, channels, kernel=1, norm=norm)])
        self.branches.extend(ConvNormAct(dims, channels, channels, dilation=r, norm=norm) for r in rates)
        self.pool_conv = conv_nd(dims, channels, channels, 1, bias=True)
        self.act = nn.LeakyReLU(NEG_SLOPE, inplace=True)
        n = len(self.branches) + 1
        self.project = ConvNormAct(dims, n * channels, channels, kernel=1, norm=norm)
        self.dropout = _DROPOUT[dims](dropout) if dropout > 0 else None
        self._spatial = tuple(range(2, 2 + dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        pooled = self.act(self.pool_conv(x.mean(dim=self._spatial, keepdim=True)))
        outs.append(pooled.expand_as(outs[0]))
        out = self.project(torch.cat(outs, dim=1))
        return out if self.dropout is None else self.dropout(out)


class SegmentationHeads(nn.Module):
    """1x1 convolutions to ``n_classes`` logits, one per decoder level (full resolution first).

    In training mode with deep supervision all heads run and a list comes back; otherwise only the full-resolution
    head runs and one tensor comes back. Logits computed under autocast are cast back to float32 (a cheap copy of
    ``n_classes`` channels) so that softmax and losses run in full precision; float64 stays float64.
    """

    def __init__(self, dims: int, channels: Sequence[int], n_classes: int, *, deep_supervision: bool):
        super().__init__()
        self.deep_supervision = deep_supervision
        self.heads = nn.ModuleList(conv_nd(dims, c, n_classes, 1, bias=True) for c in channels)

    @staticmethod
    def _fp32(x: torch.Tensor) -> torch.Tensor:
        return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        """``features``: decoder outputs, full resolution first, one per head."""
        if self.training and self.deep_supervision:
            return [self._fp32(head(f)) for head, f in zip(self.heads, features)]
        return self._fp32(self.heads[0](features[0]))


def init_weights(module: nn.Module) -> None:
    """He initialisation for LeakyReLU (as nnU-Net), zero biases; norms keep weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            nn.init.kaiming_normal_(m.weight, a=NEG_SLOPE)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def check_input(x: torch.Tensor, spec: NetworkSpec) -> None:
    """Check a network input against the spec: (B, in_channels, *spatial), spatial divisible by the pool kernels
    (and, with instance norm, a bottleneck of more than one voxel).

    Raises:
        InvalidParameterError: naming ``x`` with the expected and the found shape.
    """
    if not isinstance(x, torch.Tensor):
        raise InvalidParameterError("network input must be a tensor", parameter="x", found=type(x).__name__)
    axes = "B x C x Y x X" if spec.dims == 2 else "B x C x Z x Y x X"
    if x.ndim != spec.dims + 2 or x.shape[1] != spec.in_channels:
        raise InvalidParameterError(
            "network input has the wrong shape", parameter="x",
            expected=f"{axes} with C = {spec.in_channels}", found=tuple(x.shape),
            fix="add the batch/channel axes (x[None, None]) or set in_channels/dims in the spec")
    div = spec.divisor()
    spatial = tuple(x.shape[2:])
    if any(s % d for s, d in zip(spatial, div)):
        raise InvalidParameterError(
            "spatial size not divisible by the product of the pool kernels", parameter="x",
            expected=f"multiples of {div}", found=spatial, fix="pad or crop the patch to a multiple")
    if spec.norm == "instance" and spatial == div:
        raise InvalidParameterError(
            "the bottleneck would be one voxel, where instance norm is undefined", parameter="x",
            expected=f"a spatial size larger than {div} along at least one axis", found=spatial,
            fix="use a larger patch or fewer stages (n_stages)")
