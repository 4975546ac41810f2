"""What every evaluation task of ``medimg evaluate --task`` returns (:class:`TaskResult`), its input error
(:class:`EvaluationInputError`), and the table helpers the tasks share: reading a CSV with required columns,
parsing a number of a cell, CSV text of result rows, the per-case summary of score columns."""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medimg.core.errors import GeometryMismatchError, InvalidParameterError, MedimgError
from medimg.metrics.evaluate import summarize

__all__ = ["TaskResult", "EvaluationInputError", "table_to_csv", "finite_or_none", "flat_summary", "check_pair_grid",
           "read_table", "parse_number", "no_match_error", "check_iou_thresholds"]


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


def _fmt(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    return v


def table_to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """CSV text of ``rows`` with the given columns; floats with 6 significant digits, inf as 'inf'."""
    from medimg.io.csv_safe import rows_to_text

    # cells a spreadsheet would run as formulas (case ids like "=cmd|...") are escaped there
    return rows_to_text([{k: _fmt(v) for k, v in row.items()} for row in rows], columns)


def finite_or_none(v: float) -> float | None:
    return float(v) if math.isfinite(float(v)) else None


def flat_summary(rows: Sequence[dict[str, Any]], metrics: Sequence[str], *, seed: int,
                  n_bootstrap: int) -> dict[str, Any]:
    """:func:`summarize` over rows with no class: {"seed", ..., "n_cases", "metrics": {metric: stats}}."""
    out = summarize([{**r, "label": 0} for r in rows], metrics=metrics, seed=seed, n_bootstrap=n_bootstrap)
    block = out.pop("per_label").get("0", {})
    out["metrics"] = block
    return out


def check_pair_grid(cid: str, pred_img: Any, gt_img: Any, pred_path: Path) -> None:
    try:
        gt_img.check_same_grid(pred_img, what=f"case '{cid}': reference and prediction")
    except GeometryMismatchError as exc:
        raise GeometryMismatchError(exc.what, path=pred_path, expected=exc.expected, found=exc.found,
                                    fix=exc.fix) from exc


def read_table(path: str | os.PathLike[str], *, required: Sequence[str], what: str) -> list[dict[str, str]]:
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


def parse_number(text: str, *, path: Path, column: str, line: int) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise EvaluationInputError(f"not a number in column '{column}' (line {line})", path=path,
                                   expected="a number", found=repr(text), fix="write plain numbers") from exc
    if not math.isfinite(value):
        raise EvaluationInputError(f"non-finite number in column '{column}' (line {line})", path=path,
                                   expected="a finite number", found=repr(text), fix="write finite numbers")
    return value


def no_match_error(pred: Path, pred_ids: Sequence[str], gt_ids: Sequence[str], what: str) -> EvaluationInputError:
    return EvaluationInputError(
        f"no {what} is found in both inputs", path=pred,
        expected=f"matching ids, e.g. {next(iter(sorted(gt_ids)), 'case_001')}",
        found=f"{len(pred_ids)} predictions ({', '.join(sorted(pred_ids)[:3]) or 'none'}) and {len(gt_ids)} "
              "references", fix=f"name the {what}s of the prediction like those of the reference")


def check_iou_thresholds(values: Sequence[float], *, parameter: str) -> tuple[float, ...]:
    ts = tuple(float(v) for v in values)
    if not ts or any(not 0 <= t < 1 for t in ts):
        raise InvalidParameterError("IoU thresholds must lie in [0, 1)", parameter=parameter,
                                    expected="e.g. 0.5,0.75", found=ts, fix="give thresholds like 0.5,0.75")
    return ts
