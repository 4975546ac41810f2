"""Learned-registration building blocks against references: torch.roll, SimpleITK resampling, MONAI losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medimg.core.errors import InvalidParameterError
from medimg.metrics.registration import jacobian_determinant
from medimg.models.registration_unet import RegistrationUNet
from medimg.models.spatial import (
    SpatialTransformer,
    compose,
    from_physical,
    integrate_velocity,
    to_metric_layout,
    to_physical,
    warp,
)
from medimg.tasks.register.losses import (
    bending_energy,
    diffusion_regulariser,
    local_ncc_loss,
    mse_loss,
    mutual_information_loss,
    soft_dice_loss,
)


def _smooth(shape, *, seed=0, dtype=torch.float64, passes=2):
    """Random tensor (B, C, *spatial) smoothed by box filtering: continuous, non-trivial content."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=dtype)
    pool = F.avg_pool2d if len(shape) == 4 else F.avg_pool3d
    for _ in range(passes):
        x = pool(x, 3, stride=1, padding=1, count_include_pad=False)
    return x


# --- transform -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3, 6, 7), (1, 2, 5, 6, 7)])
def test_zero_field_is_identity(shape):
    img = _smooth(shape)
    d = len(shape) - 2
    u = torch.zeros(shape[0], d, *shape[2:], dtype=img.dtype)
    for padding in ("border", "zeros"):
        assert torch.allclose(SpatialTransformer(padding=padding)(img, u), img, atol=1e-12)
    assert torch.equal(SpatialTransformer(mode="nearest")(img, u), img)


def test_integer_shift_matches_slicing_3d():
    img = _smooth((1, 1, 6, 7, 8))
    shift = (1, -2, 3)                                           # (z, y, x) voxels
    u = torch.zeros(1, 3, 6, 7, 8, dtype=img.dtype)
    for axis, s in enumerate(shift):
        u[:, axis] = s
    out = warp(img, u)
    expected = torch.roll(img, shifts=tuple(-s for s in shift), dims=(2, 3, 4))   # out(x) = img(x + s)
    interior = (slice(None), slice(None), slice(0, 5), slice(2, 7), slice(0, 5))
    assert torch.allclose(out[interior], expected[interior], atol=1e-12)
    assert torch.equal(warp(img, u, mode="nearest")[interior], expected[interior])


def test_integer_shift_2d_and_zero_padding():
    img = _smooth((1, 1, 5, 6)) + 1.0
    u = torch.zeros(1, 2, 5, 6, dtype=img.dtype)
    u[:, 1] = 2.0                                                # +2 voxels along x
    out = warp(img, u, padding="zeros")
    assert torch.allclose(out[..., :-2], img[..., 2:], atol=1e-12)
    assert torch.all(out[..., -2:].abs() < 1e-12)               # sampled outside: zero
    assert torch.allclose(warp(img, u)[..., -2:], img[..., -1:].expand(-1, -1, -1, 2), atol=1e-12)  # border


def test_subvoxel_shift_matches_simpleitk():
    sitk = pytest.importorskip("SimpleITK")
    img = _smooth((1, 1, 8, 9, 10), passes=1)
    t_zyx = (0.3, -0.45, 0.7)
    u = torch.zeros(1, 3, 8, 9, 10, dtype=img.dtype)
    for axis, t in enumerate(t_zyx):
        u[:, axis] = t
    ours = warp(img, u)[0, 0].numpy()

    ref_img = sitk.GetImageFromArray(img[0, 0].numpy())          # array (z, y, x) -> image index (x, y, z)
    transform = sitk.TranslationTransform(3, tuple(reversed(t_zyx)))   # offset (tx, ty, tz): out(x) = in(x + t)
    ref = sitk.GetArrayFromImage(sitk.Resample(ref_img, ref_img, transform, sitk.sitkLinear, 0.0))
    interior = (slice(1, -1), slice(1, -1), slice(1, -1))
    np.testing.assert_allclose(ours[interior], ref[interior], rtol=1e-4, atol=1e-6)


