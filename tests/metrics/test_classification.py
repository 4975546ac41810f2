"""Classification metrics against scikit-learn and a plain ECE."""

import numpy as np
import pytest

from medimg.core import InvalidParameterError
from medimg.metrics import classification as cl

sk = pytest.importorskip("sklearn.metrics")


@pytest.fixture(scope="module")
def binary():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = np.round(np.clip(0.3 * y + rng.normal(0.4, 0.25, 300), 0, 1), 1)  # rounded: many ties
    return y, s


def test_auc_with_ties_and_multiclass(binary):
    y, s = binary
    assert cl.roc_auc(y, s) == pytest.approx(sk.roc_auc_score(y, s))
    rng = np.random.default_rng(1)
    y3 = rng.integers(0, 3, 200)
    p = rng.dirichlet([1, 1, 1], 200)
    p[np.arange(200), y3] += 0.3
    p /= p.sum(1, keepdims=True)
    assert cl.roc_auc(y3, p) == pytest.approx(sk.roc_auc_score(y3, p, multi_class="ovr", average="macro"))
    with pytest.raises(InvalidParameterError):
        cl.roc_auc([1, 1], [0.2, 0.3])


def test_counts_and_rates(binary):
    y, s = binary
    yp = (s >= 0.5).astype(int)
    assert cl.accuracy(y, yp) == pytest.approx(sk.accuracy_score(y, yp))
    assert cl.balanced_accuracy(y, yp) == pytest.approx(sk.balanced_accuracy_score(y, yp))
    np.testing.assert_array_equal(cl.confusion_matrix(y, yp), sk.confusion_matrix(y, yp))
    r = cl.sensitivity_specificity(y, s, threshold=0.5)
    assert r["sensitivity"] == pytest.approx(sk.recall_score(y, yp))
    assert r["specificity"] == pytest.approx(sk.recall_score(1 - y, 1 - yp))
    y3, p3 = [0, 1, 2, 2, 1], [0, 2, 2, 1, 1]
    np.testing.assert_array_equal(cl.confusion_matrix(y3, p3, labels=[2, 1, 0]),
                                  sk.confusion_matrix(y3, p3, labels=[2, 1, 0]))
    assert cl.balanced_accuracy(y3, p3) == pytest.approx(sk.balanced_accuracy_score(y3, p3))


def _plain_ece(y, probs, n_bins):
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, n_bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        if sel.any():
            total += sel.mean() * abs((pred[sel] == y[sel]).mean() - conf[sel].mean())
    return total


def test_ece_matches_plain_implementation(binary):
    y, s = binary
    probs = np.stack([1 - s, s], 1)
    for n in (5, 10, 15):
        assert cl.expected_calibration_error(y, s, n_bins=n) == pytest.approx(_plain_ece(y, probs, n))
    perfect = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert cl.expected_calibration_error([0, 1], perfect) == 0.0
