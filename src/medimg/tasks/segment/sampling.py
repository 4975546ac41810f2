"""Random training patches from preprocessed cases, with foreground oversampling (nnU-Net style)."""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from medimg.core.errors import InvalidParameterError

__all__ = ["PatchSampler"]


class PatchSampler:
    """Draw batches of (image, label) patches.

    Args:
        cases: preprocessed cases as (image (C, *spatial) float32, label (*spatial) class ids) arrays.
        patch_size: spatial patch size (zyx for 3D, yx for 2D).
        batch_size: patches per batch.
        foreground_oversample: fraction of patches centred on a voxel of a random foreground class
            (at least one per batch when > 0).
        seed: seeds the sampler's own generator.

    Cases smaller than the patch are zero-padded (label 0). Foreground voxel positions are indexed once per case.
    """

    def __init__(
        self,
        cases: Sequence[tuple[np.ndarray, np.ndarray]],
        *,
        patch_size: Sequence[int],
        batch_size: int,
        foreground_oversample: float = 0.33,
        seed: int = 0,
    ) -> None:
        if not cases:
            raise InvalidParameterError("no training cases", parameter="cases", expected="at least one case",
                                        found=0, fix="check the dataset folder and the split")
        self.cases = list(cases)
        self.patch = tuple(int(p) for p in patch_size)
        nd = len(self.patch)
        for img, lab in self.cases:
            if img.ndim != nd + 1 or lab.shape != img.shape[1:]:
                raise InvalidParameterError(
                    "case arrays do not fit the patch", parameter="cases",
                    expected=f"image (C, {nd} spatial axes) and a label of the same spatial shape",
                    found=f"image {img.shape}, label {lab.shape}", fix="preprocess the cases with the same plan",
                )
        self.batch_size = int(batch_size)
        self.fg = float(foreground_oversample)
        self.rng = np.random.default_rng(seed)
        self._fg_index: list[dict[int, np.ndarray]] = []
        for _, lab in self.cases:
            flat = lab.ravel()
            idx = np.flatnonzero(flat > 0)
            classes = {}
            if idx.size:
                values = flat[idx]
                for c in np.unique(values):
                    pos = idx[values == c]
                    if pos.size > 20000:  # a subsample is plenty to choose centres from
                        pos = self.rng.choice(pos, 20000, replace=False)
                    classes[int(c)] = pos
            self._fg_index.append(classes)

    def _crop(self, case: int, force_fg: bool) -> tuple[np.ndarray, np.ndarray]:
        img, lab = self.cases[case]
        shape = lab.shape
        patch = self.patch
        centre = None
        if force_fg and self._fg_index[case]:
            classes = list(self._fg_index[case])
            c = classes[self.rng.integers(len(classes))]
            flat = self._fg_index[case][c][self.rng.integers(len(self._fg_index[case][c]))]
            centre = np.unravel_index(flat, shape)
        starts = []
        for ax, (n, p) in enumerate(zip(shape, patch)):
            lo, hi = -max(p - n, 0) // 2 - (max(p - n, 0) % 2), max(n - p, 0)
            if centre is not None:
                s = int(centre[ax]) - p // 2 + int(self.rng.integers(-p // 4, p // 4 + 1))
                s = min(max(s, lo), hi)
            else:
                s = int(self.rng.integers(lo, hi + 1))
            starts.append(s)
        out_img = np.zeros((img.shape[0],) + patch, np.float32)
        out_lab = np.zeros(patch, np.int64)
        src, dst = [], []
        for s, n, p in zip(starts, shape, patch):
            a, b = max(s, 0), min(s + p, n)
            src.append(slice(a, b))
            dst.append(slice(a - s, b - s))
        out_img[(slice(None),) + tuple(dst)] = img[(slice(None),) + tuple(src)]
        out_lab[tuple(dst)] = lab[tuple(src)]
        return out_img, out_lab

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch: image (B, C, *patch) float32 and label (B, *patch) int64."""
        n_fg = int(round(self.batch_size * self.fg))
        if self.fg > 0:
            n_fg = max(n_fg, 1)
        imgs, labs = [], []
        for k in range(self.batch_size):
            case = int(self.rng.integers(len(self.cases)))
            i, lab = self._crop(case, force_fg=k >= self.batch_size - n_fg)
            imgs.append(i)
            labs.append(lab)
        return torch.from_numpy(np.stack(imgs)), torch.from_numpy(np.stack(labs))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield self.batch()
