"""The classifier specification: a frozen, JSON-serialisable description of a classification network.

A :class:`ClassifierSpec` is data, not code: it is validated when it is made, written next to the weights as
JSON (:meth:`ClassifierSpec.to_dict`) and read back with :meth:`ClassifierSpec.from_dict`. The classifier
registry (:func:`medimg.models.build_classifier`) turns it into an ``nn.Module`` that maps an image batch to
``(B, n_classes)`` logits.

Example:
    >>> spec = ClassifierSpec(name="resnet18", dims=2, width=32)
    >>> ClassifierSpec.from_dict(spec.to_dict()) == spec
    True
    >>> spec.resolved_growth_rate()
    16
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from medimg.core.errors import bad_value
from medimg.models.spec import NORMS

__all__ = ["ClassifierSpec", "STEMS"]

STEMS: tuple[str, ...] = ("small", "imagenet")


_WHAT = "invalid classifier spec"  # the first words of every refusal of a spec


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class ClassifierSpec:
    """What classification network to build, independent of any weights.

    The network outputs raw logits ``(B, n_classes)``; the task decides what follows (softmax over two classes
    for a binary task, a sigmoid per class for a multi-label one).

    Args:
        name: registry name (see :func:`medimg.models.list_classifiers`).
        dims: dimensionality of the *input*: 2 (B x C x Y x X) or 3 (B x C x Z x Y x X). ``resnet18_25d``,
            ``resnet18_acs`` and ``slice_lstm`` take volumes and need ``dims=3``.
        in_channels: channels of the input image (modalities).
        n_classes: number of output logits.
        width: channels of the first stage; deeper stages are multiples of it. 64 is the ImageNet width of
            ResNet, VGG and DenseNet (whose initial features are ``width``), 16 that of MobileNetV3-Small (whose
            channels scale by ``width / 16``). The default 16 suits 3D inputs on a CPU.
        stem: ``"small"`` (3x3(x3) stride-1 convolution, no early pooling: for 28^3 - 64^3 volumes and small
            images) or ``"imagenet"`` (7x7 stride-2 convolution and max pooling, for 224^2-like inputs). VGG has no
            stem: ``"small"`` leaves out its first max pooling; MobileNetV3 uses a 3x3 stride-1 or stride-2 conv.
        se: add squeeze-excitation to the residual (ResNet), convolution (VGG) or dense (DenseNet) blocks.
            MobileNetV3 has it in the blocks its table says, whatever this field.
        dropout: dropout probability in [0, 1) applied just before the final linear layer (an ``nn.Dropout``
            that MC dropout can switch on at inference).
        norm: ``"batch"``, ``"instance"`` (affine) or ``"group"``.
        slices: for ``resnet18_25d``: the number of slices (Z) of the input, stacked as channels.
        growth_rate: for ``densenet121``: channels each dense layer adds; ``None`` means ``width // 2``
            (32 at the ImageNet width 64).
        lstm_hidden: for ``slice_lstm``: hidden size of each LSTM direction; ``None`` means half the encoder's
            feature channels, so the bidirectional output has as many channels as the encoder.

    Raises:
        InvalidParameterError: a field has a wrong value; the message names the field. An unknown ``name`` is
            reported by :func:`medimg.models.build_classifier`, since models may be registered later.
    """

    name: str = "resnet18"
    dims: int = 3
    in_channels: int = 1
    n_classes: int = 2
    width: int = 16
    stem: str = "small"
    se: bool = False
    dropout: float = 0.0
    norm: str = "batch"
    slices: int = 3
    growth_rate: int | None = None
    lstm_hidden: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise bad_value("name", _WHAT, "a registered classifier name", self.name,
                            "see medimg.models.list_classifiers()")
        if self.dims not in (2, 3) or not _is_int(self.dims):
            raise bad_value("dims", _WHAT, "2 or 3", self.dims, "use dims=2 for images/slices, dims=3 for volumes")
        for field in ("in_channels", "n_classes", "width", "slices"):
            value = getattr(self, field)
            if not _is_int(value) or value < 1:
                raise bad_value(field, _WHAT, "an integer >= 1", value, f"set {field} to a positive integer")
        for field in ("growth_rate", "lstm_hidden"):
            value = getattr(self, field)
            if value is not None and (not _is_int(value) or value < 1):
                raise bad_value(field, _WHAT, "None or an integer >= 1", value,
                                f"set {field} to a positive integer or None")
        if self.stem not in STEMS:
            raise bad_value("stem", _WHAT, " | ".join(STEMS), self.stem,
                            "use 'small' for inputs under ~128 voxels a side")
        if self.norm not in NORMS:
            raise bad_value("norm", _WHAT, " | ".join(NORMS), self.norm, "pick one of the listed norms")
        if not isinstance(self.se, bool):
            raise bad_value("se", _WHAT, "True or False", self.se, "pass a bool")
        if not isinstance(self.dropout, (int, float)) or isinstance(self.dropout, bool) \
                or not 0.0 <= float(self.dropout) < 1.0:
            raise bad_value("dropout", _WHAT, "a probability in [0, 1)", self.dropout,
                            "use e.g. dropout=0.2 for MC dropout")
        object.__setattr__(self, "dropout", float(self.dropout))

    # ------------------------------------------------------------------ derived values
    def resolved_growth_rate(self) -> int:
        """The DenseNet growth rate with the default (``width // 2``, at least 1) filled in."""
        return self.growth_rate if self.growth_rate is not None else max(self.width // 2, 1)

    # ------------------------------------------------------------------ JSON round trip
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClassifierSpec:
        """Rebuild a spec from :meth:`to_dict` output (or parsed JSON); missing keys take their defaults.

        Raises:
            InvalidParameterError: ``d`` is not a mapping, has unknown keys, or a field is invalid.
        """
        if not isinstance(d, Mapping):
            raise bad_value("spec", _WHAT, "a mapping", type(d).__name__,
                            "pass the dict written by ClassifierSpec.to_dict()")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise bad_value(unknown[0], _WHAT, f"one of {sorted(known)}", ", ".join(unknown),
                            "remove the unknown keys (were they written by a newer medimg?)")
        return cls(**dict(d))
