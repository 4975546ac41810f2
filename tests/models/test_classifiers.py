"""Tests for the classifiers of medimg.models: shapes, Grad-CAM layer, dropout, bf16, spec, registry, and
parameter counts and outputs against torchvision's published counts and MONAI's networks."""

from __future__ import annotations

import doctest
import json
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import medimg.models
from medimg.core.errors import InvalidParameterError
from medimg.models import (
    ClassifierSpec,
    NetworkSpec,
    acs,
    build_classifier,
    classifier_spec,
    classifiers,
    densenet,
    list_classifiers,
    list_models,
    mobilenet,
    register_classifier,
    registry,
    resnet,
    slice_lstm,
    vgg,
)
from medimg.models.blocks import SqueezeExcitation

MODELS_2D3D = ("resnet18", "resnet34", "vgg16", "densenet121", "mobilenetv3_small")
MODELS_VOLUME = ("resnet18_25d", "resnet18_acs", "slice_lstm")
ALL = MODELS_2D3D + MODELS_VOLUME
SIZE = {2: (16, 12), 3: (6, 10, 8)}


def _combos():
    for name in ALL:
        for dims in (2, 3):
            if dims == 2 and name in MODELS_VOLUME:
                continue
            yield name, dims


def _spec(name: str, dims: int, **kw) -> ClassifierSpec:
    args = {"name": name, "dims": dims, "width": 4, "n_classes": 3, "slices": 4}
    if name == "mobilenetv3_small":
        args["width"] = 8  # channels are multiples of 8 anyway
    args.update(kw)
    return ClassifierSpec(**args)


def _input(spec: ClassifierSpec, batch: int = 2) -> torch.Tensor:
    if spec.name == "resnet18_25d":
        return torch.randn(batch, spec.in_channels, spec.slices, 16, 12)
    return torch.randn(batch, spec.in_channels, *SIZE[spec.dims])


def _n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------- forward contract
@pytest.mark.parametrize("name,dims", list(_combos()))
def test_shapes_cam_layer_and_gradients(name, dims):
    s = _spec(name, dims, in_channels=2)
    net = build_classifier(s)
    assert net.spec == s
    x = _input(s)
    seen = []
    handle = net.cam_layer.register_forward_hook(lambda _m, _i, out: seen.append(out))
    out = net(x)
    handle.remove()
    assert out.shape == (2, 3) and out.dtype == torch.float32
    # cam_layer: B x F x (z) x y x x, as many axes as the input, each downsampled axis ceil(n / stride);
    # 2.5D: z = 1 (a 2D map); slice_lstm: z = Z (one map per slice)
    (cam,) = seen
    assert cam.ndim == x.ndim
    if name in ("resnet18_25d", "slice_lstm"):
        z = 1 if name == "resnet18_25d" else x.shape[2]
        channels = net.encoder.channels if name == "slice_lstm" else net.backbone.channels
        assert cam.shape[:3] == (2, channels, z)
        assert cam.shape[3:] == tuple(math.ceil(n / net.stride) for n in x.shape[3:])
    else:
        assert cam.shape[:2] == (2, net.backbone.channels)
        assert cam.shape[2:] == tuple(math.ceil(n / net.stride) for n in x.shape[2:])
    out.square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing
    net.eval()
    with torch.no_grad():
        assert net(x[:1]).shape == (1, 3)


@pytest.mark.parametrize("name", ALL)
def test_odd_28_cube_with_both_stems(name):
    dims = 2 if name in ("vgg16", "densenet121") else 3  # the cheap ones in 2D; ceil pooling is the same code
    for stem in ("small", "imagenet"):
        s = _spec(name, dims, stem=stem, slices=28)
        net = build_classifier(s).eval()
        x = torch.randn(1, 1, *(28,) * dims)
        with torch.no_grad():
            assert net(x).shape == (1, 3)


@pytest.mark.parametrize("name", ALL)
def test_bf16_autocast(name):
    dims = 3 if name in MODELS_VOLUME or name == "resnet18" else 2
    net = build_classifier(_spec(name, dims))
    x = _input(net.spec)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
    assert out.dtype == torch.float32  # logits come back in float32 for the loss
    out.square().mean().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in net.parameters())
    net.eval()
    with torch.no_grad():
        ref = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(x)
    assert low.dtype == torch.float32
    assert (low - ref).abs().max() < 0.1 * ref.abs().max() + 0.1


