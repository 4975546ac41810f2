"""Classical image registration on SimpleITK's registration framework: rigid, affine, B-spline and demons.

This module owns pairwise registration of a moving image onto a fixed image (:func:`register`) and re-exports
everything needed to use its transforms, which live in one module per job:

* :mod:`~medimg.classical.registration_transforms`: :class:`RegistrationResult`, applying a transform to another
  image or label map (:func:`warp`), the dense displacement field of a transform (:func:`displacement_field`)
  and its Jacobian statistics (:func:`jacobian_summary`), :func:`is_deformable`;
* :mod:`~medimg.classical.transform_files`: saving and loading transform files (:func:`save_transform`,
  :func:`load_transform`);
* :mod:`~medimg.classical.registration_quality`: :func:`checkerboard`, :func:`registration_figures`,
  :func:`inverse_consistency`;
* :mod:`~medimg.classical.registration_stages`: the ITK optimisation stages; and
  :mod:`~medimg.classical.registration_checks`: the input checks (shared with atlas and learned registration).

Conventions (those of ITK/SimpleITK, so that files interoperate with ITK, ANTs, 3D Slicer):

* A transform maps points of the **fixed** image (LPS mm) into the **moving** image: ``warped(x) =
  moving(T(x))`` for every voxel centre ``x`` of the fixed grid.
* A displacement field lives on the fixed grid and holds ``u(x) = T(x) - x`` in mm, components in physical
  ``x, y(, z)`` (LPS) order: an Image with 2 (2D) or 3 (3D) channels, ``(D, Z, Y, X)``.
* Deformable results (B-spline, demons) are a ``CompositeTransform`` ``[pre-alignment, deformable]``: the
  deformable part is applied first, then the affine/rigid pre-alignment (``T(x) = A(D(x))``).

Optimisation is SimpleITK's (``ImageRegistrationMethod`` with regular-step gradient descent or L-BFGS-B, and
the demons filters); nothing here is a home-made optimiser.

Repeatability: metric sampling is random with a fixed seed, and :func:`register` runs ITK with ``threads=1`` by
default, so two runs with the same inputs and settings give bit-identical transforms on any machine. ITK's
multi-threaded metric sums are combined in an order that changes from run to run; measured on MSD hippocampus
crops, an affine registration with 4 threads gave a different transform on each of three runs in one process,
and on small crops such differences can decide whether the optimiser converges or leaves the moving image.
``threads=0`` (all cores) is faster on large images but not repeatable.

Initialisation: ``init="geometry"`` (the default) aligns the image centres; when the optimiser then leaves the
moving field of view (seen on MSD hippocampus crops of very different extents), :func:`register` starts again
from ``init="moments"`` (centres of mass) and says so in ``params["init_used"]`` and
``params["init_fallback"]``.
"""

from __future__ import annotations

import logging
import time
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from medimg.classical.registration_checks import (
    NoOverlapError,
    check_image,
    check_levels,
    check_on_grid,
    check_same_dim,
    choice,
    float_sitk,
    mask_sitk,
)
from medimg.classical.registration_quality import checkerboard, inverse_consistency, registration_figures
from medimg.classical.registration_stages import (
    bspline_stage,
    demons_stage,
    evaluate_metric,
    itk_threads,
    linear_stage,
)
from medimg.classical.registration_transforms import (
    RegistrationResult,
    displacement_field,
    is_deformable,
    jacobian_summary,
    warp,
)
from medimg.classical.transform_files import TRANSFORM_EXTENSIONS, load_transform, save_transform
from medimg.core.errors import InvalidParameterError
from medimg.core.image import Image, Operation

__all__ = [
    "METHODS", "METRICS", "INITS", "TRANSFORM_EXTENSIONS", "RegistrationResult", "register", "warp",
    "displacement_field", "jacobian_summary", "save_transform", "load_transform", "checkerboard",
    "registration_figures", "inverse_consistency", "is_deformable", "NoOverlapError",
]

logger = logging.getLogger(__name__)

METHODS = ("rigid", "affine", "bspline", "demons", "diffeomorphic_demons")
METRICS = ("mattes", "ncc", "meansquares")
INITS = ("geometry", "moments", "none")
_DEFORMABLE = ("bspline", "demons", "diffeomorphic_demons")


