"""DenseNet-121 (Huang et al. 2017, DenseNet-BC), for 2D and 3D.

Registered as ``"densenet121"``: dense blocks of 6, 12, 24 and 16 bottleneck layers (norm-ReLU-1x1 conv to
4 x growth, norm-ReLU-3x3 conv to growth, output concatenated to the input), transitions (norm-ReLU-1x1 conv
halving the channels, compression 0.5, then 2x average pooling) and a final norm-ReLU. The stem has ``width``
channels and the growth rate is ``spec.resolved_growth_rate()`` (``width // 2`` by default): at ``width=64`` with
``stem="imagenet"`` the layers are those of torchvision's and MONAI's ``DenseNet121``. ``stem="small"`` uses a 3x3
stride-1 convolution and no max pooling (total stride 8 instead of 32). ``se=True`` adds squeeze-excitation
after each dense block.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from medimg.models.blocks import SqueezeExcitation
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

__all__ = ["DenseLayer", "densenet_backbone", "DENSENET121_BLOCKS"]

DENSENET121_BLOCKS: tuple[int, ...] = (6, 12, 24, 16)
#: bottleneck width as a multiple of the growth rate
BN_SIZE = 4
_MAXPOOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
_AVGPOOL = {2: nn.AvgPool2d, 3: nn.AvgPool3d}


class DenseLayer(nn.Module):
    """Bottleneck layer: returns ``cat([x, conv3(relu(norm(conv1(relu(norm(x))))))])`` with ``growth`` new
    channels."""

    def __init__(self, dims: int, cin: int, growth: int, norm: Callable[[int], nn.Module]):
        super().__init__()
        inner = BN_SIZE * growth
        self.norm1 = norm(cin)
        self.conv1 = conv(dims, cin, inner, 1)
        self.norm2 = norm(inner)
        self.conv2 = conv(dims, inner, growth, 3)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new = self.conv2(self.act(self.norm2(self.conv1(self.act(self.norm1(x))))))
        return torch.cat([x, new], dim=1)


def densenet_backbone(spec: ClassifierSpec, blocks: tuple[int, ...] = DENSENET121_BLOCKS) -> Backbone:
    """Stem, then one stage per dense block: block [+ SE] + transition; the last: block [+ SE] + norm-ReLU.

    Example:
        >>> bb = densenet_backbone(ClassifierSpec(dims=2, width=8), (1, 1))
        >>> bb(torch.zeros(1, 1, 16, 16)).shape, bb.stride  # 8 + 4 -> 6 -> 6 + 4 channels
        (torch.Size([1, 10, 8, 8]), 2)
    """
    dims, norm, growth = spec.dims, norm_factory(spec, spec.dims), spec.resolved_growth_rate()
    w = spec.width
    if spec.stem == "imagenet":
        stem = nn.Sequential(conv(dims, spec.in_channels, w, 7, stride=2), norm(w), nn.ReLU(inplace=True),
                             _MAXPOOL[dims](kernel_size=3, stride=2, padding=1))
        stride = 4
    else:
        stem = nn.Sequential(conv(dims, spec.in_channels, w, 3), norm(w), nn.ReLU(inplace=True))
        stride = 1
    stages: list[nn.Module] = []
    c = w
    for i, n_layers in enumerate(blocks):
        layers: list[nn.Module] = []
        for _ in range(n_layers):
            layers.append(DenseLayer(dims, c, growth, norm))
            c += growth
        if spec.se:
            layers.append(SqueezeExcitation(dims, c, reduction=16))
        if i < len(blocks) - 1:
            layers += [norm(c), nn.ReLU(inplace=True), conv(dims, c, c // 2, 1),
                       _AVGPOOL[dims](kernel_size=2, stride=2, ceil_mode=True)]
            c //= 2
            stride *= 2
        else:
            layers += [norm(c), nn.ReLU(inplace=True)]
        stages.append(nn.Sequential(*layers))
    return Backbone(stem, stages, dims=dims, channels=c, stride=stride)


@register_classifier("densenet121")
def build_densenet121(spec: ClassifierSpec) -> Classifier:
    """DenseNet-121 (6-12-24-16 dense layers, compression 0.5).

    Example:
        >>> net = build_densenet121(ClassifierSpec(dims=2, width=4)).eval()
        >>> net(torch.zeros(1, 1, 16, 16)).shape
        torch.Size([1, 2])
    """
    backbone = densenet_backbone(spec)
    net = Classifier(spec, backbone, ClassifierHead(backbone.channels, spec.n_classes, dropout=spec.dropout))
    init_classifier_weights(net)
    return net
