"""Tests for medimg.explain.saliency and medimg.explain.figures.

The models are tiny classifiers trained here in about a second on a synthetic task: class 1 if the image holds a
bright blob (anywhere), class 0 if it is only noise. On a test image with the blob at a known place the maps must
peak on the blob; Grad-CAM / Grad-CAM++ / occlusion are compared with MONAI's implementations.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from torch import nn

from medimg.core.errors import ImageWriteError, InvalidParameterError
from medimg.explain.figures import (
    most_salient_slices,
    saliency_montage_png,
    saliency_overlay,
    saliency_overlay_png,
)
from medimg.explain.saliency import (
    deletion_curve,
    grad_cam,
    occlusion_sensitivity,
    randomisation_check,
    spearman_correlation,
)

SHAPE = {2: (24, 24), 3: (12, 12, 12)}
RADIUS = 2.5


class TinyClassifier(nn.Module):
    """conv + pool, a last conv block (``cam_layer``), global average pooling, dropout, linear."""

    def __init__(self, dims: int, *, inplace_after_cam: bool = False) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        pool = nn.MaxPool2d if dims == 2 else nn.MaxPool3d
        gap = nn.AdaptiveAvgPool2d if dims == 2 else nn.AdaptiveAvgPool3d
        self.stem = nn.Sequential(conv(1, 8, 3, padding=1), nn.ReLU(), pool(2))
        self.cam_layer = nn.Sequential(conv(8, 8, 3, padding=1))
        self.act = nn.ReLU(inplace=inplace_after_cam)
        self.head = nn.Sequential(gap(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(8, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.cam_layer(self.stem(x))))


def _blob(shape, centre, radius=RADIUS):
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return (sum((g - c) ** 2 for g, c in zip(grids, centre)) <= radius**2).astype(np.float32)


def _batch(n, shape, rng):
    images, labels = [], []
    for i in range(n):
        image = rng.normal(0.0, 0.3, shape).astype(np.float32)
        if i % 2:
            image += 2.0 * _blob(shape, [rng.integers(3, s - 3) for s in shape])
        images.append(image[None])
        labels.append(i % 2)
    return torch.from_numpy(np.stack(images)), torch.tensor(labels)


@functools.cache
def _train(dims: int) -> TinyClassifier:
    """Trained once per session and shared: tests that change the model work on a deep copy."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = TinyClassifier(dims)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        x, y = _batch(32, SHAPE[dims], rng)
        loss = nn.functional.cross_entropy(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    optimiser.zero_grad(set_to_none=True)
    return model.eval()


@pytest.fixture(scope="module", params=[2, 3], ids=["2d", "3d"])
def trained(request):
    dims = request.param
    model = _train(dims)
    shape = SHAPE[dims]
    centre = tuple(s // 2 + 3 for s in shape)
    image = np.random.default_rng(5).normal(0.0, 0.3, shape).astype(np.float32) + 2.0 * _blob(shape, centre)
    x = torch.from_numpy(image)[None, None]
    with torch.no_grad():
        assert model(x).argmax(1).item() == 1, "the tiny model should see the blob"
        x_test, y_test = _batch(64, shape, np.random.default_rng(1))
        assert (model(x_test).argmax(1) == y_test).float().mean() > 0.9
    return model, x, centre


@pytest.fixture(scope="module")
def model_2d():
    return _train(2)


def _on_blob(saliency, centre, tolerance=1.0):
    peak = np.unravel_index(int(np.argmax(saliency)), saliency.shape)
    return float(np.linalg.norm(np.subtract(peak, centre))) <= RADIUS + tolerance


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


# ----------------------------------------------------------------------------------------------------- Grad-CAM
@pytest.mark.parametrize("plus_plus", [False, True])
def test_grad_cam_shape_range_and_peak_on_blob(trained, plus_plus):
    model, x, centre = trained
    batch = torch.cat([x, x.flip(2), torch.zeros_like(x)])
    cam = grad_cam(model, batch, target_layer=model.cam_layer, class_index=1, plus_plus=plus_plus)
    assert cam.shape == (3, *x.shape[2:]) and cam.dtype == np.float32
    assert cam.min() >= 0.0 and cam.max() <= 1.0
    assert np.isclose(cam[0].max(), 1.0) and np.isclose(cam[0].min(), 0.0)
    assert _on_blob(cam[0], centre)
    flipped = (x.shape[2] - 1 - centre[0], *centre[1:])
    assert _on_blob(cam[1], flipped)


def test_grad_cam_default_class_is_prediction_and_batch_is_per_sample(trained):
    model, x, _ = trained
    batch = torch.cat([x, torch.zeros_like(x)])
    with torch.no_grad():
        predicted = model(batch).argmax(1).tolist()
    default = grad_cam(model, batch, target_layer=model.cam_layer)
    explicit = grad_cam(model, batch, target_layer=model.cam_layer, class_index=predicted)
    np.testing.assert_array_equal(default, explicit)
    mixed = grad_cam(model, batch, target_layer=model.cam_layer, class_index=[1, 0])
    one = grad_cam(model, batch[1:], target_layer=model.cam_layer, class_index=0)
    np.testing.assert_allclose(mixed[1], one[0], atol=1e-5)


@pytest.mark.parametrize("plus_plus", [False, True])
def test_grad_cam_agrees_with_monai(trained, plus_plus):
    visualize = pytest.importorskip("monai.visualize")

    model, x, _ = trained
    # MONAI's Grad-CAM++ broadcasts exp(score) wrongly for batches > 1, so compare it on one sample
    batch = x if plus_plus else torch.cat([x, x.flip(-1)])
    ours = grad_cam(model, batch, target_layer=model.cam_layer, class_index=1, plus_plus=plus_plus)
    reference_model = copy.deepcopy(model)  # MONAI leaves its hooks on the module it wraps
    cls = visualize.GradCAMpp if plus_plus else visualize.GradCAM
    theirs = cls(nn_module=reference_model, target_layers="cam_layer", postprocessing=lambda t: t)(batch, class_idx=1)
    theirs = theirs[:, 0].detach().numpy()
    flat = theirs.reshape(len(theirs), -1)
    lo, hi = flat.min(1), flat.max(1)
    theirs = (theirs - lo.reshape(-1, *[1] * (theirs.ndim - 1))) / (hi - lo).reshape(-1, *[1] * (theirs.ndim - 1))
    for a, b in zip(ours, theirs):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999
    np.testing.assert_allclose(ours, theirs, atol=1e-4 if not plus_plus else 5e-3)


def test_grad_cam_leaves_model_as_it_was(model_2d):
    model = copy.deepcopy(model_2d).train()
    model.stem.eval()  # mixed modes must come back exactly
    model.stem[0].weight.requires_grad_(False)
    flags = [(m, m.training) for m in model.modules()]
    requires = [p.requires_grad for p in model.parameters()]
    state = copy.deepcopy(model.state_dict())
    x = torch.rand(2, 1, *SHAPE[2])
    x_before = x.clone()
    cam = grad_cam(model, x, target_layer=model.cam_layer, class_index=1)
    assert [m.training for m, _ in flags] == [flag for _, flag in flags]
    assert [p.requires_grad for p in model.parameters()] == requires
    assert all(p.grad is None for p in model.parameters())
    assert _hooks(model) == 0
    assert torch.equal(x, x_before)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key])
    # computed in eval mode: dropout off, so the same as for the model in eval mode
    np.testing.assert_allclose(cam, grad_cam(model.eval(), x, target_layer=model.cam_layer, class_index=1), atol=1e-6)


