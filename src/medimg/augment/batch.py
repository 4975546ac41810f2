"""Training-time augmentation of batches of plain tensors on the CPU, in 2D and 3D.

:class:`BatchAugmenter` follows the package's habit for random operations: :meth:`BatchAugmenter.draw` only draws
the parameters of every sample (plain, JSON-serialisable dictionaries, recorded in ``last_params``) and
:meth:`BatchAugmenter.apply` is the deterministic twin that turns those parameters into output. Calling the
augmenter is ``apply(draw(batch_size))``. Random fields (noise, elastic displacement) are not stored voxel by voxel;
their parameters carry an integer seed from which ``apply`` regenerates them exactly.

Each operation family (flip, rotation, scaling, elastic, noise, blur, gamma, brightness, contrast, low resolution,
bias field) draws from its own generator, all spawned from the one ``seed``, so switching one operation on or off
does not change what the others draw.

Spatial conventions: spatial axes are ``(z, y, x)`` in 3D and ``(y, x)`` in 2D, ``spacing_zyx`` follows that
order, in mm. Rotation, scaling and elastic displacement are combined into one sampling grid per sample and the
image is resampled once (bilinear, zero padding), the label once (nearest, padding with 0). A rotation by
``+90`` degrees in the plane of axes ``(a, b)`` equals ``torch.rot90(x, k=1, dims=(a, b))``; a scale factor
``s > 1`` enlarges the content (zoom in).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, is_dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medimg.core.errors import InvalidParameterError

__all__ = ["AugSpec", "BatchAugmenter"]

#: Ratio of largest to smallest spacing above which 3D data is treated as anisotropic: rotation happens in-plane
#: only (around the axis with the largest spacing) and simulated low resolution leaves that axis alone.
ANISOTROPY_THRESHOLD = 3.0

_GAMMA_RANGE = (0.7, 1.5)
_GAMMA_INVERT_P = 0.15
_NOISE_SIGMA_REL = (0.0, 0.1)
_BLUR_SIGMA_VOX = (0.5, 1.0)
_BRIGHTNESS_RANGE = (0.75, 1.25)
_CONTRAST_RANGE = (0.75, 1.25)
_LOW_RES_ZOOM = (1.0, 2.0)
_BIAS_ORDER = 3
_BIAS_COEFF = 0.5
_SEED_MAX = 2**62

_STREAMS = (
    "flip",
    "rotate",
    "scale",
    "elastic",
    "noise",
    "blur",
    "gamma",
    "brightness",
    "contrast",
    "low_res",
    "bias_field",
)


@dataclass(frozen=True)
class AugSpec:
    """Probabilities and ranges of the batch augmentations (field names shared with ``Plan``).

    Args:
        flip: probability of flipping, drawn independently for each spatial axis.
        rotate_deg: rotation angles are drawn from U(-rotate_deg, rotate_deg), in degrees, per rotation axis.
        rotate_p: probability that a sample is rotated.
        scale: (low, high) range of the isotropic zoom factor; > 1 enlarges the content.
        scale_p: probability that a sample is scaled.
        elastic_p: probability of a smooth random displacement added to the sampling grid.
        elastic_sigma_mm: spacing of the coarse random grid the displacement is upsampled from, in mm.
        elastic_magnitude_mm: standard deviation of the displacement at the coarse grid nodes, in mm.
        noise_p: probability of additive gaussian noise, sigma ~ U(0, 0.1) x channel std.
        blur_p: probability of a gaussian blur, sigma ~ U(0.5, 1.0) voxel.
        gamma_p: probability of a gamma change (gamma in 0.7-1.5, on the min-max rescaled channel; the inverted
            variant with probability 0.15); the intensity range is restored.
        brightness_contrast_p: probability of a multiplicative brightness change (0.75-1.25) and, drawn
            independently with the same probability, of a contrast change (0.75-1.25 around the channel mean,
            clipped to the channel's original range).
        low_res_p: probability of simulated low resolution (nearest downsampling by 1-2x, linear upsampling).
        bias_field_p: probability of a smooth multiplicative MR bias field (exp of a cubic polynomial).
    """

    flip: float = 0.5
    rotate_deg: float = 15.0
    rotate_p: float = 0.2
    scale: tuple[float, float] = (0.85, 1.25)
    scale_p: float = 0.2
    elastic_p: float = 0.0
    elastic_sigma_mm: float = 10.0
    elastic_magnitude_mm: float = 3.0
    noise_p: float = 0.1
    blur_p: float = 0.2
    gamma_p: float = 0.3
    brightness_contrast_p: float = 0.15
    low_res_p: float = 0.25
    bias_field_p: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.scale, (list, tuple)):
            object.__setattr__(self, "scale", tuple(float(v) for v in self.scale))
        for name in (
            "flip",
            "rotate_p",
            "scale_p",
            "elastic_p",
            "noise_p",
            "blur_p",
            "gamma_p",
            "brightness_contrast_p",
            "low_res_p",
            "bias_field_p",
        ):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= float(value) <= 1.0):
                raise InvalidParameterError(
                    "probability out of range",
                    parameter=f"AugSpec.{name}",
                    expected="a number in [0, 1]",
                    found=value,
                    fix=f"set {name} between 0 (never) and 1 (always)",
                )
        if len(self.scale) != 2 or not (0.0 < self.scale[0] <= self.scale[1]):
            raise InvalidParameterError(
                "bad scale range",
                parameter="AugSpec.scale",
                expected="(low, high) with 0 < low <= high",
                found=tuple(self.scale),
                fix="give two positive zoom factors, e.g. (0.85, 1.25)",
            )
        for name in ("rotate_deg", "elastic_magnitude_mm"):
            if getattr(self, name) < 0:
                raise InvalidParameterError(
                    "negative value", parameter=f"AugSpec.{name}", expected=">= 0", found=getattr(self, name)
                )
        if self.elastic_sigma_mm <= 0:
            raise InvalidParameterError(
                "non-positive grid spacing",
                parameter="AugSpec.elastic_sigma_mm",
                expected="> 0",
                found=self.elastic_sigma_mm,
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> AugSpec:
        """Build from a mapping with a subset of the field names (a JSON object, ``asdict`` of a plan's spec).

        Raises:
            InvalidParameterError: a key is not a field of AugSpec.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidParameterError(
                "unknown augmentation fields",
                parameter="values",
                expected=f"a subset of {sorted(known)}",
                found=unknown,
                fix="remove or rename the unknown keys",
            )
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dictionary (``scale`` as a list)."""
        out = asdict(self)
        out["scale"] = list(self.scale)
        return out


class BatchAugmenter:
    """Random spatial and intensity augmentation of a batch of images and label maps.

    Args:
        spec: the probabilities and ranges; another frozen dataclass with (a subset of) the same field names,
            such as the ``AugSpec`` stored in a plan, is converted with :meth:`AugSpec.from_dict`.
        dims: number of spatial dimensions, 2 or 3.
        spacing_zyx: voxel spacing in mm per spatial axis, ``(z, y, x)`` in 3D, ``(y, x)`` in 2D; None means
            isotropic. Rotations and elastic displacements are rigid / smooth in mm.
        seed: the one seed every generator of this augmenter is spawned from.
        intensity_channels: intensity operations (bias field, noise, blur, brightness, contrast, low resolution,
            gamma) act on the first ``intensity_channels`` channels only; the others (e.g. classical cascade
            masks or memberships) get the spatial transforms and flips alone. None: every channel.

    Raises:
        InvalidParameterError: ``dims`` is not 2 or 3, ``intensity_channels`` is negative, or ``spacing_zyx``
            has the wrong length or a value <= 0.

    Example:
        >>> import torch
        >>> aug = BatchAugmenter(AugSpec(), dims=2, seed=0)
        >>> image, label = torch.rand(2, 1, 16, 16), torch.zeros(2, 16, 16, dtype=torch.int64)
        >>> out_image, out_label = aug(image, label)
        >>> out_image.shape, out_label.dtype, len(aug.last_params)
        (torch.Size([2, 1, 16, 16]), torch.int64, 2)
        >>> torch.equal(aug.apply(image, label, aug.last_params)[0], out_image)
        True
    """

    def __init__(
        self,
        spec: AugSpec,
        *,
        dims: int,
        spacing_zyx: tuple[float, ...] | None = None,
        seed: int = 0,
        intensity_channels: int | None = None,
    ) -> None:
        if intensity_channels is not None and (not isinstance(intensity_channels, int) or intensity_channels < 0):
            raise InvalidParameterError(
                "bad number of intensity channels", parameter="intensity_channels", expected="None or an int >= 0",
                found=intensity_channels, fix="give the number of leading image channels (None: all channels)",
            )
        if dims not in (2, 3):
            raise InvalidParameterError(
                "unsupported number of spatial dimensions", parameter="dims", expected="2 or 3", found=dims
            )
        if spacing_zyx is None:
            spacing_zyx = (1.0,) * dims
        spacing = tuple(float(s) for s in spacing_zyx)
        if len(spacing) != dims or not all(s > 0 and math.isfinite(s) for s in spacing):
            raise InvalidParameterError(
                "bad spacing",
                parameter="spacing_zyx",
                expected=f"{dims} positive values in mm",
                found=tuple(spacing_zyx),
                fix="pass the spacing of the spatial axes in (z, y, x) / (y, x) order, or None",
            )
        if not isinstance(spec, AugSpec):
            if not (is_dataclass(spec) and not isinstance(spec, type)):
                raise InvalidParameterError(
                    "bad augmentation spec",
                    parameter="spec",
                    expected="an AugSpec",
                    found=type(spec).__name__,
                    fix="pass medimg.augment.AugSpec(...) or a plan's augmentation spec",
                )
            spec = AugSpec.from_dict(asdict(spec))
        self.spec = spec
        self.dims = dims
        self.spacing_zyx = spacing
        self.seed = int(seed)
        self.intensity_channels = intensity_channels
        self.anisotropic = dims == 3 and max(spacing) / min(spacing) > ANISOTROPY_THRESHOLD
        # the axis with the largest spacing; in anisotropic mode rotation is about this axis only
        self.coarse_axis = int(np.argmax(spacing)) if self.anisotropic else None
        children = np.random.SeedSequence(self.seed).spawn(len(_STREAMS))
        self._rngs = {name: np.random.default_rng(child) for name, child in zip(_STREAMS, children)}
        self.last_params: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ drawing
    def _rotation_planes(self) -> list[tuple[int, int]]:
        """Planes (pairs of spatial axes) a rotation may act in, one angle each."""
        if self.dims == 2:
            return [(0, 1)]
        if self.anisotropic:
            others = [a for a in range(3) if a != self.coarse_axis]
            return [(others[0], others[1])]
        return [(1, 2), (0, 2), (0, 1)]  # about z, about y, about x

    def draw(self, batch_size: int) -> list[dict[str, Any]]:
        """Draw the random parameters of ``batch_size`` samples.

        Returns:
            one dictionary per sample with the keys ``flip_axes`` (list of spatial axes), ``rotation`` (list of
            ``[axis_a, axis_b, degrees]`` or None), ``scale`` (zoom factor or None), ``elastic`` (seed, sigma and
            magnitude in mm, or None), ``noise`` (relative sigma and seed, or None), ``blur_sigma_vox``,
            ``gamma`` (gamma and invert flag, or None), ``brightness``, ``contrast``, ``low_res_zoom`` and
            ``bias_field`` (polynomial coefficients, or None). Everything is a plain Python value.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
            raise InvalidParameterError(
                "bad batch size", parameter="batch_size", expected="an integer >= 0", found=batch_size
            )
        return [self._draw_one() for _ in range(batch_size)]

    def _draw_one(self) -> dict[str, Any]:
        s, r = self.spec, self._rngs
        p: dict[str, Any] = {}
        p["flip_axes"] = [a for a in range(self.dims) if r["flip"].random() < s.flip]

        p["rotation"] = None
        if r["rotate"].random() < s.rotate_p:
            p["rotation"] = [
                [a, b, float(r["rotate"].uniform(-s.rotate_deg, s.rotate_deg))] for a, b in self._rotation_planes()
            ]

        p["scale"] = float(r["scale"].uniform(*s.scale)) if r["scale"].random() < s.scale_p else None

        p["elastic"] = None
        if r["elastic"].random() < s.elastic_p:
            p["elastic"] = {
                "seed": int(r["elastic"].integers(_SEED_MAX)),
                "sigma_mm": float(s.elastic_sigma_mm),
                "magnitude_mm": float(s.elastic_magnitude_mm),
            }

        p["noise"] = None
        if r["noise"].random() < s.noise_p:
            p["noise"] = {
                "sigma_rel": float(r["noise"].uniform(*_NOISE_SIGMA_REL)),
                "seed": int(r["noise"].integers(_SEED_MAX)),
            }

        p["blur_sigma_vox"] = float(r["blur"].uniform(*_BLUR_SIGMA_VOX)) if r["blur"].random() < s.blur_p else None

        p["gamma"] = None
        if r["gamma"].random() < s.gamma_p:
            lo, hi = _GAMMA_RANGE
            # half of the draws below 1, half above, so darkening and brightening are equally likely
            gamma = r["gamma"].uniform(lo, 1.0) if r["gamma"].random() < 0.5 else r["gamma"].uniform(1.0, hi)
            p["gamma"] = {"gamma": float(gamma), "invert": bool(r["gamma"].random() < _GAMMA_INVERT_P)}

        bc = s.brightness_contrast_p
        p["brightness"] = float(r["brightness"].uniform(*_BRIGHTNESS_RANGE)) if r["brightness"].random() < bc else None
        p["contrast"] = float(r["contrast"].uniform(*_CONTRAST_RANGE)) if r["contrast"].random() < bc else None

        p["low_res_zoom"] = float(r["low_res"].uniform(*_LOW_RES_ZOOM)) if r["low_res"].random() < s.low_res_p else None

        p["bias_field"] = None
        if r["bias_field"].random() < s.bias_field_p:
            n_terms = len(_poly_exponents(self.dims, _BIAS_ORDER))
            coeffs = r["bias_field"].uniform(-_BIAS_COEFF, _BIAS_COEFF, size=n_terms)
            p["bias_field"] = {"order": _BIAS_ORDER, "coefficients": [float(c) for c in coeffs]}
        return p

    # ------------------------------------------------------------------ applying
    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw parameters for the batch, record them in ``last_params`` and apply them.

        Args:
            image: float32 tensor of shape (B, C, Z, Y, X) in 3D or (B, C, Y, X) in 2D.
            label: int64 tensor of shape (B, Z, Y, X) or (B, Y, X).

        Returns:
            the augmented (image, label), same shapes and dtypes; the inputs are left alone.
        """
        self._check(image, label)
        params = self.draw(image.shape[0])
        self.last_params = params
        return self.apply(image, label, params)

    def apply(
        self, image: torch.Tensor, label: torch.Tensor, params: list[dict[str, Any]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Deterministic twin of :meth:`__call__`: the same parameters give the same output, bit for bit.

        Order: one resampling for rotation + scaling + elastic, then bias field, noise, blur, brightness,
        contrast, low resolution, gamma, and last the flips. Intensity operations never touch the label.

        Args:
            image: float32 (B, C, *spatial).
            label: int64 (B, *spatial).
            params: one dictionary per sample, as returned by :meth:`draw`.

        Returns:
            new (image, label) tensors; the inputs are left alone.

        Raises:
            InvalidParameterError: wrong shapes or dtypes, or ``len(params) != B``.
        """
        self._check(image, label)
        if len(params) != image.shape[0]:
            raise InvalidParameterError(
                "one parameter dictionary per sample needed",
                parameter="params",
                expected=image.shape[0],
                found=len(params),
                fix="pass the list returned by draw(batch_size) for this batch",
            )
        image, label = self._apply_spatial(image, label, params)
        if not params:
            return image.clone(), label.clone()
        images, labels = [], []
        for i, p in enumerate(params):
            x, y = image[i], label[i]
            n = x.shape[0] if self.intensity_channels is None else min(self.intensity_channels, x.shape[0])
            if n == x.shape[0]:
                x = self._apply_intensity(x, p)
            elif n > 0:  # extra channels (e.g. cascade masks) get the spatial transforms and flips only
                x = torch.cat([self._apply_intensity(x[:n], p), x[n:]])
            axes = [int(a) for a in p.get("flip_axes") or []]
            if axes:
                x = torch.flip(x, [a + 1 for a in axes])
                y = torch.flip(y, axes)
            images.append(x)
            labels.append(y)
        return torch.stack(images), torch.stack(labels)

    def _check(self, image: torch.Tensor, label: torch.Tensor) -> None:
        if not isinstance(image, torch.Tensor) or image.ndim != self.dims + 2 or image.dtype != torch.float32:
            raise InvalidParameterError(
                "bad image tensor",
                parameter="image",
                expected=f"float32 tensor (B, C, {'Z, Y, X' if self.dims == 3 else 'Y, X'})",
                found=(
                    f"{image.dtype} {tuple(image.shape)}" if isinstance(image, torch.Tensor) else type(image).__name__
                ),
                fix="add the batch and channel axes and convert with .float()",
            )
        expected_shape = (image.shape[0], *image.shape[2:])
        if not isinstance(label, torch.Tensor) or tuple(label.shape) != expected_shape or label.dtype != torch.int64:
            raise InvalidParameterError(
                "bad label tensor",
                parameter="label",
                expected=f"int64 tensor of shape {expected_shape}",
                found=(
                    f"{label.dtype} {tuple(label.shape)}" if isinstance(label, torch.Tensor) else type(label).__name__
                ),
                fix="give the label map without a channel axis, converted with .long()",
            )

    # ------------------------------------------------------------------ spatial
    def _apply_spatial(
        self, image: torch.Tensor, label: torch.Tensor, params: list[dict[str, Any]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        idx = [i for i, p in enumerate(params) if p.get("rotation") or p.get("scale") is not None or p.get("elastic")]
        if not idx:
            return image, label
        spatial = tuple(image.shape[2:])
        device = image.device
        thetas = torch.stack([self._theta(params[i], spatial) for i in idx]).to(device)
        sub_image = image[idx]
        grid = F.affine_grid(thetas, list(sub_image.shape), align_corners=True)
        for k, i in enumerate(idx):
            elastic = params[i].get("elastic")
            if elastic:
                grid[k] += self._elastic_displacement(elastic, spatial).to(device)
        moved_image = F.grid_sample(sub_image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        sub_label = label[idx]
        label_dtype = torch.float32 if int(sub_label.abs().max()) < 2**24 else torch.float64
        moved_label = F.grid_sample(
            sub_label.unsqueeze(1).to(label_dtype),
            grid.to(label_dtype),
            mode="nearest",
            padding_mode="zeros",
            align_corners=True,
        )
        image = image.clone()
        label = label.clone()
        index = torch.tensor(idx, device=device)
        image[index] = moved_image
        label[index] = moved_label.squeeze(1).round().to(torch.int64)
        return image, label

    def _theta(self, p: dict[str, Any], spatial: tuple[int, ...]) -> torch.Tensor:
        """The (dims, dims + 1) affine of ``F.affine_grid`` (x first) mapping output to input normalised coords."""
        n = self.dims
        rot = np.eye(n)
        for a, b, deg in p.get("rotation") or []:
            t = math.radians(deg)
            r = np.eye(n)
            r[a, a], r[a, b], r[b, a], r[b, b] = math.cos(t), -math.sin(t), math.sin(t), math.cos(t)
            rot = r @ rot
        scale = p.get("scale")
        scale = 1.0 if scale is None else float(scale)
        # output point (mm, about the centre) -> input point (mm): inverse of "rotate by R then zoom by s"
        a_mm = rot.T / scale
        half = np.array([max(sz - 1, 1) / 2.0 for sz in spatial])
        to_norm = np.diag(1.0 / (np.array(self.spacing_zyx) * half))  # mm -> normalised
        from_norm = np.diag(np.array(self.spacing_zyx) * half)  # normalised -> mm
        m = to_norm @ a_mm @ from_norm
        m = m[::-1, ::-1]  # (z, y, x) -> (x, y, z) as grid_sample wants
        theta = np.zeros((n, n + 1))
        theta[:, :n] = m
        return torch.from_numpy(theta).to(torch.float32)

    def _elastic_displacement(self, elastic: dict[str, Any], spatial: tuple[int, ...]) -> torch.Tensor:
        """Smooth displacement in normalised grid units, shape (*spatial, dims) with x first."""
        sigma_mm = float(elastic["sigma_mm"])
        extent_mm = [(sz - 1) * sp for sz, sp in zip(spatial, self.spacing_zyx)]
        coarse = [max(2, int(round(e / sigma_mm)) + 1) for e in extent_mm]
        gen = torch.Generator().manual_seed(int(elastic["seed"]))
        disp_mm = torch.randn((1, self.dims, *coarse), generator=gen, dtype=torch.float32)
        disp_mm = disp_mm * float(elastic["magnitude_mm"])
        if self.anisotropic:
            disp_mm[:, self.coarse_axis] = 0.0  # no through-plane displacement for thick slices
        mode = "trilinear" if self.dims == 3 else "bicubic"
        disp_mm = F.interpolate(disp_mm, size=spatial, mode=mode, align_corners=True)[0]
        half = torch.tensor([max(sz - 1, 1) / 2.0 for sz in spatial], dtype=torch.float32)
        scale = 1.0 / (torch.tensor(self.spacing_zyx, dtype=torch.float32) * half)
        disp = disp_mm * scale.view(-1, *([1] * self.dims))
        return disp.flip(0).movedim(0, -1)  # (dims, *spatial) zyx -> (*spatial, dims) xyz

    # ------------------------------------------------------------------ intensity
    def _apply_intensity(self, x: torch.Tensor, p: dict[str, Any]) -> torch.Tensor:
        """Intensity operations on one sample ``x`` of shape (C, *spatial); statistics are per channel."""
        if p.get("bias_field"):
            x = x * _bias_field(x.shape[1:], p["bias_field"], x.device)
        if p.get("noise"):
            gen = torch.Generator().manual_seed(int(p["noise"]["seed"]))
            noise = torch.randn(x.shape, generator=gen, dtype=torch.float32).to(x.device)
            std = _channel_stat(x, torch.std)
            x = x + noise * (float(p["noise"]["sigma_rel"]) * std)
        if p.get("blur_sigma_vox") is not None:
            x = _gaussian_blur(x, float(p["blur_sigma_vox"]))
        if p.get("brightness") is not None:
            x = x * float(p["brightness"])
        if p.get("contrast") is not None:
            mean = _channel_stat(x, torch.mean)
            lo, hi = _channel_stat(x, torch.amin), _channel_stat(x, torch.amax)
            x = torch.minimum(torch.maximum((x - mean) * float(p["contrast"]) + mean, lo), hi)
        if p.get("low_res_zoom") is not None:
            x = self._low_res(x, float(p["low_res_zoom"]))
        if p.get("gamma"):
            x = _gamma(x, float(p["gamma"]["gamma"]), bool(p["gamma"]["invert"]))
        return x

    def _low_res(self, x: torch.Tensor, zoom: float) -> torch.Tensor:
        spatial = tuple(x.shape[1:])
        small = tuple(
            sz if (self.anisotropic and a == self.coarse_axis) else max(1, int(round(sz / zoom)))
            for a, sz in enumerate(spatial)
        )
        if small == spatial:
            return x
        down = F.interpolate(x.unsqueeze(0), size=small, mode="nearest")
        mode = "trilinear" if self.dims == 3 else "bilinear"
        return F.interpolate(down, size=spatial, mode=mode, align_corners=False)[0]


# ---------------------------------------------------------------------- deterministic helpers
def _channel_stat(x: torch.Tensor, fn: Any) -> torch.Tensor:
    """A per-channel statistic of (C, *spatial), shaped to broadcast against it."""
    return fn(x.reshape(x.shape[0], -1), dim=1).view(-1, *([1] * (x.ndim - 1)))


def _gaussian_kernel(sigma_vox: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3.0 * sigma_vox)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma_vox) ** 2)
    return k / k.sum()


def _gaussian_blur(x: torch.Tensor, sigma_vox: float) -> torch.Tensor:
    """Separable gaussian blur of (C, *spatial) along every spatial axis, edges replicated."""
    kernel = _gaussian_kernel(sigma_vox).to(x.device).view(1, 1, -1)
    radius = (kernel.shape[-1] - 1) // 2
    for axis in range(1, x.ndim):
        moved = x.movedim(axis, -1)
        shape = moved.shape
        if shape[-1] == 1:
            continue
        flat = moved.reshape(-1, 1, shape[-1])
        flat = F.pad(flat, (radius, radius), mode="replicate")
        flat = F.conv1d(flat, kernel)
        x = flat.reshape(shape).movedim(-1, axis)
    return x


def _gamma(x: torch.Tensor, gamma: float, invert: bool) -> torch.Tensor:
    """Gamma on the per-channel min-max rescaled intensities, range restored; ``invert`` works on ``-x``."""
    if invert:
        x = -x
    lo, hi = _channel_stat(x, torch.amin), _channel_stat(x, torch.amax)
    rng = hi - lo
    safe = torch.where(rng > 0, rng, torch.ones_like(rng))
    y = ((x - lo) / safe).clamp(0.0, 1.0) ** gamma * safe + lo
    y = torch.where(rng > 0, y, x)
    return -y if invert else y


def _poly_exponents(dims: int, order: int) -> list[tuple[int, ...]]:
    """Exponent tuples (one per spatial axis) of all monomials of total degree <= order, in a fixed order."""
    if dims == 2:
        return [(i, j) for i in range(order + 1) for j in range(order + 1 - i)]
    return [(i, j, k) for i in range(order + 1) for j in range(order + 1 - i) for k in range(order + 1 - i - j)]


def _bias_field(spatial: tuple[int, ...], bias: dict[str, Any], device: torch.device) -> torch.Tensor:
    """exp(polynomial) over coordinates in [-1, 1] per axis, shape (1, *spatial) float32."""
    order = int(bias["order"])
    dims = len(spatial)
    coeff = torch.zeros((order + 1,) * dims, dtype=torch.float64)
    for c, exps in zip(bias["coefficients"], _poly_exponents(dims, order)):
        coeff[exps] = float(c)
    # Vandermonde matrix per axis: (size, order + 1); the polynomial is separable, so one einsum builds it
    powers = [
        torch.linspace(-1.0, 1.0, sz, dtype=torch.float64)[:, None] ** torch.arange(order + 1, dtype=torch.float64)
        for sz in spatial
    ]
    if dims == 2:
        log_field = torch.einsum("ij,yi,xj->yx", coeff, *powers)
    else:
        log_field = torch.einsum("ijk,zi,yj,xk->zyx", coeff, *powers)
    return torch.exp(log_field).to(torch.float32).unsqueeze(0).to(device)
