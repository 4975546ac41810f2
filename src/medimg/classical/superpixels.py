"""Superpixels (SLIC) and superpixel pseudo-labels from sparse scribbles.

Owns :func:`slic` (``skimage.segmentation.slic`` with the voxel spacing, so supervoxels are compact in mm) and
:func:`superpixel_pseudo_labels`, which spreads sparse scribble labels to whole superpixels by majority vote,
a cheap way to turn scribbles or clicks into dense (partial) training labels.
"""

from __future__ import annotations

import logging

import numpy as np

from medimg.core.checks import require_finite, require_intensity
from medimg.core.enums import Kind
from medimg.core.errors import InvalidParameterError
from medimg.core.image import Image

__all__ = ["slic", "superpixel_pseudo_labels"]

logger = logging.getLogger(__name__)


def _single_channel_labels(label: Image, image: Image, name: str) -> np.ndarray:
    if not isinstance(label, Image):
        raise InvalidParameterError(f"{name} is not an Image", parameter=name, expected="a label Image",
                                    found=type(label).__name__,
                                    fix="wrap the array with Image.from_array(..., kind='label')")
    if label.n_channels != 1:
        raise InvalidParameterError(f"{name} has several channels", parameter=name, expected="1 channel",
                                    found=f"{label.n_channels} channels", fix="pass a single-channel label map")
    image.check_same_grid(label, what=f"image and {name}")
    arr = np.asarray(label.voxels[0])
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise InvalidParameterError(f"{name} has non-integer values", parameter=name,
                                        expected="integer labels", found=str(arr.dtype),
                                        fix="round the label map or cast it to an integer type")
    arr = arr.astype(np.int64)
    if arr.min() < 0:
        raise InvalidParameterError(f"{name} has negative labels", parameter=name, expected="labels >= 0",
                                    found=int(arr.min()), fix="use 0 for unlabelled and 1..K for classes")
    return arr


def _check_number(value: object, name: str, *, minimum: float, strict: bool, integer: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, np.integer) if integer else (int, float, np.number))
    if ok:
        ok = bool(np.isfinite(value)) and (value > minimum if strict else value >= minimum)
    if not ok:
        raise InvalidParameterError("invalid value", parameter=name,
                                    expected=f"{'an integer' if integer else 'a number'} {'>' if strict else '>='} "
                                             f"{minimum}", found=repr(value), fix=f"check {name}")
    return float(value)


def slic(
    image: Image,
    *,
    n_segments: int = 200,
    compactness: float = 0.1,
    mask: Image | None = None,
    max_iter: int = 10,
) -> Image:
    """SLIC superpixels (2D) or supervoxels (3D), spacing-aware.

    Calls ``skimage.segmentation.slic`` with ``spacing`` = the voxel spacing in (z, y, x) order (in-plane only
    for 2D), ``channel_axis=None`` for one channel and the channels last otherwise, no Lab conversion, and
    ``start_label=1``. skimage rescales intensities to [0, 1] first (inside the mask), so ``compactness`` does
    not depend on the intensity units; larger values give more regular, less intensity-driven regions.

    Args:
        image: intensity image (C, Z, Y, X), 2D or 3D.
        n_segments: approximate number of superpixels, >= 1.
        compactness: balance of spatial against intensity proximity, > 0.
        mask: optional label image on the same grid; superpixels only cover its non-zero voxels.
        max_iter: k-means iterations of SLIC, >= 1.

    Returns:
        A label image (1, Z, Y, X), int32, superpixels numbered 1..N, 0 outside ``mask``.

    Raises:
        InvalidParameterError: label image input, NaN voxels, bad parameters, empty mask.

    Example:
        >>> arr = np.zeros((16, 16)); arr[:, 8:] = 1
        >>> sp = slic(Image.from_array(arr), n_segments=4)
        >>> int(sp.array.min()) >= 1
        True
    """
    from skimage.segmentation import slic as sk_slic

    require_intensity(image, "slic")
    require_finite(image.voxels, "slic")
    n = int(_check_number(n_segments, "n_segments", minimum=1, strict=False, integer=True))
    comp = _check_number(compactness, "compactness", minimum=0, strict=True)
    n_it = int(_check_number(max_iter, "max_iter", minimum=1, strict=False, integer=True))
    msk = None
    if mask is not None:
        msk = _single_channel_labels(mask, image, "mask") != 0
        if not msk.any():
            raise InvalidParameterError("empty mask", parameter="mask", expected="at least one non-zero voxel",
                                        found="0 non-zero voxels", fix="check the mask, or pass mask=None")
    vox = image.voxels.astype(np.float64)
    spacing = np.asarray(image.geometry.spacing_zyx, dtype=float)
    if image.is_2d:
        vox, spacing = vox[:, 0], spacing[1:]
        msk = None if msk is None else msk[0]
    if image.n_channels == 1:
        arr, channel_axis = vox[0], None
    else:
        arr, channel_axis = np.moveaxis(vox, 0, -1), -1
    seg = sk_slic(arr, n_segments=n, compactness=comp, max_num_iter=n_it, spacing=spacing, convert2lab=False,
                  start_label=1, mask=msk, channel_axis=channel_axis)
    seg = seg.astype(np.int32)
    seg = seg[None, None] if image.is_2d else seg[None]
    n_found = int(seg.max())
    logger.debug("slic: %d superpixels (asked for %d)", n_found, n)
    return image.derive(seg, operation="slic", kind=Kind.LABEL,
                        params={"n_segments": n, "compactness": comp, "max_iter": n_it, "masked": msk is not None,
                                "n_superpixels": n_found})