@pytest.mark.parametrize("name", ALL)
def test_dropout_before_final_linear_for_mc_dropout(name):
    dims = 3 if name in MODELS_VOLUME else 2
    net = build_classifier(_spec(name, dims, dropout=0.5))
    drops = [m for m in net.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 1 and drops[0].p == 0.5 and drops[0] is net.head.dropout
    x = _input(net.spec)
    torch.manual_seed(1)
    with torch.no_grad():
        net.train()
        assert not torch.equal(net(x), net(x))  # active in training
        net.eval()
        assert torch.equal(net(x), net(x))  # off at eval
        drops[0].train()  # MC dropout: switched on alone, norms stay in eval mode
        assert not torch.equal(net(x), net(x))


@pytest.mark.parametrize("norm", ["instance", "group"])
@pytest.mark.parametrize("name", ["resnet18", "densenet121", "mobilenetv3_small"])
def test_other_norms(name, norm):
    net = build_classifier(_spec(name, 3, norm=norm))
    kind = nn.InstanceNorm3d if norm == "instance" else nn.GroupNorm
    assert any(isinstance(m, kind) for m in net.modules())
    assert not any(isinstance(m, nn.BatchNorm3d) for m in net.modules())
    assert net(torch.randn(1, 1, 18, 12, 12)).shape == (1, 3)  # > stride 16 (MobileNet) along Z


@pytest.mark.parametrize("name", ["resnet18", "resnet18_acs", "vgg16", "densenet121", "slice_lstm"])
def test_se_option(name):
    plain = build_classifier(_spec(name, 3))
    se = build_classifier(_spec(name, 3, se=True))
    assert not any(isinstance(m, SqueezeExcitation) for m in plain.modules())
    n_se = sum(isinstance(m, SqueezeExcitation) for m in se.modules())
    assert n_se == {"vgg16": 5, "densenet121": 4}.get(name, 8)  # per block / dense block / basic block
    assert _n_params(se) > _n_params(plain)
    assert se(_input(se.spec)).shape == (2, 3)


def test_channels_last_gives_same_result():
    net = build_classifier(_spec("resnet18", 3)).eval()
    x = torch.randn(1, 1, 8, 8, 8)
    with torch.no_grad():
        ref = net(x)
        cl = net.to(memory_format=torch.channels_last_3d)(x.to(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name,x_shape", [
    ("resnet18", (1, 2, 8, 8, 8)),  # channels
    ("resnet18", (1, 1, 8, 8)),  # 2D input to a 3D net
    ("vgg16", (1, 8, 8)),  # no batch axis
    ("resnet18_25d", (1, 1, 3, 8, 8)),  # slices != spec.slices
    ("slice_lstm", (1, 1, 8, 8)),
    ("resnet18_acs", (1, 1, 8, 8)),
])
def test_input_checked(name, x_shape):
    net = build_classifier(_spec(name, 3))
    with pytest.raises(InvalidParameterError) as err:
        net(torch.randn(*x_shape))
    assert err.value.parameter == "x" and "B x C" in str(err.value)
    if name == "resnet18_25d":
        assert "Z = 4" in str(err.value)


def test_instance_norm_needs_more_than_one_voxel_at_the_end():
    net = build_classifier(_spec("resnet18", 3, norm="instance"))  # stride 8
    with pytest.raises(InvalidParameterError, match="one voxel") as err:
        net(torch.randn(1, 1, 8, 6, 8))
    assert err.value.parameter == "x"
    assert net(torch.randn(1, 1, 8, 9, 8)).shape == (1, 3)


@pytest.mark.parametrize("name", MODELS_VOLUME)
def test_volume_models_need_dims_3(name):
    with pytest.raises(InvalidParameterError) as err:
        build_classifier(_spec(name, 2))
    assert err.value.parameter == "dims"


# ---------------------------------------------------------------------------------------------- architectures
def test_resnet_25d_is_a_2d_resnet_on_stacked_slices():
    s = _spec("resnet18_25d", 3, in_channels=2, slices=3)
    net = build_classifier(s).eval()
    twin = build_classifier(_spec("resnet18", 2, in_channels=6)).eval()
    twin.load_state_dict(net.state_dict())
    x = torch.randn(2, 2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(x), twin(x.reshape(2, 6, 16, 16)))


def test_acs_has_the_2d_parameters_and_sees_3d():
    net2d = build_classifier(_spec("resnet18", 2, width=6))
    net = build_classifier(_spec("resnet18_acs", 3, width=6))
    assert _n_params(net) == _n_params(net2d)
    net.load_state_dict(net2d.state_dict())  # same names and shapes: 2D weights load as they are
    n_convs = sum(isinstance(m, nn.Conv2d) for m in net2d.modules())
    assert sum(isinstance(m, acs.ACSConv) for m in net.modules()) == n_convs == 20  # 1x1 shortcuts included
    assert not any(isinstance(m, (nn.Conv2d, nn.Conv3d)) for m in net.modules())
    seen = []
    net.cam_layer.register_forward_hook(lambda _m, _i, out: seen.append(out.shape))
    net(torch.randn(1, 1, 16, 16, 16))
    assert seen == [(1, 48, 2, 2, 2)]  # a volume: 3D-shaped features


def test_acs_conv_groups_use_axial_coronal_sagittal_kernels():
    conv = acs.ACSConv(2, 7, 3)
    assert conv.split == (3, 2, 2) and conv.weight.shape == (7, 2, 3, 3)
    x = torch.randn(1, 2, 5, 6, 7)
    with torch.no_grad():
        out = conv(x)
        a, c, s = torch.split(conv.weight, conv.split)
        # axial: each Z slice through the 2D kernel; coronal: each Y row (Z, X plane); sagittal: each X column
        axial = F.conv2d(x[0].transpose(0, 1), a, padding=1).transpose(0, 1)
        coronal = F.conv2d(x[0].permute(2, 0, 1, 3), c, padding=1).permute(1, 2, 0, 3)
        sagittal = F.conv2d(x[0].permute(3, 0, 1, 2), s, padding=1).permute(1, 2, 3, 0)
    torch.testing.assert_close(out[0], torch.cat([axial, coronal, sagittal]), rtol=1e-4, atol=1e-5)
    assert acs.ACSConv(3, 5, 3, stride=2, bias=True)(torch.randn(1, 3, 7, 8, 9)).shape == (1, 5, 4, 4, 5)
    assert acs.ACSConv(3, 2, 1)(torch.randn(1, 3, 4, 4, 4)).shape == (1, 2, 4, 4, 4)


def test_vgg16_has_13_convolutions_and_the_counted_parameters():
    for dims in (2, 3):
        s = _spec("vgg16", dims, width=8, in_channels=2)
        net = build_classifier(s)
        convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]
        assert len(convs) == 13 and all(m.bias is None for m in convs)
        channels = [2] + [8 * m for m, n in vgg.VGG16_BLOCKS for _ in range(n)]
        k = 3**dims
        expected = sum(a * b * k + 2 * b for a, b in zip(channels[:-1], channels[1:])) + 64 * 3 + 3
        assert _n_params(net) == expected
        pools = sum(isinstance(m, (nn.MaxPool2d, nn.MaxPool3d)) for m in net.modules())
        assert pools == 3 and net.stride == 8
    imagenet = build_classifier(_spec("vgg16", 2, stem="imagenet"))
    assert imagenet.stride == 16


