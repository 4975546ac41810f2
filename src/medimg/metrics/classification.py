"""Classification metrics: ROC AUC, accuracy, balanced accuracy, rates at a threshold, confusion matrix, ECE.

Conventions: ``y_true`` holds integer class ids (binary: 0/1), scores are probabilities or any monotone score.
Multi-class scores are (N, K) with columns in class order 0..K-1. Inputs with no sample, or an AUC with a
single class present, raise :class:`InvalidParameterError` (the value is undefined, not silently NaN).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.stats import rankdata

from medimg.core.errors import InvalidParameterError

__all__ = ["roc_auc", "accuracy", "balanced_accuracy", "confusion_matrix", "sensitivity_specificity",
           "expected_calibration_error"]


def _vector(values: Sequence | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.size == 0:
        raise InvalidParameterError("not a non-empty 1D sequence", parameter=name, expected="shape (N,), N >= 1",
                                    found=f"shape {arr.shape}", fix=f"pass one value per sample as {name}")
    return arr


def _same_length(a: np.ndarray, b: np.ndarray, name: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise InvalidParameterError("length differs from y_true", parameter=name, expected=f"{a.shape[0]} samples",
                                    found=f"{b.shape[0]} samples", fix="give one value per sample")


def _binary_auc(y: np.ndarray, s: np.ndarray) -> float:
    pos = y.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise InvalidParameterError("ROC AUC is undefined with one class", parameter="y_true",
                                    expected="both positive and negative samples",
                                    found=f"{n_pos} positive, {n_neg} negative", fix="evaluate on a set with both")
    ranks = rankdata(s)  # average ranks: ties count 1/2 (Mann-Whitney U)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_auc(y_true: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve (ties count one half), one-vs-rest macro average for multi-class scores.

    Args:
        y_true: (N,) class ids; binary 0/1 (any two values: the larger is positive) with 1D scores.
        scores: (N,) score of the positive class, or (N, K) class scores (probabilities).

    Raises:
        InvalidParameterError: a class has no positive or no negative sample.

    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    y = _vector(y_true, "y_true")
    s = np.asarray(scores, dtype=float)
    _same_length(y, s, "scores")
    if s.ndim == 1:
        classes = np.unique(y)
        if classes.size > 2:
            raise InvalidParameterError("1D scores with more than two classes", parameter="scores",
                                        expected="(N, K) scores for K classes", found=f"{classes.size} classes",
                                        fix="pass one score column per class")
        return _binary_auc(y == classes.max(), s)
    if s.ndim != 2:
        raise InvalidParameterError("wrong shape", parameter="scores", expected="(N,) or (N, K)",
                                    found=f"shape {s.shape}", fix="pass one row per sample")
    if s.shape[1] == 2:
        return _binary_auc(y == 1, s[:, 1])
    return float(np.mean([_binary_auc(y == k, s[:, k]) for k in range(s.shape[1])]))


def accuracy(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray) -> float:
    """Fraction of samples whose predicted class equals the true class."""
    y, p = _vector(y_true, "y_true"), _vector(y_pred, "y_pred")
    _same_length(y, p, "y_pred")
    return float(np.mean(y == p))


def confusion_matrix(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, *,
                     labels: Sequence[int] | None = None) -> np.ndarray:
    """Counts C[i, j] of samples of true class labels[i] predicted as labels[j] (sklearn's layout).

    ``labels`` defaults to the sorted union of the classes in y_true and y_pred.

    >>> confusion_matrix([0, 1, 1], [0, 0, 1])
    array([[1, 0],
           [1, 1]])
    """
    y, p = _vector(y_true, "y_true"), _vector(y_pred, "y_pred")
    _same_length(y, p, "y_pred")
    labs = np.unique(np.concatenate([y, p])) if labels is None else np.asarray(labels)
    index = {v: i for i, v in enumerate(labs.tolist())}
    keep = np.array([a in index and b in index for a, b in zip(y.tolist(), p.tolist())], bool)
    yi = np.array([index[v] for v in y[keep].tolist()], dtype=np.int64)
    pi = np.array([index[v] for v in p[keep].tolist()], dtype=np.int64)
    n = labs.size
    return np.bincount(yi * n + pi, minlength=n * n).reshape(n, n)


def balanced_accuracy(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray) -> float:
    """Mean recall over the classes present in y_true."""
    y = _vector(y_true, "y_true")
    classes = np.unique(y)
    cm = confusion_matrix(y_true, y_pred, labels=np.unique(np.concatenate([classes, np.asarray(y_pred)])))
    labs = np.unique(np.concatenate([classes, np.asarray(y_pred)]))
    rows = [i for i, v in enumerate(labs) if v in set(classes.tolist())]
    return float(np.mean([cm[i, i] / cm[i].sum() for i in rows]))


def sensitivity_specificity(y_true: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray, *,
                            threshold: float = 0.5) -> dict[str, float]:
    """Binary rates when ``score >= threshold`` is called positive.

    Returns:
        ``{"sensitivity", "specificity", "ppv", "npv", "tp", "fp", "tn", "fn"}``; a rate whose denominator is 0
        is 1.0 (no case of that kind to get wrong).

    >>> sensitivity_specificity([0, 0, 1, 1], [0.2, 0.6, 0.7, 0.4])["sensitivity"]
    0.5
    """
    y = _vector(y_true, "y_true").astype(bool)
    s = _vector(scores, "scores").astype(float)
    _same_length(y, s, "scores")
    call = s >= threshold
    tp, fp = int(np.sum(call & y)), int(np.sum(call & ~y))
    fn, tn = int(np.sum(~call & y)), int(np.sum(~call & ~y))

    def rate(a: int, b: int) -> float:
        return a / (a + b) if a + b else 1.0

    return {"sensitivity": rate(tp, fn), "specificity": rate(tn, fp), "ppv": rate(tp, fp), "npv": rate(tn, fn),
            "tp": float(tp), "fp": float(fp), "tn": float(tn), "fn": float(fn)}


def expected_calibration_error(y_true: Sequence[int] | np.ndarray, probabilities: Sequence | np.ndarray, *,
                               n_bins: int = 15) -> float:
    """Expected calibration error with equal-width confidence bins (Guo et al. 2017).

    Confidence is the largest class probability and the prediction its class; bin b holds confidences in
    (b/n, (b+1)/n] (the first bin also holds 0). ECE = sum_b |accuracy_b - mean confidence_b| * n_b / N.

    Args:
        y_true: (N,) class ids.
        probabilities: (N, K) class probabilities, or (N,) probability of class 1 for binary problems.
        n_bins: number of bins.
    """
    y = _vector(y_true, "y_true")
    p = np.asarray(probabilities, dtype=float)
    _same_length(y, p, "probabilities")
    if p.ndim == 1:
        p = np.stack([1 - p, p], axis=1)
    if n_bins < 1:
        raise InvalidParameterError("too few bins", parameter="n_bins", expected=">= 1", found=n_bins,
                                    fix="use e.g. n_bins=15")
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(float)
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            ece += abs(correct[sel].mean() - conf[sel].mean()) * sel.sum()
    return float(ece / y.size)
