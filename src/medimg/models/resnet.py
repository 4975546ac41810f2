"""ResNet-18/34 with basic blocks (He et al. 2016), for 2D and 3D, and the 2.5D ResNet-18.

Registered as ``"resnet18"`` and ``"resnet34"`` (stages of 2-2-2-2 and 3-4-6-3 basic blocks, ``width`` x 1, 2,
4, 8 channels, optional squeeze-excitation before each residual sum) and ``"resnet18_25d"`` (a volume of
``spec.slices`` slices stacked as channels of a 2D ResNet-18). At ``width=64`` with ``stem="imagenet"`` the
layers are those of torchvision's ``resnet18``/``resnet34`` (convolutions without bias, 1x1 projection
shortcuts); ``stem="small"`` replaces the 7x7 stride-2 convolution and max pooling by a 3x3 stride-1 convolution
(total stride 8 instead of 32), as for CIFAR-sized and MedMNIST-3D inputs.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from medimg.models.blocks import SqueezeExcitation
from medimg.models.classifier_spec import ClassifierSpec
from medimg.models.classifiers import (
    Backbone,
    Classifier,
    ClassifierHead,
    ConvFactory,
    conv_factory,
    init_classifier_weights,
    norm_factory,
    require_volume_input,
)
from medimg.models.registry import register_classifier

__all__ = ["BasicBlock", "resnet_backbone", "build_resnet"]

_MAXPOOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
#: squeeze-excitation reduction of the residual blocks (Hu et al. 2018)
SE_REDUCTION = 16


class BasicBlock(nn.Module):
    """Two 3x3(x3) conv-norm layers, ReLU between, optional SE, added to the (projected) input, then ReLU.

    Args:
        conv: makes the convolutions (plain 2D/3D, or ACS).
        norm: makes the norm layers.
        cin: input channels.
        cout: output channels.
        stride: stride of the first convolution and of the 1x1 projection shortcut.
        se: squeeze-excitation module applied to the residual branch, or None.
    """

    def __init__(self, conv: ConvFactory, norm: Callable[[int], nn.Module], cin: int, cout: int, *,
                 stride: int = 1, se: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv(cin, cout, 3, stride)
        self.norm1 = norm(cout)
        self.conv2 = conv(cout, cout, 3, 1)
        self.norm2 = norm(cout)
        self.se = se
        self.shortcut = (nn.Sequential(conv(cin, cout, 1, stride), norm(cout))
                         if stride != 1 or cin != cout else None)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        if self.se is not None:
            out = self.se(out)
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.act(out + identity)


def resnet_backbone(spec: ClassifierSpec, depths: Sequence[int], *, dims: int, in_channels: int,
                    conv: ConvFactory | None = None) -> Backbone:
    """Stem and four stages of basic blocks (``depths`` blocks each) with ``width`` x 1, 2, 4, 8 channels.

    Args:
        spec: uses ``width``, ``stem``, ``norm`` and ``se``.
        depths: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
        dims: 2 or 3, the dimensionality of the layers (norms, pooling, SE).
        in_channels: channels of the backbone input.
        conv: makes the convolutions; default plain 2D/3D ones (the ACS model passes its own).

    Example:
        >>> bb = resnet_backbone(ClassifierSpec(dims=2, width=4), (1, 1, 1, 1), dims=2, in_channels=1)
        >>> bb(torch.zeros(1, 1, 16, 16)).shape, bb.stride
        (torch.Size([1, 32, 2, 2]), 8)
    """
    conv = conv or conv_factory(dims)
    norm = norm_factory(spec, dims)
    w = spec.width
    if spec.stem == "imagenet":
        stem = nn.Sequential(conv(in_channels, w, 7, 2), norm(w), nn.ReLU(inplace=True),
                             _MAXPOOL[dims](kernel_size=3, stride=2, padding=1))
        stride = 4
    else:
        stem = nn.Sequential(conv(in_channels, w, 3, 1), norm(w), nn.ReLU(inplace=True))
        stride = 1
    stages, cin = [], w
    for i, n_blocks in enumerate(depths):
        cout, s = w * 2**i, (1 if i == 0 else 2)
        blocks = []
        for j in range(n_blocks):
            se = SqueezeExcitation(dims, cout, reduction=SE_REDUCTION) if spec.se else None
            blocks.append(BasicBlock(conv, norm, cin if j == 0 else cout, cout, stride=s if j == 0 else 1, se=se))
        stages.append(nn.Sequential(*blocks))
        stride *= s
        cin = cout
    return Backbone(stem, stages, dims=dims, channels=cin, stride=stride)


def build_resnet(spec: ClassifierSpec, depths: Sequence[int], *, stack_slices: bool = False,
                 conv: ConvFactory | None = None) -> Classifier:
    """A ResNet classifier; with ``stack_slices`` a 2D one over B x (C * slices) x Y x X (2.5D)."""
    dims = 2 if stack_slices else spec.dims
    in_channels = spec.in_channels * (spec.slices if stack_slices else 1)
    backbone = resnet_backbone(spec, depths, dims=dims, in_channels=in_channels, conv=conv)
    net = Classifier(spec, backbone, ClassifierHead(backbone.channels, spec.n_classes, dropout=spec.dropout),
                     stack_slices=stack_slices)
    init_classifier_weights(net)
    return net


@register_classifier("resnet18")
def build_resnet18(spec: ClassifierSpec) -> Classifier:
    """ResNet-18: 2-2-2-2 basic blocks.

    Example:
        >>> net = build_resnet18(ClassifierSpec(dims=3, width=4)).eval()
        >>> net(torch.zeros(2, 1, 8, 8, 8)).shape
        torch.Size([2, 2])
    """
    return build_resnet(spec, (2, 2, 2, 2))


@register_classifier("resnet34")
def build_resnet34(spec: ClassifierSpec) -> Classifier:
    """ResNet-34: 3-4-6-3 basic blocks."""
    return build_resnet(spec, (3, 4, 6, 3))


@register_classifier("resnet18_25d")
def build_resnet18_25d(spec: ClassifierSpec) -> Classifier:
    """2.5D ResNet-18: input B x C x Z x Y x X with Z = ``spec.slices``, run as a 2D network on C * Z channels.

    ``cam_layer`` gives the 2D feature map as a one-slice volume, B x 8 width x 1 x y x x, so that Grad-CAM
    upsamples it to every slice.

    Example:
        >>> net = build_resnet18_25d(ClassifierSpec(dims=3, width=4, slices=5)).eval()
        >>> net(torch.zeros(2, 1, 5, 16, 16)).shape
        torch.Size([2, 2])
    """
    require_volume_input(spec, "resnet18_25d")
    return build_resnet(spec, (2, 2, 2, 2), stack_slices=True)
