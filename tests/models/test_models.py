"""Tests for medimg.models: shapes, deep supervision, anisotropy, gradients, bf16 autocast, registry, spec."""

from __future__ import annotations

import doctest
import json
import math
import warnings

import pytest
import torch

import medimg.models
from medimg.core.errors import InvalidParameterError
from medimg.models import (
    NetworkSpec,
    blocks,
    build_network,
    deep_supervision_scales,
    list_models,
    register_model,
    registry,
    spec,
    unet,
    unet_pp,
    vnet,
)

MODELS = ("unet", "attention_unet", "unet_pp", "deeplab_unet", "vnet")
BLOCKS = ("plain", "residual", "se")
SIZE = {2: (32, 32), 3: (16, 16, 16)}


def _combos():
    for name in MODELS:
        for dims in (2, 3):
            if name == "vnet" and dims == 2:
                continue
            for block in BLOCKS:
                yield name, dims, block


def _small(name: str, dims: int, **kw) -> NetworkSpec:
    args = {"name": name, "dims": dims, "base_channels": 4, "max_channels": 16, "n_stages": 3, "n_classes": 3}
    args.update(kw)
    return NetworkSpec(**args)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # these nets are tiny: one thread is as fast, and far faster when other processes share the 2 cores
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------- forward contract
@pytest.mark.parametrize("name,dims,block", list(_combos()))
def test_shapes_train_eval_and_gradients(name, dims, block):
    s = _small(name, dims, block=block)
    net = build_network(s)
    assert net.spec == s
    x = torch.randn(2, 1, *SIZE[dims])
    out = net(x)
    assert isinstance(out, list) and len(out) == s.n_stages - 1
    for o, scale in zip(out, deep_supervision_scales(s)):
        assert o.shape == (2, 3, *(n // f for n, f in zip(SIZE[dims], scale)))
        assert o.dtype == torch.float32
    # one backward through every output reaches every parameter
    sum(o.square().mean() for o in out).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing
    assert any(p.grad.abs().sum() > 0 for p in net.parameters())
    net.eval()
    with torch.no_grad():
        y = net(x)
    assert isinstance(y, torch.Tensor) and y.shape == (2, 3, *SIZE[dims])


@pytest.mark.parametrize("name", MODELS)
def test_without_deep_supervision_returns_tensor_in_training(name):
    net = build_network(_small(name, 3, deep_supervision=False))
    out = net(torch.randn(1, 1, 16, 16, 16))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 3, 16, 16, 16)


@pytest.mark.parametrize("name", MODELS)
def test_anisotropic_pool_kernels(name):
    s = _small(name, 3, n_stages=4, pool_kernels=((1, 2, 2), (1, 2, 2), (2, 2, 2)), in_channels=2)
    assert s.divisor() == (2, 8, 8)
    assert deep_supervision_scales(s) == [(1, 1, 1), (1, 2, 2), (1, 4, 4)]
    net = build_network(s)
    out = net(torch.randn(1, 2, 4, 16, 24))
    assert [tuple(o.shape[2:]) for o in out] == [(4, 16, 24), (4, 8, 12), (4, 4, 6)]
    assert build_network(s).eval()(torch.randn(1, 2, 2, 8, 16)).shape == (1, 3, 2, 8, 16)
    with pytest.raises(InvalidParameterError, match="one voxel"):
        net(torch.randn(1, 2, 2, 8, 8))


def test_anisotropic_2d():
    s = _small("unet", 2, pool_kernels=((2, 1), (2, 2)))
    out = build_network(s)(torch.randn(1, 1, 16, 6))
    assert [tuple(o.shape[2:]) for o in out] == [(16, 6), (8, 6)]


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_other_norms(norm):
    net = build_network(_small("unet", 2, norm=norm))
    assert any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)) for m in net.modules())
    assert net(torch.randn(2, 1, 32, 32))[0].shape == (2, 3, 32, 32)


