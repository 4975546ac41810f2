"""Similarity losses and field regularisers for learned registration (2D and 3D, plain tensors).

Images are ``(B, C, *spatial)``; fields are ``(B, D, *spatial)`` in voxels, components in spatial-axis order (see
:mod:`medimg.models.spatial`). Every loss returns a scalar to MINIMISE (similarities are negated) and is
averaged over the batch.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from medimg.core.errors import InvalidParameterError

__all__ = ["local_ncc_loss", "mutual_information_loss", "mse_loss", "diffusion_regulariser", "bending_energy",
           "soft_dice_loss", "registration_loss"]


def _check_pair(fixed: torch.Tensor, warped: torch.Tensor) -> int:
    if fixed.ndim not in (4, 5):
        raise InvalidParameterError("images must be (B, C, Y, X) or (B, C, Z, Y, X)", parameter="fixed",
                                    found=tuple(fixed.shape), fix="add the batch/channel axes (x[None, None])")
    if fixed.shape != warped.shape:
        raise InvalidParameterError("fixed and warped shapes differ", parameter="warped",
                                    expected=tuple(fixed.shape), found=tuple(warped.shape))
    return fixed.ndim - 2


def _box_sum(x: torch.Tensor, window: int, d: int) -> torch.Tensor:
    """Sum over a ``window``^d box centred on each voxel, zeros outside (separable, per channel)."""
    conv = F.conv2d if d == 2 else F.conv3d
    c = x.shape[1]
    pad = window // 2
    for axis in range(d):
        shape = [1] * d
        shape[axis] = window
        padding = [0] * d
        padding[axis] = pad
        kernel = torch.ones(c, 1, *shape, dtype=x.dtype, device=x.device)
        x = conv(x, kernel, padding=tuple(padding), groups=c)
    return x


def local_ncc_loss(fixed: torch.Tensor, warped: torch.Tensor, *, window: int = 9, eps: float = 1e-5) -> torch.Tensor:
    """Negative local (squared) normalised cross-correlation over a box window.

    ``cc = cov^2 / (var_f * var_w)`` over a ``window``^d box around each voxel (zero padded), variances clamped to
    ``>= eps``; the loss is ``-mean(cc)``, in [-1, 0]. This is VoxelMorph's NCC and equals MONAI's
    ``LocalNormalizedCrossCorrelationLoss(kernel_type="rectangular", kernel_size=window)``.

    Args:
        fixed, warped: ``(B, C, *spatial)`` images.
        window: odd box size in voxels.
        eps: floor of the local variances (sums over the window).

    >>> x = torch.rand(1, 1, 8, 8)
    >>> round(float(local_ncc_loss(x, x, window=3)), 4)
    -1.0
    """
    d = _check_pair(fixed, warped)
    if not isinstance(window, int) or window < 1 or window % 2 == 0:
        raise InvalidParameterError("window must be an odd positive integer", parameter="window",
                                    expected="1, 3, 5, ...", found=window)
    n = float(window ** d)
    f_sum, w_sum = _box_sum(fixed, window, d), _box_sum(warped, window, d)
    ff_sum, ww_sum = _box_sum(fixed * fixed, window, d), _box_sum(warped * warped, window, d)
    fw_sum = _box_sum(fixed * warped, window, d)
    cross = fw_sum - f_sum * w_sum / n
    f_var = torch.clamp(ff_sum - f_sum * f_sum / n, min=eps)
    w_var = torch.clamp(ww_sum - w_sum * w_sum / n, min=eps)
    return -(cross * cross / (f_var * w_var)).mean()


def mutual_information_loss(fixed: torch.Tensor, warped: torch.Tensor, *, bins: int = 32,
                            sigma_ratio: float = 0.5, eps: float = 1e-7) -> torch.Tensor:
    """Negative global mutual information with Gaussian Parzen windows (differentiable; for cross-modal pairs).

    Intensities are expected in [0, 1] (normalise first, e.g. min-max or percentile scaling): ``bins`` centres are
    spread evenly over [0, 1] with Gaussian kernels of standard deviation ``sigma_ratio`` x the bin spacing. Each
    voxel's kernel weights are normalised over the bins; the joint histogram is their outer product averaged over
    voxels. ``MI = sum p_fw log(p_fw / (p_f p_w))`` per batch item (all channels pooled), averaged over the batch.
    Same definition as MONAI's ``GlobalMutualInformationLoss(kernel_type="gaussian")`` (which uses its own
    smoothing constants).

    Args:
        fixed, warped: ``(B, C, *spatial)`` images in [0, 1].
        bins: number of histogram bins, >= 2.
        sigma_ratio: kernel width in units of the bin spacing, > 0.
        eps: guard inside the logarithm.

    Returns:
        ``-MI`` (nats), <= 0; lower means more shared information.
    """
    _check_pair(fixed, warped)
    if bins < 2 or sigma_ratio <= 0:
        raise InvalidParameterError("invalid histogram parameters", parameter="bins/sigma_ratio",
                                    expected="bins >= 2 and sigma_ratio > 0", found=(bins, sigma_ratio))
    centres = torch.linspace(0.0, 1.0, bins, dtype=fixed.dtype, device=fixed.device)
    sigma = sigma_ratio / (bins - 1)
    b = fixed.shape[0]

    def weights(x: torch.Tensor) -> torch.Tensor:
        w = torch.exp(-((x.reshape(b, -1, 1) - centres) ** 2) / (2.0 * sigma * sigma))
        return w / w.sum(dim=-1, keepdim=True).clamp_min(eps)

    wf, ww = weights(fixed), weights(warped)                                   # (B, N, bins)
    p_joint = torch.bmm(wf.transpose(1, 2), ww) / wf.shape[1]                  # (B, bins, bins)
    p_f, p_w = wf.mean(dim=1), ww.mean(dim=1)
    p_outer = p_f[:, :, None] * p_w[:, None, :]
    mi = (p_joint * torch.log((p_joint + eps) / (p_outer + eps))).sum(dim=(1, 2))
    return -mi.mean()


def mse_loss(fixed: torch.Tensor, warped: torch.Tensor) -> torch.Tensor:
    """Mean squared intensity difference (same-modality pairs)."""
    _check_pair(fixed, warped)
    return ((fixed - warped) ** 2).mean()


def _field_dims(u: torch.Tensor, spacing_zyx: Sequence[float] | None) -> tuple[int, list[float]]:
    if u.ndim not in (4, 5):
        raise InvalidParameterError("wrong field shape", parameter="u", expected="(B, D, Y, X) or (B, D, Z, Y, X)",
                                    found=tuple(u.shape))
    d = u.ndim - 2
    if spacing_zyx is None:
        return d, [1.0] * d
    sp = [float(s) for s in spacing_zyx][-d:]
    if len(sp) != d or any(s <= 0 for s in sp):
        raise InvalidParameterError("invalid spacing", parameter="spacing_zyx", expected=f"{d} positive mm values",
                                    found=tuple(spacing_zyx), fix="pass Geometry.spacing_zyx (array order)")
    return d, sp


def diffusion_regulariser(u: torch.Tensor, *, spacing_zyx: Sequence[float] | None = None) -> torch.Tensor:
    """Diffusion (first-order) smoothness: sum over spatial axes of the mean squared forward difference.

    ``sum_i mean((u[..., k+1 along i] - u[..., k]) / h_i)^2``, averaged over batch and components; ``h_i`` is the
    spacing along axis ``i`` (None: 1, derivatives per voxel). Zero for a constant field. (VoxelMorph's ``Grad('l2')``
    averages over the axes instead of summing: it is this value / D.)

    >>> round(float(diffusion_regulariser(torch.ones(1, 2, 4, 4))), 6)
    0.0
    """
    d, sp = _field_dims(u, spacing_zyx)
    total = u.new_zeros(())
    for i in range(d):
        total = total + (torch.diff(u, dim=2 + i) / sp[i]).pow(2).mean()
    return total


def _second_derivative(u: torch.Tensor, i: int, j: int) -> torch.Tensor:
    """Compact central second derivative along spatial axes i, j (per voxel), on the interior [1:-1] of every axis."""
    d = u.ndim - 2

    def sl(over: dict[int, slice]) -> tuple[slice, ...]:
        return (slice(None), slice(None)) + tuple(over.get(a, slice(1, -1)) for a in range(d))

    plus, minus = slice(2, None), slice(None, -2)
    if i == j:
        return u[sl({i: plus})] - 2 * u[sl({})] + u[sl({i: minus})]
    return (u[sl({i: plus, j: plus})] - u[sl({i: plus, j: minus})] - u[sl({i: minus, j: plus})]
            + u[sl({i: minus, j: minus})]) / 4.0


def bending_energy(u: torch.Tensor, *, spacing_zyx: Sequence[float] | None = None) -> torch.Tensor:
    """Bending energy: mean over interior voxels of ``sum_ij (d2 u / dx_i dx_j)^2`` (mixed terms counted twice).

    Pure second derivatives use the ``[1, -2, 1]`` stencil, mixed ones the 4-point central stencil, on voxels at least
    one voxel from every border; divided by ``h_i h_j`` when ``spacing_zyx`` is given. Averaged over batch,
    components and voxels. With ``spacing_zyx=None`` this equals MONAI's ``BendingEnergyLoss()`` (normalize=False).
    Every spatial size must be > 2.

    >>> u = torch.zeros(1, 2, 5, 5); u[:, 1] = torch.arange(5.0)   # affine field: no bending
    >>> round(float(bending_energy(u)), 6)
    0.0
    """
    d, sp = _field_dims(u, spacing_zyx)
    if any(s <= 2 for s in u.shape[2:]):
        raise InvalidParameterError("field too small for second derivatives", parameter="u",
                                    expected="every spatial size > 2", found=tuple(u.shape[2:]))
    energy = u.new_zeros(())
    for i in range(d):
        energy = energy + (_second_derivative(u, i, i) / (sp[i] * sp[i])).pow(2)
        for j in range(i + 1, d):
            energy = energy + 2 * (_second_derivative(u, i, j) / (sp[i] * sp[j])).pow(2)
    return energy.mean()


def soft_dice_loss(fixed_onehot: torch.Tensor, warped_onehot: torch.Tensor, *, eps: float = 1e-5,
                   include_background: bool = False) -> torch.Tensor:
    """1 - mean soft Dice over classes and batch, for one-hot (or probability) label maps ``(B, K, *spatial)``.

    Channel 0 is treated as background and left out unless ``include_background`` (or K == 1).
    """
    _check_pair(fixed_onehot, warped_onehot)
    if not include_background and fixed_onehot.shape[1] > 1:
        fixed_onehot, warped_onehot = fixed_onehot[:, 1:], warped_onehot[:, 1:]
    axes = tuple(range(2, fixed_onehot.ndim))
    inter = (fixed_onehot * warped_onehot).sum(dim=axes)
    denom = fixed_onehot.sum(dim=axes) + warped_onehot.sum(dim=axes)
    return 1.0 - ((2.0 * inter + eps) / (denom + eps)).mean()


def registration_loss(plan: Any) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``loss(raw field, target)`` of a :class:`~medimg.tasks.register.plan.RegisterPlan` for the shared loop
    (target as built by the trainer's pair iterator: ``cat(fixed, moving, extras)``; see its text)."""
    from medimg.models.spatial import integrate_velocity, warp

    dims = plan.dims
    k = max(plan.n_labels - 1, 0)

    def similarity(fixed: torch.Tensor, warped: torch.Tensor) -> torch.Tensor:
        if plan.similarity == "ncc":
            return local_ncc_loss(fixed, warped, window=plan.ncc_window)
        if plan.similarity == "mi":
            return mutual_information_loss(fixed, warped)
        return mse_loss(fixed, warped)

    def regulariser(v: torch.Tensor) -> torch.Tensor:
        return diffusion_regulariser(v) if plan.regulariser == "diffusion" else bending_energy(v)

    def loss(raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raw = raw.float()
        u = integrate_velocity(raw, plan.steps) if plan.integrate else raw
        fixed, moving = target[:, :1], target[:, 1:2]
        if plan.mode == "supervised":
            truth = target[:, 2:2 + dims]
            return (u - truth).pow(2).sum(1).mean() + plan.reg_weight * 0.01 * regulariser(raw)
        total = similarity(fixed, warp(moving, u)) + plan.reg_weight * regulariser(raw)
        if plan.dice_weight > 0 and k > 0 and target.shape[1] >= 2 + 2 * k:
            fixed_oh, moving_oh = target[:, 2:2 + k], target[:, 2 + k:2 + 2 * k]
            total = total + plan.dice_weight * soft_dice_loss(fixed_oh, warp(moving_oh, u),
                                                              include_background=True)
        return total

    return loss
