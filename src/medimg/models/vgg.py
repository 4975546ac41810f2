"""VGG-16 with batch norm (Simonyan & Zisserman 2015), for 2D and 3D, with a global-average-pooling head.

Registered as ``"vgg16"``: 13 3x3(x3) conv-norm-ReLU layers in five blocks of 2, 2, 3, 3, 3 with ``width`` x 1,
2, 4, 8, 8 channels (64 in the paper) and 2x max pooling between the blocks. The paper's fifth pooling and its
two 4096-wide fully connected layers (about 120 M of VGG-16's 138 M parameters) are replaced by global average
pooling and one linear layer, so the network stays small. ``stem="small"`` leaves out the pooling after the first
block (total stride 8 instead of 16). ``se=True`` adds squeeze-excitation at the end of each block.
"""

from __future__ import annotations

import torch  # noqa: F401  (used by the doctests)
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

__all__ = ["VGG16_BLOCKS", "vgg_backbone"]

#: (channel multiple of ``width``, convolutions) per block
VGG16_BLOCKS: tuple[tuple[int, int], ...] = ((1, 2), (2, 2), (4, 3), (8, 3), (8, 3))
_MAXPOOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}


def vgg_backbone(spec: ClassifierSpec, blocks: tuple[tuple[int, int], ...] = VGG16_BLOCKS) -> Backbone:
    """Conv blocks with max pooling (kernel 2, ceil mode) at the start of each block after the first.

    Example:
        >>> bb = vgg_backbone(ClassifierSpec(dims=2, width=4, stem="imagenet"))
        >>> bb(torch.zeros(1, 1, 32, 32)).shape, bb.stride
        (torch.Size([1, 32, 2, 2]), 16)
    """
    dims, norm = spec.dims, norm_factory(spec, spec.dims)
    stages: list[nn.Module] = []
    cin, stride = spec.in_channels, 1
    for i, (mult, n_convs) in enumerate(blocks):
        cout = spec.width * mult
        layers: list[nn.Module] = []
        if i > 1 or (i == 1 and spec.stem == "imagenet"):
            layers.append(_MAXPOOL[dims](kernel_size=2, stride=2, ceil_mode=True))
            stride *= 2
        for _ in range(n_convs):
            layers += [conv(dims, cin, cout, 3), norm(cout), nn.ReLU(inplace=True)]
            cin = cout
        if spec.se:
            layers.append(SqueezeExcitation(dims, cout, reduction=16))
        stages.append(nn.Sequential(*layers))
    return Backbone(nn.Identity(), stages, dims=dims, channels=cin, stride=stride)


@register_classifier("vgg16")
def build_vgg16(spec: ClassifierSpec) -> Classifier:
    """VGG-16 with batch norm (or the spec's norm) and a global-average-pooling head.

    Example:
        >>> net = build_vgg16(ClassifierSpec(dims=2, width=4, n_classes=5)).eval()
        >>> net(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 5])
    """
    backbone = vgg_backbone(spec)
    net = Classifier(spec, backbone, ClassifierHead(backbone.channels, spec.n_classes, dropout=spec.dropout))
    init_classifier_weights(net)
    return net
