"""Parts shared by the classification networks: the backbone/head/classifier composition, input checks, init.

A classifier is a :class:`Backbone` (stem, then stages; the last stage is the ``cam_layer`` that Grad-CAM hooks)
followed by global average pooling and a :class:`ClassifierHead` (dropout, then a linear layer to the logits).
The architectures live beside this module, one file each, and register themselves by name:
:mod:`~medimg.models.resnet` (``resnet18``, ``resnet34``, ``resnet18_25d``), :mod:`~medimg.models.acs`
(``resnet18_acs``), :mod:`~medimg.models.vgg` (``vgg16``), :mod:`~medimg.models.densenet` (``densenet121``),
:mod:`~medimg.models.mobilenet` (``mobilenetv3_small``) and :mod:`~medimg.models.slice_lstm` (``slice_lstm``).

Every downsampling step maps a size ``n`` to ``ceil(n / 2)``, so inputs of any size work (28^3 included), and the
last feature map is ``ceil(n / stride)`` voxels a side, with ``stride`` the classifier's total downsampling.

Example:
    >>> from medimg.models import ClassifierSpec, build_classifier
    >>> net = build_classifier(ClassifierSpec(name="vgg16", dims=3, width=4)).eval()
    >>> net(torch.zeros(1, 1, 12, 12, 12)).shape, net.stride
    (torch.Size([1, 2]), 8)
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from medimg.core.errors import InvalidParameterError
from medimg.models.blocks import make_norm
from medimg.models.classifier_spec import ClassifierSpec

__all__ = [
    "ConvFactory", "conv", "conv_factory", "Backbone", "DepthAxis", "ClassifierHead", "Classifier",
    "check_classifier_input", "init_classifier_weights", "norm_factory", "require_volume_input",
]

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}

#: ``factory(cin, cout, kernel, stride) -> module``: how a network makes its k x k (x k) convolutions.
ConvFactory = Callable[[int, int, int, int], nn.Module]


def conv(dims: int, cin: int, cout: int, kernel: int = 3, *, stride: int = 1, groups: int = 1,
         bias: bool = False) -> nn.Module:
    """A 2D/3D convolution with 'same' padding (output size = ceil(input size / stride)), no bias by default."""
    return _CONV[dims](cin, cout, kernel, stride=stride, padding=(kernel - 1) // 2, groups=groups, bias=bias)


def conv_factory(dims: int) -> ConvFactory:
    """The plain :func:`conv` as a :data:`ConvFactory`."""
    def make(cin: int, cout: int, kernel: int, stride: int) -> nn.Module:
        return conv(dims, cin, cout, kernel, stride=stride)
    return make


class Backbone(nn.Module):
    """Feature extractor: ``stem`` then ``stages``; the output is the last stage's feature map.

    Args:
        stem: the first layers (may be ``nn.Identity()``).
        stages: the stages, in order; the last one is :attr:`cam_layer`.
        dims: 2 or 3, the dimensionality the layers work in.
        channels: channels of the output feature map.
        stride: total downsampling factor along each (in-plane) axis.
    """

    def __init__(self, stem: nn.Module, stages: Sequence[nn.Module], *, dims: int, channels: int, stride: int):
        super().__init__()
        self.stem = stem
        self.stages = nn.Sequential(*stages)
        self.dims = dims
        self.channels = channels
        self.stride = stride

    @property
    def cam_layer(self) -> nn.Module:
        """The last stage: its output is the B x channels x (z) x y x x feature map Grad-CAM weighs."""
        return self.stages[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


class DepthAxis(nn.Module):
    """A 2D feature map as a one-slice volume: B x F x y x x to B x F x 1 x y x x.

    The 2.5D classifier's ``cam_layer``, so that Grad-CAM on a B x C x Z x Y x X input gets features with as many
    axes as the input (the map is then the same on every slice).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(2)