def test_mobilenet_follows_the_small_table():
    net = build_classifier(_spec("mobilenetv3_small", 2, width=16))
    blocks = [m for m in net.modules() if isinstance(m, mobilenet.InvertedResidual)]
    assert len(blocks) == 11
    assert sum(isinstance(m, mobilenet._SqueezeExcitation) for m in net.modules()) == 9
    assert sum(isinstance(m, nn.Hardswish) for m in net.modules()) > 10
    assert net.backbone.channels == 576 and net.head.fc.in_features == 1024
    assert net.stride == 16 and build_classifier(_spec("mobilenetv3_small", 2, stem="imagenet")).stride == 32


def test_slice_lstm_slice_logits_and_context():
    net = build_classifier(_spec("slice_lstm", 3)).eval()
    x = torch.randn(2, 1, 5, 12, 12)
    with torch.no_grad():
        volume, per_slice = net.volume_and_slice_logits(x)
        assert per_slice.shape == (2, 5, 3) and per_slice.dtype == torch.float32
        torch.testing.assert_close(volume, net(x))
        torch.testing.assert_close(per_slice, net.slice_logits(x))
        # the head is linear, so the volume logits are the mean of the slice logits
        torch.testing.assert_close(volume, per_slice.mean(dim=1), rtol=1e-5, atol=1e-5)
        # bidirectional: changing the last slice corrects the first slice's logits
        y = x.clone()
        y[:, :, -1] += 3.0
        assert not torch.allclose(net.slice_logits(y)[:, 0], per_slice[:, 0])
        assert net(torch.randn(1, 1, 9, 12, 12)).shape == (1, 3)  # any number of slices
    # cam_layer: the shared 2D encoder's features of each slice, stacked back into B x F x Z x y x x
    seen = []
    net.cam_layer.register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        net(x)
        torch.testing.assert_close(seen[0][:, :, 3], net.encoder(x[:, :, 3]))


