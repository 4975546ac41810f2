"""Binary graph-cut segmentation from foreground/background seeds (Boykov & Jolly, ICCV 2001).

Owns :func:`graph_cut`. The energy is

    E(L) = sum_p D_p(L_p) + lambda_boundary * sum_{p~q, L_p != L_q} exp(-||I_p - I_q||^2 / (2 sigma^2)) / dist_mm(p, q)

over the 6-neighbourhood (4 in 2D), with ``D_p(l) = -log Pr(I_p | l)`` from intensity models of the seeds, and
seeds hard-constrained. The minimum cut is computed with PyMaxflow (Boykov-Kolmogorov max-flow) on a grid graph.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from medimg.classical.seeds import seeds_to_index
from medimg.core.checks import require_finite, require_intensity
from medimg.core.enums import Kind
from medimg.core.errors import InvalidParameterError
from medimg.core.image import Image

__all__ = ["graph_cut"]

logger = logging.getLogger(__name__)

_DATA_MODELS = ("histogram", "gaussian")
_HIST_BINS = 64
_PROB_FLOOR = 1e-4


def _seed_mask(seeds: Any, image: Image, name: str, seed_space: str) -> np.ndarray:
    """Seeds as a boolean (Z, Y, X) mask; ``seeds`` are points or a mask Image on the image grid."""
    spatial = image.spatial_shape
    if isinstance(seeds, Image):
        if seeds.n_channels != 1:
            raise InvalidParameterError("seed image has several channels", parameter=name, expected="1 channel",
                                        found=f"{seeds.n_channels} channels", fix="pass a single-channel mask")
        image.check_same_grid(seeds, what=f"image and {name}")
        mask = np.asarray(seeds.voxels[0]) != 0
    else:
        idx = seeds_to_index(image, seeds, space=seed_space, parameter=name)
        mask = np.zeros(spatial, bool)
        mask[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    if not mask.any():
        raise InvalidParameterError("empty seed set", parameter=name, expected="at least one seed voxel",
                                    found="0 seed voxels", fix=f"mark at least one {name.split('_')[0]} voxel")
    return mask


def _unary_costs(feats: np.ndarray, fg: np.ndarray, bg: np.ndarray, data_model: str) -> tuple[np.ndarray, ...]:
    """-log likelihood of each voxel under the foreground and background seed models: two (Z, Y, X) arrays."""
    n_ch = feats.shape[0]
    flat = feats.reshape(n_ch, -1).astype(np.float64)
    fg_f, bg_f = fg.ravel(), bg.ravel()
    costs = []
    if data_model == "histogram" and n_ch == 1:
        v = flat[0]
        lo, hi = float(v.min()), float(v.max())
        width = (hi - lo) / _HIST_BINS or 1.0
        b = np.minimum(((v - lo) / width).astype(np.int64), _HIST_BINS - 1)
        from scipy.ndimage import gaussian_filter1d

        for sel in (fg_f, bg_f):
            h = np.bincount(b[sel], minlength=_HIST_BINS).astype(np.float64)
            h = gaussian_filter1d(h, 1.0, mode="constant")
            p = h / h.sum()
            costs.append(-np.log(np.maximum(p, _PROB_FLOOR))[b])
    else:
        for sel in (fg_f, bg_f):
            x = flat[:, sel]
            mu = x.mean(axis=1)
            cov = np.atleast_2d(np.cov(x)) if x.shape[1] > 1 else np.zeros((n_ch, n_ch))
            spread = np.var(flat, axis=1).mean() * 1e-3 + 1e-6
            cov = cov + np.eye(n_ch) * spread
            inv = np.linalg.inv(cov)
            d = flat - mu[:, None]
            maha = np.einsum("in,ij,jn->n", d, inv, d)
            costs.append(0.5 * maha + 0.5 * np.log(np.linalg.det(2 * np.pi * cov)))
        low = min(float(c.min()) for c in costs)
        costs = [c - low for c in costs]  # shift both by the same constant: same minimiser, non-negative
    return tuple(c.reshape(feats.shape[1:]) for c in costs)


def _pairwise_weights(feats: np.ndarray, spacing_zyx: Sequence[float], is_2d: bool, sigma: float | None,
                      lambda_boundary: float) -> tuple[list[tuple[int, np.ndarray]], float]:
    """Boundary weights per axis: [(axis, w)] where w[p] is the weight of edge p -- p + e_axis; and sigma used."""
    axes = (1, 2) if is_2d else (0, 1, 2)
    diffs = []
    for ax in axes:
        d = np.diff(feats.astype(np.float64), axis=ax + 1)
        diffs.append((ax, (d * d).sum(axis=0)))
    if sigma is None:
        total = sum(float(d.sum()) for _, d in diffs)
        count = sum(d.size for _, d in diffs)
        sigma = float(np.sqrt(total / max(count, 1))) or 1.0
    out = []
    for ax, d2 in diffs:
        w = lambda_boundary * np.exp(-d2 / (2.0 * sigma * sigma)) / float(spacing_zyx[ax])
        pad = [(0, 0)] * 3
        pad[ax] = (0, 1)
        out.append((ax, np.pad(w, pad)))  # last slice along ax has no forward neighbour
    return out, sigma


def _energy(labels: np.ndarray, unary: tuple[np.ndarray, np.ndarray],
            pairs: list[tuple[int, np.ndarray]]) -> float:
    """Energy of a binary labelling (True = foreground) under the given terms (for tests and logging)."""
    cost_fg, cost_bg = unary
    e = float(np.where(labels, cost_fg, cost_bg).sum())
    for ax, w in pairs:
        cut = np.diff(labels.astype(np.int8), axis=ax) != 0
        sl = [slice(None)] * 3
        sl[ax] = slice(0, labels.shape[ax] - 1)
        e += float(w[tuple(sl)][cut].sum())
    return e


def _solve(unary: tuple[np.ndarray, np.ndarray], pairs: list[tuple[int, np.ndarray]], fg: np.ndarray,
           bg: np.ndarray) -> tuple[np.ndarray, float]:
    """Minimum cut with hard seeds: (foreground mask, max-flow value)."""
    import maxflow

    cost_fg, cost_bg = unary
    shape = cost_fg.shape
    g = maxflow.Graph[float]()
    nodes = g.add_grid_nodes(shape)
    for ax, w in pairs:
        structure = np.zeros((3, 3, 3))
        off = [1, 1, 1]
        off[ax] = 2
        structure[tuple(off)] = 1
        g.add_grid_edges(nodes, weights=w, structure=structure, symmetric=True)
    # hard constraint: larger than any cut through all edges of one voxel plus its data terms
    big = 1.0 + 2.0 * sum(float(w.max()) for _, w in pairs) + float(max(cost_fg.max(), cost_bg.max()))
    # source = foreground: the source capacity is paid when p ends up background, the sink one when foreground
    src = np.where(fg, big, np.where(bg, 0.0, cost_bg))
    snk = np.where(bg, big, np.where(fg, 0.0, cost_fg))
    g.add_grid_tedges(nodes, src, snk)
    flow = g.maxflow()
    sink_side = g.get_grid_segments(nodes)
    return ~sink_side, float(flow)


def graph_cut(
    image: Image,
    *,
    foreground_seeds: Sequence[Sequence[float]] | np.ndarray | Image,
    background_seeds: Sequence[Sequence[float]] | np.ndarray | Image,
    seed_space: str = "voxel",
    lambda_boundary: float = 2.0,
    sigma: float | None = None,
    data_model: str = "histogram",
) -> Image:
    """Binary segmentation by an s-t minimum cut with hard foreground/background seeds.

    Data term: ``-log Pr(I_p | seeds)`` from a 64-bin intensity histogram of each seed set (Gaussian-smoothed,
    probabilities floored at 1e-4) for single-channel images, or from a Gaussian per seed set
    (``data_model="gaussian"``, always used for multi-channel images). Boundary term between 6-neighbours
    (4 in-plane neighbours in 2D): ``lambda_boundary * exp(-||I_p - I_q||^2 / (2 sigma^2)) / dist_mm``, so thin
    voxels are more strongly tied than thick ones. Seed voxels are fixed to their label.

    Args:
        image: intensity image (C, Z, Y, X), 2D or 3D.
        foreground_seeds, background_seeds: with ``seed_space="voxel"``, integer indices (N, 3) as (z, y, x), or
            (N, 2) as (y, x) for a 2D image; with ``seed_space="world"``, (N, 3) physical LPS points (x, y, z) in
            mm, rounded to the nearest voxel. Either may also be a mask Image on the image grid.
        seed_space: "voxel" or "world".
        lambda_boundary: weight of the boundary term relative to the data term, >= 0.
        sigma: intensity-difference scale of the boundary term in image units (> 0); None estimates it as the
            root mean square difference between neighbours.
        data_model: "histogram" or "gaussian".

    Returns:
        A label image (1, Z, Y, X), uint8, 1 = foreground, on the same grid; the history records the
        ``sigma`` used and the max-flow value.

    Raises:
        InvalidParameterError: label image input, NaN voxels, empty seed sets, seeds outside the image, with the
            wrong number of coordinates, or marked both foreground and background; bad parameter values.

    Example:
        >>> arr = np.zeros((6, 6)); arr[:, 3:] = 10
        >>> seg = graph_cut(Image.from_array(arr), foreground_seeds=[(0, 5)], background_seeds=[(5, 0)])
        >>> seg.array[0].tolist()[0]
        [0, 0, 0, 1, 1, 1]
    """
    require_intensity(image, "graph_cut")
    require_finite(image.voxels, "graph_cut")
    if seed_space not in ("voxel", "world"):
        raise InvalidParameterError("unknown seed space", parameter="seed_space", expected="'voxel' or 'world'",
                                    found=repr(seed_space), fix="use 'voxel' for (z, y, x) indices, 'world' for mm")
    if data_model not in _DATA_MODELS:
        raise InvalidParameterError("unknown data model", parameter="data_model", expected=_DATA_MODELS,
                                    found=repr(data_model), fix="use 'histogram' or 'gaussian'")
    if isinstance(lambda_boundary, bool) or not isinstance(lambda_boundary, (int, float, np.number)) \
            or not np.isfinite(lambda_boundary) or lambda_boundary < 0:
        raise InvalidParameterError("invalid boundary weight", parameter="lambda_boundary",
                                    expected="a finite number >= 0", found=repr(lambda_boundary),
                                    fix="e.g. lambda_boundary=2.0")
    if sigma is not None and (isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.number))
                              or not np.isfinite(sigma) or sigma <= 0):
        raise InvalidParameterError("invalid sigma", parameter="sigma", expected="a number > 0 or None",
                                    found=repr(sigma), fix="leave sigma=None to estimate it")
    fg = _seed_mask(foreground_seeds, image, "foreground_seeds", seed_space)
    bg = _seed_mask(background_seeds, image, "background_seeds", seed_space)
    both = fg & bg
    if both.any():
        raise InvalidParameterError(
            "voxels marked both foreground and background", parameter="background_seeds",
            expected="disjoint seed sets", found=f"{int(both.sum())} shared voxel(s)",
            fix="remove the shared points from one of the seed sets",
        )
    feats = image.voxels.astype(np.float64)
    unary = _unary_costs(feats, fg, bg, "gaussian" if image.n_channels > 1 else data_model)
    pairs, sigma_used = _pairwise_weights(feats, image.geometry.spacing_zyx, image.is_2d, sigma,
                                          float(lambda_boundary))
    seg, flow = _solve(unary, pairs, fg, bg)
    logger.debug("graph_cut: sigma %.4g, flow %.6g, %d foreground voxels", sigma_used, flow, int(seg.sum()))
    params = {"lambda_boundary": float(lambda_boundary), "sigma": sigma_used, "data_model": data_model,
              "seed_space": seed_space, "n_foreground_seeds": int(fg.sum()), "n_background_seeds": int(bg.sum()),
              "max_flow": flow}
    return image.derive(seg.astype(np.uint8)[None], operation="graph_cut", params=params, kind=Kind.LABEL)
