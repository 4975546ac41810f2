"""Precision checks for training on the CPU.

PyTorch 2.13's CPU bf16 convolution computes wrong weight gradients for some 3D shapes
(:func:`bf16_conv3d_hazards`); trainers check their network once and fall back to float32 where it would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["bf16_conv3d_hazards"]


class _Conv3dShapes(torch.overrides.TorchFunctionMode):
    """Records (input depth, kernel depth, depthwise) of every 3D convolution called inside the mode."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, int, bool]] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func is torch.conv3d:
            x, w = args[0], args[1]
            self.seen.append((int(x.shape[2]), int(w.shape[2]), int(w.shape[1]) == 1 and int(x.shape[1]) > 1))
        return func(*args, **(kwargs or {}))


def bf16_conv3d_hazards(model: torch.nn.Module, input_shape: Sequence[int]) -> list[tuple[int, int]]:
    """The (input depth Z, kernel depth) of the model's 3D convolutions that bf16 training must avoid.

    PyTorch 2.13's CPU bf16 convolution computes wrong weight gradients (reading memory it never wrote: garbage,
    NaN, sometimes heap corruption) when the input depth Z satisfies ``1 < Z < kernel depth`` (a 3x3x3 convolution
    on a feature map of depth 2, a 5x5x5 one on depth 3 or 4); float32 and depthwise convolutions are not affected,
    nor are the forward pass and the other axes. This runs the model once on zeros (eval mode, no gradient; the
    modes are restored) and lists the affected convolutions; an empty list means bf16 autocast is safe.

    Args:
        model: the network.
        input_shape: one sample's shape (C, *spatial).

    Example:
        >>> from medimg.models import ClassifierSpec, build_classifier
        >>> net = build_classifier(ClassifierSpec(name="resnet18", dims=3, width=4, stem="small"))
        >>> bf16_conv3d_hazards(net, (1, 16, 16, 16))[:1], bf16_conv3d_hazards(net, (1, 32, 32, 32))
        ([(2, 3)], [])
    """
    modes = [(m, m.training) for m in model.modules()]
    recorder = _Conv3dShapes()
    try:
        model.eval()
        with torch.no_grad(), recorder:
            model(torch.zeros((1, *[int(s) for s in input_shape])))
    finally:
        for m, mode in modes:
            m.training = mode
    return [(z, k) for z, k, depthwise in recorder.seen if not depthwise and 1 < z < k]