def test_grad_cam_under_no_grad_inference_mode_and_frozen(model_2d):
    model = copy.deepcopy(model_2d)
    x = torch.rand(1, 1, *SHAPE[2])
    expected = grad_cam(model, x, target_layer=model.cam_layer, class_index=1)
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        frozen = grad_cam(model, x, target_layer=model.cam_layer, class_index=1)
    with torch.inference_mode():
        x_inference = x.clone()
        inference = grad_cam(model, x_inference, target_layer=model.cam_layer, class_index=1)
    np.testing.assert_allclose(frozen, expected, atol=1e-6)
    np.testing.assert_allclose(inference, expected, atol=1e-6)
    assert not any(p.requires_grad for p in model.parameters())
    numpy_input = grad_cam(model, x.numpy().astype(np.float64), target_layer=model.cam_layer, class_index=1)
    np.testing.assert_allclose(numpy_input, expected, atol=1e-6)


def test_grad_cam_survives_inplace_operation_after_target_layer(model_2d):
    inplace = TinyClassifier(2, inplace_after_cam=True).eval()
    inplace.load_state_dict(model_2d.state_dict())
    x = torch.rand(2, 1, *SHAPE[2])
    np.testing.assert_allclose(
        grad_cam(inplace, x, target_layer=inplace.cam_layer, class_index=1),
        grad_cam(model_2d, x, target_layer=model_2d.cam_layer, class_index=1), atol=1e-6,
    )


