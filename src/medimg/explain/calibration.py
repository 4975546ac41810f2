"""Post-hoc calibration of classifiers: temperature scaling and reliability diagrams.

* :func:`fit_temperature` / :func:`apply_temperature`: temperature scaling (Guo et al., "On Calibration of Modern
  Neural Networks", ICML 2017): one scalar T > 0 divides the logits; it is fitted by minimising the negative
  log-likelihood on held-out (validation) logits. The order of the classes within a sample, hence the accuracy,
  is unchanged and so are binary and per-label AUCs (a one-vs-rest AUC over softmax outputs can move slightly);
  mainly the confidence moves. Softmax for multi-class, one sigmoid per label for multi-label.
* :func:`reliability_diagram`: per-bin mean confidence, accuracy and count plus the ECE, as a JSON-ready dict.
* :func:`reliability_png`: the diagram before (and after) calibration as a PNG, written atomically.

Logits are (N, K) arrays or tensors with the class axis 1 (channels first, like the models); class ids follow
:mod:`medimg.metrics.classification` (0..K-1), multi-label targets are (N, L) 0/1 indicators.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, logsumexp, softmax

from medimg.core.errors import ImageWriteError, InvalidParameterError
from medimg.io.files import atomic_output
from medimg.metrics.classification import (
    calibration_bins,
    class_ids,
    class_probabilities,
    expected_calibration_error,
    multilabel_expected_calibration_error,
    multilabel_indicators,
)

__all__ = ["fit_temperature", "apply_temperature", "reliability_diagram", "reliability_png",
           "TEMPERATURE_MIN", "TEMPERATURE_MAX"]

logger = logging.getLogger(__name__)

#: Bounds of the fitted temperature: outside them the validation set says more about itself than about the model.
TEMPERATURE_MIN = 0.05
TEMPERATURE_MAX = 20.0


def _to_float64(x: Any, name: str) -> np.ndarray:
    torch = sys.modules.get("torch")  # a tensor can only exist if torch was imported
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError("not numeric", parameter=name, expected="an array or tensor of numbers",
                                    found=type(x).__name__, fix=f"pass {name} as a numpy array or torch tensor"
                                    ) from exc


def _plain(x: Any) -> np.ndarray:
    """A numpy view of an array-like or a torch tensor, dtype kept."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _check_logits(z: np.ndarray, *, multilabel: bool) -> np.ndarray:
    """(N, K) float64 logits; a multi-label (N,) vector becomes (N, 1)."""
    if multilabel and z.ndim == 1:
        z = z[:, None]
    expected = "(N, L) or (N,)" if multilabel else "(N, K) with K >= 2"
    if z.ndim != 2 or (not multilabel and z.shape[1] < 2) or z.shape[1] < 1:
        raise InvalidParameterError("wrong shape", parameter="logits", expected=expected, found=f"shape {z.shape}",
                                    fix="pass one row of class logits per sample (the model output before "
                                        "softmax/sigmoid)")
    if z.shape[0] == 0:
        raise InvalidParameterError("no sample", parameter="logits", expected="at least 2 samples", found="0",
                                    fix="fit the temperature on a validation set")
    if not np.all(np.isfinite(z)):
        raise InvalidParameterError("contains NaN or infinite values", parameter="logits", expected="finite values",
                                    found=f"{int(np.sum(~np.isfinite(z)))} non-finite values",
                                    fix="check the model for overflow, or drop those samples")
    return z


def _check_temperature(temperature: Any) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(temperature)) or float(temperature) <= 0:
        raise InvalidParameterError("not a positive temperature", parameter="temperature",
                                    expected="a finite number > 0", found=repr(temperature),
                                    fix="use the value returned by fit_temperature (1.0 leaves the logits alone)")
    return float(temperature)


def _nll(z: np.ndarray, y: np.ndarray, temperature: float, *, multilabel: bool) -> float:
    """Mean negative log-likelihood (nats) of the targets under logits / temperature."""
    s = z / temperature
    if multilabel:  # binary cross-entropy with logits: log(1 + e^s) - y s, mean over samples and labels
        return float(np.mean(np.logaddexp(0.0, s) - y * s))
    return float(np.mean(logsumexp(s, axis=1) - s[np.arange(y.size), y]))


