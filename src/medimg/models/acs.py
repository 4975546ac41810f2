"""ACS convolutions (Yang et al. 2021, "Reinventing 2D convolutions for 3D images") and the ACS ResNet-18.

An :class:`ACSConv` owns a 2D weight (cout x cin x k x k) and applies it to a volume: its output channels are
split in three groups whose kernels are unsqueezed to 1 x k x k (axial), k x 1 x k (coronal) and k x k x 1
(sagittal) along (Z, Y, X). The network therefore has exactly the parameters of its 2D twin, so 2D weights
load into it unchanged (``resnet18_acs`` takes the state dict of a 2D ``resnet18`` with the same spec fields and
``se=False``), while it sees all three axes. Registered as ``"resnet18_acs"`` (3D input only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medimg.models.classifier_spec import ClassifierSpec
from medimg.models.classifiers import Classifier, require_volume_input
from medimg.models.registry import register_classifier
from medimg.models.resnet import build_resnet

__all__ = ["ACSConv", "acs_split", "acs_conv_factory"]


def acs_split(channels: int) -> tuple[int, int, int]:
    """Output channels of the axial, coronal and sagittal groups (as the ACS reference code splits them).

    >>> acs_split(64), acs_split(16), acs_split(8)
    ((22, 21, 21), (6, 5, 5), (3, 3, 2))
    """
    q, r = divmod(channels, 3)
    return q + (r >= 1), q + (r >= 2), q


class ACSConv(nn.Module):
    """A k x k 2D convolution applied to B x C x Z x Y x X volumes by axis groups of output channels.

    Args:
        cin: input channels.
        cout: output channels (split by :func:`acs_split`).
        kernel: the 2D kernel size k (odd).
        stride: stride along Z, Y and X.
        bias: add a learned bias.

    Example:
        >>> conv = ACSConv(2, 6, 3, stride=2)
        >>> conv.weight.shape, conv(torch.zeros(1, 2, 8, 10, 12)).shape
        (torch.Size([6, 2, 3, 3]), torch.Size([1, 6, 4, 5, 6]))
    """

    def __init__(self, cin: int, cout: int, kernel: int = 3, *, stride: int = 1, bias: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.split = acs_split(cout)
        self.stride = stride
        self.padding = (kernel - 1) // 2
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.shape[-1] == 1:  # a 1x1 kernel is the same along every axis: one 1x1x1 convolution
            return F.conv3d(x, self.weight.unsqueeze(2), self.bias, stride=self.stride)
        p = self.padding
        weights = torch.split(self.weight, self.split, dim=0)
        biases = torch.split(self.bias, self.split) if self.bias is not None else (None,) * 3
        outs = []
        for axis, (w, b) in enumerate(zip(weights, biases)):
            if w.shape[0] == 0:
                continue
            pad = [p, p, p]
            pad[axis] = 0  # axial: 1 x k x k, coronal: k x 1 x k, sagittal: k x k x 1
            outs.append(F.conv3d(x, w.unsqueeze(2 + axis), b, stride=self.stride, padding=tuple(pad)))
        return torch.cat(outs, dim=1)

    def extra_repr(self) -> str:
        cout, cin, k, _ = self.weight.shape
        return f"{cin}, {cout}, kernel={k}, stride={self.stride}, split={self.split}, bias={self.bias is not None}"


def acs_conv_factory(cin: int, cout: int, kernel: int, stride: int) -> ACSConv:
    """:class:`ACSConv` as a :data:`~medimg.models.classifiers.ConvFactory` (1x1 kernels included, so every
    weight keeps its 2D shape and a 2D ResNet-18 state dict loads as it is)."""
    return ACSConv(cin, cout, kernel, stride=stride)


@register_classifier("resnet18_acs")
def build_resnet18_acs(spec: ClassifierSpec) -> Classifier:
    """ResNet-18 whose convolutions are :class:`ACSConv`; 3D norms and pooling; input B x C x Z x Y x X.

    Example:
        >>> net = build_resnet18_acs(ClassifierSpec(dims=3, width=6)).eval()
        >>> net(torch.zeros(1, 1, 8, 8, 8)).shape
        torch.Size([1, 2])
    """
    require_volume_input(spec, "resnet18_acs")
    return build_resnet(spec, (2, 2, 2, 2), conv=acs_conv_factory)
