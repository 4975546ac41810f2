import json

import pytest
import torch

import medimg.augment.batch as batch_module
from medimg.augment import AugSpec, BatchAugmenter
from medimg.core.errors import InvalidParameterError

OFF = dict(
    flip=0.0,
    rotate_p=0.0,
    scale_p=0.0,
    elastic_p=0.0,
    noise_p=0.0,
    blur_p=0.0,
    gamma_p=0.0,
    brightness_contrast_p=0.0,
    low_res_p=0.0,
    bias_field_p=0.0,
)
ALL_ON = {k: 1.0 for k in OFF}
INTENSITY_ONLY = {**OFF, "noise_p": 1.0, "blur_p": 1.0, "gamma_p": 1.0, "brightness_contrast_p": 1.0}
INTENSITY_ONLY |= {"low_res_p": 1.0, "bias_field_p": 1.0}


def _batch(shape, n_labels=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(shape, generator=g, dtype=torch.float32) * 100.0 - 20.0
    label = torch.randint(0, n_labels, (shape[0], *shape[2:]), generator=g)
    return image, label


def _disk_label(shape_yx, spacing_yx, radius_mm, center_mm=None):
    ny, nx = shape_yx
    y = (torch.arange(ny, dtype=torch.float64) - (ny - 1) / 2) * spacing_yx[0]
    x = (torch.arange(nx, dtype=torch.float64) - (nx - 1) / 2) * spacing_yx[1]
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return ((yy**2 + xx**2) <= radius_mm**2).to(torch.int64)


# ---------------------------------------------------------------- determinism and replay
@pytest.mark.parametrize("dims,shape", [(2, (3, 2, 24, 20)), (3, (2, 2, 10, 12, 14))])
def test_same_seed_same_params_and_output(dims, shape):
    image, label = _batch(shape)
    spec = AugSpec(**ALL_ON)
    a = BatchAugmenter(spec, dims=dims, seed=7)
    b = BatchAugmenter(spec, dims=dims, seed=7)
    for _ in range(2):
        out_a, out_b = a(image, label), b(image, label)
        assert a.last_params == b.last_params
        assert torch.equal(out_a[0], out_b[0]) and torch.equal(out_a[1], out_b[1])
    c = BatchAugmenter(spec, dims=dims, seed=8)
    c(image, label)
    assert c.last_params != a.last_params


@pytest.mark.parametrize("dims,shape", [(2, (4, 3, 24, 20)), (3, (3, 1, 10, 12, 14))])
def test_apply_replays_draw_even_after_json_round_trip(dims, shape):
    image, label = _batch(shape)
    spec = AugSpec(**ALL_ON)
    aug = BatchAugmenter(spec, dims=dims, spacing_zyx=(2.0, 1.0, 1.5)[:dims] if dims == 3 else (1.0, 0.8), seed=3)
    out_image, out_label = aug(image, label)
    params = json.loads(json.dumps(aug.last_params))
    again_image, again_label = aug.apply(image, label, params)
    assert torch.equal(out_image, again_image) and torch.equal(out_label, again_label)
    # a fresh augmenter with the same configuration replays too (nothing hidden in state)
    fresh = BatchAugmenter(spec, dims=dims, spacing_zyx=aug.spacing_zyx, seed=999)
    assert torch.equal(fresh.apply(image, label, params)[0], out_image)


def test_streams_are_independent_per_operation():
    spec_a = AugSpec(**{**OFF, "flip": 0.5, "noise_p": 0.0})
    spec_b = AugSpec(**{**OFF, "flip": 0.5, "noise_p": 1.0, "gamma_p": 1.0})
    a = BatchAugmenter(spec_a, dims=3, seed=1).draw(16)
    b = BatchAugmenter(spec_b, dims=3, seed=1).draw(16)
    assert [p["flip_axes"] for p in a] == [p["flip_axes"] for p in b]


# ---------------------------------------------------------------- identity, flips
@pytest.mark.parametrize("dims,shape", [(2, (3, 2, 16, 18)), (3, (2, 3, 6, 8, 10))])
def test_all_probabilities_zero_is_bitwise_identity(dims, shape):
    image, label = _batch(shape)
    aug = BatchAugmenter(AugSpec(**OFF), dims=dims, seed=0)
    out_image, out_label = aug(image, label)
    assert torch.equal(out_image, image) and torch.equal(out_label, label)
    assert out_image.data_ptr() != image.data_ptr() and out_label.data_ptr() != label.data_ptr()


@pytest.mark.parametrize("dims,shape", [(2, (2, 2, 9, 12)), (3, (2, 2, 5, 6, 7))])
def test_flips_exact_and_label_flipped_with_image(dims, shape):
    image, label = _batch(shape)
    out_image, out_label = BatchAugmenter(AugSpec(**{**OFF, "flip": 1.0}), dims=dims)(image, label)
    axes = list(range(dims))
    assert torch.equal(out_image, torch.flip(image, [a + 2 for a in axes]))
    assert torch.equal(out_label, torch.flip(label, [a + 1 for a in axes]))
    aug = BatchAugmenter(AugSpec(**{**OFF, "flip": 0.5}), dims=dims, seed=5)
    out_image, out_label = aug(image, label)
    for i, p in enumerate(aug.last_params):
        assert torch.equal(out_image[i], torch.flip(image[i], [a + 1 for a in p["flip_axes"]]))
        assert torch.equal(out_label[i], torch.flip(label[i], p["flip_axes"]))


# ---------------------------------------------------------------- spatial
def test_rotation_90_in_plane_equals_rot90_2d():
    image, label = _batch((2, 3, 17, 17))
    aug = BatchAugmenter(AugSpec(**OFF), dims=2)
    params = aug.draw(2)
    params[0]["rotation"] = [[0, 1, 90.0]]
    params[1]["rotation"] = [[0, 1, -90.0]]
    out_image, out_label = aug.apply(image, label, params)
    torch.testing.assert_close(out_image[0], torch.rot90(image[0], 1, (1, 2)), atol=1e-4, rtol=0)
    torch.testing.assert_close(out_image[1], torch.rot90(image[1], -1, (1, 2)), atol=1e-4, rtol=0)
    assert torch.equal(out_label[0], torch.rot90(label[0], 1, (0, 1)))
    assert torch.equal(out_label[1], torch.rot90(label[1], -1, (0, 1)))


@pytest.mark.parametrize("plane", [(1, 2), (0, 2), (0, 1)])
def test_rotation_90_in_plane_equals_rot90_3d(plane):
    image, label = _batch((1, 2, 11, 11, 11))
    aug = BatchAugmenter(AugSpec(**OFF), dims=3)
    params = aug.draw(1)
    params[0]["rotation"] = [[plane[0], plane[1], 90.0]]
    out_image, out_label = aug.apply(image, label, params)
    torch.testing.assert_close(out_image[0], torch.rot90(image[0], 1, (plane[0] + 1, plane[1] + 1)), atol=1e-4, rtol=0)
    assert torch.equal(out_label[0], torch.rot90(label[0], 1, plane))


def test_rotation_is_rigid_in_mm_with_anisotropic_spacing():
    # a bar 24 mm along x and 6 mm along y on a (y: 2 mm, x: 1 mm) grid; after 90 degrees it lies along y
    spacing = (2.0, 1.0)
    ny, nx = 33, 65  # 64 mm x 64 mm
    y = (torch.arange(ny) - (ny - 1) / 2) * spacing[0]
    x = (torch.arange(nx) - (nx - 1) / 2) * spacing[1]
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    bar = ((yy.abs() <= 3) & (xx.abs() <= 12)).to(torch.int64)
    aug = BatchAugmenter(AugSpec(**OFF), dims=2, spacing_zyx=spacing)
    params = aug.draw(1)
    params[0]["rotation"] = [[0, 1, 90.0]]
    _, out = aug.apply(bar[None, None].float(), bar[None], params)
    inside = out[0].bool()
    # along y: exactly the 24 mm (output y samples input x, which lies on the 1 mm grid)
    assert yy[inside].min() == -12 and yy[inside].max() == 12
    # along x: the 6 mm width, up to one 2 mm input voxel at each edge (nearest-neighbour ties)
    assert -4 <= xx[inside].min() <= -2 and 2 <= xx[inside].max() <= 4
    assert inside.sum() < 2 * bar.sum()  # without spacing awareness the bar would double in voxel count


def test_strongly_anisotropic_3d_rotates_in_plane_only():
    aug = BatchAugmenter(AugSpec(**{**OFF, "rotate_p": 1.0}), dims=3, spacing_zyx=(5.0, 0.8, 0.8), seed=2)
    assert aug.anisotropic and aug.coarse_axis == 0
    for p in aug.draw(8):
        assert [r[:2] for r in p["rotation"]] == [[1, 2]]
    iso = BatchAugmenter(AugSpec(**{**OFF, "rotate_p": 1.0}), dims=3, spacing_zyx=(1.5, 1.0, 1.0))
    assert len(iso.draw(1)[0]["rotation"]) == 3
    # in-plane rotation of thick slices never mixes slices: each output slice depends only on its input slice
    image, label = _batch((1, 1, 6, 16, 16))
    image[0, 0, 3] = 1000.0
    out_image, _ = aug(image, label)
    assert out_image[0, 0, [0, 1, 2, 4, 5]].max() < 1000.0


def test_scale_zooms_in_about_the_centre():
    disk = _disk_label((41, 41), (1.0, 1.0), 8.0)
    aug = BatchAugmenter(AugSpec(**OFF), dims=2)
    params = aug.draw(1)
    params[0]["scale"] = 2.0
    _, out = aug.apply(disk[None, None].float(), disk[None], params)
    ratio = out.sum().item() / disk.sum().item()
    assert 3.6 < ratio < 4.4


@pytest.mark.parametrize("dims,shape", [(2, (4, 2, 30, 26)), (3, (2, 1, 12, 16, 14))])
def test_label_values_preserved_under_spatial_transforms(dims, shape):
    image, label = _batch(shape, n_labels=1)
    label = label + torch.tensor([0, 3, 7, 250])[torch.randint(0, 4, label.shape, generator=torch.Generator())]
    spec = AugSpec(**{**OFF, "rotate_p": 1.0, "scale_p": 1.0, "elastic_p": 1.0, "rotate_deg": 40.0})
    spacing = (3.0, 1.0, 1.0)[:dims] if dims == 3 else (1.0, 1.0)
    aug = BatchAugmenter(spec, dims=dims, spacing_zyx=spacing, seed=4)
    _, out_label = aug(image, label)
    assert out_label.dtype == torch.int64
    assert set(out_label.unique().tolist()) <= set(label.unique().tolist()) | {0}
    assert not torch.equal(out_label, label)


def test_elastic_is_smooth_and_bounded():
    aug = BatchAugmenter(AugSpec(**{**OFF, "elastic_p": 1.0}), dims=2, spacing_zyx=(1.0, 1.0), seed=1)
    p = aug.draw(1)[0]
    disp = aug._elastic_displacement(p["elastic"], (64, 64))  # normalised units, x first
    disp_mm = disp * torch.tensor([31.5, 31.5])
    assert disp_mm.abs().max() < 5 * aug.spec.elastic_magnitude_mm
    # neighbouring voxels move almost together (coarse grid every 10 mm)
    assert (disp_mm[1:] - disp_mm[:-1]).abs().max() < aug.spec.elastic_magnitude_mm


def test_no_spatial_transform_skips_grid_sample(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("grid_sample must not run")

    monkeypatch.setattr(batch_module.F, "grid_sample", boom)
    image, label = _batch((4, 1, 16, 16))
    BatchAugmenter(AugSpec(**{**INTENSITY_ONLY, "flip": 1.0}), dims=2)(image, label)


def test_only_transformed_samples_are_resampled():
    image, label = _batch((3, 1, 16, 16))
    aug = BatchAugmenter(AugSpec(**OFF), dims=2)
    params = aug.draw(3)
    params[1]["scale"] = 1.2
    out_image, out_label = aug.apply(image, label, params)
    assert torch.equal(out_image[0], image[0]) and torch.equal(out_image[2], image[2])
    assert not torch.equal(out_image[1], image[1])


# ---------------------------------------------------------------- intensity
@pytest.mark.parametrize("dims,shape", [(2, (4, 3, 32, 28)), (3, (2, 2, 10, 16, 12))])
def test_intensity_ops_leave_labels_alone(dims, shape):
    image, label = _batch(shape)
    aug = BatchAugmenter(AugSpec(**INTENSITY_ONLY), dims=dims, seed=11)
    out_image, out_label = aug(image, label)
    assert torch.equal(out_label, label)
    assert not torch.equal(out_image, image)
    assert out_image.dtype == torch.float32 and torch.isfinite(out_image).all()


def test_intensity_operations_semantics():
    image, label = _batch((1, 2, 24, 24))
    aug = BatchAugmenter(AugSpec(**OFF), dims=2)
    base = aug.draw(1)[0]

    def run(**change):
        return aug.apply(image, label, [{**base, **change}])[0]

    lo, hi = image.amin(dim=(2, 3)), image.amax(dim=(2, 3))
    for invert in (False, True):
        out = run(gamma={"gamma": 1.4, "invert": invert})
        torch.testing.assert_close(out.amin(dim=(2, 3)), lo)
        torch.testing.assert_close(out.amax(dim=(2, 3)), hi)
    torch.testing.assert_close(run(gamma={"gamma": 1.0, "invert": False}), image, atol=1e-4, rtol=0)
    torch.testing.assert_close(run(brightness=1.2), image * 1.2)
    out = run(contrast=1.25)
    assert (out.amin(dim=(2, 3)) >= lo).all() and (out.amax(dim=(2, 3)) <= hi).all()
    out = run(noise={"sigma_rel": 0.1, "seed": 5})
    ratio = (out - image).std() / image.std()
    assert 0.08 < ratio < 0.12
    const = torch.full((1, 1, 20, 20), 3.5)
    lab = torch.zeros((1, 20, 20), dtype=torch.int64)
    torch.testing.assert_close(aug.apply(const, lab, [{**base, "blur_sigma_vox": 0.8}])[0], const)
    torch.testing.assert_close(aug.apply(const, lab, [{**base, "low_res_zoom": 1.7}])[0], const)
    blurred = run(blur_sigma_vox=1.0)
    assert blurred.std() < image.std()
    field = run(bias_field={"order": 3, "coefficients": [0.0] * 10})
    torch.testing.assert_close(field, image)
    # exponents are listed y-power first: (0, 0) constant, (0, 1) = x, ..., so exp(0.2 + 0.3 x) here
    coeffs = [0.2, 0.3] + [0.0] * 8
    x = torch.linspace(-1, 1, 24)
    expected = image * torch.exp(0.2 + 0.3 * x)[None, None, None, :]
    torch.testing.assert_close(run(bias_field={"order": 3, "coefficients": coeffs}), expected)


@pytest.mark.parametrize("dims,shape", [(2, (8, 3, 40, 36)), (3, (2, 2, 12, 20, 16))])
def test_shapes_dtypes_no_nan_all_on(dims, shape):
    image, label = _batch(shape)
    image_before, label_before = image.clone(), label.clone()
    spacing = (2.5, 0.9, 0.9) if dims == 3 else (0.7, 0.7)
    aug = BatchAugmenter(AugSpec(**ALL_ON), dims=dims, spacing_zyx=spacing, seed=0)
    for _ in range(3):
        out_image, out_label = aug(image, label)
        assert out_image.shape == image.shape and out_label.shape == label.shape
        assert out_image.dtype == torch.float32 and out_label.dtype == torch.int64
        assert torch.isfinite(out_image).all()
        assert set(out_label.unique().tolist()) <= set(label.unique().tolist())
    assert torch.equal(image, image_before) and torch.equal(label, label_before)


def test_default_spec_runs_on_constant_and_empty_batches():
    aug = BatchAugmenter(AugSpec(), dims=3, seed=0)
    image = torch.zeros((2, 1, 6, 8, 8))
    label = torch.zeros((2, 6, 8, 8), dtype=torch.int64)
    for _ in range(5):
        out, _ = aug(image, label)
        assert torch.isfinite(out).all()
    out_image, out_label = aug(image[:0], label[:0])
    assert out_image.shape[0] == 0 and aug.last_params == []


# ---------------------------------------------------------------- errors
def test_errors_name_the_parameter():
    aug = BatchAugmenter(AugSpec(), dims=2)
    image, label = _batch((2, 1, 8, 8))
    with pytest.raises(InvalidParameterError, match="image"):
        aug(image.double(), label)
    with pytest.raises(InvalidParameterError, match="label"):
        aug(image, label.int())
    with pytest.raises(InvalidParameterError, match="label"):
        aug(image, label[:, :4])
    with pytest.raises(InvalidParameterError, match="image"):
        aug(image[:, :, None], label)
    with pytest.raises(InvalidParameterError, match="params"):
        aug.apply(image, label, aug.draw(3))
    with pytest.raises(InvalidParameterError, match="dims"):
        BatchAugmenter(AugSpec(), dims=4)
    with pytest.raises(InvalidParameterError, match="spacing_zyx"):
        BatchAugmenter(AugSpec(), dims=3, spacing_zyx=(1.0, 1.0))
    with pytest.raises(InvalidParameterError, match="AugSpec.noise_p"):
        AugSpec(noise_p=1.5)
    with pytest.raises(InvalidParameterError, match="AugSpec.scale"):
        AugSpec(scale=(1.2, 0.8))


def test_spec_from_plan_like_dataclass_and_json():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class PlanAug:  # a plan's spec may hold only some of the fields
        flip: float = 1.0
        rotate_p: float = 0.0
        scale: tuple[float, float] = (0.9, 1.1)

    aug = BatchAugmenter(PlanAug(), dims=2)
    assert aug.spec.flip == 1.0 and aug.spec.scale == (0.9, 1.1) and aug.spec.noise_p == AugSpec().noise_p
    spec = AugSpec.from_dict(json.loads(json.dumps(AugSpec(scale=(0.8, 1.3)).to_dict())))
    assert spec == AugSpec(scale=(0.8, 1.3))
    with pytest.raises(InvalidParameterError, match="unknown"):
        AugSpec.from_dict({"flip": 0.5, "mixup_p": 0.1})
    with pytest.raises(InvalidParameterError, match="spec"):
        BatchAugmenter({"flip": 0.5}, dims=2)


def test_intensity_operations_leave_extra_channels_alone():
    """Cascade channels (after the image channels) follow the geometry but keep their values."""
    spec = AugSpec(rotate_p=0.0, scale_p=0.0, elastic_p=0.0, flip=1.0, noise_p=1.0, blur_p=1.0, gamma_p=1.0,
                   brightness_contrast_p=1.0, low_res_p=1.0, bias_field_p=1.0)
    image = torch.rand(2, 2, 12, 16)
    image[:, 1] = (image[:, 1] > 0.5).float()  # a 0/1 mask channel
    label = torch.zeros(2, 12, 16, dtype=torch.int64)
    aug = BatchAugmenter(spec, dims=2, seed=3, intensity_channels=1)
    out, _ = aug(image, label)
    for i, p in enumerate(aug.last_params):
        axes = [a + 1 for a in p["flip_axes"]]
        mask = torch.flip(image[i, 1:], axes) if axes else image[i, 1:]
        assert torch.equal(out[i, 1:], mask)
    assert not torch.allclose(out[:, :1], image[:, :1])
    with pytest.raises(InvalidParameterError):
        BatchAugmenter(spec, dims=2, intensity_channels=-1)