class ClassifierHead(nn.Module):
    """Feature vectors (..., channels) to logits (..., n_classes): [linear, act], dropout, linear.

    The dropout is an ``nn.Dropout`` (present even at p = 0, so the module layout does not depend on the value),
    right before the final linear layer, so MC dropout can switch it on at inference. Logits computed under
    autocast come back as float32 (a copy of ``n_classes`` numbers) for the loss; float64 stays float64.

    Args:
        channels: input features.
        n_classes: output logits.
        dropout: dropout probability.
        hidden: width of an optional hidden linear layer (MobileNetV3 has one), followed by ``act``.
        act: the hidden layer's activation (default ``nn.ReLU``).
    """

    def __init__(self, channels: int, n_classes: int, *, dropout: float = 0.0, hidden: int | None = None,
                 act: nn.Module | None = None):
        super().__init__()
        self.hidden = None if hidden is None else nn.Sequential(nn.Linear(channels, hidden),
                                                                act if act is not None else nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels if hidden is None else hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hidden is not None:
            x = self.hidden(x)
        out = self.fc(self.dropout(x))
        return out.float() if out.dtype in (torch.bfloat16, torch.float16) else out


class Classifier(nn.Module):
    """Backbone, global average pooling, head: ``(B, C, *spatial)`` to ``(B, n_classes)`` logits.

    Args:
        spec: the classifier specification (kept in :attr:`spec`).
        backbone: the feature extractor.
        head: the head, fed the pooled features (B, backbone.channels).
        stack_slices: 2.5D: the input is B x C x Z x Y x X with Z = ``spec.slices`` and is reshaped to
            B x (C * Z) x Y x X for a 2D backbone (channel c, slice z goes to channel c * Z + z).

    Attributes:
        cam_layer: the backbone's last stage; its output is B x F x (z) x y x x, y = ceil(Y / stride). For 2.5D,
            a :class:`DepthAxis` after it, whose output is B x F x 1 x y x x (as many axes as the input).
        stride: total downsampling of the backbone along each (in-plane) axis.
    """

    def __init__(self, spec: ClassifierSpec, backbone: Backbone, head: ClassifierHead, *,
                 stack_slices: bool = False):
        super().__init__()
        self.spec = spec
        self.backbone = backbone
        self.head = head
        self.stack_slices = stack_slices
        self.depth_axis = DepthAxis() if stack_slices else None

    @property
    def cam_layer(self) -> nn.Module:
        """The last convolutional block (see the class docstring for its output shape)."""
        return self.backbone.cam_layer if self.depth_axis is None else self.depth_axis

    @property
    def stride(self) -> int:
        """Total downsampling factor of the backbone."""
        return self.backbone.stride

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map (the ``cam_layer`` output) for a checked input."""
        check_classifier_input(x, self.spec, stride=self.stride, stacked=self.stack_slices,
                               in_plane=self.stack_slices)
        if self.depth_axis is None:
            return self.backbone(x)
        return self.depth_axis(self.backbone(x.flatten(1, 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return self.head(f.mean(dim=tuple(range(2, f.ndim))))


def check_classifier_input(x: torch.Tensor, spec: ClassifierSpec, *, stride: int, stacked: bool = False,
                           in_plane: bool = False) -> None:
    """Check a classifier input against the spec: (B, in_channels, *spatial) with ``spec.dims`` spatial axes.

    Args:
        x: the input batch.
        spec: the classifier spec.
        stride: the network's total downsampling (with instance norm, the last feature map must have more than
            one voxel, so some downsampled axis must be longer than ``stride``).
        stacked: 2.5D input: Z must equal ``spec.slices``.
        in_plane: only Y and X are downsampled (2D layers over slices).

    Raises:
        InvalidParameterError: naming ``x`` with the expected and the found shape.
    """
    if not isinstance(x, torch.Tensor):
        raise InvalidParameterError("classifier input must be a tensor", parameter="x", found=type(x).__name__)
    axes = "B x C x Y x X" if spec.dims == 2 else "B x C x Z x Y x X"
    expected = f"{axes} with C = {spec.in_channels}" + (f", Z = {spec.slices}" if stacked else "")
    if x.ndim != spec.dims + 2 or x.shape[1] != spec.in_channels or (stacked and x.shape[2] != spec.slices):
        raise InvalidParameterError(
            "classifier input has the wrong shape", parameter="x", expected=expected, found=tuple(x.shape),
            fix="add the batch/channel axes (x[None, None]) or set in_channels/dims/slices in the spec")
    spatial = tuple(x.shape[3:] if in_plane else x.shape[2:])
    if spec.norm == "instance" and all(s <= stride for s in spatial):
        raise InvalidParameterError(
            "the last feature map would be one voxel, where instance norm is undefined", parameter="x",
            expected=f"a size larger than the network stride {stride} along at least one axis", found=spatial,
            fix="use a larger input, stem='small', or norm='batch'")


def require_volume_input(spec: ClassifierSpec, name: str) -> None:
    """Raise unless ``spec.dims == 3`` (for the models that take volumes only)."""
    if spec.dims != 3:
        raise InvalidParameterError(f"{name} takes volumes (B x C x Z x Y x X)", parameter="dims", expected=3,
                                    found=spec.dims, fix="set dims=3, or use resnet18 for 2D images")


def init_classifier_weights(module: nn.Module) -> None:
    """He initialisation (fan out, ReLU) of the convolution weights, zero biases; norms and linear layers keep
    PyTorch's defaults (:class:`~medimg.models.acs.ACSConv` initialises itself the same way)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def norm_factory(spec: ClassifierSpec, dims: int) -> Callable[[int], nn.Module]:
    """``factory(channels) -> norm layer`` for ``spec.norm`` in ``dims`` dimensions."""
    def make(channels: int) -> nn.Module:
        return make_norm(spec.norm, dims, channels)
    return make
