"""Classification losses: the plan's loss function and the class weights the planner gives weighted losses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["LOSS_LABELS", "classification_loss", "inverse_frequency_weights"]

#: How each loss is named in training curves.
LOSS_LABELS = {"ce": "cross-entropy", "weighted_ce": "weighted cross-entropy", "bce": "binary cross-entropy",
               "weighted_bce": "weighted binary cross-entropy"}


def inverse_frequency_weights(counts: np.ndarray, n: int, multilabel: bool) -> tuple[float, ...]:
    """Class weights of the weighted losses: ``N / (K * n_k)`` per class (cross-entropy); multi-label: the positive
    weight ``negatives / positives`` per label (BCE). Rounded to 6 digits (they are written into plan.json).

    Example:
        >>> inverse_frequency_weights(np.array([30, 10]), 40, False)
        (0.666667, 2.0)
        >>> inverse_frequency_weights(np.array([10]), 40, True)
        (3.0,)
    """
    if multilabel:
        return tuple(round(float((n - c) / c), 6) for c in counts)
    return tuple(round(float(n / (len(counts) * c)), 6) for c in counts)


def classification_loss(plan: Any) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The plan's loss as ``loss(logits (B, K), target) -> scalar``.

    ``ce`` / ``weighted_ce``: softmax cross-entropy on class ids (B,) int64, with the plan's class weights;
    ``bce`` / ``weighted_bce``: one sigmoid per class on (B, K) 0/1 targets, with the plan's positive weights.

    Example:
        >>> import torch
        >>> from medimg.tasks.classify.plan import ClassifyPlan
        >>> plan = ClassifyPlan(schema_version=1, task="binary", class_names=("a", "b"), dims=2, in_channels=1,
        ...                     input_size=(8, 8), loss="weighted_ce", class_weights=(1.0, 3.0))
        >>> loss = classification_loss(plan)
        >>> round(float(loss(torch.zeros(2, 2), torch.tensor([0, 1]))), 4)  # log 2 whatever the weights
        0.6931
    """
    import torch
    import torch.nn.functional as F

    weights = None if plan.class_weights is None else torch.tensor(plan.class_weights, dtype=torch.float32)
    if plan.loss in ("bce", "weighted_bce"):
        def bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return F.binary_cross_entropy_with_logits(logits.float(), target.float(), pos_weight=weights)
        return bce

    def ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), target.long(), weight=weights)
    return ce
