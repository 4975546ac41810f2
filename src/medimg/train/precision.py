"""Precision of training and prediction: which dtype to autocast to, and checks for bf16 training on the CPU.

* :func:`resolve_precision` turns the ``--precision auto|fp32|bf16`` choice into ``torch.bfloat16`` (run under bf16
  autocast) or None (plain float32). ``auto`` picks bf16 only where the hardware computes it natively: a CPU with
  AVX-512-BF16 or AMX-BF16 (elsewhere oneDNN emulates bf16 and a forward pass can be ~10x slower than float32), or a
  CUDA device that supports bf16.
* PyTorch 2.13's CPU bf16 convolution computes wrong weight gradients for some 3D shapes
  (:func:`bf16_conv3d_hazards`); trainers check their network once and fall back to float32 where it would.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Sequence
from typing import Any

import torch

from medimg.core.errors import InvalidParameterError

__all__ = ["PRECISIONS", "bf16_conv3d_hazards", "cpu_supports_bf16", "resolve_precision", "precision_name"]

#: The values of ``--precision`` / ``precision=``.
PRECISIONS = ("auto", "fp32", "bf16")
#: /proc/cpuinfo flags of CPUs that compute bf16 natively (dot products in hardware).
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_supports_bf16(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> bool:
    """True when the CPU computes bf16 natively: its ``flags`` line lists ``avx512_bf16`` or ``amx_bf16``.

    Reads ``cpuinfo`` (Linux's /proc/cpuinfo); where that file is absent or unreadable (macOS, Windows) the answer
    is False, so ``auto`` precision stays float32 there.

    Example:
        >>> import tempfile
        >>> f = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)
        >>> _ = f.write("flags : fpu sse2 avx2 avx512f"); f.close()
        >>> cpu_supports_bf16(f.name)
        False
    """
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[-1].split())
                    return any(f in flags for f in _BF16_FLAGS)
    except OSError:
        return False
    return False


#: Where :func:`resolve_precision` reads the CPU flags (Linux).
CPUINFO = "/proc/cpuinfo"


@functools.cache
def _native_cpu_bf16(cpuinfo: str) -> bool:
    return sys.platform.startswith("linux") and cpu_supports_bf16(cpuinfo)


def resolve_precision(precision: str = "auto", device: str | torch.device = "cpu") -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``: ``torch.bfloat16``, or None for plain float32.

    Args:
        precision: "auto" (bf16 where ``device`` computes it natively: a CPU with AVX-512-BF16 / AMX-BF16, a CUDA
            device with bf16 support; float32 otherwise), "fp32" (no autocast) or "bf16" (always autocast).
        device: the device the network runs on.

    Raises:
        InvalidParameterError: an unknown ``precision``.

    Example:
        >>> resolve_precision("fp32") is None, resolve_precision("bf16")
        (True, torch.bfloat16)
    """
    if precision not in PRECISIONS:
        raise InvalidParameterError("unknown precision", parameter="--precision", expected=" | ".join(PRECISIONS),
                                    found=repr(precision), fix="use --precision auto, fp32 or bf16")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else None
    if kind == "cpu":
        return torch.bfloat16 if _native_cpu_bf16(CPUINFO) else None
    return None


def precision_name(dtype: torch.dtype | None) -> str:
    """"bf16" or "fp32": how a resolved precision is recorded in metrics.json and prediction outputs."""
    return "bf16" if dtype == torch.bfloat16 else "fp32"


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
