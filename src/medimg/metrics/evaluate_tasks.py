"""Evaluation of every metric family from files: the tasks behind ``medimg evaluate --task``.

Segmentation lives in :mod:`medimg.metrics.evaluate`; this module adds the other families and only reads
inputs, calls the metric functions of :mod:`medimg.metrics` and tabulates their results:

* :func:`evaluate_instance_task`: instance label maps (two files, or two folders matched by case id):
  instance F1 at IoU thresholds, Data Science Bowl mean AP, AJI and instance counts per case.
* :func:`evaluate_classification_task`: a prediction CSV (``case`` and ``score`` or ``score_<class>``
  columns) against a reference CSV (``case,label``): AUC, accuracy, balanced accuracy, sensitivity and
  specificity at a threshold (binary), confusion matrix, ECE.
* :func:`evaluate_detection_task`: folders of per-image box files (Pascal VOC XML or JSON) matched by file
  stem: AP per class, mAP and FROC.
* :func:`evaluate_quality_task`: images against references: PSNR, SSIM and MSE per case.
* :func:`evaluate_registration_task`: landmark CSVs (``case,x,y,z`` in mm, same order per case): TRE per
  landmark and per case, and optionally Jacobian determinant statistics of a displacement field.

Each returns a :class:`TaskResult` (a JSON-ready summary and CSV tables as text); it writes nothing, the
command line writes the files atomically. Per-case statistics (mean, std, median, seeded bootstrap interval)
come from :func:`medimg.metrics.evaluate.summarize`. Unreadable or malformed inputs raise
:class:`EvaluationInputError` (or the image reader's :class:`~medimg.core.errors.ImageReadError`), naming the
file and the column or entry.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medimg.core.errors import GeometryMismatchError, ImageReadError, InvalidParameterError, MedimgError
from medimg.metrics.evaluate import CaseMatch, match_cases, summarize

__all__ = ["TASKS", "TaskResult", "EvaluationInputError", "evaluate_instance_task",
           "evaluate_classification_task", "evaluate_detection_task", "evaluate_quality_task",
           "evaluate_registration_task", "read_box_file", "match_box_files", "table_to_csv"]

logger = logging.getLogger(__name__)

#: Tasks of ``medimg evaluate --task`` (segmentation is :mod:`medimg.metrics.evaluate`).
TASKS = ("segmentation", "instance", "classification", "detection", "quality", "registration")


class EvaluationInputError(MedimgError, ValueError):
    """An evaluation input table or annotation file is missing, malformed or does not match its partner."""


@dataclass
class TaskResult:
    """What one evaluation task produced.

    Attributes:
        summary: JSON-ready mapping (no NaN or inf) written as summary.json.
        tables: file name -> CSV text (per_case.csv, per_image.csv, ...).
        missing_pred: reference cases without prediction (left out), missing_gt: the reverse.
        headline: a few key numbers (name -> value or None) for a one-line report.
    """

    summary: dict[str, Any]
    tables: dict[str, str] = field(default_factory=dict)
    missing_pred: list[str] = field(default_factory=list)
    missing_gt: list[str] = field(default_factory=list)
    headline: dict[str, float | None] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- helpers


def _fmt(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    return v


def table_to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """CSV text of ``rows`` with the given columns; floats with 6 significant digits, inf as 'inf'."""
    from medimg.io.csv_safe import rows_to_text

    # cells a spreadsheet would run as formulas (case ids like "=cmd|...") are escaped there
    return rows_to_text([{k: _fmt(v) for k, v in row.items()} for row in rows], columns)


def _finite_or_none(v: float) -> float | None:
    return float(v) if math.isfinite(float(v)) else None


def _flat_summary(rows: Sequence[dict[str, Any]], metrics: Sequence[str], *, seed: int,
                  n_bootstrap: int) -> dict[str, Any]:
    """:func:`summarize` over rows with no class: {"seed", ..., "n_cases", "metrics": {metric: stats}}."""
    out = summarize([{**r, "label": 0} for r in rows], metrics=metrics, seed=seed, n_bootstrap=n_bootstrap)
    block = out.pop("per_label").get("0", {})
    out["metrics"] = block
    return out


def _pair_check(cid: str, pred_img: Any, gt_img: Any, pred_path: Path) -> None:
    try:
        gt_img.check_same_grid(pred_img, what=f"case '{cid}': reference and prediction")
    except GeometryMismatchError as exc:
        raise GeometryMismatchError(exc.what, path=pred_path, expected=exc.expected, found=exc.found,
                                    fix=exc.fix) from exc


def _read_table(path: str | os.PathLike[str], *, required: Sequence[str], what: str) -> list[dict[str, str]]:
    """Rows of a CSV file (header row required) that must have the ``required`` columns."""
    p = Path(path)
    if not p.is_file():
        raise EvaluationInputError(f"no such {what} file", path=p, expected="a CSV file",
                                   found="a folder" if p.is_dir() else "nothing", fix="check the path")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise EvaluationInputError(f"unreadable {what} file", path=p, expected="a UTF-8 CSV file",
                                   found=type(exc).__name__, fix="save the table as CSV (UTF-8)") from exc
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in required if c not in header]
    if missing:
        raise EvaluationInputError(
            f"{what} CSV lacks column '{missing[0]}'", path=p, expected=f"columns {', '.join(required)}",
            found=f"columns {', '.join(header) or 'none'}", fix=f"add a '{missing[0]}' column (header row first)")
    rows = []
    for row in reader:
        rows.append({(k or "").strip(): (v or "").strip() for k, v in row.items()})
    if not rows:
        raise EvaluationInputError(f"{what} CSV has no rows", path=p, expected="one row per case",
                                   found="only a header", fix="write the rows under the header")
    return rows


def _number(text: str, *, path: Path, column: str, line: int) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise EvaluationInputError(f"not a number in column '{column}' (line {line})", path=path,
                                   expected="a number", found=repr(text), fix="write plain numbers") from exc
    if not math.isfinite(value):
        raise EvaluationInputError(f"non-finite number in column '{column}' (line {line})", path=path,
                                   expected="a finite number", found=repr(text), fix="write finite numbers")
    return value


def _no_match(pred: Path, pred_ids: Sequence[str], gt_ids: Sequence[str], what: str) -> EvaluationInputError:
    return EvaluationInputError(
        f"no {what} is found in both inputs", path=pred,
        expected=f"matching ids, e.g. {next(iter(sorted(gt_ids)), 'case_001')}",
        found=f"{len(pred_ids)} predictions ({', '.join(sorted(pred_ids)[:3]) or 'none'}) and {len(gt_ids)} "
              "references", fix=f"name the {what}s of the prediction like those of the reference")


# ---------------------------------------------------------------------------------------------- instance


def evaluate_instance_task(pred: str | os.PathLike[str], gt: str | os.PathLike[str], *,
                           iou_thresholds: Sequence[float] = (0.5, 0.75), seed: int = 0,
                           n_bootstrap: int = 2000) -> TaskResult:
    """Instance F1 per IoU threshold, DSB mean AP and AJI per case, with summary statistics.

    Args:
        pred, gt: instance label map files (0 background, one id per object), or two folders matched by case
            id as in :func:`medimg.metrics.evaluate.match_cases`.
        iou_thresholds: thresholds of the F1/precision/recall columns (``f1@0.5``, ...).

    Returns:
        TaskResult with per_case.csv (case, n_gt, n_pred, tp/fp/fn/precision/recall/f1 per threshold,
        dsb_ap, aji) and a summary of every score column.
    """
    from medimg.io import read
    from medimg.metrics.instance import aggregated_jaccard_index, dsb_average_precision, instance_f1

    ts = _thresholds(iou_thresholds, parameter="iou_thresholds")
    match = match_cases(pred, gt)
    rows = []
    for cid, pp, gp in match.pairs:
        p_img, g_img = read(pp, kind="label"), read(gp, kind="label")
        _pair_check(cid, p_img, g_img, pp)
        for img, path in ((p_img, pp), (g_img, gp)):
            if img.n_channels != 1:
                raise EvaluationInputError(f"case '{cid}': instance map has several channels", path=path,
                                           expected="a single-channel label map",
                                           found=f"{img.n_channels} channels",
                                           fix="save instance maps as one-channel integer images")
        p, g = np.asarray(p_img.voxels[0]), np.asarray(g_img.voxels[0])
        f1 = instance_f1(p, g, iou_thresholds=ts)
        row: dict[str, Any] = {"case": cid, "n_gt": int(np.unique(g[g != 0]).size),
                               "n_pred": int(np.unique(p[p != 0]).size)}
        for t in ts:
            for k in ("tp", "fp", "fn"):
                row[f"{k}@{t:g}"] = int(f1[t][k])
            for k in ("precision", "recall", "f1"):
                row[f"{k}@{t:g}"] = f1[t][k]
        row["dsb_ap"] = dsb_average_precision(p, g)
        row["aji"] = aggregated_jaccard_index(p, g)
        rows.append(row)
        logger.debug("scored %s", cid)
    score_cols = [f"{k}@{t:g}" for t in ts for k in ("precision", "recall", "f1")] + ["dsb_ap", "aji"]
    columns = ["case", "n_gt", "n_pred"] + [f"{k}@{t:g}" for t in ts
                                           for k in ("tp", "fp", "fn", "precision", "recall", "f1")]
    columns += ["dsb_ap", "aji"]
    summary = _flat_summary(rows, [*score_cols, "n_gt", "n_pred"], seed=seed, n_bootstrap=n_bootstrap)
    summary.update(task="instance", iou_thresholds=list(ts), pred=str(pred), gt=str(gt),
                   cases=[r["case"] for r in rows], missing_predictions=match.missing_pred,
                   missing_references=match.missing_gt,
                   totals={k: int(sum(r[k] for r in rows)) for k in ("n_gt", "n_pred")},
                   definitions={"f1@t": "instances paired one to one with IoU > t; 2TP / (2TP + FP + FN)",
                                "dsb_ap": "Data Science Bowl 2018: mean over t = 0.5:0.05:0.95 of "
                                          "TP / (TP + FP + FN)",
                                "aji": "Aggregated Jaccard Index (Kumar et al. 2017)",
                                "empty": "no instance on either side: 1.0; on one side only: 0.0"})
    t0 = ts[0]
    headline = {f"f1@{t0:g}": summary["metrics"][f"f1@{t0:g}"]["mean"],
                "dsb_ap": summary["metrics"]["dsb_ap"]["mean"], "aji": summary["metrics"]["aji"]["mean"]}
    return TaskResult(summary=summary, tables={"per_case.csv": table_to_csv(rows, columns)},
                      missing_pred=match.missing_pred, missing_gt=match.missing_gt, headline=headline)


def _thresholds(values: Sequence[float], *, parameter: str) -> tuple[float, ...]:
    ts = tuple(float(v) for v in values)
    if not ts or any(not 0 <= t < 1 for t in ts):
        raise InvalidParameterError("IoU thresholds must lie in [0, 1)", parameter=parameter,
                                    expected="e.g. 0.5,0.75", found=ts, fix="give thresholds like 0.5,0.75")
    return ts


# ---------------------------------------------------------------------------------------------- classification


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
    gt_rows = _read_table(gp, required=("case", "label"), what="reference")
    pred_rows = _read_table(pp, required=("case",), what="prediction")
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
        raise _no_match(pp, list(pred_by), list(gt_by), "case id")
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
            scores[n, k] = _number(p[col], path=pp, column=col, line=int(p["_line"]))
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


# ---------------------------------------------------------------------------------------------- detection

_BOX_SUFFIXES = (".xml", ".json")


def _box_error(path: Path, what: str, found: Any, fix: str, expected: str) -> EvaluationInputError:
    return EvaluationInputError(what, path=path, expected=expected, found=found, fix=fix)


def read_box_file(path: str | os.PathLike[str], *, need_score: bool) -> list[tuple[str, list[float], float]]:
    """Boxes of one image: a Pascal VOC XML annotation or a JSON list of objects.

    JSON: ``[{"label": "RBC", "box": [x0, y0, x1, y1], "score": 0.9}, ...]``. VOC XML: ``<object>`` elements
    with ``<name>`` and ``<bndbox>`` (``xmin``, ``ymin``, ``xmax``, ``ymax``), and an optional ``<score>``.

    Args:
        need_score: predictions: every box must carry a score.

    Returns:
        (label, [x0, y0, x1, y1], score) per box; score is 1.0 where none is given (references).

    Raises:
        EvaluationInputError: unreadable file, wrong structure, missing label/box/score (the entry is named).
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in _BOX_SUFFIXES:
        raise _box_error(p, "unsupported box file type", f"'{p.suffix}'", "save boxes as VOC .xml or .json",
                         "a Pascal VOC .xml or a .json file")
    out: list[tuple[str, list[float], float]] = []
    if suffix == ".xml":
        try:
            root = ET.parse(p).getroot()
        except (ET.ParseError, OSError) as exc:
            raise _box_error(p, "unreadable VOC XML file", str(exc)[:120], "check the file is complete XML",
                             "a Pascal VOC annotation") from exc
        for k, obj in enumerate(root.iter("object")):
            name = (obj.findtext("name") or "").strip()
            bb = obj.find("bndbox")
            if not name or bb is None:
                raise _box_error(p, f"object {k} lacks <name> or <bndbox>", "an incomplete object",
                                 "give every object a name and a bndbox", "<name> and <bndbox>")
            try:
                box = [float(bb.findtext(t) or "") for t in ("xmin", "ymin", "xmax", "ymax")]
            except ValueError as exc:
                raise _box_error(p, f"object {k}: bndbox is not four numbers", "a missing or non-numeric value",
                                 "write xmin, ymin, xmax, ymax as numbers", "xmin, ymin, xmax, ymax") from exc
            score_text = obj.findtext("score")
            if score_text is None and need_score:
                raise _box_error(p, f"object {k} has no score", "no <score> element",
                                 "give predictions as JSON with a 'score' per box, or add <score> to each object",
                                 "a confidence score per predicted box")
            try:
                score = 1.0 if score_text is None else float(score_text)
            except ValueError as exc:
                raise _box_error(p, f"object {k}: score is not a number", repr(score_text),
                                 "write the score as a number", "a number") from exc
            out.append((name, box, score))
    else:
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _box_error(p, "unreadable JSON file", str(exc)[:120], "check the file is complete JSON",
                             "a JSON list of boxes") from exc
        if not isinstance(data, list):
            raise _box_error(p, "JSON is not a list", type(data).__name__, "write a list of {label, box, score}",
                             '[{"label": ..., "box": [x0, y0, x1, y1], "score": ...}]')
        for k, item in enumerate(data):
            if not isinstance(item, dict) or "label" not in item or "box" not in item:
                raise _box_error(p, f"entry {k} lacks 'label' or 'box'", repr(item)[:80],
                                 "give every entry a label and a box", "an object with 'label' and 'box'")
            box = item["box"]
            if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
                raise _box_error(p, f"entry {k}: 'box' is not four numbers", repr(box)[:80],
                                 "write the box as [x0, y0, x1, y1]", "[x0, y0, x1, y1]")
            if "score" not in item and need_score:
                raise _box_error(p, f"entry {k} has no 'score'", "no 'score' key",
                                 "give every predicted box a confidence 'score'", "a score per predicted box")
            score = item.get("score", 1.0)
            if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score):
                raise _box_error(p, f"entry {k}: 'score' is not a number", repr(score),
                                 "write the score as a number", "a finite number")
            out.append((str(item["label"]), [float(v) for v in box], float(score)))
    for k, (_, b, _) in enumerate(out):
        if not all(math.isfinite(v) for v in b) or b[2] < b[0] or b[3] < b[1]:
            raise _box_error(p, f"box {k} is not [x0, y0, x1, y1] with x1 >= x0, y1 >= y0", b,
                             "convert (x, y, w, h) boxes to corners", "corner coordinates")
    return out


