"""MobileNetV3-Small (Howard et al. 2019), for 2D and 3D.

Registered as ``"mobilenetv3_small"``: the eleven inverted-residual blocks of the paper's Table 2 (1x1 expansion,
depthwise k x k(x k), optional squeeze-excitation with a hard-sigmoid gate, 1x1 projection; ReLU in the first
three blocks, hard-swish after), a 1x1 convolution to 576 channels, global average pooling, a 1024-wide linear
layer with hard-swish, dropout and the classifier. Channels scale by ``width / 16`` (rounded to multiples of 8),
so ``width=16`` is the paper's width multiplier 1.0: with 3 input channels, 1000 classes and
``stem="imagenet"`` (3x3 stride-2 stem convolution) the layers are those of torchvision's ``mobilenet_v3_small``.
``stem="small"`` makes the stem convolution stride 1 (total stride 16 instead of 32). The SE blocks are part of
the architecture, so ``spec.se`` does not change this model.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import nn

from medimg.models.classifier_spec import ClassifierSpec
from medimg.models.classifiers import (
    Backbone,
    Classifier,
    ClassifierHead,
    conv,
    init_classifier_weights,
    norm_factory,
)
from medimg.models.registry import register_classifier

__all__ = ["BlockConfig", "MOBILENETV3_SMALL", "make_divisible", "InvertedResidual", "mobilenet_backbone"]


class BlockConfig(NamedTuple):
    """One row of the MobileNetV3 table (channels at width multiplier 1.0)."""

    cin: int
    kernel: int
    expanded: int
    cout: int
    se: bool
    hardswish: bool
    stride: int


MOBILENETV3_SMALL: tuple[BlockConfig, ...] = (
    BlockConfig(16, 3, 16, 16, True, False, 2),
    BlockConfig(16, 3, 72, 24, False, False, 2),
    BlockConfig(24, 3, 88, 24, False, False, 1),
    BlockConfig(24, 5, 96, 40, True, True, 2),
    BlockConfig(40, 5, 240, 40, True, True, 1),
    BlockConfig(40, 5, 240, 40, True, True, 1),
    BlockConfig(40, 5, 120, 48, True, True, 1),
    BlockConfig(48, 5, 144, 48, True, True, 1),
    BlockConfig(48, 5, 288, 96, True, True, 2),
    BlockConfig(96, 5, 576, 96, True, True, 1),
    BlockConfig(96, 5, 576, 96, True, True, 1),
)
#: width of the head's hidden linear layer at width multiplier 1.0
HIDDEN = 1024


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (at least ``divisor``), never below 90 % of it.

    >>> make_divisible(16 * 0.5), make_divisible(72 * 0.75), make_divisible(88 // 4)
    (8, 56, 24)
    """
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


class _SqueezeExcitation(nn.Module):
    """MobileNetV3's SE: pool, 1x1 conv, ReLU, 1x1 conv, hard-sigmoid gate."""

    def __init__(self, dims: int, channels: int, squeeze: int):
        super().__init__()
        self.reduce = conv(dims, channels, squeeze, 1, bias=True)
        self.expand = conv(dims, squeeze, channels, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(w))))


def _cna(dims: int, cin: int, cout: int, kernel: int, norm: Callable[[int], nn.Module], act: nn.Module | None, *,
         stride: int = 1, groups: int = 1) -> nn.Sequential:
    layers = [conv(dims, cin, cout, kernel, stride=stride, groups=groups), norm(cout)]
    return nn.Sequential(*layers, act) if act is not None else nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """[1x1 expand], depthwise conv, [SE], 1x1 project; the input is added when shape allows (stride 1, same
    channels)."""

    def __init__(self, dims: int, cfg: BlockConfig, norm: Callable[[int], nn.Module]):
        super().__init__()
        act: type[nn.Module] = nn.Hardswish if cfg.hardswish else nn.ReLU
        layers: list[nn.Module] = []
        if cfg.expanded != cfg.cin:
            layers.append(_cna(dims, cfg.cin, cfg.expanded, 1, norm, act(inplace=True)))
        layers.append(_cna(dims, cfg.expanded, cfg.expanded, cfg.kernel, norm, act(inplace=True), stride=cfg.stride,
                           groups=cfg.expanded))
        if cfg.se:
            layers.append(_SqueezeExcitation(dims, cfg.expanded, make_divisible(cfg.expanded // 4)))
        layers.append(_cna(dims, cfg.expanded, cfg.cout, 1, norm, None))
        self.block = nn.Sequential(*layers)
        self.residual = cfg.stride == 1 and cfg.cin == cfg.cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.residual else out


def _scaled(cfg: BlockConfig, mult: float) -> BlockConfig:
    return cfg._replace(cin=make_divisible(cfg.cin * mult), expanded=make_divisible(cfg.expanded * mult),
                        cout=make_divisible(cfg.cout * mult))


def mobilenet_backbone(spec: ClassifierSpec, table: tuple[BlockConfig, ...] = MOBILENETV3_SMALL) -> Backbone:
    """Stem, one stage per inverted-residual block, and the last 1x1 conv (the ``cam_layer``) to 6 x channels.

    Example:
        >>> bb = mobilenet_backbone(ClassifierSpec(dims=2, width=8))
        >>> bb(torch.zeros(1, 1, 32, 32)).shape, bb.stride
        (torch.Size([1, 288, 2, 2]), 16)
    """
    dims, norm, mult = spec.dims, norm_factory(spec, spec.dims), spec.width / 16
    rows = [_scaled(cfg, mult) for cfg in table]
    first = 2 if spec.stem == "imagenet" else 1
    stem = _cna(dims, spec.in_channels, rows[0].cin, 3, norm, nn.Hardswish(inplace=True), stride=first)
    stages: list[nn.Module] = [InvertedResidual(dims, cfg, norm) for cfg in rows]
    last = 6 * rows[-1].cout
    stages.append(_cna(dims, rows[-1].cout, last, 1, norm, nn.Hardswish(inplace=True)))
    stride = first
    for cfg in rows:
        stride *= cfg.stride
    return Backbone(stem, stages, dims=dims, channels=last, stride=stride)


@register_classifier("mobilenetv3_small")
def build_mobilenetv3_small(spec: ClassifierSpec) -> Classifier:
    """MobileNetV3-Small; the head has the paper's hidden layer (1024 x ``width / 16``, hard-swish).

    Example:
        >>> net = build_mobilenetv3_small(ClassifierSpec(dims=3, width=8)).eval()
        >>> net(torch.zeros(1, 1, 16, 16, 16)).shape
        torch.Size([1, 2])
    """
    backbone = mobilenet_backbone(spec)
    head = ClassifierHead(backbone.channels, spec.n_classes, dropout=spec.dropout,
                          hidden=make_divisible(HIDDEN * spec.width / 16), act=nn.Hardswish(inplace=True))
    net = Classifier(spec, backbone, head)
    init_classifier_weights(net)
    return net