class SliceEncoder(nn.Module):
    """A 2D encoder run on every slice of a volume (slices folded into the batch, slice-major), like slice_lstm."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.cam_layer = nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        b, c, z, y, w = x.shape
        features = self.cam_layer(self.stem(x.transpose(1, 2).reshape(b * z, c, y, w)))
        return self.head(features.reshape(b, z, *features.shape[1:]).mean(dim=(1, 3, 4)))


class StackedSlices(nn.Module):
    """A 2.5D classifier: the Z slices of a one-channel volume are the channels of a 2D network."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(depth, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                                 nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
        self.cam_layer = self.net[3]

    def forward(self, x):
        return self.net(x[:, 0])


def test_grad_cam_of_slice_wise_and_stacked_slice_layers():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 5, 12, 10)
    # slice-wise 2D encoder == a 3D network with (1, 3, 3) kernels
    slice_model = SliceEncoder().eval()
    volume_model = nn.Sequential(nn.Conv3d(1, 4, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)), nn.ReLU(),
                                 nn.Conv3d(4, 4, (1, 3, 3), padding=(0, 1, 1)), nn.ReLU(),
                                 nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    with torch.no_grad():
        for conv2d, conv3d in ((slice_model.stem, volume_model[0]), (slice_model.cam_layer[1], volume_model[2])):
            conv3d.weight.copy_(conv2d.weight[:, :, None])
            conv3d.bias.copy_(conv2d.bias)
        volume_model[6].load_state_dict(slice_model.head.state_dict())
        np.testing.assert_allclose(slice_model(x), volume_model(x), atol=1e-5)
    for plus_plus in (False, True):
        cam = grad_cam(slice_model, x, target_layer=slice_model.cam_layer, class_index=[0, 2], plus_plus=plus_plus)
        expected = grad_cam(volume_model, x, target_layer=volume_model[3], class_index=[0, 2], plus_plus=plus_plus)
        assert cam.shape == (2, 5, 12, 10)
        np.testing.assert_allclose(cam, expected, atol=1e-5)
    # 2.5D: an in-plane map, the same on every slice, equal to the 2D map of the stacked slices
    stacked = StackedSlices(5).eval()
    cam = grad_cam(stacked, x, target_layer=stacked.cam_layer, class_index=1)
    plane = grad_cam(stacked.net, x[:, 0], target_layer=stacked.cam_layer, class_index=1)
    assert cam.shape == (2, 5, 12, 10)
    np.testing.assert_allclose(cam, np.repeat(plane[:, None], 5, axis=1), atol=1e-6)