# ---- public API --------------------------------------------------------------------------------------------------
def register(
    fixed: Image,
    moving: Image,
    *,
    method: str = "rigid",
    metric: str = "mattes",
    fixed_mask: Image | None = None,
    moving_mask: Image | None = None,
    init: str = "geometry",
    levels: Sequence[int] = (4, 2, 1),
    iterations: int | None = None,
    prealign: str = "affine",
    bspline_grid_mm: float = 40.0,
    field_sigma_vox: float = 1.5,
    sampling_fraction: float = 0.2,
    histogram_bins: int = 50,
    seed: int = 0,
    threads: int = 1,
) -> RegistrationResult:
    """Register ``moving`` onto ``fixed``: find T with ``moving(T(x)) ~ fixed(x)`` for fixed points x.

    Rigid (regular-step gradient descent) and affine (conjugate gradients with line search) registration
    optimise the chosen metric, with optimiser scales from physical shifts, over a
    multi-resolution pyramid (shrink factors ``levels``, Gaussian smoothing sigma ``factor / 2`` voxels,
    none at factor 1). B-spline (free-form deformation, control points every ``bspline_grid_mm``) and demons
    start from an affine (or rigid, ``prealign``) registration done here first with the same settings.
    Demons (Thirion's forces in the fast symmetric form, or diffeomorphic demons) runs on the pre-aligned,
    histogram-matched moving image, level by level, with Gaussian smoothing of the field (``field_sigma_vox``
    voxels of each level); **demons assumes the same modality** (it matches intensities, not statistics).

    Args:
        fixed, moving: single-channel intensity Images, both 2D or both 3D, (1, Z, Y, X), LPS mm.
        method: "rigid", "affine", "bspline", "demons" or "diffeomorphic_demons".
        metric: "mattes" (Mattes mutual information, ``histogram_bins`` bins; any modality pair), "ncc"
            (normalised cross-correlation) or "meansquares" (same modality and intensity scale).
        fixed_mask, moving_mask: optional masks on the fixed/moving grid; the metric uses only voxels inside.
        init: "geometry" (align image centres), "moments" (align intensity centres of mass) or "none". When
            "geometry" ends with fields of view that do not overlap, the registration starts again from
            "moments"; ``params["init_used"]`` says which initialisation the result comes from.
        levels: shrink factors per level, coarsest first, ending with 1.
        iterations: maximum iterations per level (default 200 rigid/affine, 100 B-spline, 50 demons).
        prealign: "affine" or "rigid": the pre-alignment of the deformable methods.
        bspline_grid_mm: B-spline control point spacing in mm (mesh size = extent / spacing).
        field_sigma_vox: demons field smoothing (standard deviation, voxels).
        sampling_fraction: fraction of fixed voxels sampled (randomly, seeded) by the metric, in (0, 1].
        histogram_bins: Mattes mutual information histogram bins.
        seed: seed of the metric sampling.
        threads: ITK threads; 1 (default) makes runs bit-identical, 0 uses every core (faster on large
            images, but ITK's multi-threaded sums then vary from run to run).

    Returns:
        :class:`RegistrationResult` (transform, warped moving image, metric before/after, time, ...).

    Raises:
        InvalidParameterError: unknown option; images not single-channel, 2D vs 3D, non-finite voxels; a mask
            not on its image's grid or empty; fields of view that do not overlap after initialisation (with
            init="geometry": neither after geometry nor after moments); a failure inside ITK (one line).

    Example:
        >>> yy, xx = np.mgrid[:40, :40]
        >>> fixed = Image.from_array(np.exp(-((xx - 20.0) ** 2 + (yy - 18.0) ** 2) / 60).astype(np.float32))
        >>> moving = Image.from_array(np.exp(-((xx - 22.0) ** 2 + (yy - 18.0) ** 2) / 60).astype(np.float32))
        >>> res = register(fixed, moving, method="rigid", metric="meansquares", levels=(1,), sampling_fraction=1)
        >>> [round(v, 1) for v in res.transform.TransformPoint((20.0, 18.0))]
        [22.0, 18.0]
    """
    method = choice(method, METHODS, "method")
    metric = choice(metric, METRICS, "metric")
    init = choice(init, INITS, "init")
    prealign = choice(prealign, ("affine", "rigid"), "prealign")
    fixed = check_image(fixed, "fixed")
    moving = check_image(moving, "moving")
    check_same_dim(fixed, moving, "fixed", "moving")
    check_on_grid(fixed, fixed_mask, "fixed", "fixed_mask")
    check_on_grid(moving, moving_mask, "moving", "moving_mask")
    lv = check_levels(levels)
    if not (0.0 < float(sampling_fraction) <= 1.0):
        raise InvalidParameterError("invalid sampling fraction", parameter="sampling_fraction",
                                    expected="a number in (0, 1]", found=sampling_fraction,
                                    fix="give e.g. 0.2 (20% of the fixed voxels)")
    if not float(bspline_grid_mm) > 0 or not float(field_sigma_vox) >= 0:
        raise InvalidParameterError("invalid spacing or sigma", parameter="bspline_grid_mm/field_sigma_vox",
                                    expected="bspline_grid_mm > 0 and field_sigma_vox >= 0",
                                    found=(bspline_grid_mm, field_sigma_vox), fix="give positive values")
    default_iters = {"rigid": 200, "affine": 100, "bspline": 100}.get(method, 50)
    n_iter = default_iters if iterations is None else int(iterations)
    if n_iter < 1:
        raise InvalidParameterError("invalid iterations", parameter="iterations", expected="an integer >= 1",
                                    found=iterations, fix="give e.g. 100")
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 0:
        raise InvalidParameterError("invalid number of threads", parameter="threads",
                                    expected="an integer >= 0 (0: all cores)", found=threads,
                                    fix="give 1 for repeatable results")
    with itk_threads(int(threads)):
        return _register(fixed, moving, method=method, metric=metric, fixed_mask=fixed_mask,
                         moving_mask=moving_mask, init=init, lv=lv, n_iter=n_iter, prealign=prealign,
                         bspline_grid_mm=bspline_grid_mm, field_sigma_vox=field_sigma_vox,
                         sampling_fraction=sampling_fraction, histogram_bins=histogram_bins, seed=seed,
                         threads=int(threads))


