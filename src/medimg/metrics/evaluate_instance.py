"""Instance segmentation evaluation (``medimg evaluate --task instance``): instance F1 at IoU thresholds, Data
Science Bowl mean AP and AJI per case of instance label maps (two files, or two folders matched by case id)."""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import numpy as np

from medimg.metrics.evaluate import match_cases
from medimg.metrics.task_result import (
    EvaluationInputError,
    TaskResult,
    check_iou_thresholds,
    check_pair_grid,
    flat_summary,
    table_to_csv,
)

__all__ = ["evaluate_instance_task"]


logger = logging.getLogger(__name__)


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

    ts = check_iou_thresholds(iou_thresholds, parameter="iou_thresholds")
    match = match_cases(pred, gt)
    rows = []
    for cid, pp, gp in match.pairs:
        p_img, g_img = read(pp, kind="label"), read(gp, kind="label")
        check_pair_grid(cid, p_img, g_img, pp)
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
    summary = flat_summary(rows, [*score_cols, "n_gt", "n_pred"], seed=seed, n_bootstrap=n_bootstrap)
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