def fit_temperature(logits: Any, y_true: Any, *, multilabel: bool = False) -> float:
    """Fit the temperature T that minimises the negative log-likelihood of ``y_true`` under ``logits / T``.

    A bounded scalar (Brent) search over log T in [``TEMPERATURE_MIN``, ``TEMPERATURE_MAX``]: the NLL is convex in
    1/T, so it has one minimum on that interval. T > 1 softens an overconfident model, T < 1 sharpens an
    underconfident one. Fit on a validation set, never on the test set. Deterministic; float64 throughout.

    Args:
        logits: (N, K) multi-class logits, or (N, L) multi-label logits ((N,) for a single sigmoid output);
            numpy array, torch tensor or nested sequence.
        y_true: (N,) class ids 0..K-1, or for ``multilabel`` (N, L) 0/1 indicators (same shape as logits).
        multilabel: the outputs are independent sigmoids (one per label) instead of one softmax.

    Returns:
        The temperature, a float in [0.05, 20]. A value at a bound is logged as a warning (separable or
        degenerate validation data); constant logits give 1.0 with a warning (T has no effect on them).

    Raises:
        InvalidParameterError: empty input, a single sample, shapes that do not match, NaN or infinite logits,
            class ids outside 0..K-1, multi-label targets that are not 0/1.

    >>> z = np.array([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0], [0.0, 4.0]])
    >>> round(fit_temperature(z, [0, 1, 1, 0]), 2)  # half wrong: the best softmax is flat, T at the upper bound
    20.0
    >>> round(fit_temperature(z, [0, 1, 0, 1]), 2)  # all right: sharpen as far as allowed
    0.05
    """
    z = _check_logits(_to_float64(logits, "logits"), multilabel=multilabel)
    n = z.shape[0]
    if n < 2:
        raise InvalidParameterError("a single sample", parameter="logits", expected="at least 2 samples",
                                    found="1 sample", fix="fit the temperature on a validation set of many samples")
    if multilabel:
        y = _to_float64(y_true, "y_true")
        if y.ndim == 1:
            y = y[:, None]
        if y.shape != z.shape:
            raise InvalidParameterError("shape differs from logits", parameter="y_true", expected=f"shape {z.shape}",
                                        found=f"shape {y.shape}", fix="give one 0/1 indicator per sample and label")
        if not np.all(np.isin(y, (0.0, 1.0))):
            raise InvalidParameterError("not 0/1 indicators", parameter="y_true", expected="values 0 or 1",
                                        found="other values", fix="binarise the labels")
    else:
        y_arr = _plain(y_true)
        if y_arr.ndim != 1 or y_arr.shape[0] != n:
            raise InvalidParameterError("shape differs from logits", parameter="y_true", expected=f"shape ({n},)",
                                        found=f"shape {y_arr.shape}", fix="give one class id per row of logits")
        y = class_ids(y_arr, z.shape[1])
    if np.all(z == 0) if multilabel else np.all(np.ptp(z, axis=1) == 0):
        logger.warning("fit_temperature: all logits are equal, the temperature has no effect; returning 1.0")
        return 1.0
    lo, hi = math.log(TEMPERATURE_MIN), math.log(TEMPERATURE_MAX)
    res = minimize_scalar(lambda u: _nll(z, y, math.exp(u), multilabel=multilabel), bounds=(lo, hi),
                          method="bounded", options={"xatol": 1e-7})
    u, best = float(res.x), float(res.fun)
    # Brent stops inside the interval, and where the NLL underflows to a plateau (separable data) it stops early:
    # a bound that is at least as good wins
    for bound in (lo, hi):
        at_bound = _nll(z, y, math.exp(bound), multilabel=multilabel)
        if at_bound <= best:
            u, best = bound, at_bound
    temperature = math.exp(u)
    if u in (lo, hi):
        logger.warning("fit_temperature: T=%.3g is at the bound of [%g, %g]; the validation logits are %s",
                       temperature, TEMPERATURE_MIN, TEMPERATURE_MAX,
                       "separable (every sample right)" if u == lo else "no better than chance")
    logger.debug("fit_temperature: T=%.4f, NLL %.4f -> %.4f on %d samples", temperature,
                 _nll(z, y, 1.0, multilabel=multilabel), best, n)
    return temperature