def test_two_stages():
    s = _small("unet_pp", 2, n_stages=2)
    out = build_network(s)(torch.randn(1, 1, 8, 8))
    assert len(out) == 1 and out[0].shape == (1, 3, 8, 8)


@pytest.mark.parametrize("name", MODELS)
def test_bf16_autocast(name):
    net = build_network(_small(name, 3))
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
        loss = sum(o.square().mean() for o in out)
    assert all(o.dtype == torch.float32 for o in out)  # logits come back in float32 for the loss
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in net.parameters())
    net.eval()
    with torch.no_grad():
        ref = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(x)
    assert low.dtype == torch.float32
    assert (low - ref).abs().max() < 0.1 * ref.abs().max() + 0.1


def test_output_dtype_bf16_weights_and_float64():
    net = build_network(_small("unet", 2)).eval()
    with torch.no_grad():
        # a model cast to bf16 still hands float32 logits to the caller; float64 is kept
        assert net.to(torch.bfloat16)(torch.randn(1, 1, 16, 16, dtype=torch.bfloat16)).dtype == torch.float32
        assert net.to(torch.float64)(torch.randn(1, 1, 16, 16, dtype=torch.float64)).dtype == torch.float64


def test_channels_last_gives_same_result():
    net = build_network(_small("unet", 3)).eval()
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        ref = net(x)
        cl = net.to(memory_format=torch.channels_last_3d)(x.to(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-4)


def test_dropout_in_decoder_for_mc_dropout():
    net = build_network(_small("unet", 2, dropout=0.3))
    drops = [n for n, m in net.named_modules() if isinstance(m, torch.nn.Dropout2d)]
    assert drops and all(n.startswith("decoder") for n in drops)
    x = torch.randn(1, 1, 16, 16)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))
        for m in net.modules():
            if isinstance(m, torch.nn.Dropout2d):
                m.train()
        assert not torch.equal(net(x), net(x))
    assert not any(isinstance(m, torch.nn.Dropout2d) for m in build_network(_small("unet", 2)).modules())


def test_default_unet_parameter_count():
    net = build_network(NetworkSpec())
    n = sum(p.numel() for p in net.parameters())
    assert n == 1_423_590  # 3D, base 16, 4 stages, residual blocks: about 1.4 M
    assert 0.5e6 < n < 5e6


@pytest.mark.parametrize("x_shape", [(1, 2, 16, 16), (1, 1, 16, 16, 16), (1, 1, 16, 10)])
def test_input_checked(x_shape):
    net = build_network(_small("unet", 2))
    with pytest.raises(InvalidParameterError) as err:
        net(torch.randn(*x_shape))
    assert err.value.parameter == "x"


# ---------------------------------------------------------------------------------------------- learning
def test_unet_overfits_tiny_2d_disk_task():
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    images, labels = [], []
    for cy, cx, r in [(12, 14, 6), (20, 18, 8), (16, 9, 5), (10, 22, 7)]:
        disk = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).float()
        images.append(disk + 0.3 * torch.randn(32, 32))
        labels.append(disk.long())
    x, y = torch.stack(images)[:, None], torch.stack(labels)
    net = build_network(NetworkSpec(dims=2, base_channels=8, n_stages=3, deep_supervision=False))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses
    with torch.no_grad():
        pred = net.eval()(x).argmax(1)
    dice = 2 * (pred * y).sum() / (pred.sum() + y.sum())
    assert dice > 0.9


# ---------------------------------------------------------------------------------------------- registry
def test_list_models():
    assert list_models() == sorted(MODELS)
    assert list_models("*unet*") == ["attention_unet", "deeplab_unet", "unet", "unet_pp"]
    assert "unetpp" in list_models(include_aliases=True) and "unetpp" not in list_models()


@pytest.mark.parametrize("alias,new", [("unetpp", "unet_pp"), ("att_unet", "attention_unet"), ("unet3d", "unet")])
def test_alias_warns_and_maps(alias, new):
    with pytest.warns(DeprecationWarning, match=new):
        net = build_network(_small(alias, 3))
    assert net.spec.name == new


