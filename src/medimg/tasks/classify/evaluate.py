"""Classification metrics: of validation logits (training) and of predictions whose labels are known.

:func:`validation_metrics` scores a fold's validation logits before and after temperature scaling (``metrics.json``
of a trained fold); :func:`prediction_metrics` scores calibrated predictions (``metrics.json`` of ``medimg predict``).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from medimg.core.errors import InvalidParameterError

__all__ = ["validation_metrics", "prediction_metrics"]


def _safe(fn: Callable[..., Any], *args: Any, notes: list[str], what: str, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except InvalidParameterError as exc:
        notes.append(f"{what} undefined: {exc.what}")
        return None


def validation_metrics(labels: np.ndarray, logits: np.ndarray, *, task: str, class_names: Sequence[str],
                       temperature: float = 1.0, n_bins: int = 15) -> dict[str, Any]:
    """Metrics of validation logits before and after temperature scaling, as a JSON-ready dict.

    Single-label: ``auc_macro`` (one-vs-rest macro AUC of the calibrated probabilities), ``auc_per_class``,
    ``accuracy``, ``balanced_accuracy``, ``confusion_matrix`` (rows = true class, columns = predicted, class
    order), ``per_class`` sensitivity/specificity (one class against the rest, predicted = argmax), ``ece_before``
    / ``ece_after``, ``brier_*``, ``log_loss_*`` and ``uncertainty_auroc`` (does the predictive entropy flag the
    errors?). Multi-label (one sigmoid per class, threshold 0.5): macro ``auc_macro``, ``accuracy`` (exact match),
    ``label_accuracy``, ``balanced_accuracy`` (mean over labels), per-label 2x2 confusion matrices ``[[tn, fp],
    [fn, tp]]``, sensitivity/specificity and multi-label ECE. A value that is undefined on this set (a class
    without samples) is None and explained in ``notes``.

    Args:
        labels: (N,) class ids or (N, K) 0/1 indicators.
        logits: (N, K) network outputs.
        task: "binary", "multiclass" or "multilabel".
        class_names: the K class names.
        temperature: T of the calibrated probabilities (``*_after``); 1.0 gives identical before/after.
        n_bins: ECE bins.

    Example:
        >>> m = validation_metrics(np.array([0, 1, 1, 0]), np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0],
        ...                        [0.0, 1.0]]), task="binary", class_names=("a", "b"))
        >>> m["accuracy"], m["auc_macro"], m["confusion_matrix"]
        (0.5, 0.75, [[1, 1], [1, 1]])
    """
    from medimg.explain.calibration import apply_temperature
    from medimg.explain.uncertainty import predictive_entropy, uncertainty_auroc
    from medimg.metrics.classification import (
        accuracy,
        balanced_accuracy,
        brier_score,
        confusion_matrix,
        expected_calibration_error,
        log_loss,
        macro_roc_auc,
        multilabel_expected_calibration_error,
        multilabel_roc_auc,
        roc_auc,
        sensitivity_specificity,
    )

    multilabel = task == "multilabel"
    z = np.asarray(logits, np.float64)
    y = np.asarray(labels)
    before = apply_temperature(z, 1.0, multilabel=multilabel)
    after = apply_temperature(z, float(temperature), multilabel=multilabel)
    names = [str(n) for n in class_names]
    notes: list[str] = []
    out: dict[str, Any] = {"n": int(len(z)), "temperature": float(temperature)}
    if multilabel:
        y = y.astype(np.int64)
        pred = (after >= 0.5).astype(np.int64)
        out["auc_macro"] = _safe(multilabel_roc_auc, y, after, notes=notes, what="macro AUC")
        out["auc_per_class"] = {n: _safe(roc_auc, y[:, k], after[:, k], notes=notes, what=f"AUC of '{n}'")
                                for k, n in enumerate(names)}
        out["accuracy"] = float(np.mean((pred == y).all(axis=1)))
        out["label_accuracy"] = float(np.mean(pred == y))
        per_class, cms = {}, {}
        for k, n in enumerate(names):
            r = sensitivity_specificity(y[:, k], after[:, k], threshold=0.5)
            per_class[n] = {"sensitivity": r["sensitivity"], "specificity": r["specificity"],
                            "ppv": r["ppv"], "npv": r["npv"], "positives": int(y[:, k].sum())}
            cms[n] = [[int(r["tn"]), int(r["fp"])], [int(r["fn"]), int(r["tp"])]]
        out["balanced_accuracy"] = float(np.mean([(v["sensitivity"] + v["specificity"]) / 2
                                                  for v in per_class.values()]))
        out["per_class"] = per_class
        out["confusion_matrix"] = cms
        out["ece_before"] = multilabel_expected_calibration_error(y, before, n_bins=n_bins)
        out["ece_after"] = multilabel_expected_calibration_error(y, after, n_bins=n_bins)
        out["brier_before"] = float(np.mean((before - y) ** 2))
        out["brier_after"] = float(np.mean((after - y) ** 2))
        eps = np.finfo(float).eps
        for tag, p in (("before", before), ("after", after)):
            p = np.clip(p, eps, 1 - eps)
            out[f"log_loss_{tag}"] = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    else:
        y = y.astype(np.int64)
        pred = after.argmax(axis=1)
        k_all = list(range(len(names)))
        out["auc_macro"] = _safe(macro_roc_auc, y, after, notes=notes, what="macro AUC")
        out["auc_per_class"] = {n: _safe(roc_auc, (y == k).astype(int), after[:, k], notes=notes,
                                         what=f"AUC of '{n}'") for k, n in enumerate(names)}
        out["accuracy"] = accuracy(y, pred)
        out["balanced_accuracy"] = balanced_accuracy(y, pred)
        out["confusion_matrix"] = confusion_matrix(y, pred, labels=k_all).tolist()
        per_class = {}
        for k, n in enumerate(names):
            r = sensitivity_specificity((y == k).astype(int), (pred == k).astype(float), threshold=0.5)
            per_class[n] = {"sensitivity": r["sensitivity"], "specificity": r["specificity"], "ppv": r["ppv"],
                            "npv": r["npv"], "support": int((y == k).sum())}
        out["per_class"] = per_class
        out["ece_before"] = expected_calibration_error(y, before, n_bins=n_bins)
        out["ece_after"] = expected_calibration_error(y, after, n_bins=n_bins)
        out["brier_before"] = brier_score(y, before)
        out["brier_after"] = brier_score(y, after)
        out["log_loss_before"] = log_loss(y, before)
        out["log_loss_after"] = log_loss(y, after)
        entropy = predictive_entropy(after[None])
        out["uncertainty_auroc"] = _safe(uncertainty_auroc, entropy, pred == y, notes=notes,
                                         what="uncertainty AUROC (entropy vs errors)")
    out["notes"] = notes
    return out


def prediction_metrics(preds: Sequence[Any]) -> dict[str, Any] | None:
    """Metrics of predictions (:class:`~medimg.tasks.classify.writer.ClassPrediction`) whose true labels are known,
    or None when some sample has no label (or one the model does not know).

    The calibrated ``probabilities`` are scored: AUC (macro and per class), accuracy, balanced accuracy, confusion
    matrix, per-class sensitivity/specificity, ECE, Brier score and log loss (as :func:`validation_metrics`
    computes them), and the AUROC of the entropy and of the mutual information for telling the errors from the
    correct decisions (None when all decisions are right or all wrong).

    Example:
        >>> from medimg.tasks.classify.writer import ClassPrediction
        >>> p = [ClassPrediction(id=str(i), class_names=("a", "b"), task="binary", probabilities=np.array(q),
        ...                      pred="ab"[int(q[1] > 0.5)], entropy=e, mutual_information=0.0,
        ...                      uncertainty_method="tta", n_samples=4, label=lab)
        ...      for i, (q, e, lab) in enumerate([([0.9, 0.1], 0.3, "a"), ([0.2, 0.8], 0.5, "b"),
        ...                                       ([0.6, 0.4], 0.7, "b")])]
        >>> m = prediction_metrics(p)
        >>> m["n"], round(m["accuracy"], 3), m["auc_macro"], m["uncertainty_auroc_entropy"]
        (3, 0.667, 1.0, 1.0)
    """
    from medimg.explain.uncertainty import uncertainty_auroc

    if not preds or any(p.label is None for p in preds):
        return None
    names = [str(n) for n in preds[0].class_names]
    task = preds[0].task
    probs = np.clip(np.stack([np.asarray(p.probabilities, np.float64) for p in preds]), 1e-12, 1 - 1e-12)
    if task == "multilabel":
        if any(str(lab) not in names for p in preds for lab in p.label):
            return None
        y = np.array([[int(n in [str(v) for v in p.label]) for n in names] for p in preds])
        logits = np.log(probs / (1 - probs))
        correct = (probs >= 0.5).astype(int) == y
        correct = correct.all(axis=1)
    else:
        if any(str(p.label) not in names for p in preds):
            return None
        y = np.array([names.index(str(p.label)) for p in preds])
        logits = np.log(probs)
        correct = probs.argmax(axis=1) == y
    m = validation_metrics(y, logits, task=task, class_names=names)
    out: dict[str, Any] = {"n": len(preds), "probabilities": "calibrated (as reported per sample)"}
    for key, value in m.items():
        if key.endswith("_after") or key == "uncertainty_auroc":
            continue
        out[key[: -len("_before")] if key.endswith("_before") else key] = value
    for what in ("entropy", "mutual_information"):
        score = [getattr(p, what) for p in preds]
        out[f"uncertainty_auroc_{what}"] = (
            float(uncertainty_auroc(score, correct)) if 0 < int(correct.sum()) < len(correct) else None)
    return out
