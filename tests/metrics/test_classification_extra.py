"""Brier score, log loss, macro and multi-label AUC, multi-label ECE against scikit-learn and MONAI."""

import numpy as np
import pytest

from medimg.core import InvalidParameterError
from medimg.metrics import classification as cl

sk = pytest.importorskip("sklearn.metrics")


def _multiclass(n=400, k=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    p = rng.dirichlet(np.ones(k), n)
    p[np.arange(n), y] += 0.5
    return y, p / p.sum(1, keepdims=True)


def _multilabel(n=500, labels=5, seed=1):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, (n, labels))
    y = (rng.uniform(0, 1, (n, labels)) < p ** 1.5).astype(int)  # miscalibrated on purpose
    return y, p


def test_brier_score_matches_sklearn():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 300)
    s = np.clip(0.3 * y + rng.normal(0.35, 0.2, 300), 0, 1)
    assert cl.brier_score(y, s) == pytest.approx(sk.brier_score_loss(y, s))
    assert cl.brier_score(y, np.stack([1 - s, s], 1)) == pytest.approx(sk.brier_score_loss(y, s))
    y3, p3 = _multiclass()
    assert cl.brier_score(y3, p3) == pytest.approx(sk.brier_score_loss(y3, p3))
    assert cl.brier_score([0, 1, 2], np.eye(3)) == 0.0


def test_log_loss_matches_sklearn_including_clipping():
    y3, p3 = _multiclass()
    assert cl.log_loss(y3, p3) == pytest.approx(sk.log_loss(y3, p3))
    y = np.array([0, 1, 1, 0])
    s = np.array([0.0, 1.0, 0.0, 0.3])  # a certain mistake: clipped, finite
    assert cl.log_loss(y, s) == pytest.approx(sk.log_loss(y, s))
    assert np.isfinite(cl.log_loss(y, s))
    assert cl.log_loss([0, 1], [[1.0, 0.0], [0.0, 1.0]]) == pytest.approx(0.0, abs=1e-12)


def test_macro_roc_auc_matches_sklearn_and_roc_auc():
    y3, p3 = _multiclass(seed=3)
    ref = sk.roc_auc_score(y3, p3, multi_class="ovr", average="macro")
    assert cl.macro_roc_auc(y3, p3) == pytest.approx(ref)
    assert cl.macro_roc_auc(y3, p3) == cl.roc_auc(y3, p3)
    y2, p2 = _multiclass(k=2, seed=4)
    assert cl.macro_roc_auc(y2, p2) == pytest.approx(sk.roc_auc_score(y2, p2[:, 1]))
    with pytest.raises(InvalidParameterError) as e:
        cl.macro_roc_auc(y2, p2[:, 1])
    assert e.value.parameter == "scores"
    with pytest.raises(InvalidParameterError) as e:
        cl.macro_roc_auc(y3 + 1, p3)  # ids 1..4 for 4 columns
    assert e.value.parameter == "y_true"


def test_multilabel_roc_auc_matches_sklearn():
    y, p = _multilabel()
    assert cl.multilabel_roc_auc(y, p) == pytest.approx(sk.roc_auc_score(y, p, average="macro"))
    y[:, 2] = 1
    with pytest.raises(InvalidParameterError, match="label 2") as e:
        cl.multilabel_roc_auc(y, p)
    assert e.value.parameter == "y_true"


def _plain_binary_ece(y, p, n_bins):
    edges = np.linspace(0, 1, n_bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (p > lo) & (p <= hi) if lo > 0 else (p >= lo) & (p <= hi)
        if sel.any():
            total += sel.mean() * abs(y[sel].mean() - p[sel].mean())
    return total


def test_multilabel_ece_matches_plain_and_monai():
    y, p = _multilabel()
    for n_bins in (5, 10, 15):
        ref = np.mean([_plain_binary_ece(y[:, j], p[:, j], n_bins) for j in range(y.shape[1])])
        assert cl.multilabel_expected_calibration_error(y, p, n_bins=n_bins) == pytest.approx(ref)
    torch = pytest.importorskip("torch")
    monai_metrics = pytest.importorskip("monai.metrics")
    metric = monai_metrics.CalibrationErrorMetric(num_bins=15, calibration_reduction="expected",
                                                  metric_reduction="mean")
    # MONAI wants (batch, channel, spatial...): one batch, one channel per label, samples along space
    monai_ece = float(metric(y_pred=torch.as_tensor(np.ascontiguousarray(p.T[None]), dtype=torch.float32),
                             y=torch.as_tensor(np.ascontiguousarray(y.T[None]), dtype=torch.float32)).mean())
    assert cl.multilabel_expected_calibration_error(y, p, n_bins=15) == pytest.approx(monai_ece, abs=1e-5)
    assert cl.multilabel_expected_calibration_error(y, y.astype(float)) == 0.0


def test_top_label_ece_matches_monai():
    torch = pytest.importorskip("torch")
    monai_metrics = pytest.importorskip("monai.metrics")
    y3, p3 = _multiclass(seed=5)
    conf, hit = p3.max(1), (p3.argmax(1) == y3).astype(float)
    metric = monai_metrics.CalibrationErrorMetric(num_bins=15, calibration_reduction="expected")
    ref = float(metric(y_pred=torch.as_tensor(conf[None, None], dtype=torch.float32),
                       y=torch.as_tensor(hit[None, None], dtype=torch.float32)).mean())
    assert cl.expected_calibration_error(y3, p3) == pytest.approx(ref, abs=1e-5)


@pytest.mark.parametrize(
    ("call", "parameter"),
    [
        (lambda: cl.brier_score([], []), "y_true"),
        (lambda: cl.brier_score([0, 1], [0.2]), "probabilities"),
        (lambda: cl.brier_score([0, 1], [0.2, np.nan]), "probabilities"),
        (lambda: cl.brier_score([0, 1], [0.2, 1.3]), "probabilities"),
        (lambda: cl.log_loss([0, 1], [[0.5, 0.4], [0.1, 0.9]]), "probabilities"),  # row sums to 0.9
        (lambda: cl.log_loss([0, 3], [[0.5, 0.5], [0.1, 0.9]]), "y_true"),
        (lambda: cl.log_loss([0.5, 1], [0.5, 0.5]), "y_true"),
        (lambda: cl.log_loss([0, 1], [[1.0], [1.0]]), "probabilities"),
        (lambda: cl.multilabel_roc_auc([0, 1], [0.1, 0.2]), "y_true"),
        (lambda: cl.multilabel_roc_auc([[0, 1], [1, 0]], [[0.1, 0.2]]), "scores"),
        (lambda: cl.multilabel_roc_auc([[0, 2], [1, 0]], [[0.1, 0.2], [0.3, 0.4]]), "y_true"),
        (lambda: cl.multilabel_expected_calibration_error([[0, 1]], [[0.1, 1.2]]), "probabilities"),
        (lambda: cl.multilabel_expected_calibration_error([[0, 1]], [[0.1, 0.2]], n_bins=0), "n_bins"),
    ],
)
def test_bad_inputs_name_the_parameter(call, parameter):
    with pytest.raises(InvalidParameterError) as e:
        call()
    assert e.value.parameter == parameter