def superpixel_pseudo_labels(
    image: Image,
    scribbles: Image,
    *,
    n_segments: int = 200,
    compactness: float = 0.1,
    min_agreement: float = 0.5,
    mask: Image | None = None,
    superpixels: Image | None = None,
) -> Image:
    """Dense pseudo-labels from sparse scribbles: each superpixel takes the majority label of its scribbles.

    Superpixels come from :func:`slic` (or are given). In each superpixel, the scribbled voxels vote; the most
    frequent class wins (the lowest class on ties) if its share of the votes is at least ``min_agreement``,
    otherwise the superpixel stays 0. Superpixels without scribbles stay 0 (ignore / unlabelled).

    Args:
        image: intensity image (C, Z, Y, X), 2D or 3D.
        scribbles: label image (1, Z, Y, X) on the same grid; 0 = unlabelled, k > 0 = class k.
        n_segments, compactness, mask: passed to :func:`slic`.
        min_agreement: smallest share of a superpixel's scribbled voxels the winning class needs, in [0, 1].
        superpixels: optional precomputed superpixel label map on the same grid (then ``n_segments``,
            ``compactness`` and ``mask`` are not used).

    Returns:
        A label image (1, Z, Y, X) of the scribbles' class values (0 = unlabelled), same dtype family as the
        classes (uint8 when they fit, else int32).

    Raises:
        InvalidParameterError: scribbles with no labelled voxel, negative or non-integer labels, several
            channels, or bad parameters. GeometryMismatchError: scribbles on another grid.

    Example:
        >>> arr = np.zeros((16, 16)); arr[:, 8:] = 1
        >>> scr = np.zeros((16, 16), np.uint8); scr[2:14, 2] = 1; scr[2:14, 13] = 2
        >>> out = superpixel_pseudo_labels(Image.from_array(arr), Image.from_array(scr, kind="label"),
        ...                                n_segments=4)
        >>> out.array[0, 10, :].tolist()
        [1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2]
    """
    require_intensity(image, "superpixel_pseudo_labels")
    scr = _single_channel_labels(scribbles, image, "scribbles")
    agree = _check_number(min_agreement, "min_agreement", minimum=0, strict=False)
    if agree > 1:
        raise InvalidParameterError("invalid value", parameter="min_agreement", expected="a number in [0, 1]",
                                    found=repr(min_agreement), fix="e.g. min_agreement=0.5")
    seeded = scr > 0
    if not seeded.any():
        raise InvalidParameterError("empty scribbles", parameter="scribbles", expected="at least one voxel > 0",
                                    found="no labelled voxel", fix="draw at least one scribble (class values >= 1)")
    if superpixels is None:
        sp = slic(image, n_segments=n_segments, compactness=compactness, mask=mask).array
    else:
        sp = _single_channel_labels(superpixels, image, "superpixels")
    n_sp = int(sp.max()) + 1
    n_cls = int(scr.max()) + 1
    sp_ids = sp[seeded].astype(np.int64)
    votes = np.bincount(sp_ids * n_cls + scr[seeded], minlength=n_sp * n_cls).reshape(n_sp, n_cls)
    votes[0] = 0  # superpixel 0 is "outside the mask": never labelled
    total = votes.sum(axis=1)
    winner = np.argmax(votes, axis=1)
    share = np.where(total > 0, votes[np.arange(n_sp), winner] / np.maximum(total, 1), 0.0)
    lut = np.where((total > 0) & (share >= agree), winner, 0)
    dtype = np.uint8 if n_cls <= 256 else np.int32
    out = lut[sp].astype(dtype)
    n_labelled = int(np.count_nonzero(lut))
    logger.debug("superpixel_pseudo_labels: %d of %d superpixels labelled", n_labelled, n_sp - 1)
    return image.derive(out[None], operation="superpixel_pseudo_labels", kind=Kind.LABEL,
                        params={"n_segments": int(n_segments), "compactness": float(compactness),
                                "min_agreement": agree, "n_superpixels": n_sp - 1,
                                "n_labelled_superpixels": n_labelled,
                                "given_superpixels": superpixels is not None})
