"""What the commands that run a classification model share (`medimg predict`, `medimg analyze --classifier`):
the option values they accept, how a prediction is printed, and quieter figure logs."""

from __future__ import annotations

import logging
from typing import Any, Sequence

__all__ = ["EXPLAIN_CHOICES", "UNCERTAINTY_CHOICES", "prediction_line", "print_predictions", "quiet_figure_logs"]

#: The values of ``explain=`` / ``uncertainty=`` in :func:`medimg.tasks.classify.predict.predict_samples`, spelled
#: out here so that building the parser does not import torch (a test keeps them equal).
EXPLAIN_CHOICES = ("gradcam", "gradcam++", "occlusion", "none")
UNCERTAINTY_CHOICES = ("auto", "ensemble", "mc_dropout", "tta")


def quiet_figure_logs(debug: bool) -> None:
    """Drop the "wrote <temporary path>" line each explanation figure logs; the command names its output instead."""
    if not debug:
        logging.getLogger("medimg.explain.figures").setLevel(logging.WARNING)


def prediction_line(pred: Any) -> str:
    """``decision (p = ...; entropy ..., mutual information ... nats, method)`` for one ClassPrediction."""
    from medimg.report.classification import decision_text

    return (f"{decision_text(pred.pred)} (p = {pred.confidence:.3f}; entropy {pred.entropy:.3f}, mutual information "
            f"{pred.mutual_information:.3f} nats, {pred.uncertainty_method})")


def print_predictions(preds: Sequence[Any]) -> None:
    """One line per prediction (up to 20), else the count per class and the agreement with the known labels."""
    from collections import Counter

    from medimg.report.classification import decision_text

    if len(preds) <= 20:
        for p in preds:
            truth = "" if p.label is None else f"  [label {decision_text(p.label)}]"
            print(f"{p.id}: {prediction_line(p)}{truth}")
        return
    counts = Counter(decision_text(p.pred) for p in preds)
    print(f"{len(preds)} samples classified: " + ", ".join(f"{c} {counts[c]}" for c in sorted(counts)))
    known = [p for p in preds if p.label is not None]
    if known:
        right = sum(decision_text(p.pred) == decision_text(p.label) for p in known)
        print(f"agreement with the {len(known)} known labels: {right / len(known):.4f}")