def apply_temperature(logits: Any, temperature: float, *, multilabel: bool = False) -> Any:
    """Probabilities from ``logits / temperature``: softmax over the class axis 1, or a sigmoid per label.

    Args:
        logits: (N, K) logits, or any (N, K, ...) channels-first map (a segmentation output); for ``multilabel``
            also (N,). A torch tensor gives a tensor (same dtype and device), anything else a float64 array.
        temperature: T > 0, usually from :func:`fit_temperature`.
        multilabel: independent sigmoids instead of a softmax.

    Returns:
        Probabilities of the shape of ``logits``.

    Raises:
        InvalidParameterError: a temperature that is not a finite positive number, NaN logits, a softmax over
            fewer than two classes.

    >>> apply_temperature([[2.0, 0.0]], 2.0).round(4)
    array([[0.7311, 0.2689]])
    >>> apply_temperature([0.0, 2.0], 2.0, multilabel=True).round(4)
    array([0.5   , 0.7311])
    """
    t = _check_temperature(temperature)
    torch = sys.modules.get("torch")
    is_tensor = torch is not None and isinstance(logits, torch.Tensor)
    z = logits if is_tensor else _to_float64(logits, "logits")
    if not multilabel and (z.ndim < 2 or z.shape[1] < 2):
        raise InvalidParameterError("softmax needs a class axis with K >= 2", parameter="logits",
                                    expected="(N, K, ...) with K >= 2", found=f"shape {tuple(z.shape)}",
                                    fix="pass multilabel=True for sigmoid outputs")
    finite = bool(torch.isfinite(z).all()) if is_tensor else bool(np.all(np.isfinite(z)))
    if not finite:
        raise InvalidParameterError("contains NaN or infinite values", parameter="logits", expected="finite values",
                                    found="non-finite values", fix="check the model for overflow")
    if is_tensor:
        return torch.sigmoid(z / t) if multilabel else torch.softmax(z / t, dim=1)
    return expit(z / t) if multilabel else softmax(z / t, axis=1)


def _json_list(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in values]


def reliability_diagram(y_true: Sequence | np.ndarray, probabilities: Sequence | np.ndarray, *,
                        n_bins: int = 15) -> dict[str, Any]:
    """Binned reliability of predicted probabilities (Guo et al. 2017), as a JSON-ready dict.

    Two cases, told apart by the shape of ``y_true``:

    * (N,) class ids with (N, K) probabilities (or (N,) probability of class 1): the confidence is the largest
      class probability and the accuracy the fraction of samples whose most probable class is right; ``ece``
      equals :func:`~medimg.metrics.classification.expected_calibration_error`.
    * (N, L) 0/1 indicators with (N, L) sigmoid probabilities (multi-label): the bins pool the probability of every
      (sample, label) pair against the fraction of pairs where the label is present; ``ece`` is the mean over labels
      :func:`~medimg.metrics.classification.multilabel_expected_calibration_error` (per-label bins, so it is not
      recomputable from the pooled bins).

    Bins are equal-width over [0, 1]: bin b holds (b/n, (b+1)/n], the first also holds 0.

    Args:
        y_true: (N,) class ids or (N, L) 0/1 indicators.
        probabilities: (N, K) class probabilities, (N,) probability of class 1, or (N, L) label probabilities.
        n_bins: number of bins.

    Returns:
        ``{"kind": "top_label" | "multilabel", "n_bins", "n_predictions", "bin_edges" (n_bins + 1 floats),
        "bin_confidence", "bin_accuracy" (floats, None for an empty bin), "bin_count" (ints), "ece",
        "confidence", "accuracy"}``; the last two are over all predictions. Only Python scalars and lists.

    Raises:
        InvalidParameterError: as :func:`~medimg.metrics.classification.expected_calibration_error` and
            :func:`~medimg.metrics.classification.brier_score`: empty input, shapes that differ, NaN or values
            outside [0, 1], n_bins < 1.

    >>> d = reliability_diagram([0, 1, 1, 0], [0.1, 0.8, 0.4, 0.3], n_bins=5)
    >>> d["bin_count"], round(d["ece"], 3)
    ([0, 0, 1, 2, 1], 0.3)
    """
    y_arr = np.asarray(y_true)
    if y_arr.ndim == 2:
        y, p = multilabel_indicators(y_arr, probabilities, "probabilities", unit_range=True)
        values, targets = p.ravel(), y.ravel().astype(float)
        count, mean_value, mean_target = calibration_bins(values, targets, n_bins)
        ece = multilabel_expected_calibration_error(y, p, n_bins=n_bins)
        kind = "multilabel"
    else:
        y, p = class_probabilities(y_arr, probabilities)
        values, targets = p.max(axis=1), (p.argmax(axis=1) == y).astype(float)
        count, mean_value, mean_target = calibration_bins(values, targets, n_bins)
        ece = expected_calibration_error(y, p, n_bins=n_bins)
        kind = "top_label"
    return {
        "kind": kind,
        "n_bins": int(n_bins),
        "n_predictions": int(values.size),
        "bin_edges": [float(e) for e in np.linspace(0.0, 1.0, n_bins + 1)],
        "bin_confidence": _json_list(mean_value),
        "bin_accuracy": _json_list(mean_target),
        "bin_count": [int(c) for c in count],
        "ece": float(ece),
        "confidence": float(values.mean()),
        "accuracy": float(targets.mean()),
    }


