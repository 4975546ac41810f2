"""Classification metrics: ROC AUC, accuracy, balanced accuracy, rates at a threshold, confusion matrix, ECE,
Brier score, log loss, and the multi-label (one sigmoid per label) AUC and ECE.

Conventions: ``y_true`` holds integer class ids (binary: 0/1), scores are probabilities or any monotone score.
Multi-class scores are (N, K) with columns in class order 0..K-1. Multi-label functions (``multilabel_*``) take an
(N, L) 0/1 indicator matrix and (N, L) probabilities of each label being present, and average over labels.
Inputs with no sample, or an AUC with a single class present, raise :class:`InvalidParameterError` (the value is
undefined, not silently NaN).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.stats import rankdata

from medimg.core.errors import InvalidParameterError

__all__ = ["roc_auc", "accuracy", "balanced_accuracy", "confusion_matrix", "sensitivity_specificity",
           "expected_calibration_error", "brier_score", "log_loss", "macro_roc_auc", "multilabel_roc_auc",
           "multilabel_expected_calibration_error", "class_ids", "class_probabilities", "multilabel_indicators",
           "calibration_bins"]


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


# --- probabilities: Brier score, log loss, explicit macro AUC, multi-label metrics ---------------------------------

_ROW_SUM_TOL = 1e-3  # probability rows must sum to 1 within this (float32 softmax is well inside it)


def class_ids(y: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """y_true as int64 class ids; integral floats and bools are accepted, ids must lie in 0..n_classes-1."""
    if y.dtype == bool:
        ids = y.astype(np.int64)
    elif np.issubdtype(y.dtype, np.integer):
        ids = y.astype(np.int64)
    else:
        try:
            yf = y.astype(float)
        except (TypeError, ValueError) as exc:
            raise InvalidParameterError("not numeric class ids", parameter="y_true", expected="integer class ids",
                                        found=f"dtype {y.dtype}", fix="encode the classes as 0..K-1") from exc
        if not np.all(np.isfinite(yf)) or np.any(yf != np.round(yf)):
            raise InvalidParameterError("not integer class ids", parameter="y_true", expected="integer class ids",
                                        found="non-integer or non-finite values", fix="encode the classes as 0..K-1")
        ids = yf.astype(np.int64)
    if n_classes is not None and (ids.min() < 0 or ids.max() >= n_classes):
        raise InvalidParameterError("class id outside the probability columns", parameter="y_true",
                                    expected=f"ids in 0..{n_classes - 1}", found=f"ids {ids.min()}..{ids.max()}",
                                    fix="give one probability column per class, in class order")
    return ids


def _check_finite(p: np.ndarray, name: str, *, unit_range: bool) -> None:
    if not np.all(np.isfinite(p)):
        raise InvalidParameterError("contains NaN or infinite values", parameter=name, expected="finite values",
                                    found=f"{int(np.sum(~np.isfinite(p)))} non-finite values",
                                    fix="drop or repair the samples with missing predictions")
    if unit_range and (p.min() < 0 or p.max() > 1):
        raise InvalidParameterError("not probabilities", parameter=name, expected="values in [0, 1]",
                                    found=f"values in [{p.min():.4g}, {p.max():.4g}]",
                                    fix="apply softmax (multi-class) or sigmoid (multi-label) to the logits")


def class_probabilities(y_true: Sequence[int] | np.ndarray,
                        probabilities: Sequence | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(class ids (N,), probabilities (N, K)); (N,) probabilities are P(class 1) of a binary problem."""
    y = _vector(y_true, "y_true")
    p = np.asarray(probabilities, dtype=float)
    if p.ndim not in (1, 2) or (p.ndim == 2 and p.shape[1] < 2):
        raise InvalidParameterError("wrong shape", parameter="probabilities", expected="(N,) or (N, K) with K >= 2",
                                    found=f"shape {p.shape}", fix="pass one row of class probabilities per sample")
    _same_length(y, p, "probabilities")
    _check_finite(p, "probabilities", unit_range=True)
    if p.ndim == 1:
        p = np.stack([1 - p, p], axis=1)
    sums = p.sum(axis=1)
    if np.any(np.abs(sums - 1) > _ROW_SUM_TOL):
        raise InvalidParameterError("rows do not sum to 1", parameter="probabilities", expected="sum over classes 1",
                                    found=f"sums in [{sums.min():.4g}, {sums.max():.4g}]",
                                    fix="apply softmax over the class axis (for multi-label use the multilabel_ "
                                        "functions)")
    return class_ids(y, p.shape[1]), p