def test_hooks_removed_and_mode_restored_after_exception(model_2d):
    model = copy.deepcopy(model_2d).train()

    class Boom(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    model.head.insert(0, Boom())
    with pytest.raises(RuntimeError, match="boom"):
        grad_cam(model, torch.rand(1, 1, *SHAPE[2]), target_layer=model.cam_layer)
    assert _hooks(model) == 0 and all(m.training for m in model.modules())
    with pytest.raises(RuntimeError, match="boom"):
        randomisation_check(model, torch.rand(1, 1, *SHAPE[2]), target_layer=model.cam_layer)
    assert _hooks(model) == 0 and all(m.training for m in model.modules())
    model = copy.deepcopy(model_2d).train()
    with pytest.raises(InvalidParameterError) as info:  # raised after the forward pass, inside the hooked block
        grad_cam(model, torch.rand(1, 1, *SHAPE[2]), target_layer=model.cam_layer, class_index=2)
    assert info.value.parameter == "class_index"
    assert _hooks(model) == 0 and all(m.training for m in model.modules())


def _parameter_of(call):
    with pytest.raises(InvalidParameterError) as info:
        call()
    return info.value.parameter


def test_bad_inputs_name_the_parameter(model_2d):
    model = model_2d
    x = torch.rand(1, 1, *SHAPE[2])
    layer = model.cam_layer
    assert _parameter_of(lambda: grad_cam(model, x[0], target_layer=layer)) == "x"
    assert _parameter_of(lambda: grad_cam(model, x[None, None], target_layer=layer)) == "x"
    assert _parameter_of(lambda: grad_cam(model, x * np.nan, target_layer=layer)) == "x"
    assert _parameter_of(lambda: grad_cam(model, x, target_layer=layer, class_index=2)) == "class_index"
    assert _parameter_of(lambda: grad_cam(model, x, target_layer=layer, class_index=-1)) == "class_index"
    assert _parameter_of(lambda: grad_cam(model, x, target_layer=layer, class_index=True)) == "class_index"
    assert _parameter_of(lambda: grad_cam(model, x, target_layer=layer, class_index=[0, 1])) == "class_index"
    assert _parameter_of(lambda: grad_cam(model, x, target_layer=nn.Conv2d(8, 8, 3))) == "target_layer"
    assert _parameter_of(lambda: grad_cam(model, x, target_layer=copy.deepcopy(layer))) == "target_layer"
    assert _parameter_of(lambda: grad_cam(model, x, target_layer="cam_layer")) == "target_layer"
    assert _parameter_of(lambda: grad_cam(model, x, target_layer=model.head[1])) == "target_layer"  # (B, C) output
    unused = copy.deepcopy(model)
    unused.spare = nn.Conv2d(1, 1, 1)
    assert _parameter_of(lambda: grad_cam(unused, x, target_layer=unused.spare)) == "target_layer"
    assert _parameter_of(lambda: grad_cam(lambda t: t, x, target_layer=layer)) == "model"
    assert _parameter_of(lambda: occlusion_sensitivity(model, x, patch=0)) == "patch"
    assert _parameter_of(lambda: occlusion_sensitivity(model, x, patch=(4, 4, 4))) == "patch"
    assert _parameter_of(lambda: occlusion_sensitivity(model, x, stride=0)) == "stride"
    assert _parameter_of(lambda: occlusion_sensitivity(model, x, patch=4, stride=5)) == "stride"  # gaps
    assert _parameter_of(lambda: occlusion_sensitivity(model, x, baseline="median")) == "baseline"
    assert _parameter_of(lambda: occlusion_sensitivity(model, x, batch_size=0)) == "batch_size"
    assert _parameter_of(lambda: occlusion_sensitivity(model, x, class_index=7)) == "class_index"
    assert _parameter_of(lambda: deletion_curve(model, x, np.zeros((2, 24, 24)))) == "saliency"
    assert _parameter_of(lambda: deletion_curve(model, x, np.zeros((1, 24, 24)), steps=0)) == "steps"
    assert _parameter_of(lambda: randomisation_check(model, x, method="lime", target_layer=layer)) == "method"
    assert _parameter_of(lambda: randomisation_check(model, x, method="grad_cam")) == "target_layer"
    assert _parameter_of(lambda: randomisation_check(model, x, target_layer=layer, layers=["decoder"])) == "layers"
    assert _parameter_of(lambda: randomisation_check(model, x, target_layer=layer, layers="head")) == "layers"
    assert _parameter_of(lambda: randomisation_check(model, x, target_layer=layer, seed=0.5)) == "seed"


# ---------------------------------------------------------------------------------------------------- occlusion
def test_occlusion_peaks_on_blob(trained):
    model, x, centre = trained
    occ = occlusion_sensitivity(model, x, patch=4, stride=2, baseline=0.0, batch_size=16)
    assert occ.shape == (1, *x.shape[2:]) and occ.dtype == np.float32
    assert np.abs(occ).max() <= 1.0 and occ.max() > 0.02
    assert _on_blob(occ[0], centre)
    # batch and "mean" baseline: same shape, per-sample maps
    two = occlusion_sensitivity(model, torch.cat([x, x]), patch=4, stride=2, class_index=1, batch_size=7)
    np.testing.assert_allclose(two[0], two[1], atol=1e-6)
    assert _on_blob(two[0], centre)


def test_occlusion_agrees_with_monai(trained):
    visualize = pytest.importorskip("monai.visualize")

    model, x, _ = trained
    ours = occlusion_sensitivity(model, x, patch=4, stride=2, class_index=1, baseline=0.0)
    monai = visualize.OcclusionSensitivity(
        nn_module=copy.deepcopy(model), mask_size=4, overlap=0.5, mode=0.0, verbose=False,
        activate=lambda logits: logits.softmax(1),
    )
    occluded_probability, _ = monai(x)
    with torch.no_grad():
        p = model(x).softmax(1)[0, 1].item()
    theirs = p - occluded_probability[0, 1].numpy()
    np.testing.assert_allclose(ours[0], theirs, atol=1e-5)
    assert np.argmax(ours[0]) == np.argmax(theirs)


def test_occlusion_restores_mode_and_clips_patch(model_2d):
    model = copy.deepcopy(model_2d).train()
    occ = occlusion_sensitivity(model, torch.rand(1, 1, 6, 10), patch=(8, 4), stride=(8, 3))
    assert occ.shape == (1, 6, 10) and np.isfinite(occ).all()
    assert all(m.training for m in model.modules()) and _hooks(model) == 0


# ----------------------------------------------------------------------------------------- sanity check, deletion
@pytest.mark.parametrize("method", ["grad_cam", "grad_cam++"])
def test_randomisation_lowers_correlation(trained, method):
    model, x, _ = trained
    batch = torch.cat([x, x.flip(-1), x.flip(-2)])
    state = copy.deepcopy(model.state_dict())
    torch.manual_seed(123)
    rng_state = torch.random.get_rng_state()
    result = randomisation_check(model, batch, method=method, target_layer=model.cam_layer, class_index=1)
    assert torch.equal(torch.random.get_rng_state(), rng_state)  # the caller's random stream is untouched
    assert result["layers"] == ["head.3", "cam_layer.0", "stem.0"]  # from the logits down
    assert len(result["spearman"]) == 3 and len(result["spearman_per_sample"][0]) == 3
    assert result["class_index"] == [1, 1, 1] and result["method"] == method
    # Grad-CAM++ may survive a random linear head (its weights keep the sign pattern), not a random network
    assert min(result["spearman"]) < 0.5 and result["final_spearman"] < 0.9
    assert result["final_spearman"] == result["spearman"][-1]
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key])
    again = randomisation_check(model, batch, method=method, target_layer=model.cam_layer, class_index=1)
    assert again["spearman"] == result["spearman"]  # seeded