def match_box_files(pred: str | os.PathLike[str], gt: str | os.PathLike[str]) -> CaseMatch:
    """Pair .xml/.json box files of two folders by file stem (or take two files as one pair).

    Raises:
        EvaluationInputError: a path is missing, a file and a folder are mixed, two files share a stem, or no
            stem matches.
    """
    p, g = Path(pred), Path(gt)
    for path in (p, g):
        if not path.exists():
            raise EvaluationInputError("no such file or folder", path=path, fix="check the spelling")
    if p.is_file() and g.is_file():
        return CaseMatch(pairs=[(g.stem, p, g)])
    if p.is_dir() != g.is_dir():
        raise EvaluationInputError("PRED and GT must both be folders (or both files)",
                                   path=p if p.is_file() else g, expected="two folders of box files",
                                   found="one file and one folder", fix="give the two folders")

    def index(folder: Path) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for f in sorted(folder.iterdir()):
            if not f.is_file() or f.name.startswith(".") or f.suffix.lower() not in _BOX_SUFFIXES:
                continue
            if f.stem in out:
                raise EvaluationInputError("two box files with the same stem", path=f,
                                           expected="one file per image",
                                           found=f"'{out[f.stem].name}' and '{f.name}'", fix="keep one per image")
            out[f.stem] = f
        return out

    pi, gi = index(p), index(g)
    match = CaseMatch(pairs=[(s, pi[s], gi[s]) for s in sorted(gi) if s in pi],
                      missing_pred=sorted(set(gi) - set(pi)), missing_gt=sorted(set(pi) - set(gi)))
    if not match.pairs:
        raise _no_match(p, list(pi), list(gi), "file stem (.xml/.json)")
    return match