def test_unknown_name():
    with pytest.raises(InvalidParameterError) as err:
        build_network(NetworkSpec(name="transunet"))
    assert err.value.parameter == "name" and "unet_pp" in str(err.value)


def test_register_model_duplicates_and_new():
    with pytest.raises(InvalidParameterError):
        register_model("unet")
    with pytest.raises(InvalidParameterError):
        register_model("brand_new", aliases=("unetpp",))

    @register_model("tiny_test_net", aliases=("tiny_old",))
    def build(s):
        return torch.nn.Conv2d(s.in_channels, s.n_classes, 1)

    try:
        assert "tiny_test_net" in list_models()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert isinstance(build_network(NetworkSpec(name="tiny_test_net", dims=2)), torch.nn.Conv2d)
    finally:
        registry._BUILDERS.pop("tiny_test_net")
        registry._ALIASES.pop("tiny_old")


def test_build_network_rejects_non_spec():
    with pytest.raises(InvalidParameterError) as err:
        build_network({"name": "unet"})
    assert err.value.parameter == "spec"


def test_vnet_is_3d_only():
    with pytest.raises(InvalidParameterError) as err:
        build_network(NetworkSpec(name="vnet", dims=2))
    assert err.value.parameter == "dims"


# ---------------------------------------------------------------------------------------------- spec
@pytest.mark.parametrize("field,value", [
    ("dims", 1), ("dims", 4), ("dims", 2.0), ("n_stages", 1), ("block", "dense"), ("norm", "layer"),
    ("in_channels", 0), ("n_classes", 0), ("base_channels", -1), ("max_channels", 8), ("dropout", 1.0),
    ("dropout", -0.1), ("pool_kernels", ((2, 2, 2),)), ("pool_kernels", ((2, 2), (2, 2), (2, 2))),
    ("pool_kernels", ((2, 2, 0), (2, 2, 2), (2, 2, 2))), ("deep_supervision", "yes"), ("name", ""),
])
def test_bad_spec_names_the_field(field, value):
    with pytest.raises(InvalidParameterError) as err:
        NetworkSpec(**{field: value})
    assert err.value.parameter == field
    assert field in str(err.value)
    assert isinstance(err.value, ValueError)


def test_spec_json_round_trip():
    s = NetworkSpec(name="attention_unet", dims=3, in_channels=2, n_classes=4, block="se",
                    pool_kernels=((1, 2, 2), (2, 2, 2), (2, 2, 2)), deep_supervision=False, norm="group",
                    dropout=0.2)
    back = NetworkSpec.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s
    assert isinstance(back.pool_kernels, tuple) and all(isinstance(k, tuple) for k in back.pool_kernels)
    assert hash(back) == hash(s)
    assert NetworkSpec.from_dict(json.loads(json.dumps(NetworkSpec().to_dict()))) == NetworkSpec()
    assert NetworkSpec.from_dict({"dims": 2}) == NetworkSpec(dims=2)


def test_spec_lists_become_tuples_and_unknown_keys_fail():
    s = NetworkSpec(dims=2, n_stages=3, pool_kernels=[[2, 2], [1, 2]])
    assert s.pool_kernels == ((2, 2), (1, 2))
    assert s.stage_channels() == (16, 32, 64) and s.divisor() == (2, 4)
    assert NetworkSpec(base_channels=32, max_channels=64, n_stages=4).stage_channels() == (32, 64, 64, 64)
    with pytest.raises(InvalidParameterError) as err:
        NetworkSpec.from_dict({"dims": 3, "kernel_sizes": [3, 3]})
    assert err.value.parameter == "kernel_sizes"


def test_divisor_matches_pool_product():
    s = NetworkSpec(pool_kernels=((1, 2, 2), (2, 2, 2), (2, 2, 2)))
    assert s.divisor() == tuple(math.prod(k[a] for k in s.pool_kernels) for a in range(3))


@pytest.mark.parametrize("module", [medimg.models, spec, registry, blocks, unet, unet_pp, vnet])
def test_doctests(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