def test_randomisation_with_occlusion_and_callable(model_2d):
    x = torch.rand(1, 1, *SHAPE[2])
    occ = randomisation_check(model_2d, x, method="occlusion", options={"patch": 6, "stride": 6})
    assert occ["method"] == "occlusion" and len(occ["spearman"]) == 3

    def gradient_norm(model, x, *, target_layer, class_index):
        return grad_cam(model, x, target_layer=target_layer, class_index=class_index)

    blocks = randomisation_check(model_2d, x, target_layer=model_2d.cam_layer, layers=["head", "cam_layer", "stem"])
    assert blocks["layers"] == ["head", "cam_layer", "stem"]
    custom = randomisation_check(model_2d, x, method=gradient_norm, target_layer=model_2d.cam_layer)
    reference = randomisation_check(model_2d, x, method="grad_cam", target_layer=model_2d.cam_layer)
    assert custom["spearman"] == reference["spearman"] and custom["method"] == "gradient_norm"
    assert blocks["spearman"] == reference["spearman"]  # one parameterised layer per block: the same steps


def test_spearman_correlation():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a, b = rng.random(50), rng.random(50)
    b[:10] = 0.0  # ties
    assert np.isclose(spearman_correlation(a, b), spearmanr(a, b).statistic)
    assert spearman_correlation(a, np.zeros(50)) == 0.0