def test_compose_chains_warps():
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    img = torch.sin(0.3 * yy + 0.2 * xx)[None, None].double()
    k = 2 * math.pi / 16
    u1 = torch.stack([1.5 * torch.sin(k * xx), 1.5 * torch.cos(k * yy)])[None].double()
    u2 = torch.stack([torch.cos(k * xx), -torch.sin(k * yy)])[None].double()
    two = warp(warp(img, u1), u2)
    one = warp(img, compose(u1, u2))
    inner = (..., slice(3, -3), slice(3, -3))
    err = (two - one)[inner].abs().max()
    assert err < 0.05 < 0.5 < (two - img)[inner].abs().max()     # interpolation error only, far below the motion
    assert err < 0.2 * (warp(img, u2 + u1) - two)[inner].abs().max()   # and far below the naive sum
    c1 = torch.full((1, 2, 6, 6), 0.5, dtype=torch.float64)
    assert torch.allclose(compose(c1, 2 * c1), 3 * c1)          # constants add


def test_integrate_constant_velocity_is_same_displacement():
    for shape in [(2, 2, 6, 7), (1, 3, 5, 6, 4)]:
        v = torch.zeros(shape, dtype=torch.float64)
        for axis in range(shape[1]):
            v[:, axis] = 0.7 * (axis + 1) - 1.0
        assert torch.allclose(integrate_velocity(v, steps=7), v, atol=1e-12)
    assert torch.equal(integrate_velocity(v, steps=0), v)


def test_integrated_smooth_velocity_is_diffeomorphic():
    n = 16
    yy, xx = torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64),
                            indexing="ij")
    k, amp = 2 * math.pi / n, 3.0
    v = torch.stack([amp * torch.sin(k * xx), amp * torch.cos(k * yy)])[None]      # (1, 2, Y, X): (vy, vx)
    det_v = jacobian_determinant(to_metric_layout(v[0]).numpy())
    assert det_v.min() < 0                                     # used directly as a displacement, it folds
    u = integrate_velocity(v, steps=7)
    det_u = jacobian_determinant(to_metric_layout(u[0]).numpy())
    assert det_u.min() > 0
    # 3D, anisotropic spacing through to_metric_layout
    v3 = 1.5 * (_smooth((1, 3, 8, 8, 8), seed=3, passes=3) - 0.5) * 4
    u3 = integrate_velocity(v3)
    det3 = jacobian_determinant(to_metric_layout(u3[0], (2.0, 1.0, 0.5)).numpy(), spacing_mm=(0.5, 1.0, 2.0))
    assert det3.min() > 0


def test_physical_round_trip_and_layout():
    u = _smooth((1, 3, 4, 5, 6))
    mm = to_physical(u, (2.5, 1.0, 0.5))
    assert torch.allclose(mm[:, 0], 2.5 * u[:, 0]) and torch.allclose(mm[:, 2], 0.5 * u[:, 2])
    assert torch.allclose(from_physical(mm, (2.5, 1.0, 0.5)), u)
    assert torch.allclose(to_metric_layout(u[0])[0], u[0, 2])      # x component first
    with pytest.raises(InvalidParameterError, match="spacing"):
        to_physical(u, (1.0, -1.0, 1.0))


def test_warp_rejects_bad_input():
    with pytest.raises(InvalidParameterError, match="u"):
        warp(torch.zeros(1, 1, 4, 4), torch.zeros(1, 3, 4, 4))
    with pytest.raises(InvalidParameterError, match="mode"):
        SpatialTransformer(mode="cubic")
    with pytest.raises(InvalidParameterError, match="image"):
        warp(torch.zeros(1, 1, 4, 5), torch.zeros(1, 2, 4, 4))


# --- losses ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,window", [((2, 1, 12, 13, 11), 9), ((2, 2, 15, 14), 5)])
def test_local_ncc_matches_monai(shape, window):
    monai_losses = pytest.importorskip("monai.losses")
    a = _smooth(shape, seed=4, dtype=torch.float32)
    b = 0.6 * a + 0.4 * _smooth(shape, seed=5, dtype=torch.float32)
    ref = monai_losses.LocalNormalizedCrossCorrelationLoss(spatial_dims=len(shape) - 2, kernel_size=window,
                                                           kernel_type="rectangular")(b, a)
    ours = local_ncc_loss(a, b, window=window)
    assert float(ref) < 0                                       # MONAI returns the negative (squared) NCC too
    assert abs(float(ours) - float(ref)) < 1e-4
    assert float(local_ncc_loss(a, a, window=window)) < float(ours)


