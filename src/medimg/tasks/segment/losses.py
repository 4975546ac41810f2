"""Segmentation losses: soft Dice + cross-entropy, with deep supervision."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["DiceCELoss", "DeepSupervisionLoss", "deep_supervision_weights"]


class DiceCELoss(torch.nn.Module):
    """Cross-entropy plus batch soft Dice over the foreground classes (nnU-Net's default loss).

    The Dice term is computed over the whole batch at once ("batch Dice"), which is stable for small objects,
    and excludes the background class. Logits are cast to float32 before the softmax (bf16 autocast safe).
    """

    def __init__(self, *, smooth: float = 1e-5, dice_weight: float = 1.0, ce_weight: float = 1.0) -> None:
        super().__init__()
        self.smooth = smooth
        self.dice_weight = dice_weight
        self.ce_weight = ce_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits (B, K, *spatial), target (B, *spatial) int64 class ids."""
        logits = logits.float()
        ce = F.cross_entropy(logits, target)
        probs = torch.softmax(logits, dim=1)
        k = logits.shape[1]
        onehot = F.one_hot(target, k).movedim(-1, 1).to(probs.dtype)
        dims = (0,) + tuple(range(2, logits.ndim))
        inter = (probs * onehot).sum(dims)
        denom = probs.sum(dims) + onehot.sum(dims)
        dice = (2 * inter + self.smooth) / (denom + self.smooth)
        dice_loss = 1 - dice[1:].mean() if k > 1 else 1 - dice.mean()
        return self.ce_weight * ce + self.dice_weight * dice_loss


def deep_supervision_weights(n: int) -> list[float]:
    """nnU-Net's weights: 1, 1/2, 1/4, ... normalised to sum 1, the lowest resolution dropped when n > 2."""
    w = [1 / 2**i for i in range(n)]
    if n > 2:
        w[-1] = 0.0
    s = sum(w)
    return [x / s for x in w]


class DeepSupervisionLoss(torch.nn.Module):
    """Weighted sum of a loss over a list of outputs at decreasing resolution (targets downsampled by nearest)."""

    def __init__(self, loss: torch.nn.Module, weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.loss = loss
        self.weights = list(weights) if weights is not None else None

    def forward(self, outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return self.loss(outputs, target)
        weights = self.weights or deep_supervision_weights(len(outputs))
        total = outputs[0].new_zeros((), dtype=torch.float32)
        for out, w in zip(outputs, weights):
            if w == 0:
                continue
            t = target
            if out.shape[2:] != target.shape[1:]:
                t = F.interpolate(target[:, None].float(), size=out.shape[2:], mode="nearest")[:, 0].long()
            total = total + w * self.loss(out, t)
        return total
