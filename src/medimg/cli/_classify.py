"""What the commands that run a classification model share (`medimg predict`, `medimg analyze --classifier`):
the option values they accept and quieter figure logs (the printed lines come from
:mod:`medimg.tasks.classify.writer`: ``ClassifyResult.summary_lines``, ``prediction_line``)."""

from __future__ import annotations

import logging

__all__ = ["EXPLAIN_CHOICES", "UNCERTAINTY_CHOICES", "quiet_figure_logs"]

#: The values of ``explain=`` / ``uncertainty=`` in :func:`medimg.tasks.classify.predictor.predict`, spelled
#: out here so that building the parser does not import torch (a test keeps them equal).
EXPLAIN_CHOICES = ("gradcam", "gradcam++", "occlusion", "none")
UNCERTAINTY_CHOICES = ("auto", "ensemble", "mc_dropout", "tta")


def quiet_figure_logs(debug: bool) -> None:
    """Drop the "wrote <temporary path>" line each explanation figure logs; the command names its output instead."""
    if not debug:
        logging.getLogger("medimg.explain.figures").setLevel(logging.WARNING)
