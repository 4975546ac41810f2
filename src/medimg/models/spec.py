"""The network specification: a frozen, JSON-serialisable description of a segmentation network.

A :class:`NetworkSpec` is data, not code: it is validated when it is made, written next to the weights as
JSON (:meth:`NetworkSpec.to_dict`), and read back with :meth:`NetworkSpec.from_dict`. The registry
(:mod:`medimg.models.registry`) turns it into an ``nn.Module``.

Example:
    >>> spec = NetworkSpec(dims=2, n_stages=3, base_channels=8)
    >>> spec.resolved_pool_kernels()
    ((2, 2), (2, 2))
    >>> NetworkSpec.from_dict(spec.to_dict()) == spec
    True
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from medimg.core.errors import bad_value

__all__ = ["NetworkSpec", "BLOCKS", "NORMS", "deep_supervision_scales"]

BLOCKS: tuple[str, ...] = ("plain", "residual", "se")
NORMS: tuple[str, ...] = ("instance", "batch", "group")


_WHAT = "invalid network spec"  # the first words of every refusal of a spec


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class NetworkSpec:
    """What network to build, independent of any weights.

    Args:
        name: registry name (see :func:`medimg.models.list_models`).
        dims: 2 (input B x C x Y x X) or 3 (input B x C x Z x Y x X).
        in_channels: channels of the input image (modalities).
        n_classes: output channels (classes including background); the logits have this many channels.
        base_channels: feature channels at full resolution; doubled at each stage up to ``max_channels``.
        max_channels: cap on the feature channels of the deeper stages.
        n_stages: resolution levels including the bottleneck (>= 2).
        block: ``"plain"`` (two conv-norm-act), ``"residual"`` or ``"se"`` (residual + squeeze-excitation).
        pool_kernels: one kernel per downsampling step (``n_stages - 1`` of them, ``dims`` ints each), e.g.
            ``((1, 2, 2), (2, 2, 2), (2, 2, 2))`` for thick slices; empty means 2 along every axis.
        deep_supervision: in training mode, return one logits tensor per decoder level (see
            :func:`deep_supervision_scales`).
        norm: ``"instance"`` (affine), ``"batch"`` or ``"group"``.
        dropout: probability of spatial (channel-wise) dropout in the decoder blocks, in [0, 1).

    Raises:
        InvalidParameterError: a field has a wrong value; the message names the field. An unknown ``name`` is
            reported by :func:`medimg.models.build_network`, since models may be registered later.
    """

    name: str = "unet"
    dims: int = 3
    in_channels: int = 1
    n_classes: int = 2
    base_channels: int = 16
    max_channels: int = 256
    n_stages: int = 4
    block: str = "residual"
    pool_kernels: tuple[tuple[int, ...], ...] = ()
    deep_supervision: bool = True
    norm: str = "instance"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise bad_value("name", _WHAT, "a registered model name", self.name, "see medimg.models.list_models()")
        if self.dims not in (2, 3) or not _is_int(self.dims):
            raise bad_value("dims", _WHAT, "2 or 3", self.dims, "use dims=2 for slices, dims=3 for volumes")
        for field in ("in_channels", "n_classes", "base_channels"):
            value = getattr(self, field)
            if not _is_int(value) or value < 1:
                raise bad_value(field, _WHAT, "an integer >= 1", value, f"set {field} to a positive integer")
        if not _is_int(self.max_channels) or self.max_channels < self.base_channels:
            raise bad_value("max_channels", _WHAT, f"an integer >= base_channels ({self.base_channels})",
                            self.max_channels, "raise max_channels or lower base_channels")
        if not _is_int(self.n_stages) or self.n_stages < 2:
            raise bad_value("n_stages", _WHAT, "an integer >= 2", self.n_stages, "use at least one downsampling step")
        if self.block not in BLOCKS:
            raise bad_value("block", _WHAT, " | ".join(BLOCKS), self.block, "pick one of the listed blocks")
        if self.norm not in NORMS:
            raise bad_value("norm", _WHAT, " | ".join(NORMS), self.norm, "pick one of the listed norms")
        if not isinstance(self.deep_supervision, bool):
            raise bad_value("deep_supervision", _WHAT, "True or False", self.deep_supervision, "pass a bool")
        if not isinstance(self.dropout, (int, float)) or isinstance(self.dropout, bool) \
                or not 0.0 <= float(self.dropout) < 1.0:
            raise bad_value("dropout", _WHAT, "a probability in [0, 1)", self.dropout,
                            "use e.g. dropout=0.1 for MC dropout")
        object.__setattr__(self, "dropout", float(self.dropout))
        object.__setattr__(self, "pool_kernels", self._checked_pool_kernels())

    def _checked_pool_kernels(self) -> tuple[tuple[int, ...], ...]:
        raw = self.pool_kernels
        if raw is None or (isinstance(raw, (tuple, list)) and len(raw) == 0):
            return ()
        fix = f"give {self.n_stages - 1} kernels of {self.dims} ints each, or () for all 2s"
        try:
            kernels = tuple(tuple(k) for k in raw)
        except TypeError as err:
            raise bad_value("pool_kernels", _WHAT, "a sequence of int sequences", raw, fix) from err
        if len(kernels) != self.n_stages - 1:
            raise bad_value("pool_kernels", _WHAT, f"{self.n_stages - 1} kernels (n_stages - 1)",
                            f"{len(kernels)} kernels", fix)
        for kernel in kernels:
            if len(kernel) != self.dims or not all(_is_int(k) and k >= 1 for k in kernel):
                raise bad_value("pool_kernels", _WHAT, f"{self.dims} ints >= 1 per kernel", kernel, fix)
        return kernels

    # ------------------------------------------------------------------ derived values
    def resolved_pool_kernels(self) -> tuple[tuple[int, ...], ...]:
        """The downsampling kernels with the default (2 along every axis) filled in."""
        if self.pool_kernels:
            return self.pool_kernels
        return tuple((2,) * self.dims for _ in range(self.n_stages - 1))

    def stage_channels(self) -> tuple[int, ...]:
        """Feature channels per resolution level, full resolution first."""
        return tuple(min(self.base_channels * 2**i, self.max_channels) for i in range(self.n_stages))

    def divisor(self) -> tuple[int, ...]:
        """What each spatial size of the input must be divisible by (the product of the pool kernels)."""
        return tuple(math.prod(k[axis] for k in self.resolved_pool_kernels()) for axis in range(self.dims))

    # ------------------------------------------------------------------ JSON round trip
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        out = asdict(self)
        out["pool_kernels"] = [list(k) for k in self.pool_kernels]
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NetworkSpec:
        """Rebuild a spec from :meth:`to_dict` output (or parsed JSON); missing keys take their defaults.

        Raises:
            InvalidParameterError: ``d`` is not a mapping, has unknown keys, or a field is invalid.
        """
        if not isinstance(d, Mapping):
            raise bad_value("spec", _WHAT, "a mapping", type(d).__name__,
                            "pass the dict written by NetworkSpec.to_dict()")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise bad_value(unknown[0], _WHAT, f"one of {sorted(known)}", ", ".join(unknown),
                            "remove the unknown keys (were they written by a newer medimg?)")
        kwargs = dict(d)
        if kwargs.get("pool_kernels") is not None:
            kwargs["pool_kernels"] = tuple(tuple(k) for k in kwargs["pool_kernels"])
        return cls(**kwargs)


def deep_supervision_scales(spec: NetworkSpec) -> list[tuple[int, ...]]:
    """Downsampling factor per axis of each deep-supervision output, full resolution first.

    A network built from ``spec`` returns, in training mode with ``deep_supervision=True``, a list of
    ``spec.n_stages - 1`` logits tensors; output ``i`` is smaller than the input by ``scales[i]`` along each
    axis (use it to downsample the targets).

    Example:
        >>> deep_supervision_scales(NetworkSpec(dims=3, pool_kernels=((1, 2, 2), (2, 2, 2), (2, 2, 2))))
        [(1, 1, 1), (1, 2, 2), (2, 4, 4)]
    """
    scales = [(1,) * spec.dims]
    for kernel in spec.resolved_pool_kernels()[: spec.n_stages - 2]:
        scales.append(tuple(s * k for s, k in zip(scales[-1], kernel)))
    return scales
