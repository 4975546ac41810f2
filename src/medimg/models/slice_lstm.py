"""A per-slice 2D CNN with a bidirectional LSTM over the slices (CNN-LSTM), registered as ``"slice_lstm"``.

Each slice of a B x C x Z x Y x X volume goes through the same 2D ResNet-18 encoder (``width``, ``stem``,
``norm`` and ``se`` from the spec), is average-pooled to one feature vector, and the sequence of Z vectors goes
through a one-layer bidirectional LSTM. The LSTM output of each slice sees the whole stack, which corrects the
per-slice evidence with its neighbours (the approach of the RSNA intracranial-haemorrhage winners). One linear
head maps the mean of the LSTM outputs to the volume logits (:meth:`SliceLSTM.forward`) and each slice's output
to that slice's logits (:meth:`SliceLSTM.slice_logits`). Z may differ between batches.
"""

from __future__ import annotations

import torch
from torch import nn

from medimg.models.classifier_spec import ClassifierSpec
from medimg.models.classifiers import (
    ClassifierHead,
    check_classifier_input,
    init_classifier_weights,
    require_volume_input,
)
from medimg.models.registry import register_classifier
from medimg.models.resnet import resnet_backbone

__all__ = ["SliceLSTM", "SlicesToVolume"]


class SlicesToVolume(nn.Module):
    """Per-slice 2D features back into volumes: (B * Z) x F x y x x to B x F x Z x y x x."""

    def forward(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        return x.reshape(batch, -1, *x.shape[1:]).transpose(1, 2)


class SliceLSTM(nn.Module):
    """Shared 2D encoder per slice, bidirectional LSTM over Z, linear head (volume and per-slice logits).

    Args:
        spec: the classifier spec; ``dims`` must be 3, ``lstm_hidden`` sets the LSTM size.

    Attributes:
        encoder: the 2D ResNet-18 backbone applied to each slice; ``encoder.cam_layer``, its last stage, outputs
            (B * Z) x 8 width x y x x (row ``b * Z + z`` is slice z of volume b), y = ceil(Y / stride).
        cam_layer: a :class:`SlicesToVolume` after the encoder's last stage: the same features stacked back into
            volumes, B x 8 width x Z x y x x, so Grad-CAM of a B x C x Z x Y x X input gets a map per slice.
        stride: the encoder's in-plane downsampling.

    Example:
        >>> net = SliceLSTM(ClassifierSpec(name="slice_lstm", width=4)).eval()
        >>> x = torch.zeros(2, 1, 5, 16, 16)
        >>> net(x).shape, net.slice_logits(x).shape
        (torch.Size([2, 2]), torch.Size([2, 5, 2]))
    """

    def __init__(self, spec: ClassifierSpec):
        super().__init__()
        require_volume_input(spec, "slice_lstm")
        self.spec = spec
        self.encoder = resnet_backbone(spec, (2, 2, 2, 2), dims=2, in_channels=spec.in_channels)
        features = self.encoder.channels
        hidden = spec.lstm_hidden if spec.lstm_hidden is not None else max(features // 2, 1)
        self.lstm = nn.LSTM(features, hidden, batch_first=True, bidirectional=True)
        self.to_volume = SlicesToVolume()
        self.head = ClassifierHead(2 * hidden, spec.n_classes, dropout=spec.dropout)
        init_classifier_weights(self)

    @property
    def cam_layer(self) -> nn.Module:
        """The per-slice features as volumes (see the class docstring for its output shape)."""
        return self.to_volume

    @property
    def stride(self) -> int:
        """In-plane downsampling of the encoder."""
        return self.encoder.stride

    def sequence(self, x: torch.Tensor) -> torch.Tensor:
        """The LSTM outputs, B x Z x 2 lstm_hidden, for a checked B x C x Z x Y x X input."""
        check_classifier_input(x, self.spec, stride=self.stride, in_plane=True)
        b, c, z = x.shape[:3]
        slices = x.transpose(1, 2).reshape(b * z, c, *x.shape[3:])
        f = self.to_volume(self.encoder(slices), b)  # B x F x Z x y x x
        vectors = f.mean(dim=(3, 4)).transpose(1, 2)  # B x Z x F
        # the LSTM runs in float32 under autocast: it costs little, and the recurrence would otherwise carry bf16
        # rounding along long slice stacks
        with torch.autocast(x.device.type, enabled=False):
            out, _ = self.lstm(vectors.to(self.lstm.weight_ih_l0.dtype))
        return out

    def volume_and_slice_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Volume logits (B, n_classes) and per-slice logits (B, Z, n_classes) from one encoder pass."""
        seq = self.sequence(x)
        return self.head(seq.mean(dim=1)), self.head(seq)

    def slice_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Per-slice logits (B, Z, n_classes): each slice's LSTM output (corrected by its context) through
        the head."""
        return self.head(self.sequence(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Volume logits (B, n_classes) from the mean of the LSTM outputs over the slices."""
        return self.head(self.sequence(x).mean(dim=1))


@register_classifier("slice_lstm")
def build_slice_lstm(spec: ClassifierSpec) -> SliceLSTM:
    """CNN-LSTM over the slices of a volume (see :class:`SliceLSTM`)."""
    return SliceLSTM(spec)