def evaluate_detection_task(pred: str | os.PathLike[str], gt: str | os.PathLike[str], *,
                            iou_threshold: float = 0.5, fp_rates: Sequence[float] | None = None) -> TaskResult:
    """AP per class, mAP and FROC of predicted boxes against reference boxes, images matched by file stem.

    Args:
        pred: folder of per-image box files with scores (see :func:`read_box_file`).
        gt: folder of reference box files (VOC XML as in the BCCD data set, or JSON).
        iou_threshold: IoU needed for a true positive (VOC rule, see :mod:`medimg.metrics.detection`).
        fp_rates: FROC false positives per image (default 1/8, 1/4, ..., 8).

    Returns:
        TaskResult with per_image.csv (image, n_gt, n_pred, tp, fp, fn at the IoU threshold, classes matched
        separately) and a summary with ``ap`` per class, ``map``, and ``froc`` (class-agnostic: all boxes,
        labels ignored) plus ``froc_per_class``.
    """
    from medimg.metrics.detection import FROC_FP_RATES, froc, match_detections, mean_average_precision

    _thresholds([iou_threshold], parameter="iou_threshold")
    rates = tuple(FROC_FP_RATES if fp_rates is None else fp_rates)
    match = match_box_files(pred, gt)
    images = []
    for stem, pp, gp in match.pairs:
        images.append((stem, read_box_file(pp, need_score=True), read_box_file(gp, need_score=False)))
    names = sorted({lab for _, pb, gb in images for lab, _, _ in (*pb, *gb)})
    ids = {n: k for k, n in enumerate(names)}

    def arrays(boxes: list[tuple[str, list[float], float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.asarray([b for _, b, _ in boxes], float).reshape(-1, 4),
                np.asarray([s for _, _, s in boxes], float),
                np.asarray([ids[lab] for lab, _, _ in boxes], np.int64))

    pb, ps, pl, gb, gl = [], [], [], [], []
    for _, pred_boxes, gt_boxes in images:
        b, s, lab = arrays(pred_boxes)
        pb.append(b)
        ps.append(s)
        pl.append(lab)
        b, _, lab = arrays(gt_boxes)
        gb.append(b)
        gl.append(lab)
    if not any(g.shape[0] for g in gb):
        raise EvaluationInputError("no reference box in any matched image", path=Path(gt),
                                   expected="at least one reference box", found=f"{len(images)} empty images",
                                   fix="evaluate on images that contain objects")
    m = mean_average_precision(pb, ps, pl, gb, gl, iou_threshold=iou_threshold)
    fr = froc(pb, ps, gb, iou_threshold=iou_threshold, fp_rates=rates)
    froc_per_class = {}
    for c, name in enumerate(names):
        gbc = [g[lab == c] for g, lab in zip(gb, gl)]
        if not any(g.shape[0] for g in gbc):
            continue
        fc = froc([b[lab == c] for b, lab in zip(pb, pl)], [s[lab == c] for s, lab in zip(ps, pl)], gbc,
                  iou_threshold=iou_threshold, fp_rates=rates)
        froc_per_class[name] = {"sensitivity_at": fc["sensitivity_at"], "score": fc["score"]}
    rows = []
    for i, (stem, _, _) in enumerate(images):
        tp = 0
        for c in range(len(names)):
            _, hits, _ = match_detections([pb[i][pl[i] == c]], [ps[i][pl[i] == c]], [gb[i][gl[i] == c]],
                                          iou_threshold=iou_threshold)
            tp += int(hits.sum())
        n_gt, n_pred = int(gb[i].shape[0]), int(pb[i].shape[0])
        rows.append({"image": stem, "n_gt": n_gt, "n_pred": n_pred, "tp": tp, "fp": n_pred - tp,
                     "fn": n_gt - tp})
    summary = {
        "task": "detection", "pred": str(pred), "gt": str(gt), "iou_threshold": iou_threshold,
        "n_images": len(images), "n_gt_boxes": int(sum(g.shape[0] for g in gb)),
        "n_pred_boxes": int(sum(b.shape[0] for b in pb)),
        "map": m["map"], "ap": {names[c]: v for c, v in m["ap"].items()},
        "classes_without_reference": [names[c] for c in m["classes_without_reference"]],
        "froc": {"fp_rates": fr["fp_rates"], "sensitivity_at": fr["sensitivity_at"], "score": fr["score"],
                 "labels": "ignored (all boxes together)"},
        "froc_per_class": froc_per_class,
        "images": [stem for stem, _, _ in images], "missing_predictions": match.missing_pred,
        "missing_references": match.missing_gt,
        "definitions": {"ap": "all-point interpolated AP (VOC 2010+), TP when IoU >= iou_threshold",
                        "froc.score": "mean sensitivity at fp_rates false positives per image (LUNA16 CPM)"},
    }
    return TaskResult(summary=summary,
                      tables={"per_image.csv": table_to_csv(rows, ["image", "n_gt", "n_pred", "tp", "fp", "fn"])},
                      missing_pred=match.missing_pred, missing_gt=match.missing_gt,
                      headline={"map": m["map"], "froc": fr["score"]})


# ---------------------------------------------------------------------------------------------- quality


def evaluate_quality_task(pred: str | os.PathLike[str], gt: str | os.PathLike[str], *,
                          data_range: float | None = None, seed: int = 0, n_bootstrap: int = 2000) -> TaskResult:
    """PSNR (dB), SSIM and MSE of images against references (two files or two folders matched by case id).

    Args:
        data_range: span of possible values (e.g. 4095 for 12-bit CT); None: max - min of each reference.

    Returns:
        TaskResult with per_case.csv (case, psnr_db, ssim, mse, data_range) and a summary; a PSNR of ``inf``
        (identical images) is written as 'inf' and left out of the statistics (counted in n_excluded_inf).
    """
    from medimg.io import read
    from medimg.metrics.image_quality import mse, psnr, ssim

    if data_range is not None and not (math.isfinite(data_range) and data_range > 0):
        raise InvalidParameterError("invalid data range", parameter="data_range", expected="a positive number",
                                    found=data_range, fix="e.g. 4095 for 12-bit CT, or leave it out")
    match = match_cases(pred, gt)
    rows = []
    for cid, pp, gp in match.pairs:
        p_img, g_img = read(pp), read(gp)
        _pair_check(cid, p_img, g_img, pp)
        ref = np.asarray(g_img.voxels, dtype=np.float64)
        dr = float(ref.max() - ref.min()) if data_range is None else float(data_range)
        try:
            row = {"case": cid, "psnr_db": psnr(p_img, g_img, data_range=dr),
                   "ssim": ssim(p_img, g_img, data_range=dr), "mse": mse(p_img, g_img), "data_range": dr}
        except InvalidParameterError as exc:
            raise InvalidParameterError(f"case '{cid}': {exc.what}", parameter=exc.parameter,
                                        expected=exc.expected, found=exc.found, fix=exc.fix) from exc
        rows.append(row)
    summary = _flat_summary(rows, ["psnr_db", "ssim", "mse"], seed=seed, n_bootstrap=n_bootstrap)
    summary.update(task="quality", pred=str(pred), gt=str(gt), data_range=data_range,
                   cases=[r["case"] for r in rows], missing_predictions=match.missing_pred,
                   missing_references=match.missing_gt,
                   definitions={"psnr_db": "10 log10(data_range^2 / MSE); data_range: max - min of the "
                                           "reference unless given",
                                "ssim": "Gaussian window sigma 1.5 (skimage gaussian_weights=True)"})
    return TaskResult(summary=summary,
                      tables={"per_case.csv": table_to_csv(rows, ["case", "psnr_db", "ssim", "mse", "data_range"])},
                      missing_pred=match.missing_pred, missing_gt=match.missing_gt,
                      headline={"psnr_db": summary["metrics"]["psnr_db"]["mean"],
                                "ssim": summary["metrics"]["ssim"]["mean"]})


# ---------------------------------------------------------------------------------------------- registration


def _read_landmarks(path: Path, what: str) -> tuple[dict[str, np.ndarray], int]:
    rows = _read_table(path, required=("case", "x", "y"), what=what)
    has_z = "z" in rows[0]
    axes = ("x", "y", "z") if has_z else ("x", "y")
    out: dict[str, list[list[float]]] = {}
    for line, row in enumerate(rows, start=2):
        cid = row["case"]
        if not cid:
            raise EvaluationInputError(f"empty value in column 'case' (line {line})", path=path,
                                       expected="a case id", found="''", fix="give every row a case id")
        out.setdefault(cid, []).append([_number(row[a], path=path, column=a, line=line) for a in axes])
    return {c: np.asarray(v, float) for c, v in out.items()}, len(axes)


def _read_field(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """(components in index-axis order (D, [Z,] Y, X), spacing (sx, sy[, sz])) of a displacement field file."""
    from medimg.io import read

    try:
        img = read(path)
    except ImageReadError as exc:
        name = path.name.lower()
        if not name.endswith((".nii", ".nii.gz")):
            raise
        # ITK writes vector NIfTI files as 5D (x, y, z, 1, components): read them through SimpleITK
        from medimg.io.itk_formats import read_itk

        try:
            img = read_itk(path)
        except ImageReadError:
            raise exc from None
    d = 2 if img.is_2d else 3
    if img.n_channels != d:
        raise EvaluationInputError(
            "not a displacement field", path=path,
            expected=f"a vector image with {d} components for a {d}D grid (mm, x first)",
            found=f"{img.n_channels} component(s) on a {d}D grid",
            fix="save the field as a vector NIfTI/MHA (e.g. SimpleITK displacement field)")
    vox = np.asarray(img.voxels, dtype=np.float64)
    # components are physical (x, y[, z]) mm; turn them into index-axis components: u_idx = D^T u
    direction = img.geometry.direction_matrix[:d, :d]
    if d == 2:
        vox = vox[:, 0]
    comps = np.tensordot(direction.T, vox, axes=(1, 0))
    return comps, tuple(img.geometry.spacing[:d])


def evaluate_registration_task(pred_csv: str | os.PathLike[str], gt_csv: str | os.PathLike[str], *,
                               field_path: str | os.PathLike[str] | None = None, seed: int = 0,
                               n_bootstrap: int = 2000) -> TaskResult:
    """Target registration error of landmark tables, and Jacobian statistics of a displacement field.

    Args:
        pred_csv, gt_csv: CSVs ``case,x,y,z`` (mm; ``z`` may be left out in both for 2D), one row per
            landmark, in the same order per case (e.g. transformed moving landmarks and fixed landmarks).
        field_path: optional displacement field (NIfTI/MHA/NRRD vector image, 2 or 3 components in mm, x
            first, as ITK writes them) whose Jacobian determinant is summarised.

    Returns:
        TaskResult with per_landmark.csv (case, landmark, tre_mm), per_case.csv (case, n_landmarks,
        tre_mean_mm, tre_max_mm), a summary over cases of the per-case means, statistics over all landmarks
        (``landmarks``) and, with a field, ``jacobian`` (mean, std, min, max, folding_fraction, ...).
    """
    from medimg.metrics.registration import jacobian_statistics, target_registration_error

    pp, gp = Path(pred_csv), Path(gt_csv)
    pred, dp = _read_landmarks(pp, "prediction")
    ref, dg = _read_landmarks(gp, "reference")
    if dp != dg:
        raise EvaluationInputError("landmark dimensions differ", path=pp, expected=f"{dg} coordinates (as GT)",
                                   found=f"{dp} coordinates", fix="give x,y,z in both tables, or x,y in both")
    cases = [c for c in ref if c in pred]
    missing_pred = [c for c in ref if c not in pred]
    missing_gt = [c for c in pred if c not in ref]
    if not cases:
        raise _no_match(pp, list(pred), list(ref), "case id")
    lm_rows, case_rows = [], []
    for cid in cases:
        a, b = pred[cid], ref[cid]
        if a.shape != b.shape:
            raise EvaluationInputError(f"case '{cid}': landmark counts differ", path=pp,
                                       expected=f"{b.shape[0]} landmarks (as in {gp.name})",
                                       found=f"{a.shape[0]} landmarks", fix="give the same landmarks in order")
        tre = target_registration_error(a, b)
        lm_rows += [{"case": cid, "landmark": k, "tre_mm": float(v)} for k, v in enumerate(tre)]
        case_rows.append({"case": cid, "n_landmarks": int(tre.size), "tre_mean_mm": float(tre.mean()),
                          "tre_max_mm": float(tre.max())})
    summary = _flat_summary(case_rows, ["tre_mean_mm", "tre_max_mm"], seed=seed, n_bootstrap=n_bootstrap)
    all_tre = np.array([r["tre_mm"] for r in lm_rows])
    summary.update(
        task="registration", pred=str(pp), gt=str(gp), n_landmarks=int(all_tre.size),
        landmarks={"mean": float(all_tre.mean()), "std": float(all_tre.std()),
                   "median": float(np.median(all_tre)), "p90": float(np.quantile(all_tre, 0.9)),
                   "max": float(all_tre.max())},
        cases=cases, missing_predictions=missing_pred, missing_references=missing_gt,
        definitions={"tre_mm": "Euclidean distance between corresponding landmarks (mm)"})
    headline: dict[str, float | None] = {"tre_mean_mm": summary["landmarks"]["mean"]}
    if field_path is not None:
        comps, spacing = _read_field(Path(field_path))
        stats = jacobian_statistics(comps, spacing_mm=spacing)
        summary["field"] = str(field_path)
        summary["jacobian"] = {k: _finite_or_none(v) for k, v in stats.items()}
        summary["definitions"]["jacobian"] = ("determinant of I + du/dx (central differences, mm); "
                                              "folding_fraction: share of voxels with det <= 0")
        headline["folding_fraction"] = stats["folding_fraction"]
    tables = {"per_case.csv": table_to_csv(case_rows, ["case", "n_landmarks", "tre_mean_mm", "tre_max_mm"]),
              "per_landmark.csv": table_to_csv(lm_rows, ["case", "landmark", "tre_mm"])}
    return TaskResult(summary=summary, tables=tables, missing_pred=missing_pred, missing_gt=missing_gt,
                      headline=headline)
