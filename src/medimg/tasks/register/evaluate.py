"""How well a learned registration does: validation pairs on the plan's grid (label Dice before/after, folding),
label Dice of a registered pair, and the target registration error of landmarks."""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import torch

from medimg.tasks.register.plan import RegisterPlan

__all__ = ["validate_pairs", "val_pairs", "label_dice", "landmark_tre"]


def validate_pairs(net: torch.nn.Module, images: np.ndarray, labels: np.ndarray | None, ids: Sequence[str],
                   pairs: Sequence[tuple[int, int]], plan: RegisterPlan, *, autocast_bf16: bool = True
                   ) -> dict[str, Any]:
    """Register validation pairs on the canonical grid: label Dice before/after, folding fraction, seconds."""
    from medimg.metrics.registration import jacobian_statistics
    from medimg.metrics.segmentation import dice_per_label
    from medimg.models.spatial import to_metric_layout, warp
    from medimg.tasks.register.predictor import network_displacement

    net.eval()
    rows = []
    for i, j in pairs:
        t0 = time.perf_counter()
        u = network_displacement([net], images[i], images[j], plan, autocast_bf16=autocast_bf16)
        seconds = time.perf_counter() - t0
        jac = jacobian_statistics(to_metric_layout(u[0], plan.spacing[::-1]).numpy(), spacing_mm=plan.spacing)
        row: dict[str, Any] = {"fixed": ids[i], "moving": ids[j], "seconds": seconds,
                               "folding_fraction": jac["folding_fraction"],
                               "std_log_jacobian": jac["std_log_jacobian"]}
        if labels is not None and plan.n_labels > 1:
            moved = warp(torch.from_numpy(labels[j].astype(np.float32))[None, None], u, mode="nearest")
            fg = plan.label_values[1:]
            before = {str(k): v for k, v in dice_per_label(labels[j], labels[i], fg).items()}
            after = {str(k): v for k, v in dice_per_label(moved[0, 0].numpy().astype(np.int16), labels[i],
                                                          fg).items()}
            row.update(dice_before=before, dice_after=after, mean_dice_before=float(np.mean(list(before.values()))),
                       mean_dice_after=float(np.mean(list(after.values()))))
        rows.append(row)
    summary: dict[str, Any] = {"n_pairs": len(rows), "pairs": rows}
    if rows:
        summary["seconds_mean"] = float(np.mean([r["seconds"] for r in rows]))
        summary["folding_fraction_mean"] = float(np.mean([r["folding_fraction"] for r in rows]))
        if "mean_dice_after" in rows[0]:
            summary["mean_dice_before"] = float(np.mean([r["mean_dice_before"] for r in rows]))
            summary["mean_dice_after"] = float(np.mean([r["mean_dice_after"] for r in rows]))
    summary["definition"] = ("pairs of the fold's validation cases on the plan's grid (centre- or template-aligned "
                             "as in training); labels warped by nearest neighbour; seconds = network + integration")
    return summary


def val_pairs(n: int, count: int, seed: int) -> list[tuple[int, int]]:
    """``count`` distinct ordered pairs (i, j), i != j, of ``n`` validation cases, drawn with ``seed``."""
    if n < 2 or count < 1:
        return []
    rng = np.random.default_rng(seed)
    all_pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    idx = rng.choice(len(all_pairs), size=min(count, len(all_pairs)), replace=False)
    return [all_pairs[int(k)] for k in idx]


def label_dice(fixed_labels: Any, labels: Any) -> dict[str, Any]:
    """Dice per label value of ``fixed_labels`` (labels already on the fixed grid), and their mean."""
    from medimg.metrics.segmentation import dice_per_label

    ref, pred = np.asarray(fixed_labels.array), np.asarray(labels.array)
    ids = [int(v) for v in np.unique(ref) if v != 0]
    per = {str(k): float(v) for k, v in dice_per_label(pred, ref, ids).items()}
    return {"per_label": per, "mean": float(np.mean(list(per.values()))) if per else None}


def landmark_tre(transform: Any, fixed_points: np.ndarray, moving_points: np.ndarray) -> dict[str, Any]:
    """TRE before (identity) and after (``|T(f) - m|``) per landmark, with mean, median and max (mm)."""
    from medimg.metrics.registration import target_registration_error

    mapped = np.array([transform.TransformPoint(tuple(float(v) for v in p)) for p in fixed_points])
    before = target_registration_error(fixed_points, moving_points)
    after = target_registration_error(mapped, moving_points)

    def stats(v):
        return {"mean": float(np.mean(v)), "median": float(np.median(v)), "max": float(np.max(v))}

    return {"n": int(len(before)), "before_mm": stats(before), "after_mm": stats(after),
            "per_landmark": [{"index": i, "before_mm": float(b), "after_mm": float(a)}
                             for i, (b, a) in enumerate(zip(before, after))],
            "definition": "before: |f - m|; after: |T(f) - m|, T the transform (fixed points -> moving), LPS mm"}
