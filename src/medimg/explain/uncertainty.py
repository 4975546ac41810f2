"""Predictive uncertainty of classifiers from several probability samples per input.

The samples are S probability vectors per input, stacked as an (S, N, K) array: S Monte Carlo dropout passes
(Gal & Ghahramani 2016), S test-time augmentation variants, or S ensemble members. From them:

* :func:`predictive_entropy` H[mean_s p_s]: total uncertainty.
* :func:`expected_entropy` mean_s H[p_s]: aleatoric part (what every sample is unsure about).
* :func:`mutual_information` their difference, BALD (Houlsby et al. 2011): epistemic part (how much the samples
  disagree); 0 when all samples are identical, log 2 when two classes are predicted with certainty half the time.
* :func:`variation_ratio` 1 - (votes for the modal class) / S (Freeman 1965), a fraction, not in nats.
* :func:`uncertainty_summary`: all of them plus the mean prediction as a JSON-ready dict.

Entropies are in nats (natural log), 0 log 0 = 0. With ``multilabel=True`` the samples are (S, N, L) sigmoid
probabilities and every measure is computed per label on the binary distribution [1 - p, p], giving (N, L).

Sampling from a model: :func:`mc_dropout` switches on only the dropout layers of a model, and
:func:`sample_predictions` draws the (S, B, K) stack by MC dropout or by flips along the spatial axes (TTA).
:func:`uncertainty_auroc` says how well an uncertainty flags the misclassified samples.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from scipy.special import xlogy
from torch import nn

from medimg.core.errors import InvalidParameterError
from medimg.metrics.classification import roc_auc

__all__ = ["predictive_entropy", "expected_entropy", "mutual_information", "variation_ratio",
           "uncertainty_summary", "mc_dropout", "sample_predictions", "uncertainty_auroc", "DROPOUT_LAYERS"]

logger = logging.getLogger(__name__)

#: The layer types :func:`mc_dropout` switches to training mode (every torch.nn dropout flavour).
DROPOUT_LAYERS: tuple[type[nn.Module], ...] = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                                               nn.AlphaDropout, nn.FeatureAlphaDropout)

_SUM_TOL = 1e-3
_RANGE_TOL = 1e-6


def _samples(samples: Any, *, multilabel: bool) -> np.ndarray:
    """(S, N, K) float64 class distributions; multi-label (S, N, L) becomes (S, N, L, 2) = [1 - p, p]."""
    if isinstance(samples, torch.Tensor):
        p = samples.detach().to("cpu", torch.float64).numpy()
    else:
        try:
            p = np.asarray(samples, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidParameterError("not numeric", parameter="samples", expected="an (S, N, K) array or tensor",
                                        found=type(samples).__name__, fix="stack the probability samples") from exc
    name = "(S, N, L) label probabilities" if multilabel else "(S, N, K) class probabilities with K >= 2"
    if p.ndim != 3 or p.size == 0 or (not multilabel and p.shape[2] < 2):
        raise InvalidParameterError("wrong shape", parameter="samples", expected=f"non-empty {name}",
                                    found=f"shape {p.shape}",
                                    fix="stack the S sampled probability arrays along a new first axis, e.g. "
                                        "np.stack(list_of_NxK) or sample_predictions(...)")
    if not np.all(np.isfinite(p)):
        raise InvalidParameterError("contains NaN or infinite values", parameter="samples", expected="finite values",
                                    found=f"{int(np.sum(~np.isfinite(p)))} non-finite values",
                                    fix="check the model outputs")
    if p.min() < -_RANGE_TOL or p.max() > 1 + _RANGE_TOL:
        raise InvalidParameterError("not probabilities", parameter="samples", expected="values in [0, 1]",
                                    found=f"values in [{p.min():.4g}, {p.max():.4g}]",
                                    fix="apply softmax (or sigmoid with multilabel=True) to the logits")
    p = np.clip(p, 0.0, 1.0)
    if multilabel:
        return np.stack([1.0 - p, p], axis=-1)
    sums = p.sum(axis=2)
    if np.any(np.abs(sums - 1) > _SUM_TOL):
        raise InvalidParameterError("class probabilities do not sum to 1", parameter="samples",
                                    expected="sum over the last axis 1", found=f"sums in [{sums.min():.4g}, "
                                    f"{sums.max():.4g}]", fix="softmax over classes, or multilabel=True for sigmoids")
    return p


def _entropy(p: np.ndarray) -> np.ndarray:
    return -np.sum(xlogy(p, p), axis=-1)


def predictive_entropy(samples: Any, *, multilabel: bool = False) -> np.ndarray:
    """Entropy of the mean prediction, H[mean_s p_s], in nats: total uncertainty, in [0, log K].

    Args:
        samples: (S, N, K) class probabilities (array or tensor), or (S, N, L) label probabilities with
            ``multilabel``.
        multilabel: each label is a binary problem [1 - p, p].

    Returns:
        (N,) float64, or (N, L) with ``multilabel``.

    Raises:
        InvalidParameterError: not a non-empty 3D stack, NaN, values outside [0, 1], rows not summing to 1.

    >>> s = np.array([[[0.5, 0.5]], [[0.5, 0.5]]])
    >>> predictive_entropy(s).round(4)  # log 2
    array([0.6931])
    """
    return _entropy(_samples(samples, multilabel=multilabel).mean(axis=0))


def expected_entropy(samples: Any, *, multilabel: bool = False) -> np.ndarray:
    """Mean entropy of the individual samples, mean_s H[p_s], in nats: the aleatoric part.

    Args and Returns as :func:`predictive_entropy`.

    >>> s = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    >>> expected_entropy(s)  # each sample is certain
    array([0.])
    """
    return _entropy(_samples(samples, multilabel=multilabel)).mean(axis=0)


def mutual_information(samples: Any, *, multilabel: bool = False) -> np.ndarray:
    """BALD mutual information between prediction and model, predictive minus expected entropy, in nats.

    The epistemic part: 0 when all samples agree, at most log S and at most log K. Tiny negative values from
    rounding are clipped to 0.

    Args and Returns as :func:`predictive_entropy`.

    >>> s = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # two confident samples that disagree
    >>> mutual_information(s).round(4)
    array([0.6931])
    """
    p = _samples(samples, multilabel=multilabel)
    return np.maximum(_entropy(p.mean(axis=0)) - _entropy(p).mean(axis=0), 0.0)


def variation_ratio(samples: Any, *, multilabel: bool = False) -> np.ndarray:
    """Fraction of samples that do not vote for the modal class: 1 - f_mode / S, in [0, 1 - 1/K].

    Each sample votes for its most probable class (the first on ties; with ``multilabel``, present when
    p >= 0.5). A fraction, not in nats.

    Args and Returns as :func:`predictive_entropy`.

    >>> s = np.array([[[0.9, 0.1]], [[0.8, 0.2]], [[0.3, 0.7]], [[0.6, 0.4]]])
    >>> variation_ratio(s)
    array([0.25])
    """
    p = _samples(samples, multilabel=multilabel)
    n_samples, n_classes = p.shape[0], p.shape[-1]
    if multilabel:  # p[..., 1] >= 0.5 calls the label present (argmax would call a tie absent)
        votes = (p[..., 1] >= 0.5).astype(np.int64)
    else:
        votes = p.argmax(axis=-1)
    counts = np.stack([(votes == k).sum(axis=0) for k in range(n_classes)], axis=-1)
    return 1.0 - counts.max(axis=-1) / n_samples


def uncertainty_summary(samples: Any, *, multilabel: bool = False) -> dict[str, Any]:
    """Every measure of this module plus the mean prediction, as a JSON-ready dict of lists.

    Returns:
        ``{"n_samples": S, "multilabel": bool, "mean_probabilities": (N, K) or (N, L) nested list,
        "prediction": (N,) class ids or (N, L) 0/1, "predictive_entropy", "expected_entropy",
        "mutual_information", "variation_ratio": (N,) or (N, L) nested lists}``, entropies in nats.

    >>> s = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    >>> d = uncertainty_summary(s)
    >>> d["prediction"], d["variation_ratio"]
    ([0], [0.5])
    """
    p = _samples(samples, multilabel=multilabel)
    mean = p.mean(axis=0)
    pe, ee = _entropy(mean), _entropy(p).mean(axis=0)
    return {
        "n_samples": int(p.shape[0]),
        "multilabel": bool(multilabel),
        "mean_probabilities": (mean[..., 1] if multilabel else mean).tolist(),
        "prediction": ((mean[..., 1] >= 0.5).astype(int) if multilabel else mean.argmax(axis=-1)).tolist(),
        "predictive_entropy": pe.tolist(),
        "expected_entropy": ee.tolist(),
        "mutual_information": np.maximum(pe - ee, 0.0).tolist(),
        "variation_ratio": variation_ratio(samples, multilabel=multilabel).tolist(),
    }


# --- sampling from a model ------------------------------------------------------------------------------------------

def _check_model(model: Any) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise InvalidParameterError("not a torch module", parameter="model", expected="a torch.nn.Module",
                                    found=type(model).__name__, fix="pass the network itself")
    return model


@contextlib.contextmanager
def _modes_restored(model: nn.Module) -> Iterator[None]:
    """Restore the training flag of every submodule on exit, whatever happened inside."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


