"""The one preprocessing that training and prediction share: every image onto the plan's fixed grid.

:func:`canonical_grid` puts an image on the plan's grid: the plan's spacing, the image's own direction, centred on
the image's centre. :func:`to_canonical` resamples an image (normalised to [0, 1] by percentiles) or a label map
(nearest neighbour) onto such a grid, optionally through a transform (the pre-alignment). :func:`preprocess_cases`
does it for the cases of a training fold (after an affine alignment to :func:`template_case` with
``prealign="affine"``); prediction does it for one pair (:mod:`medimg.tasks.register.predictor`).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

import numpy as np
import SimpleITK as sitk

from medimg.core.image import Image
from medimg.tasks.register.plan import RegisterPlan

logger = logging.getLogger(__name__)

__all__ = ["canonical_grid", "to_canonical", "normalise", "image_centre", "centre_translation", "preprocess_cases",
           "template_case"]


def normalise(voxels: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    """Clip to the image's percentiles and scale to [0, 1] (float32); a constant image gives zeros."""
    arr = np.asarray(voxels, dtype=np.float32)
    lo, hi = np.percentile(arr, [float(percentiles[0]), float(percentiles[1])])
    if not hi > lo:
        return np.zeros_like(arr)
    return np.clip((arr - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def _sitk(image: Image, voxels: np.ndarray | None = None) -> sitk.Image:
    from medimg.io.sitk_bridge import to_sitk

    if voxels is not None:
        image = image.replace(voxels=voxels[None] if voxels.ndim == image.voxels.ndim - 1 else voxels)
    return to_sitk(image, channel=0)


def image_centre(img: sitk.Image) -> np.ndarray:
    """Physical centre of a SimpleITK image's voxel grid (LPS mm)."""
    size = np.asarray(img.GetSize(), dtype=float)
    return np.asarray(img.TransformContinuousIndexToPhysicalPoint(tuple((size - 1) / 2)))


def canonical_grid(image: Image | sitk.Image, spacing: Sequence[float], grid: Sequence[int], *, divisor: int = 1,
                   cover: bool = False) -> sitk.Image:
    """An empty SimpleITK reference image: ``spacing`` (sx, sy[, sz]), the image's direction, ``grid`` voxels
    ((Z,) Y, X), centred on the image's centre. With ``cover`` the grid grows (to multiples of ``divisor``) until it
    covers the whole image."""
    img = image if isinstance(image, sitk.Image) else _sitk(image)
    dims = img.GetDimension()
    spacing = np.asarray(spacing, dtype=float)[:dims]
    size = np.asarray(list(grid)[::-1], dtype=int)  # x, y[, z]
    if cover:
        extent = np.asarray(img.GetSize()) * np.asarray(img.GetSpacing())
        need = np.ceil(extent / spacing).astype(int)
        need = ((need + divisor - 1) // divisor) * divisor
        size = np.maximum(size, need)
    direction = np.asarray(img.GetDirection(), dtype=float).reshape(dims, dims)
    centre = image_centre(img)
    origin = centre - direction @ (spacing * (size - 1) / 2)
    ref = sitk.Image([int(v) for v in size], sitk.sitkFloat32)
    ref.SetSpacing(tuple(float(v) for v in spacing))
    ref.SetDirection(tuple(float(v) for v in direction.ravel()))
    ref.SetOrigin(tuple(float(v) for v in origin))
    return ref


def to_canonical(image: Image, reference: sitk.Image, *, transform: sitk.Transform | None = None,
                 label: bool = False, percentiles: Sequence[float] = (0.5, 99.5)) -> np.ndarray:
    """Resample ``image`` onto ``reference`` (through ``transform``: reference points -> image points).

    Intensities are normalised to [0, 1] first (linear interpolation, 0 outside); labels use nearest neighbour.
    Returns the array ((Z,) Y, X).
    """
    dims = reference.GetDimension()
    if label:
        src = _sitk(image, np.asarray(image.voxels).astype(np.int16))
        interp, out_type = sitk.sitkNearestNeighbor, sitk.sitkInt16
    else:
        src = _sitk(image, normalise(image.voxels, percentiles))
        interp, out_type = sitk.sitkLinear, sitk.sitkFloat32
    tx = transform if transform is not None else sitk.Transform(dims, sitk.sitkIdentity)
    out = sitk.Resample(src, reference, tx, interp, 0.0, out_type)
    arr = sitk.GetArrayFromImage(out)
    return arr.astype(np.int16 if label else np.float32)


def centre_translation(fixed: sitk.Image, moving: sitk.Image) -> sitk.Transform:
    """Translation mapping the fixed image's centre onto the moving image's centre (``--init geometry``)."""
    offset = image_centre(moving) - image_centre(fixed)
    return sitk.TranslationTransform(fixed.GetDimension(), tuple(float(v) for v in offset))



def preprocess_cases(ds: Any, cases: Sequence[str], plan: RegisterPlan, template: Any, what: str
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """Every case of ``ds`` on the plan's grid (centred on itself, or affinely aligned to ``template``, see
    :func:`template_case`): the images (N, *grid) normalised to [0, 1], and the label maps when the plan uses them."""
    images, labels = [], []
    t0 = time.perf_counter()
    for n, case in enumerate(cases):
        image, label = ds.load_image(case), ds.load_label(case)
        tx = None
        if template is not None:
            from medimg.classical.registration import register

            ref_image, ref = template
            tx = register(ref_image, image, method="affine", metric="mattes", init="moments", levels=(2, 1),
                          seed=0).transform
        else:
            ref = canonical_grid(image, plan.spacing, plan.grid)
        images.append(to_canonical(image, ref, transform=tx, percentiles=plan.percentiles))
        if label is not None and plan.n_labels > 1:
            labels.append(to_canonical(label, ref, transform=tx, label=True))
        if (n + 1) % 50 == 0:
            logger.info("preprocessed %d/%d %s (%.0f s)", n + 1, len(cases), what, time.perf_counter() - t0)
    arr = np.stack(images) if images else np.zeros((0, *plan.grid), np.float32)
    return arr, (np.stack(labels) if labels else None)


def template_case(ds: Any, cases: Sequence[str], plan: RegisterPlan) -> tuple[Any, Any]:
    """The training case of median size (ties: first id) and its grid: the space of affine pre-alignment."""
    sizes = [(int(np.prod(ds.header(c)[1])), c) for c in cases]
    sizes.sort()
    case = sizes[len(sizes) // 2][1]
    image = ds.load_image(case)
    return (image, canonical_grid(image, plan.spacing, plan.grid)), case