def test_bending_energy_matches_monai():
    monai_losses = pytest.importorskip("monai.losses")
    for shape, seed in [((2, 3, 6, 7, 8), 6), ((1, 2, 9, 8), 7)]:
        u = _smooth(shape, seed=seed, passes=1)
        ref = monai_losses.BendingEnergyLoss()(u)
        assert torch.allclose(bending_energy(u), ref, rtol=1e-10, atol=0)   # same stencils and normalisation
    u = _smooth((1, 3, 6, 6, 6), seed=8)
    assert torch.allclose(bending_energy(u, spacing_zyx=(2.0, 2.0, 2.0)), bending_energy(u) / 16)
    affine = torch.zeros(1, 3, 6, 6, 6, dtype=torch.float64)
    affine[:, 0] = torch.arange(6.0, dtype=torch.float64)[None, :, None] * 0.3
    assert float(bending_energy(affine)) < 1e-20


def test_diffusion_regulariser():
    assert float(diffusion_regulariser(torch.full((2, 3, 4, 5, 6), 1.7))) == 0.0
    u = torch.zeros(1, 2, 4, 5)
    u[:, 1] = torch.arange(5.0)                                  # ux grows 1 voxel per voxel along x
    assert float(diffusion_regulariser(u)) == pytest.approx(0.5)  # mean over the 2 components
    assert float(diffusion_regulariser(u, spacing_zyx=(1.0, 2.0))) == pytest.approx(0.125)


def test_mutual_information():
    monai_losses = pytest.importorskip("monai.losses")
    a = _smooth((2, 1, 10, 10, 10), seed=9, dtype=torch.float32)
    a = (a - a.min()) / (a.max() - a.min())
    noise = torch.rand(a.shape, generator=torch.Generator().manual_seed(10))
    same, vs_noise = mutual_information_loss(a, a), mutual_information_loss(a, noise)
    assert float(same) < float(vs_noise) < 0
    inverted = mutual_information_loss(a, 1.0 - a)               # cross-modal: an intensity remap keeps MI
    assert float(inverted) == pytest.approx(float(same), rel=0.05)
    ref = monai_losses.GlobalMutualInformationLoss(num_bins=32, sigma_ratio=0.5)(noise, a)
    assert float(vs_noise) == pytest.approx(float(ref), abs=1e-3)
    moving = noise.clone().requires_grad_(True)
    mutual_information_loss(a, moving).backward()
    assert moving.grad is not None and torch.isfinite(moving.grad).all() and moving.grad.abs().sum() > 0


def test_mse_and_soft_dice():
    a = _smooth((1, 1, 5, 5))
    assert float(mse_loss(a, a)) == 0.0
    labels = torch.zeros(1, 3, 6, 6)
    labels[:, 0] = 1
    labels[:, 0, :3, :3] = 0
    labels[:, 1, :3, :3] = 1
    assert float(soft_dice_loss(labels, labels)) == pytest.approx(0.0, abs=1e-6)   # class 2 empty in both
    shifted = torch.roll(labels, 3, dims=3)
    assert float(soft_dice_loss(labels, shifted)) > 0.4


# --- network ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dims,integrate", [(2, False), (2, True), (3, False), (3, True)])
def test_unet_shapes_and_identity_start(dims, integrate):
    torch.manual_seed(0)
    net = RegistrationUNet(dims, features=(8, 16, 16, 16), integrate=integrate, steps=4)
    shape = (2, 1) + (16,) * dims if dims == 2 else (1, 1, 8, 8, 16)
    fixed, moving = torch.rand(shape), torch.rand(shape)
    warped, u = net(fixed, moving)
    assert warped.shape == moving.shape
    assert u.shape == (shape[0], dims) + shape[2:]
    assert float(u.detach().abs().max()) < 1e-2
    assert torch.allclose(warped.detach(), moving, atol=1e-2)
    assert (net.last_velocity is not None) == integrate
    with pytest.raises(InvalidParameterError, match="multiples of 8"):
        net(torch.rand(shape[:2] + (12,) * dims), torch.rand(shape[:2] + (12,) * dims))


def test_unet_one_step_lowers_ncc():
    torch.manual_seed(0)
    fixed = _smooth((1, 1, 16, 16), seed=11, dtype=torch.float32, passes=3)
    moving = torch.roll(fixed, shifts=1, dims=3)                 # known shift of one voxel along x
    net = RegistrationUNet(2, features=(8, 16, 16, 16))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(2):
        opt.zero_grad()
        warped, u = net(fixed, moving)
        loss = local_ncc_loss(fixed, warped, window=5) + 0.01 * diffusion_regulariser(u)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[1] < losses[0]