def _register(fixed: Image, moving: Image, *, method: str, metric: str, fixed_mask: Image | None,
              moving_mask: Image | None, init: str, lv: tuple[int, ...], n_iter: int, prealign: str,
              bspline_grid_mm: float, field_sigma_vox: float, sampling_fraction: float, histogram_bins: int,
              seed: int, threads: int) -> RegistrationResult:
    f_img, m_img = float_sitk(fixed), float_sitk(moving)
    f_mask, m_mask = mask_sitk(fixed_mask), mask_sitk(moving_mask)
    common = {"metric": metric, "fixed_mask": f_mask, "moving_mask": m_mask, "levels": lv,
              "sampling": float(sampling_fraction), "seed": int(seed), "bins": int(histogram_bins)}

    def optimise(start: str) -> tuple[sitk.Transform, int, str]:
        if method in ("rigid", "affine"):
            return linear_stage(f_img, m_img, method, iterations=n_iter, init=start, **common)
        pre, iters, _ = linear_stage(f_img, m_img, prealign, iterations=200 if prealign == "rigid" else 100,
                                      init=start, **common)
        if method == "bspline":
            tx, it2, stop = bspline_stage(f_img, m_img, pre, iterations=n_iter, grid_mm=float(bspline_grid_mm),
                                           init=start, **common)
        else:
            tx, it2, stop = demons_stage(f_img, m_img, pre, diffeomorphic=method == "diffeomorphic_demons",
                                          levels=lv, iterations=n_iter, field_sigma_vox=float(field_sigma_vox))
        return tx, iters + it2, stop

    t0 = time.perf_counter()
    init_used, fallback = init, None
    try:
        transform, iters, stop = optimise(init)
    except NoOverlapError as exc:
        if init != "geometry":
            raise
        # small crops of different extents (MSD hippocampus): centres aligned, the optimiser still left the
        # moving image; the intensity centres of mass are a better start
        fallback = f"init='geometry' failed ({exc.found}); started again from init='moments'"
        logger.info("registration: %s", fallback)
        init_used = "moments"
        transform, iters, stop = optimise("moments")
    seconds = time.perf_counter() - t0

    bins = int(histogram_bins)
    before = evaluate_metric(f_img, m_img, None, metric, f_mask, m_mask, bins)
    after = evaluate_metric(f_img, m_img, transform, metric, f_mask, m_mask, bins)
    params = {"method": method, "metric": metric, "init": init, "init_used": init_used, "levels": list(lv),
              "iterations": n_iter, "sampling_fraction": float(sampling_fraction), "histogram_bins": bins,
              "seed": int(seed), "threads": threads, "fixed_mask": fixed_mask is not None,
              "moving_mask": moving_mask is not None}
    if fallback:
        params["init_fallback"] = fallback
    if method in _DEFORMABLE:
        params["prealign"] = prealign
    if method == "bspline":
        params["bspline_grid_mm"] = float(bspline_grid_mm)
    if method in ("demons", "diffeomorphic_demons"):
        params["field_sigma_vox"] = float(field_sigma_vox)
    warped = warp(moving, transform, fixed, labels=False)
    warped = warped.replace(history=moving.history + (Operation("register", params),))
    logger.debug("register %s/%s: metric %.5g -> %.5g in %.2f s (%d iterations)", method, metric, before, after,
                 seconds, iters)
    return RegistrationResult(method=method, metric=metric, transform=transform, warped=warped,
                              metric_before=before, metric_after=after, iterations=int(iters), seconds=seconds,
                              stop_condition=stop, fixed_reference=fixed, params=params)
