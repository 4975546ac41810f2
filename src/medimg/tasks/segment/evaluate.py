"""Validation of a segmentation model during and after training: Dice per class on preprocessed cases, and the
postprocessing decision (``postprocess.json``) drawn from it.

Per-class Dice is :func:`medimg.metrics.segmentation.dice_per_label` (the one per-label Dice of the package).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from medimg.io.files import write_json_atomic
from medimg.metrics.segmentation import dice_per_label

__all__ = ["dice_per_class", "validate_cases", "decide_postprocess", "POSTPROCESS_RULE"]


def dice_per_class(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> list[float]:
    """Dice of class ids 1..K-1 (1.0 when a class is absent from both), in class order."""
    return list(dice_per_label(pred, truth, range(1, n_classes)).values())


def validate_cases(model: torch.nn.Module, cases: Sequence[tuple[np.ndarray, np.ndarray]], plan: Any, *,
                   autocast_bf16: bool = True) -> dict[str, Any]:
    """Sliding-window prediction of preprocessed cases and Dice per class on the plan's grid, also after keeping the
    largest connected component of each class (``dice_per_class_largest_component``, for :func:`decide_postprocess`).
    """
    from medimg.infer.postprocess import keep_largest_component
    from medimg.infer.sliding import sliding_window_predict

    model.eval()
    dices, dices_lcc = [], []

    def fn(x: torch.Tensor) -> torch.Tensor:
        return model(x)

    for img, lab in cases:
        probs = sliding_window_predict(fn, torch.from_numpy(np.array(img, dtype=np.float32)),
                                       patch_size=tuple(plan.patch_size), n_classes=plan.n_classes, overlap=0.5,
                                       batch_size=plan.batch_size, autocast_bf16=autocast_bf16)
        pred = probs.argmax(0).numpy()
        dices.append(dice_per_class(pred, lab, plan.n_classes))
        dices_lcc.append(dice_per_class(keep_largest_component(pred, range(1, plan.n_classes)), lab, plan.n_classes))
    model.train()
    arr = np.array(dices)
    per_class = arr.mean(axis=0).tolist() if len(arr) else []
    return {"n_cases": len(dices), "dice_per_class": per_class,
            "mean_dice": float(np.mean(per_class)) if per_class else float("nan"),
            "dice_per_class_largest_component": np.array(dices_lcc).mean(axis=0).tolist() if dices_lcc else [],
            "dice_per_case": arr.tolist()}


#: How ``postprocess.json`` is decided (the rule of benchmarks/segmentation.py --write-postprocess).
POSTPROCESS_RULE = ("keep the largest connected component of a class when that raises its mean Dice on the "
                    "validation cases of the trained folds")


def decide_postprocess(out_dir: str | os.PathLike[str], fold_name: str, validation: dict[str, Any]
                       ) -> dict[str, Any]:
    """Write ``out_dir/postprocess.json`` from the validation Dice of this fold (with and without keeping the largest
    component) and of the folds decided before; returns what was written.

    Each fold's figures are kept under ``per_fold``; the decision pools the folds (mean weighted by their number of
    validation cases): class ``c`` gets largest-component postprocessing when that raises its pooled mean Dice.
    :func:`medimg.tasks.segment.predictor.predict` follows the file (``postprocess=True``).
    """
    path = Path(out_dir) / "postprocess.json"
    per_fold: dict[str, Any] = {}
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(old, dict) and isinstance(old.get("per_fold"), dict):
                per_fold = {k: v for k, v in old["per_fold"].items() if isinstance(v, dict)}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            per_fold = {}
    per_fold[fold_name] = {"n_cases": int(validation["n_cases"]), "dice": validation["dice_per_class"],
                           "dice_largest_component": validation["dice_per_class_largest_component"]}
    n_classes = len(validation["dice_per_class"]) + 1
    keep = []
    folds = [f for f in per_fold.values() if len(f.get("dice", [])) == n_classes - 1
             and len(f.get("dice_largest_component", [])) == n_classes - 1 and f.get("n_cases", 0) > 0]
    total = sum(f["n_cases"] for f in folds)
    for c in range(1, n_classes):
        plain = sum(f["n_cases"] * f["dice"][c - 1] for f in folds) / total
        lcc = sum(f["n_cases"] * f["dice_largest_component"][c - 1] for f in folds) / total
        if lcc > plain:
            keep.append(c)
    payload = {"largest_component_classes": keep,
               "decided_on": f"validation cases of {', '.join(sorted(per_fold))} ({total} cases)",
               "rule": POSTPROCESS_RULE, "per_fold": per_fold}
    write_json_atomic(path, payload)
    return payload