_DIAGRAM_KEYS = ("kind", "bin_edges", "bin_confidence", "bin_accuracy", "bin_count", "ece")


def _check_diagram(d: Any, name: str) -> None:
    if not isinstance(d, dict) or any(k not in d for k in _DIAGRAM_KEYS):
        missing = [k for k in _DIAGRAM_KEYS if not isinstance(d, dict) or k not in d]
        raise InvalidParameterError("not a reliability diagram", parameter=name,
                                    expected="the dict returned by reliability_diagram",
                                    found=f"missing {', '.join(missing)}" if isinstance(d, dict) else type(d).__name__,
                                    fix="pass reliability_diagram(y_true, probabilities)")


def _draw(ax: Any, d: dict[str, Any], title: str) -> None:
    edges = np.asarray(d["bin_edges"], dtype=float)
    centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    acc = np.array([np.nan if v is None else v for v in d["bin_accuracy"]], dtype=float)
    conf = np.array([np.nan if v is None else v for v in d["bin_confidence"]], dtype=float)
    keep = np.isfinite(acc)
    ax.bar(centres[keep], acc[keep], width=width[keep], color="#4C72B0", edgecolor="black", linewidth=0.5,
           label="accuracy" if d["kind"] == "top_label" else "fraction present")
    ax.bar(centres[keep], conf[keep] - acc[keep], bottom=acc[keep], width=width[keep], color="#DD8452", alpha=0.5,
           edgecolor="#C44E52", hatch="//", linewidth=0.5, label="gap to confidence")
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("confidence" if d["kind"] == "top_label" else "predicted probability")
    ax.set_ylabel("accuracy" if d["kind"] == "top_label" else "observed frequency")
    ax.set_title(f"{title}: ECE {100 * float(d['ece']):.2f}%")
    ax.legend(loc="upper left", fontsize="small")


def reliability_png(before: dict[str, Any], after: dict[str, Any] | None,
                    path: str | os.PathLike[str]) -> Path:
    """Draw one reliability diagram, or two side by side (before and after calibration), as a PNG at ``path``.

    Bars are the per-bin accuracy, hatched bars the gap to the mean confidence, the dashed line perfect
    calibration; each title carries the ECE. Rendered with matplotlib's Agg canvas (no display, no pyplot state)
    and written atomically: on failure nothing appears at ``path``.

    Args:
        before: a :func:`reliability_diagram` dict (for example of the uncalibrated model).
        after: a second one (for example after temperature scaling), or None for a single panel.
        path: output file; must end in .png.

    Returns:
        ``path`` as a Path.

    Raises:
        InvalidParameterError: ``before`` or ``after`` is not a reliability diagram dict.
        ImageWriteError: ``path`` does not end in .png, or cannot be written.
    """
    _check_diagram(before, "before")
    if after is not None:
        _check_diagram(after, "after")
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise ImageWriteError("not a PNG file name", path=out, expected="a name ending in .png",
                              found=f"'{out.suffix}'", fix="use e.g. reliability.png")
    from matplotlib.figure import Figure  # deferred: matplotlib is slow to import

    panels = [(before, "before" if after is not None else "reliability")]
    if after is not None:
        panels.append((after, "after"))
    fig = Figure(figsize=(4.2 * len(panels), 4.4), layout="constrained")
    for ax, (d, title) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        _draw(ax, d, title)
    with atomic_output(out) as tmp:
        fig.savefig(os.fspath(tmp), format="png", dpi=100)
    logger.debug("reliability_png: wrote %s", out)
    return out
