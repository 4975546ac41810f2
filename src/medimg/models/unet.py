"""U-Net for 2D and 3D, with optional attention gates or an ASPP bottleneck.

Registered as ``"unet"`` (Ronneberger et al. 2015, the nnU-Net flavour: strided-conv downsampling,
transposed-conv upsampling, instance norm, LeakyReLU, deep supervision), ``"attention_unet"`` (attention gates on
the skips, Oktay et al. 2018) and ``"deeplab_unet"`` (the bottleneck followed by atrous spatial pyramid pooling
with rates 1, 2, 3). One class covers the three; the options are constructor arguments, not subclasses.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from medimg.models.blocks import ASPP, AttentionGate, ConvBlock, SegmentationHeads, UpSample, check_input, init_weights
from medimg.models.registry import register_model
from medimg.models.spec import NetworkSpec

__all__ = ["UNet"]


class UNet(nn.Module):
    """Encoder-decoder with skip connections; see :class:`medimg.models.NetworkSpec` for the fields.

    Args:
        spec: the network specification.
        attention: gate each skip with an :class:`~medimg.models.blocks.AttentionGate`.
        aspp_rates: if given, an :class:`~medimg.models.blocks.ASPP` with these dilation rates follows the
            bottleneck block.

    Forward:
        ``x`` (B, in_channels, *spatial), spatial divisible by ``spec.divisor()``. Returns, in training mode with
        ``spec.deep_supervision``, a list of ``n_stages - 1`` float32 logits [full-res, 1/2, 1/4, ...]
        (see :func:`medimg.models.deep_supervision_scales`); otherwise one (B, n_classes, *spatial) tensor.

    Example:
        >>> net = UNet(NetworkSpec(dims=2, n_stages=3, base_channels=4))
        >>> [tuple(o.shape) for o in net(torch.zeros(1, 1, 16, 16))]
        [(1, 2, 16, 16), (1, 2, 8, 8)]
    """

    def __init__(self, spec: NetworkSpec, *, attention: bool = False, aspp_rates: Sequence[int] | None = None):
        super().__init__()
        self.spec = spec
        dims, ch, kernels = spec.dims, spec.stage_channels(), spec.resolved_pool_kernels()
        n = spec.n_stages
        common = {"block": spec.block, "norm": spec.norm}
        self.encoder = nn.ModuleList([ConvBlock(dims, spec.in_channels, ch[0], **common)])
        self.encoder.extend(ConvBlock(dims, ch[i - 1], ch[i], stride=kernels[i - 1], **common) for i in range(1, n))
        self.aspp = ASPP(dims, ch[-1], rates=aspp_rates, norm=spec.norm) if aspp_rates else None
        self.ups = nn.ModuleList(UpSample(dims, ch[i + 1], ch[i], kernels[i]) for i in range(n - 1))
        self.gates = (nn.ModuleList(AttentionGate(dims, ch[i], ch[i], norm=spec.norm) for i in range(n - 1))
                      if attention else None)
        self.decoder = nn.ModuleList(ConvBlock(dims, 2 * ch[i], ch[i], dropout=spec.dropout, **common)
                                     for i in range(n - 1))
        self.heads = SegmentationHeads(dims, ch[: n - 1], spec.n_classes, deep_supervision=spec.deep_supervision)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        check_input(x, self.spec)
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        if self.aspp is not None:
            x = self.aspp(x)
        features: list[torch.Tensor] = [x] * len(self.decoder)
        for i in reversed(range(len(self.decoder))):
            up = self.ups[i](x)
            skip = skips[i] if self.gates is None else self.gates[i](skips[i], up)
            x = self.decoder[i](torch.cat([up, skip], dim=1))
            features[i] = x
        return self.heads(features)


@register_model("unet", aliases=("unet3d", "nnunet"))
def build_unet(spec: NetworkSpec) -> UNet:
    """U-Net with plain/residual/SE blocks."""
    return UNet(spec)


@register_model("attention_unet", aliases=("att_unet",))
def build_attention_unet(spec: NetworkSpec) -> UNet:
    """U-Net with attention gates on the skips."""
    return UNet(spec, attention=True)


@register_model("deeplab_unet", aliases=("deeplab",))
def build_deeplab_unet(spec: NetworkSpec) -> UNet:
    """U-Net with an ASPP (rates 1, 2, 3) after the bottleneck."""
    return UNet(spec, aspp_rates=(1, 2, 3))