def test_resnet18_learns_a_tiny_2d_task():
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    images, labels = [], []
    for i in range(8):
        cy, cx = 5 + i % 4, 6 + i // 4 * 3
        blob = ((yy - cy) ** 2 + (xx - cx) ** 2 <= 9).float()
        images.append(blob * (1.0 if i % 2 else -1.0) + 0.2 * torch.randn(16, 16))
        labels.append(i % 2)
    x, y = torch.stack(images)[:, None], torch.tensor(labels)
    net = build_classifier(_spec("resnet18", 2, n_classes=2, width=4))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses


# ---------------------------------------------------------------------------------------------- reference counts
# torchvision.models with 3 input channels and 1000 classes (the published counts of the weights tables:
# docs.pytorch.org/vision/stable/models.html): resnet18 11,689,512; resnet34 21,797,672; densenet121 7,978,856;
# mobilenet_v3_small 2,542,856. Our layers match at width 64 (16 for MobileNetV3) with the ImageNet stem.
@pytest.mark.parametrize("name,width,expected", [
    ("resnet18", 64, 11_689_512), ("resnet34", 64, 21_797_672), ("densenet121", 64, 7_978_856),
    ("mobilenetv3_small", 16, 2_542_856),
])
def test_parameter_counts_match_torchvision(name, width, expected):
    s = ClassifierSpec(name=name, dims=2, in_channels=3, n_classes=1000, width=width, stem="imagenet")
    assert _n_params(build_classifier(s)) == expected


def _monai_resnet(depth: int, s: ClassifierSpec) -> nn.Module:
    from monai.networks.nets import resnet18, resnet34

    small = s.stem == "small"
    return (resnet18 if depth == 18 else resnet34)(
        spatial_dims=s.dims, n_input_channels=s.in_channels, num_classes=s.n_classes, widen_factor=s.width / 64,
        conv1_t_size=3 if small else 7, conv1_t_stride=1 if small else 2, no_max_pool=small, shortcut_type="B",
        bias_downsample=False)


def _copy_in_order(src: nn.Module, dst: nn.Module) -> None:
    pairs = list(zip(src.parameters(), dst.parameters(), strict=True))
    assert all(a.shape == b.shape for a, b in pairs)
    with torch.no_grad():
        for a, b in pairs:
            b.copy_(a)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("stem", ["small", "imagenet"])
def test_resnet_matches_monai(dims, stem):
    for depth in (18, 34):
        s = ClassifierSpec(name=f"resnet{depth}", dims=dims, in_channels=2, n_classes=3, width=8, stem=stem)
        ours, theirs = build_classifier(s), _monai_resnet(depth, s)
        assert _n_params(ours) == _n_params(theirs)
    # same layers in the same order: with MONAI's weights, ResNet-34 gives MONAI's logits
    _copy_in_order(theirs, ours)
    x = torch.randn(2, 2, *(16,) * dims)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dims", [2, 3])
def test_densenet121_matches_monai(dims):
    from monai.networks.nets import DenseNet121

    s = ClassifierSpec(name="densenet121", dims=dims, in_channels=2, n_classes=3, width=8, stem="imagenet")
    ours = build_classifier(s)
    theirs = DenseNet121(spatial_dims=dims, in_channels=2, out_channels=3, init_features=8, growth_rate=4)
    assert _n_params(ours) == _n_params(theirs)
    _copy_in_order(theirs, ours)
    x = torch.randn(2, 2, *(32,) * dims)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), rtol=1e-4, atol=1e-4)
    # the small stem only swaps the 7x7 stride-2 convolution for a 3x3 stride-1 one
    small = build_classifier(ClassifierSpec(**{**s.to_dict(), "stem": "small"}))
    assert _n_params(ours) - _n_params(small) == 2 * 8 * (7**dims - 3**dims)
    # the growth rate can be set apart from the width
    channels = 8
    for i, n_layers in enumerate(densenet.DENSENET121_BLOCKS):
        channels = channels + 6 * n_layers if i == 3 else (channels + 6 * n_layers) // 2
    assert channels == 191
    assert build_classifier(ClassifierSpec(**{**s.to_dict(), "growth_rate": 6})).backbone.channels == channels


# ---------------------------------------------------------------------------------------------- registry
def test_list_classifiers_and_segmentation_registry_apart():
    assert list_classifiers() == sorted(ALL)
    assert list_classifiers("resnet*") == ["resnet18", "resnet18_25d", "resnet18_acs", "resnet34"]
    assert not set(list_classifiers()) & set(list_models())
    assert "unet" in list_models() and "unetpp" in list_models(include_aliases=True)


