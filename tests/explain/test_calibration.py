"""Temperature scaling and reliability diagrams: known temperatures, ECE drop, references, errors, PNG output."""

import json
import logging

import numpy as np
import pytest
import torch
from scipy.special import expit, softmax

from medimg.core import InvalidParameterError
from medimg.core.errors import ImageWriteError
from medimg.explain import calibration as cal
from medimg.metrics import classification as cl


def _calibrated_logits(n, k, seed):
    """Logits of a perfectly calibrated model: labels are drawn from softmax(z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, (n, k))
    p = softmax(z, axis=1)
    y = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return z, y


def _calibrated_multilabel(n, labels, seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, (n, labels))
    return z, (rng.random(z.shape) < expit(z)).astype(int)


@pytest.mark.parametrize("true_t", [3.0, 1.0 / 3.0])
def test_fit_recovers_a_known_temperature(true_t):
    z, y = _calibrated_logits(20000, 5, seed=0)
    t = cal.fit_temperature(z * true_t, y)  # logits made over- (T=3) or under-confident (T=1/3)
    assert t == pytest.approx(true_t, rel=0.05)


def test_fit_recovers_a_known_temperature_multilabel():
    z, y = _calibrated_multilabel(8000, 4, seed=1)
    assert cal.fit_temperature(3.0 * z, y, multilabel=True) == pytest.approx(3.0, rel=0.05)
    # a single sigmoid output, (N,) logits and (N,) labels
    assert cal.fit_temperature(3.0 * z[:, 0], y[:, 0], multilabel=True) == pytest.approx(
        cal.fit_temperature(3.0 * z[:, :1], y[:, :1], multilabel=True))


def test_fit_accepts_tensors_and_is_deterministic():
    z, y = _calibrated_logits(2000, 3, seed=2)
    t_np = cal.fit_temperature(2.0 * z, y)
    t_torch = cal.fit_temperature(torch.as_tensor(2.0 * z, dtype=torch.float64), torch.as_tensor(y))
    assert t_np == t_torch == cal.fit_temperature(2.0 * z, y)


def test_temperature_scaling_lowers_ece_and_nll_and_keeps_accuracy():
    z, y = _calibrated_logits(8000, 4, seed=3)
    z_over = 2.5 * z + 0.0  # overconfident network
    val, test = slice(0, 4000), slice(4000, None)
    t = cal.fit_temperature(z_over[val], y[val])
    before = cal.apply_temperature(z_over[test], 1.0)
    after = cal.apply_temperature(z_over[test], t)
    ece_before = cl.expected_calibration_error(y[test], before)
    ece_after = cl.expected_calibration_error(y[test], after)
    assert ece_after < 0.5 * ece_before
    assert ece_after < 0.03
    assert cl.log_loss(y[test], after) < cl.log_loss(y[test], before)
    np.testing.assert_array_equal(before.argmax(1), after.argmax(1))
    # the same holds for multi-label sigmoids
    zl, yl = _calibrated_multilabel(8000, 3, seed=4)
    tl = cal.fit_temperature(3.0 * zl[val], yl[val], multilabel=True)
    ml_before = cl.multilabel_expected_calibration_error(yl[test], expit(3.0 * zl[test]))
    ml_after = cl.multilabel_expected_calibration_error(yl[test], cal.apply_temperature(3.0 * zl[test], tl,
                                                                                         multilabel=True))
    assert ml_after < 0.5 * ml_before
    # a sigmoid is monotone: per-label AUC does not move (a softmax's one-vs-rest AUC may, slightly)
    assert cl.multilabel_roc_auc(yl[test], cal.apply_temperature(3.0 * zl[test], tl, multilabel=True)) == \
        pytest.approx(cl.multilabel_roc_auc(yl[test], expit(3.0 * zl[test])))


def test_fit_bounds_and_degenerate_logits(caplog):
    z = np.array([[5.0, 0.0], [0.0, 5.0]] * 10)
    with caplog.at_level(logging.WARNING, logger="medimg.explain.calibration"):
        assert cal.fit_temperature(z, [0, 1] * 10) == pytest.approx(cal.TEMPERATURE_MIN)  # separable
        assert cal.fit_temperature(z, [0, 1, 1, 0] * 5) == pytest.approx(cal.TEMPERATURE_MAX)  # chance
    assert "at the bound" in caplog.text
    assert cal.fit_temperature(np.ones((5, 3)), [0, 1, 2, 0, 1]) == 1.0
    assert cal.fit_temperature(np.zeros((4, 2)), np.zeros((4, 2)), multilabel=True) == 1.0


def test_apply_temperature_numpy_torch_and_dense():
    rng = np.random.default_rng(5)
    z = rng.normal(size=(6, 3))
    p = cal.apply_temperature(z, 2.0)
    np.testing.assert_allclose(p, softmax(z / 2.0, axis=1))
    np.testing.assert_allclose(p.sum(1), 1.0)
    pt = cal.apply_temperature(torch.as_tensor(z, dtype=torch.float32), 2.0)
    assert isinstance(pt, torch.Tensor) and pt.dtype == torch.float32
    np.testing.assert_allclose(pt.numpy(), p, atol=1e-6)
    dense = rng.normal(size=(2, 3, 4, 5))  # (B, K, Y, X) segmentation logits: softmax over axis 1
    np.testing.assert_allclose(cal.apply_temperature(dense, 0.5).sum(axis=1), 1.0)
    np.testing.assert_allclose(cal.apply_temperature(z, 1.5, multilabel=True), expit(z / 1.5))


def test_reliability_diagram_top_label_agrees_with_ece_and_is_json():
    z, y = _calibrated_logits(1000, 4, seed=6)
    p = softmax(2.0 * z, axis=1)
    d = cal.reliability_diagram(y, p, n_bins=10)
    assert d["kind"] == "top_label"
    assert d["ece"] == pytest.approx(cl.expected_calibration_error(y, p, n_bins=10))
    assert sum(d["bin_count"]) == d["n_predictions"] == 1000
    # the ECE is the count-weighted gap of the bins
    gaps = [c * abs(a - f) for c, a, f in zip(d["bin_count"], d["bin_accuracy"], d["bin_confidence"]) if c]
    assert sum(gaps) / 1000 == pytest.approx(d["ece"])
    assert d["accuracy"] == pytest.approx(cl.accuracy(y, p.argmax(1)))
    assert d["confidence"] > d["accuracy"]  # overconfident
    # confidences of K = 4 classes are >= 1/4: the low bins are empty and say so with None
    assert d["bin_count"][:2] == [0, 0] and d["bin_accuracy"][0] is None
    assert json.loads(json.dumps(d, allow_nan=False)) == d


def test_reliability_diagram_multilabel_bins_match_sklearn_and_monai():
    calibration_curve = pytest.importorskip("sklearn.calibration").calibration_curve
    rng = np.random.default_rng(7)
    p = rng.uniform(0, 1, (400, 3))
    y = (rng.random(p.shape) < p ** 2).astype(int)
    d = cal.reliability_diagram(y, p, n_bins=8)
    assert d["kind"] == "multilabel" and d["n_predictions"] == 1200
    assert d["ece"] == pytest.approx(cl.multilabel_expected_calibration_error(y, p, n_bins=8))
    frac_pos, mean_pred = calibration_curve(y.ravel(), p.ravel(), n_bins=8, strategy="uniform")
    np.testing.assert_allclose([v for v in d["bin_accuracy"] if v is not None], frac_pos)
    np.testing.assert_allclose([v for v in d["bin_confidence"] if v is not None], mean_pred)
    monai_metrics = pytest.importorskip("monai.metrics")
    mean_p, mean_gt, counts = monai_metrics.calibration_binning(
        torch.as_tensor(p.reshape(1, 1, -1), dtype=torch.float32),
        torch.as_tensor(y.reshape(1, 1, -1), dtype=torch.float32), num_bins=8)
    np.testing.assert_array_equal(counts[0, 0].numpy(), d["bin_count"])
    np.testing.assert_allclose(mean_gt[0, 0].numpy(), d["bin_accuracy"], atol=1e-6)
    np.testing.assert_allclose(mean_p[0, 0].numpy(), d["bin_confidence"], atol=1e-6)


def test_reliability_png_writes_atomically(tmp_path):
    z, y = _calibrated_logits(500, 3, seed=8)
    before = cal.reliability_diagram(y, softmax(3 * z, axis=1))
    after = cal.reliability_diagram(y, cal.apply_temperature(3 * z, cal.fit_temperature(3 * z, y)))
    for name, second in (("one.png", None), ("two.png", after)):
        out = cal.reliability_png(before, second, tmp_path / name)
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ImageWriteError):
        cal.reliability_png(before, None, tmp_path / "plot.jpg")
    with pytest.raises(InvalidParameterError) as e:
        cal.reliability_png(before, {"ece": 0.1}, tmp_path / "bad.png")
    assert e.value.parameter == "after"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.png", "two.png"]  # no partial files


@pytest.mark.parametrize(
    ("call", "parameter"),
    [
        (lambda: cal.fit_temperature(np.zeros((0, 3)), []), "logits"),
        (lambda: cal.fit_temperature([[1.0, 2.0]], [0]), "logits"),
        (lambda: cal.fit_temperature([[1.0, np.nan], [0.0, 1.0]], [0, 1]), "logits"),
        (lambda: cal.fit_temperature([1.0, 2.0], [0, 1]), "logits"),  # 1D logits need multilabel=True
        (lambda: cal.fit_temperature([[1.0, 2.0], [0.0, 1.0]], [0, 1, 1]), "y_true"),
        (lambda: cal.fit_temperature([[1.0, 2.0], [0.0, 1.0]], [0, 2]), "y_true"),
        (lambda: cal.fit_temperature([[1.0, 2.0], [0.0, 1.0]], [[0, 2], [1, 1]], multilabel=True), "y_true"),
        (lambda: cal.fit_temperature([[1.0, 2.0], [0.0, 1.0]], [[0, 1]], multilabel=True), "y_true"),
        (lambda: cal.apply_temperature([[1.0, 2.0]], 0.0), "temperature"),
        (lambda: cal.apply_temperature([[1.0, 2.0]], float("nan")), "temperature"),
        (lambda: cal.apply_temperature([[1.0, 2.0]], True), "temperature"),
        (lambda: cal.apply_temperature([1.0, 2.0], 1.0), "logits"),
        (lambda: cal.apply_temperature(torch.tensor([[1.0, float("inf")]]), 1.0), "logits"),
        (lambda: cal.reliability_diagram([0, 1], [0.2, 0.9], n_bins=0), "n_bins"),
        (lambda: cal.reliability_diagram([0, 1], [[0.2, 0.9], [0.5, 0.5]]), "probabilities"),
        (lambda: cal.reliability_png([], None, "x.png"), "before"),
    ],
)
def test_bad_inputs_name_the_parameter(call, parameter):
    with pytest.raises(InvalidParameterError) as e:
        call()
    assert e.value.parameter == parameter
