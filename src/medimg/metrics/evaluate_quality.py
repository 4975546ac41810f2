"""Image quality evaluation (``medimg evaluate --task quality``): PSNR (dB), SSIM and MSE of images against
references (two files, or two folders matched by case id)."""

from __future__ import annotations

import math
import os

import numpy as np

from medimg.core.errors import InvalidParameterError
from medimg.metrics.evaluate import match_cases
from medimg.metrics.task_result import TaskResult, check_pair_grid, flat_summary, table_to_csv

__all__ = ["evaluate_quality_task"]


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
        check_pair_grid(cid, p_img, g_img, pp)
        ref = np.asarray(g_img.voxels, dtype=np.float64)
        dr = float(ref.max() - ref.min()) if data_range is None else float(data_range)
        try:
            row = {"case": cid, "psnr_db": psnr(p_img, g_img, data_range=dr),
                   "ssim": ssim(p_img, g_img, data_range=dr), "mse": mse(p_img, g_img), "data_range": dr}
        except InvalidParameterError as exc:
            raise InvalidParameterError(f"case '{cid}': {exc.what}", parameter=exc.parameter,
                                        expected=exc.expected, found=exc.found, fix=exc.fix) from exc
        rows.append(row)
    summary = flat_summary(rows, ["psnr_db", "ssim", "mse"], seed=seed, n_bootstrap=n_bootstrap)
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
