"""Registration evaluation (``medimg evaluate --task registration``): target registration error of landmark
tables (:func:`medimg.io.points.read_landmarks`, ``case,x,y,z`` in mm, same order per case) per landmark and per
case, and optionally Jacobian determinant statistics of a displacement field."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medimg.core.errors import ImageReadError
from medimg.io.points import read_landmarks
from medimg.metrics.task_result import (
    EvaluationInputError,
    TaskResult,
    finite_or_none,
    flat_summary,
    no_match_error,
    table_to_csv,
)

__all__ = ["evaluate_registration_task"]


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
    pred_lm = read_landmarks(pp, parameter="pred_csv", require_case=True)
    ref_lm = read_landmarks(gp, parameter="gt_csv", require_case=True)
    pred, dp, ref, dg = pred_lm.by_case(), pred_lm.dim, ref_lm.by_case(), ref_lm.dim
    if dp != dg:
        raise EvaluationInputError("landmark dimensions differ", path=pp, expected=f"{dg} coordinates (as GT)",
                                   found=f"{dp} coordinates", fix="give x,y,z in both tables, or x,y in both")
    cases = [c for c in ref if c in pred]
    missing_pred = [c for c in ref if c not in pred]
    missing_gt = [c for c in pred if c not in ref]
    if not cases:
        raise no_match_error(pp, list(pred), list(ref), "case id")
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
    summary = flat_summary(case_rows, ["tre_mean_mm", "tre_max_mm"], seed=seed, n_bootstrap=n_bootstrap)
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
        summary["jacobian"] = {k: finite_or_none(v) for k, v in stats.items()}
        summary["definitions"]["jacobian"] = ("determinant of I + du/dx (central differences, mm); "
                                              "folding_fraction: share of voxels with det <= 0")
        headline["folding_fraction"] = stats["folding_fraction"]
    tables = {"per_case.csv": table_to_csv(case_rows, ["case", "n_landmarks", "tre_mean_mm", "tre_max_mm"]),
              "per_landmark.csv": table_to_csv(lm_rows, ["case", "landmark", "tre_mm"])}
    return TaskResult(summary=summary, tables=tables, missing_pred=missing_pred, missing_gt=missing_gt,
                      headline=headline)
