"""Detection evaluation (``medimg evaluate --task detection``): folders of per-image box files (Pascal VOC XML or
JSON) matched by file stem: AP per class, mAP and FROC."""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medimg.metrics.evaluate import CaseMatch
from medimg.metrics.task_result import (
    EvaluationInputError,
    TaskResult,
    check_iou_thresholds,
    no_match_error,
    table_to_csv,
)

__all__ = ["read_box_file", "match_box_files", "evaluate_detection_task"]


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
        raise no_match_error(p, list(pi), list(gi), "file stem (.xml/.json)")
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

    check_iou_thresholds([iou_threshold], parameter="iou_threshold")
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