def multilabel_indicators(y_true: Sequence | np.ndarray, values: Sequence | np.ndarray, name: str, *,
                          unit_range: bool) -> tuple[np.ndarray, np.ndarray]:
    """(N, L) 0/1 indicators and (N, L) finite values of the same shape."""
    y = np.asarray(y_true)
    v = np.asarray(values, dtype=float)
    if y.ndim != 2 or y.size == 0:
        raise InvalidParameterError("not a non-empty indicator matrix", parameter="y_true",
                                    expected="shape (N, L) of 0/1, N, L >= 1", found=f"shape {y.shape}",
                                    fix="pass one row per sample and one 0/1 column per label")
    if v.shape != y.shape:
        raise InvalidParameterError("shape differs from y_true", parameter=name, expected=f"shape {y.shape}",
                                    found=f"shape {v.shape}", fix="give one value per sample and label")
    if not np.all(np.isin(y, (0, 1))):
        raise InvalidParameterError("not 0/1 indicators", parameter="y_true", expected="values 0 or 1",
                                    found=f"values {np.unique(y)[:5].tolist()}", fix="binarise the labels")
    _check_finite(v, name, unit_range=unit_range)
    return y.astype(np.int64), v


def calibration_bins(values: np.ndarray, targets: np.ndarray, n_bins: int) -> tuple[np.ndarray, ...]:
    """Equal-width bins over [0, 1] as in :func:`expected_calibration_error` ((b/n, (b+1)/n], 0 in the first).

    Returns (count, mean value, mean target) per bin, means NaN in empty bins.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise InvalidParameterError("too few bins", parameter="n_bins", expected="an integer >= 1", found=n_bins,
                                    fix="use e.g. n_bins=15")
    index = np.clip(np.ceil(values * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_value = np.bincount(index, weights=values, minlength=n_bins) / count
        mean_target = np.bincount(index, weights=targets.astype(float), minlength=n_bins) / count
    return count, mean_value, mean_target


def _binned_ece(count: np.ndarray, mean_value: np.ndarray, mean_target: np.ndarray) -> float:
    keep = count > 0
    return float(np.sum(np.abs(mean_target[keep] - mean_value[keep]) * count[keep]) / count.sum())


def brier_score(y_true: Sequence[int] | np.ndarray, probabilities: Sequence | np.ndarray) -> float:
    """Brier score: mean squared distance between the predicted probabilities and the one-hot truth (lower is better).

    Same convention as scikit-learn's ``brier_score_loss``: with two classes it is the mean of (p_1 - y)^2
    (range [0, 1]); with K >= 3 classes the squared distance is summed over classes (range [0, 2]).

    Args:
        y_true: (N,) class ids 0..K-1.
        probabilities: (N, K) class probabilities (rows sum to 1), or (N,) probability of class 1.

    Raises:
        InvalidParameterError: empty input, lengths differ, values outside [0, 1] or NaN, rows not summing to 1.

    >>> round(brier_score([0, 1, 1], [0.1, 0.8, 0.4]), 4)
    0.1367
    """
    y, p = class_probabilities(y_true, probabilities)
    k = p.shape[1]
    total = float(np.mean(np.sum((p - np.eye(k)[y]) ** 2, axis=1)))
    return total / 2 if k == 2 else total


def log_loss(y_true: Sequence[int] | np.ndarray, probabilities: Sequence | np.ndarray) -> float:
    """Negative log-likelihood of the true classes in nats, mean over samples (lower is better).

    Probabilities are clipped to [eps, 1 - eps] with eps the float64 machine epsilon (as scikit-learn does), so
    a confident mistake costs about 36 nats instead of infinity.

    Args:
        y_true: (N,) class ids 0..K-1.
        probabilities: (N, K) class probabilities (rows sum to 1), or (N,) probability of class 1.

    Raises:
        InvalidParameterError: empty input, lengths differ, values outside [0, 1] or NaN, rows not summing to 1.

    >>> round(log_loss([0, 1], [[0.5, 0.5], [0.2, 0.8]]), 4)
    0.4581
    """
    y, p = class_probabilities(y_true, probabilities)
    eps = np.finfo(float).eps
    return float(-np.mean(np.log(np.clip(p[np.arange(y.size), y], eps, 1 - eps))))


def macro_roc_auc(y_true: Sequence[int] | np.ndarray, scores: Sequence | np.ndarray) -> float:
    """One-vs-rest ROC AUC averaged over classes with equal weight, for (N, K) class scores.

    The value is that of :func:`roc_auc` (which already averages one-vs-rest for K >= 3, and uses column 1 for
    K = 2, like scikit-learn's ``roc_auc_score(..., multi_class="ovr", average="macro")``); this name insists
    on (N, K) scores and on class ids 0..K-1, so a missing column or a shifted label fails loudly.

    Args:
        y_true: (N,) class ids 0..K-1; every class needs a positive and a negative sample.
        scores: (N, K) class scores (probabilities or logits).

    Raises:
        InvalidParameterError: scores not (N, K), ids outside 0..K-1, a class absent from y_true.

    >>> macro_roc_auc([0, 1, 2, 2], [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.3, 0.3, 0.4]])
    1.0
    """
    y = _vector(y_true, "y_true")
    s = np.asarray(scores, dtype=float)
    if s.ndim != 2 or s.shape[1] < 2:
        raise InvalidParameterError("wrong shape", parameter="scores", expected="(N, K) with K >= 2",
                                    found=f"shape {s.shape}", fix="pass one score column per class")
    _same_length(y, s, "scores")
    _check_finite(s, "scores", unit_range=False)
    return roc_auc(class_ids(y, s.shape[1]), s)


def multilabel_roc_auc(y_true: Sequence | np.ndarray, scores: Sequence | np.ndarray) -> float:
    """ROC AUC of each label (one sigmoid output per label), averaged over labels with equal weight.

    Equals scikit-learn's ``roc_auc_score(y_true, scores, average="macro")`` on an indicator matrix.

    Args:
        y_true: (N, L) 0/1 indicators, one column per label; each label needs a positive and a negative sample.
        scores: (N, L) scores of each label being present.

    Raises:
        InvalidParameterError: shapes differ, non-0/1 labels, NaN scores, a label with only one class.

    >>> multilabel_roc_auc([[1, 0], [0, 1], [1, 1]], [[0.9, 0.2], [0.3, 0.6], [0.6, 0.1]])
    0.75
    """
    y, s = multilabel_indicators(y_true, scores, "scores", unit_range=False)
    aucs = []
    for j in range(y.shape[1]):
        try:
            aucs.append(_binary_auc(y[:, j], s[:, j]))
        except InvalidParameterError as exc:
            raise InvalidParameterError(f"ROC AUC of label {j} is undefined with one class", parameter="y_true",
                                        expected=exc.expected, found=exc.found,
                                        fix="drop that label or evaluate on a set where it is present and absent"
                                        ) from exc
    return float(np.mean(aucs))


def multilabel_expected_calibration_error(y_true: Sequence | np.ndarray, probabilities: Sequence | np.ndarray, *,
                                          n_bins: int = 15) -> float:
    """Expected calibration error of each label's probability, averaged over labels with equal weight.

    For each label the probability p of the label being present is binned into ``n_bins`` equal-width bins
    ((b/n, (b+1)/n], 0 in the first) and ECE_label = sum_b |fraction present_b - mean p_b| * n_b / N: the
    reliability of the probability itself, as in scikit-learn's ``calibration_curve`` and MONAI's
    ``CalibrationErrorMetric`` per channel. Note this differs from :func:`expected_calibration_error` on a binary
    problem, which bins the confidence max(p, 1 - p) of the predicted class.

    Args:
        y_true: (N, L) 0/1 indicators, one column per label.
        probabilities: (N, L) probability of each label being present (sigmoid outputs).
        n_bins: number of bins.

    Raises:
        InvalidParameterError: shapes differ, non-0/1 labels, values outside [0, 1] or NaN, n_bins < 1.

    >>> round(multilabel_expected_calibration_error([[1, 0], [0, 0]], [[0.9, 0.2], [0.2, 0.2]], n_bins=10), 4)
    0.175
    """
    y, p = multilabel_indicators(y_true, probabilities, "probabilities", unit_range=True)
    eces = [_binned_ece(*calibration_bins(p[:, j], y[:, j], n_bins)) for j in range(y.shape[1])]
    return float(np.mean(eces))
