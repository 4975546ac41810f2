"""Uncertainty measures checked analytically; MC dropout modes; TTA on flip-invariant models; uncertainty AUROC."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from medimg.core import InvalidParameterError
from medimg.explain import uncertainty as unc


def _h(p):
    p = np.asarray(p, dtype=float)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def test_identical_samples_have_zero_mutual_information():
    p = np.array([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4]])
    s = np.stack([p] * 6)
    np.testing.assert_allclose(unc.mutual_information(s), 0.0, atol=1e-12)
    np.testing.assert_allclose(unc.predictive_entropy(s), [_h(p[0]), _h(p[1])])
    np.testing.assert_allclose(unc.expected_entropy(s), [_h(p[0]), _h(p[1])])
    np.testing.assert_array_equal(unc.variation_ratio(s), [0.0, 0.0])


def test_disagreeing_confident_samples():
    s = np.array([[[1.0, 0.0]], [[0.0, 1.0]]] * 3)  # six certain samples, half for each of two classes
    np.testing.assert_allclose(unc.mutual_information(s), [math.log(2)])
    np.testing.assert_allclose(unc.predictive_entropy(s), [math.log(2)])
    np.testing.assert_allclose(unc.expected_entropy(s), [0.0])
    np.testing.assert_allclose(unc.variation_ratio(s), [0.5])
    k = 5  # K certain samples on K different classes: MI = log K, the maximum
    s = np.eye(k)[:, None, :]
    np.testing.assert_allclose(unc.mutual_information(s), [math.log(k)])
    np.testing.assert_allclose(unc.variation_ratio(s), [1 - 1 / k])


def test_decomposition_on_random_samples_and_tensors():
    rng = np.random.default_rng(0)
    s = rng.dirichlet(np.ones(4) * 0.5, size=(8, 30))  # (S, N, K)
    pe, ee, mi = unc.predictive_entropy(s), unc.expected_entropy(s), unc.mutual_information(s)
    assert pe.shape == ee.shape == mi.shape == (30,)
    np.testing.assert_allclose(mi, pe - ee, atol=1e-12)
    assert np.all(mi >= 0) and np.all(mi <= math.log(4) + 1e-12) and np.all(pe <= math.log(4) + 1e-12)
    np.testing.assert_allclose(unc.mutual_information(torch.as_tensor(s, dtype=torch.float32)), mi, atol=1e-5)


def test_multilabel_measures_are_per_label_binary():
    p = np.array([[[1.0, 0.3]], [[0.0, 0.3]]])  # (S=2, N=1, L=2): label 0 disagrees, label 1 agrees at 0.3
    mi = unc.mutual_information(p, multilabel=True)
    assert mi.shape == (1, 2)
    np.testing.assert_allclose(mi, [[math.log(2), 0.0]], atol=1e-12)
    np.testing.assert_allclose(unc.predictive_entropy(p, multilabel=True), [[math.log(2), _h([0.3, 0.7])]])
    np.testing.assert_allclose(unc.expected_entropy(p, multilabel=True), [[0.0, _h([0.3, 0.7])]])
    np.testing.assert_allclose(unc.variation_ratio(p, multilabel=True), [[0.5, 0.0]])
    # p = 0.5 counts as present: three votes present, one absent
    np.testing.assert_allclose(unc.variation_ratio(np.array([[[0.5]], [[0.5]], [[0.9]], [[0.1]]]),
                                                   multilabel=True), [[0.25]])


def test_summary_is_json_ready():
    s = np.array([[[0.9, 0.1], [0.2, 0.8]], [[0.7, 0.3], [0.6, 0.4]]])
    d = unc.uncertainty_summary(s)
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert d["n_samples"] == 2 and d["prediction"] == [0, 1]
    np.testing.assert_allclose(d["mutual_information"], unc.mutual_information(s))
    dl = unc.uncertainty_summary(s[..., :1], multilabel=True)
    assert np.asarray(dl["mutual_information"]).shape == (2, 1) and dl["prediction"] == [[1], [0]]


class _Net(nn.Module):
    def __init__(self, p=0.5):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout2d(p))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 8), nn.BatchNorm1d(8), nn.Dropout(p),
                                  nn.Linear(8, 3))

    def forward(self, x):
        return self.head(self.features(x))


def _modes(model):
    return {name: m.training for name, m in model.named_modules()}


def test_mc_dropout_turns_on_only_dropout_and_restores():
    torch.manual_seed(0)
    net = _Net().eval()
    with unc.mc_dropout(net) as m:
        assert m is net
        for module in net.modules():
            assert module.training == isinstance(module, (nn.Dropout, nn.Dropout2d))
    assert not any(_modes(net).values())
    net.train()
    net.head[2].eval()  # a mixed state comes back exactly
    before = _modes(net)
    with pytest.raises(RuntimeError), unc.mc_dropout(net):
        assert not net.features[1].training
        raise RuntimeError("boom")
    assert _modes(net) == before
    with pytest.raises(InvalidParameterError) as e, unc.mc_dropout(nn.Sequential(nn.Linear(2, 2))):
        pass
    assert e.value.parameter == "model"


def test_mc_dropout_sampling_varies_keeps_batchnorm_and_is_seeded():
    torch.manual_seed(0)
    net = _Net().eval()
    x = torch.randn(5, 1, 6, 6)
    stats = [t.clone() for t in (net.features[1].running_mean, net.head[2].running_var)]
    rng_state = torch.get_rng_state()
    s = unc.sample_predictions(net, x, n=12, seed=3)
    assert s.shape == (12, 5, 3) and s.dtype == torch.float32
    torch.testing.assert_close(s.sum(-1), torch.ones(12, 5))
    assert torch.equal(torch.get_rng_state(), rng_state)  # seeded sampling leaves the global generator alone
    assert torch.equal(s, unc.sample_predictions(net, x, n=12, seed=3))
    assert float(unc.mutual_information(s).min()) > 0
    for old, new in zip(stats, (net.features[1].running_mean, net.head[2].running_var)):
        assert torch.equal(old, new)  # BatchNorm stayed in eval: running statistics untouched
    assert not any(_modes(net).values())
    with torch.no_grad():  # temperature and multilabel: a plain function of the logits
        net.eval()
        logits = net(x)
    ident = _Net(p=0.0).eval()
    ident.load_state_dict(net.state_dict())
    s_t = unc.sample_predictions(ident, x, n=2, temperature=2.0)
    torch.testing.assert_close(s_t[0], torch.softmax(logits / 2.0, dim=1))
    s_ml = unc.sample_predictions(ident, x, n=2, multilabel=True)
    torch.testing.assert_close(s_ml[1], torch.sigmoid(logits))


class _Invariant(nn.Module):
    """Global average pooling then a linear layer: the same output for every flip of the input."""

    def __init__(self, dims):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(2, 4)

    def forward(self, x):
        return self.fc(self.pool(x).flatten(1))


@pytest.mark.parametrize(("shape", "n_variants"), [((3, 2, 5, 6), 4), ((2, 2, 4, 5, 6), 8)])
def test_tta_on_flip_invariant_model_gives_zero_mutual_information(shape, n_variants):
    torch.manual_seed(1)
    x = torch.randn(*shape)
    s = unc.sample_predictions(_Invariant(len(shape) - 2), x, mode="tta")
    assert s.shape == (n_variants, shape[0], 4)
    np.testing.assert_allclose(unc.mutual_information(s), 0.0, atol=1e-6)
    assert unc.sample_predictions(_Invariant(len(shape) - 2), x, mode="tta", n=2).shape[0] == 2


def test_tta_sees_flips_and_unflips_dense_outputs():
    torch.manual_seed(2)
    x = torch.randn(2, 1, 4, 4)
    not_invariant = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).train()
    s = unc.sample_predictions(not_invariant, x, mode="tta", tta_flips=[(), (0,), (1,)])
    assert s.shape == (3, 2, 3) and float(unc.mutual_information(s).min()) > 0
    assert not_invariant.training  # mode restored
    dense = nn.Conv2d(1, 3, 1)  # per-pixel classifier: flipped back, every variant equals the identity one
    d = unc.sample_predictions(dense, x, mode="tta")
    assert d.shape == (4, 2, 3, 4, 4)
    for k in range(1, 4):
        torch.testing.assert_close(d[k], d[0])


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"mode": "ensemble"}, "mode"),
        ({"n": 0}, "n"),
        ({"n": 2.5}, "n"),
        ({"temperature": -1.0}, "temperature"),
        ({"mode": "tta", "tta_flips": [(2,)]}, "tta_flips"),
        ({"mode": "tta", "tta_flips": []}, "tta_flips"),
        ({"mode": "tta", "n": 5}, "n"),
    ],
)
def test_sample_predictions_bad_options(kwargs, parameter):
    net = _Net().eval()
    with pytest.raises(InvalidParameterError) as e:
        unc.sample_predictions(net, torch.randn(2, 1, 6, 6), **kwargs)
    assert e.value.parameter == parameter


def test_sample_predictions_bad_model_or_input():
    with pytest.raises(InvalidParameterError) as e:
        unc.sample_predictions(nn.Linear(3, 2), torch.randn(2, 3), mode="tta")
    assert e.value.parameter == "x"
    with pytest.raises(InvalidParameterError) as e:
        unc.sample_predictions(nn.Linear(3, 2), torch.randn(2, 3))  # no dropout to sample
    assert e.value.parameter == "model"
    with pytest.raises(InvalidParameterError) as e:
        unc.sample_predictions(nn.Sequential(nn.Linear(3, 1), nn.Dropout()), torch.randn(2, 3))  # softmax of 1
    assert e.value.parameter == "model"
    with pytest.raises(InvalidParameterError) as e:
        unc.sample_predictions("net", torch.randn(2, 3))
    assert e.value.parameter == "model"
    with pytest.raises(InvalidParameterError) as e:
        unc.sample_predictions(_Net(), np.zeros((2, 1, 6, 6)))
    assert e.value.parameter == "x"


def test_uncertainty_auroc():
    assert unc.uncertainty_auroc([0.1, 0.2, 0.3, 0.9, 0.8], [True, True, True, False, False]) == 1.0
    assert unc.uncertainty_auroc([0.9, 0.8, 0.1], [1, 1, 0]) == 0.0
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    correct = rng.random(200) < 0.7
    u = np.round(rng.random(200) + 0.3 * ~correct, 1)  # ties included
    assert unc.uncertainty_auroc(torch.as_tensor(u), torch.as_tensor(correct)) == pytest.approx(
        sk.roc_auc_score(~correct, u))
    # end to end: mutual information flags the samples whose members disagree, which are the errors here
    s = np.stack([np.tile([[0.9, 0.1]], (6, 1)), np.tile([[0.9, 0.1]], (6, 1))])
    s[1, 3:] = [0.1, 0.9]  # members disagree on the last three samples
    truth = np.array([0, 0, 0, 1, 1, 1])
    correct = s.mean(0).argmax(1) == truth
    assert unc.uncertainty_auroc(unc.mutual_information(s), correct) == 1.0


@pytest.mark.parametrize(
    ("call", "parameter"),
    [
        (lambda: unc.predictive_entropy(np.full((2, 3), 0.5)), "samples"),
        (lambda: unc.predictive_entropy(np.zeros((0, 2, 2))), "samples"),
        (lambda: unc.mutual_information(np.full((2, 3, 1), 1.0)), "samples"),
        (lambda: unc.mutual_information(np.full((2, 3, 2), np.nan)), "samples"),
        (lambda: unc.expected_entropy(np.full((2, 3, 2), 0.7)), "samples"),  # rows sum to 1.4
        (lambda: unc.variation_ratio(np.full((2, 3, 2), 1.5), multilabel=True), "samples"),
        (lambda: unc.uncertainty_auroc([0.1, 0.2], [True]), "correct"),
        (lambda: unc.uncertainty_auroc([0.1, 0.2], [True, True]), "correct"),
        (lambda: unc.uncertainty_auroc([0.1, 0.2], [0.5, 1.0]), "correct"),
        (lambda: unc.uncertainty_auroc([0.1, np.nan], [True, False]), "uncertainty"),
        (lambda: unc.uncertainty_auroc([], []), "uncertainty"),
    ],
)
def test_bad_inputs_name_the_parameter(call, parameter):
    with pytest.raises(InvalidParameterError) as e:
        call()
    assert e.value.parameter == parameter