def test_deletion_auc_of_grad_cam_below_random(trained):
    model, x, _ = trained
    cam = grad_cam(model, x, target_layer=model.cam_layer, class_index=1)
    curve = deletion_curve(model, x, cam, class_index=1, steps=10, baseline=0.0)
    n_voxels = x[0, 0].numel()
    assert curve["fractions"].tolist() == pytest.approx(np.linspace(0, 1, 11).tolist(), abs=1 / n_voxels)
    assert curve["probabilities"].shape == (1, 11) and curve["random_probabilities"].shape == (1, 11)
    with torch.no_grad():
        assert curve["probabilities"][0, 0] == pytest.approx(model(x).softmax(1)[0, 1].item(), abs=1e-6)
    assert curve["class_index"].tolist() == [1]
    assert curve["auc"][0] < 0.6 * curve["random_auc"][0]
    # the reverse order (least salient first) is worse than the map itself
    worst = deletion_curve(model, x, -cam, class_index=1, steps=10, baseline=0.0)
    assert worst["auc"][0] > curve["auc"][0]
    # (*spatial) saliency for one sample is accepted; the result is reproducible
    single = deletion_curve(model, x, cam[0], class_index=1, steps=10, baseline=0.0)
    np.testing.assert_array_equal(single["probabilities"], curve["probabilities"])


# ------------------------------------------------------------------------------------------------------ figures
def test_overlay_png_is_written_and_readable(model_2d, tmp_path):
    x = torch.from_numpy(2.0 * _blob(SHAPE[2], (8, 14)))[None, None]
    cam = grad_cam(model_2d, x, target_layer=model_2d.cam_layer, class_index=1)
    rgb = saliency_overlay(x[0, 0], cam[0], alpha=0.5)
    assert rgb.shape == (*SHAPE[2], 3) and rgb.dtype == np.uint8
    zero = cam[0] == 0
    if zero.any():  # no evidence: the plain grey image
        assert (rgb[zero] == rgb[zero][:, :1]).all()
    path = saliency_overlay_png(x[0, 0].numpy(), cam[0], tmp_path / "figs" / "cam.png", title="Grad-CAM")
    assert path == tmp_path / "figs" / "cam.png"
    with PILImage.open(path) as png:
        assert png.format == "PNG" and png.size[0] > 100 and png.size[1] > 100
    assert [p.name for p in path.parent.iterdir()] == ["cam.png"]  # no temporary files left
    with pytest.raises(ImageWriteError):
        saliency_overlay_png(x[0, 0], cam[0], tmp_path / "cam.jpg")
    with pytest.raises(InvalidParameterError) as info:
        saliency_overlay(x[0, 0], cam[0, :5])
    assert info.value.parameter == "saliency"
    with pytest.raises(InvalidParameterError) as info:
        saliency_overlay(x[0, 0], cam[0], alpha=2.0)
    assert info.value.parameter == "alpha"


def test_montage_png_shows_most_salient_slices(tmp_path):
    volume = np.random.default_rng(0).normal(0.0, 1.0, (10, 16, 16))
    saliency = np.zeros_like(volume)
    saliency[[2, 5, 7]] = np.linspace(0.2, 1.0, 3)[:, None, None]
    saliency[4, :2, :2] = 0.1
    assert most_salient_slices(saliency, n_slices=3) == [2, 5, 7]
    assert most_salient_slices(saliency, n_slices=40) == list(range(10))
    path = saliency_montage_png(volume, saliency, tmp_path / "montage.png", n_slices=4, title="3D Grad-CAM")
    with PILImage.open(path) as png:
        png.load()
        assert png.format == "PNG" and min(png.size) > 100
    with pytest.raises(InvalidParameterError) as info:
        saliency_montage_png(volume, saliency[:5], tmp_path / "bad.png")
    assert info.value.parameter == "saliency"
    with pytest.raises(InvalidParameterError) as info:
        saliency_montage_png(volume[0], saliency[0], tmp_path / "bad.png")
    assert info.value.parameter == "volume"
    assert not (tmp_path / "bad.png").exists()
