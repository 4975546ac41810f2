"""U-Net++ (Zhou et al. 2018): nested, densely connected skip pathways, registered as ``"unet_pp"``.

Node ``X[i][j]`` (level ``i``, column ``j``) sees every earlier node of its level and the upsampled node
``X[i+1][j-1]``. The full-resolution output is the mean of the nested heads on ``X[0][1..n-1]`` (the paper's
"accurate" mode, so every nested sub-network is supervised); the coarser deep-supervision outputs come from the
last node of each level, ``X[k][n-1-k]``, so the outputs have the same shapes as every other registered model.
"""

from __future__ import annotations

import torch
from torch import nn

from medimg.models.blocks import ConvBlock, UpSample, check_input, conv_nd, init_weights
from medimg.models.registry import register_model
from medimg.models.spec import NetworkSpec

__all__ = ["UNetPlusPlus"]


class UNetPlusPlus(nn.Module):
    """Nested U-Net; the forward contract is the one of :class:`medimg.models.unet.UNet`."""

    def __init__(self, spec: NetworkSpec):
        super().__init__()
        self.spec = spec
        dims, ch, kernels = spec.dims, spec.stage_channels(), spec.resolved_pool_kernels()
        n = spec.n_stages
        common = {"block": spec.block, "norm": spec.norm}
        self.encoder = nn.ModuleList([ConvBlock(dims, spec.in_channels, ch[0], **common)])
        self.encoder.extend(ConvBlock(dims, ch[i - 1], ch[i], stride=kernels[i - 1], **common) for i in range(1, n))
        # nodes[f"{i}_{j}"] for j >= 1: input = j earlier nodes of level i + one upsampled node = (j + 1) * ch[i]
        self.ups = nn.ModuleDict()
        self.nodes = nn.ModuleDict()
        for j in range(1, n):
            for i in range(n - j):
                self.ups[f"{i}_{j}"] = UpSample(dims, ch[i + 1], ch[i], kernels[i])
                self.nodes[f"{i}_{j}"] = ConvBlock(dims, (j + 1) * ch[i], ch[i], dropout=spec.dropout, **common)
        self.nested_heads = nn.ModuleList(conv_nd(dims, ch[0], spec.n_classes, 1, bias=True) for _ in range(1, n))
        self.level_heads = nn.ModuleList(conv_nd(dims, ch[k], spec.n_classes, 1, bias=True) for k in range(1, n - 1))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        check_input(x, self.spec)
        n = self.spec.n_stages
        grid: list[list[torch.Tensor]] = []
        for stage in self.encoder:
            x = stage(x)
            grid.append([x])
        for j in range(1, n):
            for i in range(n - j):
                key = f"{i}_{j}"
                up = self.ups[key](grid[i + 1][j - 1])
                grid[i].append(self.nodes[key](torch.cat([*grid[i], up], dim=1)))
        full = torch.stack([head(f) for head, f in zip(self.nested_heads, grid[0][1:])]).mean(dim=0)
        if not (self.training and self.spec.deep_supervision):
            return _fp32(full)
        return [_fp32(full)] + [_fp32(head(grid[k][n - 1 - k])) for k, head in enumerate(self.level_heads, 1)]


def _fp32(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


@register_model("unet_pp", aliases=("unetpp", "nested_unet"))
def build_unet_pp(spec: NetworkSpec) -> UNetPlusPlus:
    """U-Net++ with nested dense skips."""
    return UNetPlusPlus(spec)