@contextlib.contextmanager
def mc_dropout(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode except its dropout layers, which sample masks; restore every mode on exit.

    Batch normalisation keeps its running statistics (eval), so only dropout makes the passes differ. Dropout
    applied functionally inside ``forward`` (``F.dropout(x, training=self.training)``) follows its parent module
    and stays off. The modes of all submodules are restored exactly, also when the block raises.

    Args:
        model: a network with at least one layer of :data:`DROPOUT_LAYERS`.

    Yields:
        ``model`` itself.

    Raises:
        InvalidParameterError: ``model`` is not a module or has no dropout layer.

    >>> net = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Dropout(0.5)).eval()
    >>> with mc_dropout(net):
    ...     [m.training for m in net]
    [False, False, True]
    >>> [m.training for m in net]
    [False, False, False]
    """
    _check_model(model)
    dropouts = [m for m in model.modules() if isinstance(m, DROPOUT_LAYERS)]
    if not dropouts:
        raise InvalidParameterError("no dropout layer", parameter="model",
                                    expected=f"at least one of {', '.join(t.__name__ for t in DROPOUT_LAYERS)}",
                                    found=f"none in {type(model).__name__}",
                                    fix="use mode='tta' or an ensemble, or add dropout to the network")
    if all(float(getattr(m, "p", 0.0)) == 0.0 for m in dropouts):
        logger.warning("mc_dropout: every dropout layer has p=0; all passes will be identical")
    with _modes_restored(model):
        model.eval()
        for m in dropouts:
            m.train()
        yield model


def _flip_sets(tta_flips: Sequence[Sequence[int]] | None, n_spatial: int) -> list[tuple[int, ...]]:
    if tta_flips is None:  # every subset of the spatial axes, identity first, then by size
        axes = range(n_spatial)
        return [c for r in range(n_spatial + 1) for c in itertools.combinations(axes, r)]
    flips: list[tuple[int, ...]] = []
    try:
        for f in tta_flips:
            axes_f = tuple(int(a) for a in f)
            if any(a < 0 or a >= n_spatial for a in axes_f) or len(set(axes_f)) != len(axes_f):
                raise ValueError(f)
            flips.append(axes_f)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError("not a list of spatial-axis tuples", parameter="tta_flips",
                                    expected=f"tuples of distinct spatial axes in 0..{n_spatial - 1}, e.g. [(), (0,)]",
                                    found=repr(tta_flips), fix="number the spatial axes after batch and channel"
                                    ) from exc
    if not flips:
        raise InvalidParameterError("no flip set", parameter="tta_flips", expected="at least one tuple", found="[]",
                                    fix="leave tta_flips=None for all flips, or include () for the identity")
    return flips


def _probabilities(logits: Any, temperature: float, multilabel: bool) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor):
        raise InvalidParameterError("model output is not a tensor", parameter="model",
                                    expected="a (B, K) logit tensor", found=type(logits).__name__,
                                    fix="wrap the model so that it returns the logits only")
    if logits.ndim < 2 or (not multilabel and logits.shape[1] < 2):
        raise InvalidParameterError("model output has no class axis for a softmax", parameter="model",
                                    expected="(B, K, ...) with K >= 2", found=f"shape {tuple(logits.shape)}",
                                    fix="pass multilabel=True for sigmoid outputs")
    z = logits.float() / temperature
    return torch.sigmoid(z) if multilabel else torch.softmax(z, dim=1)


def sample_predictions(model: nn.Module, x: torch.Tensor, *, n: int | None = None, mode: str = "mc_dropout",
                       tta_flips: Sequence[Sequence[int]] | None = None, multilabel: bool = False,
                       temperature: float = 1.0, seed: int | None = None) -> torch.Tensor:
    """Stack S probability predictions of ``model`` for the batch ``x``, by MC dropout or by flip TTA.

    * ``mode="mc_dropout"``: ``n`` forward passes (default 20) inside :func:`mc_dropout`.
    * ``mode="tta"``: one pass per flip set in eval mode; a flip set is a tuple of spatial axes (0 = the first
      axis after batch and channel), e.g. ``(1,)`` flips Y of a (B, C, Y, X) batch. The default is every subset
      of the spatial axes, identity first (4 variants in 2D, 8 in 3D); ``n`` keeps the first n of them. A dense
      output (B, K, *spatial) is flipped back, so its samples align with ``x``.

    Each pass is one batched forward under :func:`torch.inference_mode`; the modes of all submodules are
    restored afterwards. Probabilities are softmax over axis 1, or a sigmoid per label, of logits / temperature.

    Args:
        model: a network returning (B, K) logits (or a dense (B, K, *spatial) map).
        x: (B, C, *spatial) input batch, 2 or 3 spatial axes for TTA.
        n: number of samples (see above).
        mode: "mc_dropout" or "tta".
        tta_flips: flip sets for TTA, or None for all.
        multilabel: sigmoid outputs.
        temperature: T > 0 from :func:`medimg.explain.calibration.fit_temperature`.
        seed: for MC dropout, seeds the dropout masks without touching the global torch random state.

    Returns:
        (S, B, K) float32 probabilities (with trailing spatial axes for a dense output), on the output's device.

    Raises:
        InvalidParameterError: a bad mode, n, temperature or flip set, an input that is not a (B, C, ...) tensor,
            a model without dropout for MC dropout, an output that is not a logit tensor.

    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Dropout(0.5)).eval()
    >>> x = torch.ones(2, 1, 2, 2)
    >>> sample_predictions(net, x, n=5, seed=1).shape
    torch.Size([5, 2, 3])
    >>> net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 3))  # flip invariant
    >>> float(mutual_information(sample_predictions(net, x, mode="tta")).max()) < 1e-6
    True
    """
    _check_model(model)
    if mode not in ("mc_dropout", "tta"):
        raise InvalidParameterError("unknown mode", parameter="mode", expected="'mc_dropout' or 'tta'",
                                    found=repr(mode), fix="pick one of them (ensembles: stack the members yourself)")
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.shape[0] == 0:
        found = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise InvalidParameterError("not a batch tensor", parameter="x", expected="a (B, C, ...) torch tensor, B >= 1",
                                    found=found, fix="add the batch axis, e.g. x[None]")
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise InvalidParameterError("not a positive sample count", parameter="n", expected="an integer >= 1",
                                    found=repr(n), fix="use e.g. n=20")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(temperature)) or temperature <= 0:
        raise InvalidParameterError("not a positive temperature", parameter="temperature",
                                    expected="a finite number > 0", found=repr(temperature),
                                    fix="use the value returned by fit_temperature (1.0 leaves the logits alone)")
    if mode == "tta":
        n_spatial = x.ndim - 2
        if n_spatial not in (2, 3):
            raise InvalidParameterError("TTA flips need 2 or 3 spatial axes", parameter="x",
                                        expected="(B, C, Y, X) or (B, C, Z, Y, X)", found=f"shape {tuple(x.shape)}",
                                        fix="add the channel axis, or use mode='mc_dropout'")
        flips = _flip_sets(tta_flips, n_spatial)
        if n is not None:
            if n > len(flips):
                raise InvalidParameterError("more samples than flip sets", parameter="n",
                                            expected=f"at most {len(flips)}", found=n,
                                            fix="leave n=None to use every flip set once")
            flips = flips[:n]
        out = []
        with _modes_restored(model), torch.inference_mode():
            model.eval()
            for f in flips:
                dims = [2 + a for a in f]
                logits = model(torch.flip(x, dims) if dims else x)
                if dims and isinstance(logits, torch.Tensor) and logits.ndim > 2:
                    if logits.ndim != x.ndim:
                        raise InvalidParameterError("dense output with other spatial axes than the input",
                                                    parameter="model", expected=f"(B, K) or {x.ndim}D output",
                                                    found=f"shape {tuple(logits.shape)}",
                                                    fix="return (B, K) logits or a map with the input's axes")
                    logits = torch.flip(logits, dims)
                out.append(_probabilities(logits, float(temperature), multilabel))
        logger.debug("sample_predictions: %d TTA variants %s", len(flips), flips)
        return torch.stack(out)
    n_passes = 20 if n is None else int(n)
    devices = [x.device.index if x.device.index is not None else torch.cuda.current_device()] if x.is_cuda else []
    out = []
    with torch.random.fork_rng(devices=devices, enabled=seed is not None), mc_dropout(model), torch.inference_mode():
        if seed is not None:
            torch.manual_seed(seed)
        for _ in range(n_passes):
            out.append(_probabilities(model(x), float(temperature), multilabel))
    logger.debug("sample_predictions: %d MC dropout passes", n_passes)
    return torch.stack(out)


def uncertainty_auroc(uncertainty: Any, correct: Any) -> float:
    """AUROC of an uncertainty score for telling misclassified samples from correct ones.

    Errors are the positives: 1.0 means every error is more uncertain than every correct prediction, 0.5 is
    chance, below 0.5 the uncertainty points the wrong way. Ties count one half (:func:`medimg.metrics.roc_auc`).

    Args:
        uncertainty: (N,) scores, higher = less sure (entropy, mutual information, variation ratio, 1 - max p).
        correct: (N,) bools (or 0/1): whether each prediction was right.

    Raises:
        InvalidParameterError: lengths differ, NaN scores, non-boolean ``correct``, all right or all wrong.

    >>> uncertainty_auroc([0.1, 0.2, 0.9, 0.7], [True, True, False, False])
    1.0
    """
    u = uncertainty.detach().cpu().numpy() if isinstance(uncertainty, torch.Tensor) else np.asarray(uncertainty)
    c = correct.detach().cpu().numpy() if isinstance(correct, torch.Tensor) else np.asarray(correct)
    if u.ndim != 1 or u.size == 0:
        raise InvalidParameterError("not a non-empty 1D sequence", parameter="uncertainty", expected="shape (N,)",
                                    found=f"shape {u.shape}", fix="pass one score per sample")
    if c.shape != u.shape:
        raise InvalidParameterError("length differs from uncertainty", parameter="correct", expected=f"shape {u.shape}",
                                    found=f"shape {c.shape}", fix="pass one bool per sample")
    if c.dtype != bool and not (np.issubdtype(c.dtype, np.number) and np.all(np.isin(c, (0, 1)))):
        raise InvalidParameterError("not booleans", parameter="correct", expected="bools or 0/1",
                                    found=f"dtype {c.dtype}", fix="pass predictions == labels")
    try:
        u = u.astype(float)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError("not numeric", parameter="uncertainty", expected="numbers",
                                    found=f"dtype {u.dtype}", fix="pass one score per sample") from exc
    if not np.all(np.isfinite(u)):
        raise InvalidParameterError("contains NaN or infinite values", parameter="uncertainty",
                                    expected="finite values", found=f"{int(np.sum(~np.isfinite(u)))} non-finite",
                                    fix="drop those samples")
    errors = ~c.astype(bool)
    if errors.all() or not errors.any():
        raise InvalidParameterError("undefined without both right and wrong predictions", parameter="correct",
                                    expected="some True and some False", found=f"{int(errors.sum())} wrong of {c.size}",
                                    fix="evaluate on a larger set")
    return roc_auc(errors.astype(int), u)
