"""Evaluating predicted label maps against references: case matching, per-case rows, summary, box plot.

* :func:`case_id`: the id of a file: its name without image extensions (.nii.gz, .nii, .mha, .nrrd, .npz,
  .png, ...) and without an nnU-Net channel suffix ``_0000``.
* :func:`match_cases`: pairs files of two folders (or two files) by case id, and lists the unmatched ones.
* :func:`evaluate_cases`: one row per case and class with every metric of
  :func:`medimg.metrics.segmentation.segmentation_scores`.
  Empty masks: a class empty in both the reference and the prediction of a case scores Dice 1 and distances 0;
  empty on one side only: Dice 0 and distances inf (left out of the statistics, counted). When every reference
  and prediction is empty (and no ``labels`` are given), label 1 is scored by that rule: Dice 1, no NaN. Label
  maps with negative values are refused (InvalidParameterError naming the file).
* :func:`summarize`: per class and metric the mean, std, median and a seeded percentile-bootstrap 95% interval
  of the mean, over finite values; ``inf`` values (a class empty on one side only) are left out and counted.
* :func:`box_plot`: one box per metric and class (matplotlib, Agg backend).

This module reads images through :func:`medimg.io.read` and writes nothing itself except the PNG in
:func:`box_plot`; the command line (``medimg evaluate``) writes the files atomically.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medimg.core.errors import GeometryMismatchError, ImageReadError
from medimg.metrics.segmentation import SEGMENTATION_METRICS, segmentation_scores

__all__ = ["case_id", "match_cases", "CaseMatch", "evaluate_cases", "summarize", "rows_to_csv", "box_plot",
           "SUMMARY_METRICS"]

logger = logging.getLogger(__name__)

_EXTENSIONS = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr", ".npz", ".npy", ".png", ".tif", ".tiff",
               ".jpg", ".jpeg", ".bmp", ".dcm", ".gz")
_CHANNEL = re.compile(r"_\d{4}$")

#: Metrics summarised and plotted.
SUMMARY_METRICS = ("dice", "iou", "hd95_mm", "assd_mm", "nsd", "sensitivity", "precision", "volume_diff_ml")


def case_id(path: str | os.PathLike[str]) -> str:
    """Case id of an image file name.

    >>> case_id("imagesTs/hippocampus_017_0000.nii.gz"), case_id("hippocampus_017.nii.gz")
    ('hippocampus_017', 'hippocampus_017')
    """
    name = Path(path).name
    low = name.lower()
    for ext in _EXTENSIONS:
        if low.endswith(ext):
            name = name[: -len(ext)]
            break
    return _CHANNEL.sub("", name)


def _is_image_file(p: Path) -> bool:
    low = p.name.lower()
    return p.is_file() and not p.name.startswith(".") and any(low.endswith(e) for e in _EXTENSIONS)


@dataclass
class CaseMatch:
    """Files paired by case id; ``missing_pred``: reference cases without prediction, and the reverse."""

    pairs: list[tuple[str, Path, Path]] = field(default_factory=list)
    missing_pred: list[str] = field(default_factory=list)
    missing_gt: list[str] = field(default_factory=list)


def match_cases(pred: str | os.PathLike[str], gt: str | os.PathLike[str]) -> CaseMatch:
    """Pair prediction and reference files by case id (two folders) or take two files as one pair.

    Raises:
        ImageReadError: a path is missing, one is a file and the other a folder, two files share a case id,
            or no case matches.
    """
    p, g = Path(pred), Path(gt)
    for path in (p, g):
        if not path.exists():
            raise ImageReadError("no such file or folder", path=path, fix="check the spelling")
    if p.is_file() and g.is_file():
        return CaseMatch(pairs=[(case_id(g), p, g)])
    if p.is_dir() != g.is_dir():
        raise ImageReadError("PRED and GT must both be files or both be folders", path=p if p.is_file() else g,
                             expected="two files or two folders", found="one file and one folder",
                             fix="give the folder that holds the file, or two files")

    def index(folder: Path) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for f in sorted(folder.iterdir()):
            if not _is_image_file(f):
                continue
            cid = case_id(f)
            if cid in out:
                raise ImageReadError("two files with the same case id", path=f, expected="one file per case",
                                     found=f"'{out[cid].name}' and '{f.name}'", fix="keep one file per case")
            out[cid] = f
        return out

    pi, gi = index(p), index(g)
    match = CaseMatch(
        pairs=[(cid, pi[cid], gi[cid]) for cid in sorted(gi) if cid in pi],
        missing_pred=sorted(set(gi) - set(pi)),
        missing_gt=sorted(set(pi) - set(gi)),
    )
    if not match.pairs:
        raise ImageReadError(
            "no case id is found in both folders", path=p,
            expected=f"matching ids, e.g. {next(iter(sorted(gi)), 'case_001')}",
            found=f"{len(pi)} predictions ({', '.join(sorted(pi)[:3]) or 'none'}) and {len(gi)} references",
            fix="name predictions like the references (extensions and _0000 suffixes are ignored)",
        )
    return match


def evaluate_cases(match: CaseMatch, *, labels: Sequence[int] | None = None,
                   tolerance_mm: float = 1.0) -> list[dict[str, Any]]:
    """Read every pair and score it: one row per case and class (``case``, ``label``, then the metrics).

    With ``labels=None`` the classes are every non-zero value found in any reference or prediction; a case
    where a class is absent from both gets the both-empty values (Dice 1, distances 0).

    Raises:
        GeometryMismatchError: a prediction is not on its reference's grid (the case is named).
        InvalidParameterError: a label map with negative values (the file is named).
    """
    from medimg.io import read

    per_case: list[tuple[str, dict[int, dict[str, float]]]] = []
    for cid, pp, gp in match.pairs:
        pred_img, gt_img = read(pp, kind="label"), read(gp, kind="label")
        try:
            gt_img.check_same_grid(pred_img, what=f"case '{cid}': reference and prediction")
        except GeometryMismatchError as exc:
            raise GeometryMismatchError(exc.what, path=pp, expected=exc.expected, found=exc.found,
                                        fix=exc.fix) from exc
        for path, img in ((pp, pred_img), (gp, gt_img)):
            _check_label_values(img, path)
        scores = segmentation_scores(pred_img, gt_img, labels=labels, tolerance_mm=tolerance_mm)
        per_case.append((cid, scores))
        logger.debug("scored %s", cid)
    if labels is None:
        # every case empty in both reference and prediction: score the foreground (label 1) by the both-empty
        # rule (Dice 1, distances 0), as for a class absent from one case, instead of an empty table
        all_labels = sorted({lab for _, s in per_case for lab in s}) or [1]
    else:
        all_labels = [int(v) for v in labels]
    both_empty = segmentation_scores(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8), labels=[1])[1]
    rows = []
    for cid, scores in per_case:
        for lab in all_labels:
            values = dict(scores.get(lab, both_empty))
            if lab not in scores:
                values["volume_pred_ml"] = values["volume_gt_ml"] = values["volume_diff_ml"] = 0.0
            rows.append({"case": cid, "label": lab, **values})
    return rows


def _check_label_values(image: Any, path: Path) -> None:
    """Label maps hold non-negative integers (0 background); refuse negative values with one line."""
    from medimg.core.errors import InvalidParameterError

    arr = np.asarray(image.array)
    if arr.size and np.issubdtype(arr.dtype, np.number) and float(arr.min()) < 0:
        raise InvalidParameterError(
            "a label map with negative values", path=path, expected="labels 0 (background), 1, 2, ...",
            found=f"{int(np.count_nonzero(arr < 0))} voxels below 0 (lowest {arr.min():g})",
            fix="relabel the file with non-negative integers (a signed image given as a label map?)")


def rows_to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """CSV text of the rows (columns: case, label, then :data:`SEGMENTATION_METRICS`); inf written as 'inf'."""
    from medimg.io.csv_safe import rows_to_text

    # case ids come from file names: one starting with = + - @ is escaped (spreadsheet formula injection)
    return rows_to_text([{k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()} for row in rows],
                        ["case", "label", *SEGMENTATION_METRICS], extrasaction="raise")


def _bootstrap_ci(values: np.ndarray, rng: np.random.Generator, n_boot: int, level: float) -> tuple[float, float]:
    if values.size == 1:
        return float(values[0]), float(values[0])
    idx = rng.integers(0, values.size, size=(n_boot, values.size))
    means = values[idx].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def summarize(rows: Sequence[dict[str, Any]], *, metrics: Sequence[str] = SUMMARY_METRICS, seed: int = 0,
              n_bootstrap: int = 2000, level: float = 0.95) -> dict[str, Any]:
    """Per class and metric: n, n_excluded_inf, mean, std (population), median, ci_low, ci_high.

    The interval is the percentile bootstrap of the mean over cases (``n_bootstrap`` resamples drawn with
    ``numpy.random.default_rng(seed)``, so it is reproducible). Statistics of a metric with no finite value
    are None.
    """
    rng = np.random.default_rng(seed)
    labels = sorted({int(r["label"]) for r in rows})
    out: dict[str, Any] = {"seed": seed, "n_bootstrap": n_bootstrap, "confidence_level": level,
                           "n_cases": len({r["case"] for r in rows}), "per_label": {}}
    for lab in labels:
        block: dict[str, Any] = {}
        for m in metrics:
            vals = np.array([float(r[m]) for r in rows if int(r["label"]) == lab], dtype=float)
            finite = vals[np.isfinite(vals)]
            stats: dict[str, Any] = {"n": int(finite.size), "n_excluded_inf": int(vals.size - finite.size)}
            if finite.size:
                lo, hi = _bootstrap_ci(finite, rng, n_bootstrap, level)
                stats.update(mean=float(finite.mean()), std=float(finite.std()), median=float(np.median(finite)),
                             ci_low=lo, ci_high=hi)
            else:
                stats.update(mean=None, std=None, median=None, ci_low=None, ci_high=None)
            block[m] = stats
        out["per_label"][str(lab)] = block
    return out


def box_plot(rows: Sequence[dict[str, Any]], path: str | os.PathLike[str], *,
             metrics: Sequence[str] = ("dice", "nsd", "hd95_mm", "assd_mm")) -> None:
    """Box plots of ``metrics`` per class (finite values only), saved as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    labels = sorted({int(r["label"]) for r in rows})
    fig = Figure(figsize=(3.2 * len(metrics), 3.4), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, m in zip(axes, metrics):
        data = []
        for lab in labels:
            vals = np.array([float(r[m]) for r in rows if int(r["label"]) == lab])
            data.append(vals[np.isfinite(vals)])
        ax.boxplot([d if d.size else np.array([math.nan]) for d in data], tick_labels=[str(v) for v in labels])
        ax.set_title(m)
        ax.set_xlabel("label")
    fig.savefig(os.fspath(path), format="png", dpi=100)
