"""Classification evaluation (``medimg evaluate --task classification``): a prediction CSV (``case`` and ``score``
or ``score_<class>`` columns) against a reference CSV (``case,label``): AUC, accuracy, balanced accuracy,
sensitivity and specificity at a threshold (binary), confusion matrix, ECE."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core.errors import InvalidParameterError
from medimg.metrics.task_result import (
    EvaluationInputError,
    TaskResult,
    no_match_error,
    parse_number,
    read_table,
    table_to_csv,
)

__all__ = ["evaluate_classification_task"]


def _index_by_case(rows: list[dict[str, str]], path: Path) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for line, row in enumerate(rows, start=2):
        cid = row.get("case", "")
        if not cid:
            raise EvaluationInputError(f"empty value in column 'case' (line {line})", path=path,
                                       expected="a case id", found="''", fix="give every row a case id")
        if cid in out:
            raise EvaluationInputError(f"case '{cid}' appears twice (line {line})", path=path,
                                       expected="one row per case", found="a repeated case id",
                                       fix="keep one row per case")
        out[cid] = {**row, "_line": str(line)}
    return out


def evaluate_classification_task(pred_csv: str | os.PathLike[str], gt_csv: str | os.PathLike[str], *,
                                 threshold: float = 0.5, n_bins: int = 15) -> TaskResult:
    """Classification metrics of predicted probabilities against reference labels, matched by case id.

    Args:
        pred_csv: CSV with ``case`` and either ``score`` (probability of class 1, binary; reference labels must
            be 0 or 1) or one ``score_<class>`` column per class (probabilities; reference labels are the
            ``<class>`` names; two columns are a binary problem whose positive class is the second).
        gt_csv: CSV with ``case,label``.
        threshold: binary only: ``score >= threshold`` is called positive (sensitivity, specificity, the
            predicted class). Multi-class predictions are the class of highest probability.
        n_bins: equal-width bins of the expected calibration error.

    Returns:
        TaskResult with per_case.csv (case, label, predicted, correct, the scores) and a summary with auc,
        accuracy, balanced_accuracy, confusion_matrix (rows: true class, columns: predicted), ece and, when
        binary, sensitivity/specificity/ppv/npv at the threshold.

    Raises:
        EvaluationInputError: missing column, repeated or empty case id, non-numeric score, unknown label,
            no case in common.
    """
    from medimg.metrics.classification import (
        accuracy,
        balanced_accuracy,
        confusion_matrix,
        expected_calibration_error,
        roc_auc,
        sensitivity_specificity,
    )

    if not 0 <= threshold <= 1 or n_bins < 1:
        bad = ("threshold", "a number in [0, 1]", threshold) if not 0 <= threshold <= 1 else \
              ("n_bins", "an integer >= 1", n_bins)
        raise InvalidParameterError("invalid value", parameter=bad[0], expected=bad[1], found=bad[2],
                                    fix="e.g. threshold=0.5, n_bins=15")
    pp, gp = Path(pred_csv), Path(gt_csv)
    gt_rows = read_table(gp, required=("case", "label"), what="reference")
    pred_rows = read_table(pp, required=("case",), what="prediction")
    header = list(pred_rows[0].keys())
    class_cols = [c for c in header if c.startswith("score_")]
    if "score" in header and class_cols:
        raise EvaluationInputError("prediction CSV has both 'score' and 'score_<class>' columns", path=pp,
                                   expected="one of the two layouts", found=", ".join(header),
                                   fix="keep 'score' (binary) or the 'score_<class>' columns")
    if "score" in header:
        classes, cols = ["0", "1"], ["score"]
    elif len(class_cols) >= 2:
        classes, cols = [c[len("score_"):] for c in class_cols], class_cols
    else:
        raise EvaluationInputError(
            "prediction CSV lacks column 'score'", path=pp,
            expected="'score' (binary) or two or more 'score_<class>' columns",
            found=f"columns {', '.join(header)}", fix="add the predicted probabilities as 'score' or 'score_<class>'")
    pred_by, gt_by = _index_by_case(pred_rows, pp), _index_by_case(gt_rows, gp)
    cases = [c for c in gt_by if c in pred_by]
    missing_pred = [c for c in gt_by if c not in pred_by]
    missing_gt = [c for c in pred_by if c not in gt_by]
    if not cases:
        raise no_match_error(pp, list(pred_by), list(gt_by), "case id")
    index = {name: k for k, name in enumerate(classes)}
    y = np.empty(len(cases), np.int64)
    scores = np.empty((len(cases), len(cols)))
    for n, cid in enumerate(cases):
        g = gt_by[cid]
        lab = g["label"]
        if lab not in index:
            try:  # 1.0 / 1 written as float
                lab = str(int(float(lab))) if float(lab).is_integer() else lab
            except ValueError:
                pass
        if lab not in index:
            raise EvaluationInputError(
                f"case '{cid}': unknown label in column 'label' (line {g['_line']})", path=gp,
                expected=f"one of {', '.join(classes)}", found=repr(g["label"]),
                fix="binary labels are 0/1; multi-class labels are the <class> of the 'score_<class>' columns")
        y[n] = index[lab]
        p = pred_by[cid]
        for k, col in enumerate(cols):
            scores[n, k] = parse_number(p[col], path=pp, column=col, line=int(p["_line"]))
    binary = len(classes) == 2
    pos = scores[:, 0] if cols == ["score"] else scores[:, 1] if binary else None
    if binary:
        y_pred = (pos >= threshold).astype(np.int64)
        probs = pos
    else:
        y_pred = scores.argmax(axis=1)
        probs = scores
    auc = roc_auc(y, pos if binary else scores)
    cm = confusion_matrix(y, y_pred, labels=list(range(len(classes))))
    summary: dict[str, Any] = {
        "task": "classification", "pred": str(pp), "gt": str(gp), "n_cases": len(cases), "classes": classes,
        "binary": binary, "auc": auc, "auc_kind": "binary" if binary else "macro one-vs-rest",
        "accuracy": accuracy(y, y_pred), "balanced_accuracy": balanced_accuracy(y, y_pred),
        "confusion_matrix": {"labels": classes, "matrix": cm.tolist()},
        "ece": expected_calibration_error(y, probs, n_bins=n_bins), "n_bins": n_bins,
        "class_counts": {c: int(np.sum(y == k)) for k, c in enumerate(classes)},
        "cases": cases, "missing_predictions": missing_pred, "missing_references": missing_gt,
    }
    if binary:
        summary["threshold"] = threshold
        summary["positive_class"] = classes[1]
        summary["at_threshold"] = sensitivity_specificity(y, pos, threshold=threshold)
    rows = []
    for n, cid in enumerate(cases):
        row = {"case": cid, "label": classes[y[n]], "predicted": classes[y_pred[n]],
               "correct": int(y[n] == y_pred[n])}
        row.update({c: float(scores[n, k]) for k, c in enumerate(cols)})
        rows.append(row)
    headline = {"auc": auc, "accuracy": summary["accuracy"], "balanced_accuracy": summary["balanced_accuracy"]}
    return TaskResult(summary=summary,
                      tables={"per_case.csv": table_to_csv(rows, ["case", "label", "predicted", "correct", *cols])},
                      missing_pred=missing_pred, missing_gt=missing_gt, headline=headline)