def test_build_classifier_rejects_non_spec():
    for bad in ({"name": "resnet18"}, NetworkSpec()):
        with pytest.raises(InvalidParameterError) as err:
            build_classifier(bad)
        assert err.value.parameter == "spec" and "ClassifierSpec" in str(err.value)
    with pytest.raises(InvalidParameterError) as err:
        medimg.models.build_network(ClassifierSpec())
    assert err.value.parameter == "spec"


def test_unknown_classifier_name():
    with pytest.raises(InvalidParameterError) as err:
        build_classifier(ClassifierSpec(name="resnet50"))
    assert err.value.parameter == "name" and "unknown classifier" in str(err.value) and "vgg16" in str(err.value)
    assert "list_classifiers" in str(err.value)


def test_register_classifier_duplicates_new_and_alias():
    with pytest.raises(InvalidParameterError):
        register_classifier("resnet18")
    with pytest.raises(InvalidParameterError):
        register_classifier("")

    @register_classifier("tiny_test_clf", aliases=("tiny_old_clf",))
    def build(s):
        return nn.Linear(s.in_channels, s.n_classes)

    try:
        assert "tiny_test_clf" in list_classifiers() and "tiny_test_clf" not in list_models()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert isinstance(build_classifier(ClassifierSpec(name="tiny_test_clf")), nn.Linear)
        with pytest.warns(DeprecationWarning, match="tiny_test_clf") as rec:
            build_classifier(ClassifierSpec(name="tiny_old_clf"))
        assert rec[0].filename == __file__  # the warning points at the caller
        assert "tiny_old_clf" in list_classifiers(include_aliases=True)
    finally:
        registry._CLASSIFIERS.builders.pop("tiny_test_clf")
        registry._CLASSIFIERS.aliases.pop("tiny_old_clf")


def test_segmentation_alias_warning_still_points_at_the_caller():
    with pytest.warns(DeprecationWarning, match="unet_pp") as rec:
        medimg.models.build_network(NetworkSpec(name="unetpp", dims=2, n_stages=2, base_channels=2))
    assert rec[0].filename == __file__


# ---------------------------------------------------------------------------------------------- spec
@pytest.mark.parametrize("field,value", [
    ("name", ""), ("name", None), ("dims", 1), ("dims", 4), ("dims", 3.0), ("dims", True), ("in_channels", 0),
    ("n_classes", 0), ("n_classes", 2.5), ("width", 0), ("width", -4), ("stem", "large"), ("se", 1),
    ("se", "yes"), ("dropout", 1.0), ("dropout", -0.1), ("dropout", True), ("dropout", "0.1"), ("norm", "layer"),
    ("slices", 0), ("growth_rate", 0), ("growth_rate", 8.0), ("lstm_hidden", -1),
])
def test_bad_spec_names_the_field(field, value):
    with pytest.raises(InvalidParameterError) as err:
        ClassifierSpec(**{field: value})
    assert err.value.parameter == field
    assert field in str(err.value)
    assert isinstance(err.value, ValueError)


def test_spec_json_round_trip():
    s = ClassifierSpec(name="densenet121", dims=2, in_channels=3, n_classes=5, width=32, stem="imagenet", se=True,
                       dropout=0.25, norm="group", slices=7, growth_rate=12, lstm_hidden=20)
    back = ClassifierSpec.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s and hash(back) == hash(s)
    assert ClassifierSpec.from_dict(json.loads(json.dumps(ClassifierSpec().to_dict()))) == ClassifierSpec()
    assert ClassifierSpec.from_dict({"dims": 2}) == ClassifierSpec(dims=2)
    assert ClassifierSpec(dropout=0).dropout == 0.0 and isinstance(ClassifierSpec(dropout=0).dropout, float)
    assert ClassifierSpec(width=64).resolved_growth_rate() == 32 and s.resolved_growth_rate() == 12
    with pytest.raises(AttributeError):
        s.width = 8  # frozen


def test_spec_from_dict_rejects_unknown_keys_and_non_mappings():
    with pytest.raises(InvalidParameterError) as err:
        ClassifierSpec.from_dict({"dims": 3, "depth": 50})
    assert err.value.parameter == "depth"
    with pytest.raises(InvalidParameterError) as err:
        ClassifierSpec.from_dict([("dims", 3)])
    assert err.value.parameter == "spec"


@pytest.mark.parametrize("module", [medimg.models, classifier_spec, registry, classifiers, resnet, acs, vgg,
                                    densenet, mobilenet, slice_lstm])
def test_doctests(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
