"""Classical image registration on SimpleITK's registration framework: rigid, affine, B-spline and demons.

This module owns pairwise registration of a moving image onto a fixed image, the transforms it produces, and
everything needed to use them: applying a transform to another image or label map (:func:`warp`), saving and
loading transform files (:func:`save_transform`, :func:`load_transform`), the dense displacement field of a
transform (:func:`displacement_field`) and its Jacobian statistics (:func:`jacobian_summary`).

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
import math
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from medimg.core.enums import Kind
from medimg.core.errors import ImageReadError, ImageWriteError, InvalidParameterError
from medimg.core.image import Image, Operation
from medimg.io.sitk_bridge import from_sitk, to_sitk

__all__ = [
    "METHODS", "METRICS", "INITS", "RegistrationResult", "register", "warp", "displacement_field",
    "jacobian_summary", "save_transform", "load_transform", "checkerboard", "registration_figures",
    "inverse_consistency", "is_deformable", "NoOverlapError",
]

logger = logging.getLogger(__name__)

METHODS = ("rigid", "affine", "bspline", "demons", "diffeomorphic_demons")
METRICS = ("mattes", "ncc", "meansquares")
INITS = ("geometry", "moments", "none")
TRANSFORM_EXTENSIONS = (".tfm", ".txt", ".h5", ".hdf5")
_DEFORMABLE = ("bspline", "demons", "diffeomorphic_demons")
_DEFORMING_TRANSFORMS = ("BSplineTransform", "DisplacementFieldTransform")


@dataclass(frozen=True, eq=False)
class RegistrationResult:
    """What :func:`register` returns.

    Attributes:
        method, metric: as requested.
        transform: SimpleITK transform mapping fixed points (LPS mm) into the moving image; a
            ``CompositeTransform`` [pre-alignment, deformable] for bspline/demons.
        warped: the moving image resampled onto the fixed grid (float32, intensity).
        metric_before: the metric of the unregistered pair (identity transform), full resolution, every voxel.
        metric_after: the same metric with ``transform`` (lower is better for all three: ITK negates NCC and
            mutual information).
        iterations: optimiser iterations summed over levels (and demons iterations, for demons).
        seconds: wall time of the registration itself (no file I/O, no imports).
        stop_condition: the optimiser's (or demons filter's) last stop message.
        fixed_reference: the fixed image (its grid is the displacement field's).
        params: the settings used (JSON-friendly), seed included.
    """

    method: str
    metric: str
    transform: sitk.Transform
    warped: Image
    metric_before: float
    metric_after: float
    iterations: int
    seconds: float
    stop_condition: str
    fixed_reference: Image
    params: Mapping[str, Any] = field(default_factory=dict)

    def displacement_field(self) -> Image:
        """The displacement field of :attr:`transform` on the fixed grid (see :func:`displacement_field`)."""
        return displacement_field(self.transform, self.fixed_reference)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary: method, metric, metric before/after, iterations, seconds, settings."""
        return {
            "method": self.method, "metric": self.metric, "metric_before": self.metric_before,
            "metric_after": self.metric_after, "iterations": self.iterations, "seconds": self.seconds,
            "stop_condition": self.stop_condition, "transform_type": self.transform.GetName(),
            "params": dict(self.params),
        }


# ---- input checks ----------------------------------------------------------------------------------------------
def _check_image(image: Any, parameter: str) -> Image:
    if not isinstance(image, Image):
        raise InvalidParameterError(
            "not an Image", parameter=parameter, expected="medimg.Image", found=type(image).__name__,
            fix="read the file with medimg.io.read or build one with Image.from_array",
        )
    if image.n_channels != 1:
        raise InvalidParameterError(
            "registration works on one channel", parameter=parameter, expected="1 channel",
            found=f"{image.n_channels} channels",
            fix=f"pick one channel first, e.g. {parameter}.replace(voxels={parameter}.voxels[:1])",
        )
    arr = image.voxels
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise InvalidParameterError(
            "image has non-finite voxels", parameter=parameter, expected="no NaN or infinite voxels",
            found=f"{int(np.count_nonzero(~np.isfinite(arr)))} NaN/inf voxels",
            fix="replace them first (e.g. np.nan_to_num) or crop them away",
        )
    return image


def _check_same_dim(a: Image, b: Image, name_a: str, name_b: str) -> None:
    if a.is_2d != b.is_2d:
        dim = lambda im: "2D" if im.is_2d else "3D"  # noqa: E731
        raise InvalidParameterError(
            f"{name_a} and {name_b} have a different number of dimensions", parameter=name_b,
            expected=f"{dim(a)} like {name_a} {a.spatial_shape}", found=f"{dim(b)} {b.spatial_shape}",
            fix="give two 2D or two 3D images (extract the matching slice of the 3D one)",
        )


def _check_on_grid(image: Image, other: Image | None, image_name: str, parameter: str) -> Image | None:
    """``other`` (a mask or label map) must lie on ``image``'s voxel grid."""
    if other is None:
        return None
    if not isinstance(other, Image):
        raise InvalidParameterError(
            "not an Image", parameter=parameter, expected="medimg.Image", found=type(other).__name__,
            fix="read the file with medimg.io.read(path, kind='label')",
        )
    if other.n_channels != 1:
        raise InvalidParameterError(
            "expected one channel", parameter=parameter, expected="1 channel", found=f"{other.n_channels}",
            fix="give a single-channel mask or label map",
        )
    diffs = [] if image.spatial_shape == other.spatial_shape else [
        f"size {other.spatial_shape} instead of {image.spatial_shape}"]
    if not diffs:
        diffs = image.geometry.differences(other.geometry)
    if diffs:
        raise InvalidParameterError(
            f"{parameter} is not on the {image_name} image's voxel grid", parameter=parameter,
            expected=f"the grid of {image_name}", found="; ".join(diffs),
            fix=f"resample it onto {image_name} with nearest neighbour "
            f"(medimg.preprocess.resample_to(..., interpolation='nearest'))",
        )
    return other


def _choice(value: str, options: Sequence[str], parameter: str) -> str:
    v = str(value).lower().replace("-", "_")
    if v not in options:
        raise InvalidParameterError(
            "unknown value", parameter=parameter, expected=f"one of {', '.join(options)}", found=repr(value),
            fix=f"choose one of {', '.join(options)}",
        )
    return v


def _check_levels(levels: Sequence[int]) -> tuple[int, ...]:
    try:
        out = tuple(int(f) for f in levels)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError("invalid levels", parameter="levels", expected="shrink factors, e.g. (4, 2, 1)",
                                    found=repr(levels), fix="give integers >= 1, coarsest first") from exc
    if not out or any(f < 1 for f in out) or any(a < b for a, b in zip(out, out[1:])):
        raise InvalidParameterError("invalid levels", parameter="levels",
                                    expected="non-empty, integers >= 1, non-increasing, e.g. (4, 2, 1)",
                                    found=out, fix="give the shrink factors coarsest first, ending with 1")
    return out


# ---- conversions -----------------------------------------------------------------------------------------------
def _float_sitk(image: Image) -> sitk.Image:
    return sitk.Cast(to_sitk(image), sitk.sitkFloat32)


def _mask_sitk(mask: Image | None) -> sitk.Image | None:
    if mask is None:
        return None
    m = mask.voxels != 0
    if not m.any():
        raise InvalidParameterError("mask is empty", parameter="mask", expected="at least one non-zero voxel",
                                    found="0 voxels", fix="give a non-empty mask or none")
    return to_sitk(mask.replace(voxels=m.astype(np.uint8)))


def _bounds(img: sitk.Image) -> np.ndarray:
    """(2^D, D) physical corners of the image's voxel-centre box, widened by half a voxel."""
    size = np.array(img.GetSize())
    d = img.GetDimension()
    corners = []
    for bits in range(2**d):
        idx = [(-0.5 if (bits >> k) & 1 == 0 else size[k] - 0.5) for k in range(d)]
        corners.append(img.TransformContinuousIndexToPhysicalPoint(idx))
    return np.asarray(corners, float)


def _check_overlap(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform, init: str) -> None:
    """Raise when the fixed field of view, mapped by ``transform``, misses the moving one entirely."""
    mapped = np.array([transform.TransformPoint(tuple(p)) for p in _bounds(fixed)])
    mov = _bounds(moving)
    lo_a, hi_a = mapped.min(0), mapped.max(0)
    lo_b, hi_b = mov.min(0), mov.max(0)
    if np.any(hi_a < lo_b) or np.any(hi_b < lo_a):
        _raise_no_overlap(init, f"fixed box mapped to {np.round(lo_a, 1).tolist()}..{np.round(hi_a, 1).tolist()} "
                          f"mm, moving box {np.round(lo_b, 1).tolist()}..{np.round(hi_b, 1).tolist()} mm")


class NoOverlapError(InvalidParameterError):
    """The fixed and moving fields of view do not overlap (after initialisation, or during optimisation)."""


def _raise_no_overlap(init: str, found: str, cause: BaseException | None = None) -> None:
    fix = ("use init='moments' (CLI: --init moments) to align the centres of mass"
           if init != "moments" else "check the origins and directions of both images (medimg info)")
    raise NoOverlapError(
        f"fixed and moving fields of view do not overlap after initialisation (init={init!r})", parameter="moving",
        expected="overlapping physical extents", found=found, fix=fix,
    ) from cause


def _is_outside_error(exc: BaseException) -> bool:
    msg = str(exc)
    return "samples map outside moving image buffer" in msg or "outside moving image" in msg


# ---- transforms ------------------------------------------------------------------------------------------------
def _linear_transform(kind: str, dim: int) -> sitk.Transform:
    if kind == "rigid":
        return sitk.Euler2DTransform() if dim == 2 else sitk.Euler3DTransform()
    return sitk.AffineTransform(dim)


def _initial_transform(fixed: sitk.Image, moving: sitk.Image, kind: str, init: str) -> sitk.Transform:
    tx = _linear_transform(kind, fixed.GetDimension())
    if init == "none":
        # rotate about the fixed image's centre, no translation
        centre = fixed.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in fixed.GetSize()])
        tx.SetCenter(centre)
        return tx
    if init == "moments":
        # moments of intensities shifted to >= 0 (CT air at -1000 would otherwise pull the centre of mass)
        f = sitk.ShiftScale(fixed, -float(sitk.GetArrayViewFromImage(fixed).min()), 1.0)
        m = sitk.ShiftScale(moving, -float(sitk.GetArrayViewFromImage(moving).min()), 1.0)
        if float(sitk.GetArrayViewFromImage(f).sum()) <= 0 or float(sitk.GetArrayViewFromImage(m).sum()) <= 0:
            raise InvalidParameterError(
                "init='moments' needs an image that is not constant", parameter="init", expected="geometry or none",
                found="moments", fix="use init='geometry'")
        return sitk.CenteredTransformInitializer(f, m, tx, sitk.CenteredTransformInitializerFilter.MOMENTS)
    return sitk.CenteredTransformInitializer(fixed, moving, tx, sitk.CenteredTransformInitializerFilter.GEOMETRY)


def _set_metric(reg: sitk.ImageRegistrationMethod, metric: str, bins: int) -> None:
    if metric == "mattes":
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
    elif metric == "ncc":
        reg.SetMetricAsCorrelation()
    else:
        reg.SetMetricAsMeanSquares()


def _evaluate_metric(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform | None, metric: str,
                     fixed_mask: sitk.Image | None, moving_mask: sitk.Image | None, bins: int) -> float:
    """The metric at full resolution over every fixed voxel (NaN when no sample maps inside ``moving``)."""
    reg = sitk.ImageRegistrationMethod()
    _set_metric(reg, metric, bins)
    reg.SetMetricSamplingStrategy(reg.NONE)
    reg.SetInterpolator(sitk.sitkLinear)
    if fixed_mask is not None:
        reg.SetMetricFixedMask(fixed_mask)
    if moving_mask is not None:
        reg.SetMetricMovingMask(moving_mask)
    dim = fixed.GetDimension()
    if transform is not None:
        reg.SetMovingInitialTransform(transform)
    reg.SetInitialTransform(sitk.TranslationTransform(dim))
    try:
        return float(reg.MetricEvaluate(fixed, moving))
    except RuntimeError:
        return float("nan")


def _itk_seed(seed: int) -> int:
    """ITK's sampling seed for ``seed``: SimpleITK reads 0 as "seed from the wall clock", so shift by one."""
    return int(seed) + 1


def _multires(reg: sitk.ImageRegistrationMethod, levels: tuple[int, ...]) -> None:
    reg.SetShrinkFactorsPerLevel(list(levels))
    reg.SetSmoothingSigmasPerLevel([f / 2.0 if f > 1 else 0.0 for f in levels])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()


def _count_iterations(reg: sitk.ImageRegistrationMethod) -> list[int]:
    counter = [0]

    def _tick() -> None:
        counter[0] += 1

    reg.AddCommand(sitk.sitkIterationEvent, _tick)
    return counter


def _itk_message(exc: BaseException) -> str:
    """The ITK error text of a SimpleITK exception on one line, without the source file locations."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln.split("ITK ERROR:", 1)[-1].strip() for ln in lines
              if not ln.startswith("Exception thrown in SimpleITK") and not ln.endswith(":")]
    text = " ".join(useful) or " ".join(lines)
    return text[:300]


def _run(reg: sitk.ImageRegistrationMethod, fixed: sitk.Image, moving: sitk.Image, init: str) -> sitk.Transform:
    try:
        return reg.Execute(fixed, moving)
    except RuntimeError as exc:
        if _is_outside_error(exc):
            _raise_no_overlap(init, "the optimiser's samples all map outside the moving image", exc)
        raise InvalidParameterError(
            "the registration failed inside ITK", parameter="moving", expected="images ITK can register",
            found=_itk_message(exc), fix="check both images (medimg info): a constant image, or one with a "
            "single voxel along an axis, cannot be registered; try another --metric or --init") from exc


@contextmanager
def _itk_threads(threads: int):
    """Run ITK with ``threads`` threads (0: leave ITK's default, all cores) and restore the default after."""
    if threads == 0:
        yield
        return
    old = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(old)


def _linear_stage(fixed: sitk.Image, moving: sitk.Image, kind: str, *, metric: str, init: str,
                  fixed_mask: sitk.Image | None, moving_mask: sitk.Image | None, levels: tuple[int, ...],
                  iterations: int, sampling: float, seed: int, bins: int) -> tuple[sitk.Transform, int, str]:
    initial = _initial_transform(fixed, moving, kind, init)
    _check_overlap(fixed, moving, initial, init)
    reg = sitk.ImageRegistrationMethod()
    _set_metric(reg, metric, bins)
    if sampling < 1.0:
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        reg.SetMetricSamplingPercentage(sampling, _itk_seed(seed))
    else:
        reg.SetMetricSamplingStrategy(reg.NONE)
    if fixed_mask is not None:
        reg.SetMetricFixedMask(fixed_mask)
    if moving_mask is not None:
        reg.SetMetricMovingMask(moving_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    line_search = kind != "rigid"

    def optimiser(line: bool) -> None:
        if line:
            # regular-step descent often stalls on the 6/12 affine parameters (it ended below the rigid optimum on
            # the real 2D head pair); a line search along conjugate directions does not
            reg.SetOptimizerAsConjugateGradientLineSearch(
                learningRate=1.0, numberOfIterations=iterations, convergenceMinimumValue=1e-6,
                convergenceWindowSize=10,
                maximumStepSizeInPhysicalUnits=float(min(fixed.GetSpacing())))
        else:
            reg.SetOptimizerAsRegularStepGradientDescent(
                learningRate=1.0, minStep=1e-4, numberOfIterations=iterations, relaxationFactor=0.5,
                gradientMagnitudeTolerance=1e-8)
        reg.SetOptimizerScalesFromPhysicalShift()

    optimiser(line_search)
    _multires(reg, levels)
    reg.SetInitialTransform(initial, inPlace=False)
    counter = _count_iterations(reg)
    try:
        out = _run(reg, fixed, moving, init)
    except NoOverlapError:
        if not line_search:
            raise
        # the line search can step the whole image out of the moving field of view on small crops (MSD
        # hippocampus): the overlap was checked above, so retry with the bounded regular-step descent
        logger.info("affine line search left the moving field of view; retrying with regular-step descent")
        optimiser(False)
        counter[0] = 0
        out = _run(reg, fixed, moving, init)
    return _unwrap(out), counter[0], reg.GetOptimizerStopConditionDescription()


def _unwrap(tx: sitk.Transform) -> sitk.Transform:
    """The single transform inside a one-element composite (what Execute returns with inPlace=False)."""
    if tx.GetName() == "CompositeTransform":
        comp = sitk.CompositeTransform(tx)
        if comp.GetNumberOfTransforms() == 1:
            return comp.GetNthTransform(0).Downcast()
    return tx.Downcast() if hasattr(tx, "Downcast") else tx


def _bspline_stage(fixed: sitk.Image, moving: sitk.Image, prealign: sitk.Transform, *, metric: str, init: str,
                   fixed_mask: sitk.Image | None, moving_mask: sitk.Image | None, levels: tuple[int, ...],
                   iterations: int, sampling: float, seed: int, bins: int,
                   grid_mm: float) -> tuple[sitk.Transform, int, str]:
    extent = np.array(fixed.GetSize()) * np.array(fixed.GetSpacing())
    mesh = [max(1, int(math.ceil(e / grid_mm))) for e in extent]
    bspline = sitk.BSplineTransformInitializer(fixed, mesh, order=3)
    reg = sitk.ImageRegistrationMethod()
    _set_metric(reg, metric, bins)
    if sampling < 1.0:
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        reg.SetMetricSamplingPercentage(sampling, _itk_seed(seed))
    if fixed_mask is not None:
        reg.SetMetricFixedMask(fixed_mask)
    if moving_mask is not None:
        reg.SetMetricMovingMask(moving_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=iterations,
                             maximumNumberOfCorrections=5, maximumNumberOfFunctionEvaluations=4 * iterations,
                             costFunctionConvergenceFactor=1e7)
    _multires(reg, levels)
    reg.SetMovingInitialTransform(prealign)
    reg.SetInitialTransform(bspline, inPlace=True)
    counter = _count_iterations(reg)
    _run(reg, fixed, moving, init)
    composite = sitk.CompositeTransform([prealign, bspline])
    return composite, counter[0], reg.GetOptimizerStopConditionDescription()


def _demons_stage(fixed: sitk.Image, moving: sitk.Image, prealign: sitk.Transform, *, diffeomorphic: bool,
                  levels: tuple[int, ...], iterations: int,
                  field_sigma_vox: float) -> tuple[sitk.Transform, int, str]:
    # the moving image pre-aligned onto the fixed grid, its histogram matched to the fixed one
    lowest = float(sitk.GetArrayViewFromImage(moving).min())
    pre = sitk.Resample(moving, fixed, prealign, sitk.sitkLinear, lowest, sitk.sitkFloat32)
    matcher = sitk.HistogramMatchingImageFilter()
    matcher.SetNumberOfHistogramLevels(256)
    matcher.SetNumberOfMatchPoints(15)
    matcher.ThresholdAtMeanIntensityOn()
    pre = matcher.Execute(pre, fixed)
    dim = fixed.GetDimension()
    field_img: sitk.Image | None = None
    total, stop = 0, ""
    for f in levels:
        if f > 1:
            sigma = [f / 2.0 * s for s in fixed.GetSpacing()]
            fl = sitk.Shrink(sitk.SmoothingRecursiveGaussian(fixed, sigma), [f] * dim)
            ml = sitk.Shrink(sitk.SmoothingRecursiveGaussian(pre, sigma), [f] * dim)
        else:
            fl, ml = fixed, pre
        if field_img is None:
            init_field = sitk.Image(fl.GetSize(), sitk.sitkVectorFloat64, dim)
            init_field.CopyInformation(fl)
        else:
            init_field = sitk.Resample(field_img, fl, sitk.Transform(), sitk.sitkLinear, 0.0,
                                       sitk.sitkVectorFloat64)
        flt = (sitk.DiffeomorphicDemonsRegistrationFilter() if diffeomorphic
               else sitk.FastSymmetricForcesDemonsRegistrationFilter())
        flt.SetNumberOfIterations(iterations)
        flt.SetSmoothDisplacementField(True)
        flt.SetStandardDeviations(float(field_sigma_vox))
        flt.SetMaximumRMSError(0.01)
        field_img = flt.Execute(fl, ml, init_field)
        total += int(flt.GetElapsedIterations())
        stop = f"{flt.GetName()}: {flt.GetElapsedIterations()} iterations at shrink {f}, RMS change " \
               f"{flt.GetRMSChange():.4g}"
    assert field_img is not None
    dtx = sitk.DisplacementFieldTransform(sitk.Cast(field_img, sitk.sitkVectorFloat64))
    return sitk.CompositeTransform([prealign, dtx]), total, stop


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
    method = _choice(method, METHODS, "method")
    metric = _choice(metric, METRICS, "metric")
    init = _choice(init, INITS, "init")
    prealign = _choice(prealign, ("affine", "rigid"), "prealign")
    fixed = _check_image(fixed, "fixed")
    moving = _check_image(moving, "moving")
    _check_same_dim(fixed, moving, "fixed", "moving")
    _check_on_grid(fixed, fixed_mask, "fixed", "fixed_mask")
    _check_on_grid(moving, moving_mask, "moving", "moving_mask")
    lv = _check_levels(levels)
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
    with _itk_threads(int(threads)):
        return _register(fixed, moving, method=method, metric=metric, fixed_mask=fixed_mask,
                         moving_mask=moving_mask, init=init, lv=lv, n_iter=n_iter, prealign=prealign,
                         bspline_grid_mm=bspline_grid_mm, field_sigma_vox=field_sigma_vox,
                         sampling_fraction=sampling_fraction, histogram_bins=histogram_bins, seed=seed,
                         threads=int(threads))


def _register(fixed: Image, moving: Image, *, method: str, metric: str, fixed_mask: Image | None,
              moving_mask: Image | None, init: str, lv: tuple[int, ...], n_iter: int, prealign: str,
              bspline_grid_mm: float, field_sigma_vox: float, sampling_fraction: float, histogram_bins: int,
              seed: int, threads: int) -> RegistrationResult:
    f_img, m_img = _float_sitk(fixed), _float_sitk(moving)
    f_mask, m_mask = _mask_sitk(fixed_mask), _mask_sitk(moving_mask)
    common = {"metric": metric, "fixed_mask": f_mask, "moving_mask": m_mask, "levels": lv,
              "sampling": float(sampling_fraction), "seed": int(seed), "bins": int(histogram_bins)}

    def optimise(start: str) -> tuple[sitk.Transform, int, str]:
        if method in ("rigid", "affine"):
            return _linear_stage(f_img, m_img, method, iterations=n_iter, init=start, **common)
        pre, iters, _ = _linear_stage(f_img, m_img, prealign, iterations=200 if prealign == "rigid" else 100,
                                      init=start, **common)
        if method == "bspline":
            tx, it2, stop = _bspline_stage(f_img, m_img, pre, iterations=n_iter, grid_mm=float(bspline_grid_mm),
                                           init=start, **common)
        else:
            tx, it2, stop = _demons_stage(f_img, m_img, pre, diffeomorphic=method == "diffeomorphic_demons",
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
    before = _evaluate_metric(f_img, m_img, None, metric, f_mask, m_mask, bins)
    after = _evaluate_metric(f_img, m_img, transform, metric, f_mask, m_mask, bins)
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


def _transform_dim(transform: sitk.Transform) -> int:
    return int(transform.GetDimension())


def warp(image: Image, transform: sitk.Transform, reference: Image, *, labels: bool | None = None) -> Image:
    """Resample ``image`` onto ``reference``'s grid through ``transform`` (reference points -> image points).

    Args:
        image: (C, Z, Y, X) image or label map (on the moving side of ``transform``).
        transform: a SimpleITK transform, e.g. :attr:`RegistrationResult.transform` or :func:`load_transform`.
        reference: the image whose grid is used (usually the fixed image); its voxels are not read.
        labels: nearest-neighbour interpolation and the input dtype, outside = 0; False: linear interpolation,
            float32, outside = the image minimum. None (default): decided by ``image.kind``.

    Returns:
        A new Image on ``reference``'s grid with ``image``'s kind and metadata and "warp" in its history.

    Raises:
        InvalidParameterError: 2D vs 3D mismatch between image, reference and transform; non-finite voxels.

    >>> img = Image.from_array(np.arange(12, dtype=np.float32).reshape(3, 4))
    >>> tx = sitk.TranslationTransform(2, (1.0, 0.0))
    >>> warp(img, tx, img).array[0, 0].tolist()
    [1.0, 2.0, 3.0, 0.0]
    """
    if not isinstance(image, Image) or not isinstance(reference, Image):
        bad = "image" if not isinstance(image, Image) else "reference"
        raise InvalidParameterError("not an Image", parameter=bad, expected="medimg.Image",
                                    found=type(image if bad == "image" else reference).__name__,
                                    fix="read the file with medimg.io.read")
    _check_same_dim(reference, image, "reference", "image")
    if not isinstance(transform, sitk.Transform):
        raise InvalidParameterError("not a SimpleITK transform", parameter="transform", expected="SimpleITK.Transform",
                                    found=type(transform).__name__, fix="load it with load_transform(path)")
    dim = 2 if reference.is_2d else 3
    if _transform_dim(transform) != dim:
        raise InvalidParameterError(
            "transform and image have a different number of dimensions", parameter="transform",
            expected=f"a {dim}D transform for {dim}D images", found=f"a {_transform_dim(transform)}D transform",
            fix="use the transform registered between images of this dimension")
    is_label = image.kind == Kind.LABEL if labels is None else bool(labels)
    vox = image.voxels
    if np.issubdtype(vox.dtype, np.floating) and not np.all(np.isfinite(vox)):
        raise InvalidParameterError("image has non-finite voxels", parameter="image",
                                    expected="no NaN or infinite voxels", found="NaN/inf voxels",
                                    fix="replace them first (e.g. np.nan_to_num)")
    ref = to_sitk(reference.replace(voxels=np.zeros((1,) + reference.spatial_shape, np.uint8)))
    src = to_sitk(image)
    if is_label:
        if np.issubdtype(vox.dtype, np.floating):
            src = sitk.Cast(to_sitk(image.replace(voxels=np.rint(vox).astype(np.int32))), sitk.sitkInt32)
        out = sitk.Resample(src, ref, transform, sitk.sitkNearestNeighbor, 0)
        kind = Kind.LABEL
    else:
        lowest = float(vox.min())
        src = sitk.Cast(src, sitk.sitkVectorFloat32 if image.n_channels > 1 else sitk.sitkFloat32)
        out = sitk.Resample(src, ref, transform, sitk.sitkLinear, lowest)
        kind = image.kind
    result = from_sitk(out, kind=kind)
    arr = result.voxels
    if is_label and arr.dtype != vox.dtype and not np.issubdtype(vox.dtype, np.floating):
        arr = arr.astype(vox.dtype)
    params = {"transform": transform.GetName(), "interpolation": "nearest" if is_label else "linear",
              "reference_shape": reference.spatial_shape}
    return image.derive(arr, operation="warp", params=params, geometry=reference.geometry, kind=kind)


def displacement_field(transform: sitk.Transform | RegistrationResult, reference: Image | None = None) -> Image:
    """Dense displacement field ``u(x) = T(x) - x`` of a transform on ``reference``'s grid.

    ITK convention: the field lives on the fixed (reference) grid and maps fixed points into the moving image
    (``T(x) = x + u(x)``); components are physical ``x, y(, z)`` in mm (LPS), stored as channels.

    Args:
        transform: a SimpleITK transform, or a :class:`RegistrationResult` (its fixed image is the default
            reference).
        reference: the grid; required for a bare transform.

    Returns:
        float32 Image (D, Z, Y, X), D = 2 for 2D grids and 3 for 3D, kind intensity.

    >>> ref = Image.from_array(np.zeros((3, 4), np.float32))
    >>> displacement_field(sitk.TranslationTransform(2, (1.5, -2.0)), ref).voxels[:, 0, 0, 0].tolist()
    [1.5, -2.0]
    """
    if isinstance(transform, RegistrationResult):
        reference = transform.fixed_reference if reference is None else reference
        transform = transform.transform
    if reference is None or not isinstance(reference, Image):
        raise InvalidParameterError("a reference Image is needed", parameter="reference",
                                    expected="the fixed image (its grid)", found=type(reference).__name__,
                                    fix="pass the fixed image as reference")
    dim = 2 if reference.is_2d else 3
    if _transform_dim(transform) != dim:
        raise InvalidParameterError(
            "transform and reference have a different number of dimensions", parameter="transform",
            expected=f"a {dim}D transform", found=f"{_transform_dim(transform)}D", fix="give a matching reference")
    ref = to_sitk(reference.replace(voxels=np.zeros((1,) + reference.spatial_shape, np.uint8)))
    flt = sitk.TransformToDisplacementFieldFilter()
    flt.SetReferenceImage(ref)
    flt.SetOutputPixelType(sitk.sitkVectorFloat64)
    out = flt.Execute(transform)
    img = from_sitk(out, kind=Kind.INTENSITY)
    vox = img.voxels.astype(np.float32)
    return Image(voxels=vox, geometry=reference.geometry, kind=Kind.INTENSITY,
                 metadata={"displacement_field": "ITK: fixed grid, u = T(x) - x in mm, physical x y z components"},
                 history=(Operation("displacement_field", {"transform": transform.GetName()}),))


def jacobian_summary(field: Image, *, mask: Image | None = None) -> dict[str, float]:
    """Jacobian determinant statistics of a displacement field (see :func:`displacement_field`).

    Uses :func:`medimg.metrics.registration.jacobian_statistics`: ``folding_fraction`` (det <= 0),
    ``std_log_jacobian`` (SDlogJ), mean/std/min/max of the determinant, ``n_folding``.

    Args:
        field: (D, Z, Y, X) Image, physical x, y(, z) components in mm (ITK convention).
        mask: optional region (e.g. the fixed foreground) on the field's grid.

    >>> ref = Image.from_array(np.zeros((5, 6), np.float32))
    >>> jacobian_summary(displacement_field(sitk.TranslationTransform(2, (1.0, 0.0)), ref))["folding_fraction"]
    0.0
    """
    from medimg.metrics.registration import jacobian_statistics

    if not isinstance(field, Image):
        raise InvalidParameterError("not an Image", parameter="field", expected="a displacement field Image",
                                    found=type(field).__name__, fix="use displacement_field(...)")
    d = 2 if field.is_2d else 3
    if field.n_channels != d:
        raise InvalidParameterError("not a displacement field", parameter="field",
                                    expected=f"{d} channels (x, y{', z' if d == 3 else ''} in mm) on a {d}D grid",
                                    found=f"{field.n_channels} channel(s)", fix="use displacement_field(...)")
    vox = np.asarray(field.voxels, dtype=np.float64)
    if d == 2:
        vox = vox[:, 0]
    # physical components -> components along the index axes (u_idx = D^T u) for the finite differences
    direction = field.geometry.direction_matrix[:d, :d]
    comps = np.tensordot(direction.T, vox, axes=(1, 0))
    m = None
    if mask is not None:
        _check_on_grid(field, mask, "field", "mask")
        m = mask.array != 0
        if d == 2:
            m = m[0]
    return jacobian_statistics(comps, spacing_mm=field.geometry.spacing[:d], mask=m)


def is_deformable(transform: sitk.Transform) -> bool:
    """True when the transform (or a part of a composite) is a B-spline or a displacement field: its displacement
    varies in space beyond a linear map (B-spline, demons and learned results).

    >>> is_deformable(sitk.AffineTransform(3)), is_deformable(sitk.BSplineTransform(2))
    (False, True)
    """
    return any(tx.GetName() in _DEFORMING_TRANSFORMS for tx in _components(transform))


# ---- transform files -------------------------------------------------------------------------------------------
def _has_displacement_field(transform: sitk.Transform) -> bool:
    if transform.GetName() == "DisplacementFieldTransform":
        return True
    if transform.GetName() == "CompositeTransform":
        comp = sitk.CompositeTransform(transform)
        return any(_has_displacement_field(comp.GetNthTransform(i)) for i in range(comp.GetNumberOfTransforms()))
    return False


def save_transform(transform: sitk.Transform, path: str | os.PathLike[str], *,
                   inputs: Sequence[str | os.PathLike[str]] = ()) -> Path:
    """Write a transform as an ITK transform file (.tfm/.txt text, or .h5 HDF5), atomically.

    A transform that holds a displacement field (demons) must go to .h5.

    Raises:
        ImageWriteError: unknown extension, a displacement field to a text file, ``path`` is one of ``inputs``.
    """
    from medimg.io.files import atomic_output, compound_suffix

    out = Path(path)
    ext = compound_suffix(out)
    if ext not in TRANSFORM_EXTENSIONS:
        raise ImageWriteError("unknown transform file extension", path=out,
                              expected=f"one of {', '.join(TRANSFORM_EXTENSIONS)}", found=f"'{ext or 'none'}'",
                              fix="name it transform.tfm (rigid/affine) or transform.h5 (any transform)")
    if ext in (".tfm", ".txt") and _has_displacement_field(transform):
        raise ImageWriteError("a displacement-field transform cannot be written as text", path=out,
                              expected=".h5", found=ext, fix="save it as transform.h5")
    with atomic_output(out, inputs=inputs) as tmp:
        try:
            sitk.WriteTransform(transform, str(tmp))
        except RuntimeError as exc:
            raise ImageWriteError("cannot write the transform", path=out, found=str(exc).splitlines()[-1][:200],
                                  fix="check the folder is writable and the extension is .tfm or .h5") from exc
    return out


def load_transform(path: str | os.PathLike[str]) -> sitk.Transform:
    """Read an ITK transform file (.tfm/.txt "#Insight Transform File", .h5 HDF5, as written by medimg, ITK,
    ANTs (.h5) or 3D Slicer).

    Raises:
        ImageReadError: the file is missing or is not an ITK transform (an FSL .mat matrix, an elastix
            parameter file, a truncated .h5, ...), with the file named.
    """
    from medimg.io.files import check_input

    p = check_input(path, allow_dir=False)
    fix = ("give an ITK transform file (.tfm or .h5, e.g. OUT/transform.* from medimg register); convert an FSL "
           ".mat with c3d_affine_tool -fsl2ras -oitk, or elastix parameters with transformix/itk-elastix")
    head = p.read_bytes()[:512]
    is_hdf5 = head.startswith(b"\x89HDF")
    is_text = head.lstrip().startswith(b"#Insight Transform File")
    is_itk_mat = p.suffix.lower() == ".mat" and head[:8] != b"" and not _looks_like_text(head)
    if not (is_hdf5 or is_text or is_itk_mat):
        first = head.decode("utf-8", "replace").strip().splitlines()[0][:60] if head.strip() else "an empty file"
        raise ImageReadError("not an ITK transform file", path=p,
                             expected="'#Insight Transform File' text or ITK HDF5", found=repr(first), fix=fix)
    # ITK's readers trust the declared sizes: a 170-byte B-spline file declaring a 100000^3 grid aborts the
    # process ("double free or corruption"). Text files are checked here; binary ones are read once in a child
    # process first, so that a crash there is an error here.
    if is_text:
        _check_text_transform(p, fix)
    else:
        _probe_transform_in_child(p, fix)
    try:
        tx = sitk.ReadTransform(str(p))
    except RuntimeError as exc:
        raise ImageReadError("cannot read the transform (damaged or not an ITK transform)", path=p,
                             expected="a complete ITK transform file", found=str(exc).strip().splitlines()[-1][:160],
                             fix=fix) from exc
    return tx.Downcast() if hasattr(tx, "Downcast") else tx


#: transform types whose fixed parameters declare a grid: size (D), origin (D), spacing (D), direction (D x D),
#: with D values per grid point in Parameters
_GRID_TRANSFORMS = ("BSplineTransform", "BSplineDeformableTransform", "DisplacementFieldTransform",
                    "GaussianSmoothingOnUpdateDisplacementFieldTransform",
                    "BSplineSmoothingOnUpdateDisplacementFieldTransform", "ConstantVelocityFieldTransform",
                    "GaussianExponentialDiffeomorphicTransform", "BSplineExponentialDiffeomorphicTransform")
_MAX_TRANSFORM_FILE = 2 * 1024**3
_TRANSFORM_NAME = re.compile(r"^([A-Za-z0-9]+)_(double|float)_(\d+)_(\d+)$")


def _check_text_transform(p: Path, fix: str) -> None:
    """Check an ITK text transform file before ITK reads it: known layout, finite numbers, and for grid
    transforms (B-spline, displacement field) a grid size that matches the number of parameters given.

    Raises:
        ImageReadError: naming the file, the transform and what does not add up.
    """
    size = p.stat().st_size
    if size > _MAX_TRANSFORM_FILE:
        raise ImageReadError("transform file too large", path=p, expected=f"at most {_MAX_TRANSFORM_FILE} bytes",
                             found=f"{size} bytes", fix=fix)
    try:
        text = p.read_text(encoding="ascii")
    except UnicodeDecodeError as exc:
        raise ImageReadError("not an ITK text transform file", path=p, expected="ASCII text",
                             found="non-ASCII bytes", fix=fix) from exc

    def bad(what: str, found: Any, expected: str) -> ImageReadError:
        return ImageReadError(f"invalid transform file: {what}", path=p, expected=expected, found=found, fix=fix)

    blocks: list[dict[str, Any]] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep or key not in ("Transform", "Parameters", "FixedParameters"):
            raise bad(f"line {n} is not 'Transform:', 'Parameters:' or 'FixedParameters:'", repr(line[:60]),
                      "the ITK text transform layout")
        if key == "Transform":
            blocks.append({"name": value.strip(), "line": n})
            continue
        if not blocks:
            raise bad(f"line {n}: {key} before any 'Transform:' line", repr(line[:60]), "a 'Transform:' line first")
        if key in blocks[-1]:
            raise bad(f"line {n}: a second {key} line for one transform", repr(line[:60]), "one line of each")
        try:
            values = np.array(value.split(), dtype=float)
        except ValueError:
            raise bad(f"line {n}: {key} holds something other than numbers", repr(value.strip()[:60]),
                      "numbers separated by spaces") from None
        if not np.all(np.isfinite(values)):
            raise bad(f"line {n}: {key} holds NaN or infinite values", f"{int((~np.isfinite(values)).sum())} "
                      "non-finite values", "finite numbers")
        blocks[-1][key] = values
    if not blocks:
        raise bad("no 'Transform:' line", "none", "at least one transform")
    for b in blocks:
        m = _TRANSFORM_NAME.match(b["name"])
        if not m:
            raise bad(f"line {b['line']}: unknown transform name", repr(b["name"][:60]),
                      "a name like AffineTransform_double_3_3")
        kind, d_in, d_out = m.group(1), int(m.group(3)), int(m.group(4))
        if d_in not in (2, 3) or d_out not in (2, 3):
            raise bad(f"line {b['line']}: {d_in}D -> {d_out}D transform", b["name"], "a 2D or 3D transform")
        if kind == "CompositeTransform":
            continue
        if "Parameters" not in b or "FixedParameters" not in b:
            raise bad(f"line {b['line']}: {kind} without Parameters and FixedParameters lines", "a missing line",
                      "both lines after each 'Transform:' line")
        if kind in _GRID_TRANSFORMS:
            _check_grid(b, kind, d_in, bad)


def _check_grid(block: dict[str, Any], kind: str, dim: int, bad: Any) -> None:
    fixed, params = block["FixedParameters"], block["Parameters"]
    n_fixed = dim * (dim + 3)
    if fixed.size != n_fixed:
        raise bad(f"{kind} has {fixed.size} fixed parameters", f"{fixed.size} values",
                  f"{n_fixed} (grid size, origin, spacing, direction)")
    grid, spacing, direction = fixed[:dim], fixed[2 * dim:3 * dim], fixed[3 * dim:].reshape(dim, dim)
    if np.any(grid < 1) or np.any(grid != np.round(grid)):
        raise bad(f"{kind} grid size {grid.tolist()}", grid.tolist(), "whole numbers >= 1")
    if np.any(spacing <= 0) or abs(float(np.linalg.det(direction))) < 1e-6:
        raise bad(f"{kind} grid spacing/direction", f"spacing {spacing.tolist()}",
                  "spacing > 0 and an invertible direction")
    points = math.prod(int(v) for v in grid)
    if points * dim != params.size:
        raise bad(f"{kind} declares a grid of {' x '.join(str(int(v)) for v in grid)} points",
                  f"{params.size} parameters", f"{dim} per grid point = {points * dim} parameters")


def _probe_transform_in_child(p: Path, fix: str) -> None:
    """Read a binary transform file (HDF5, .mat) once in a child process with a memory limit: ITK aborts the
    whole process on some damaged files, and a crash in the child becomes a one-line error here."""
    import subprocess
    import sys

    code = ("import resource, sys\n"
            "limit = 8 * 1024 ** 3\n"
            "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
            "import SimpleITK as sitk\n"
            "sitk.ReadTransform(sys.argv[1])\n")
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as exc:
        raise ImageReadError("reading the transform did not finish in 300 s", path=p,
                             expected="a complete ITK transform file", found="a reader that hangs", fix=fix) from exc
    if proc.returncode == 0:
        return
    lines = [ln.strip() for ln in (proc.stderr or "").splitlines() if ln.strip()]
    if proc.returncode < 0:
        found = f"ITK's reader crashed (signal {-proc.returncode})"
    elif any("MemoryError" in ln or "bad_alloc" in ln for ln in lines):
        found = "ITK's reader ran out of memory (the file declares a huge transform)"
    else:
        found = lines[-1][:160] if lines else f"exit code {proc.returncode}"
    raise ImageReadError("cannot read the transform (damaged or not an ITK transform)", path=p,
                         expected="a complete ITK transform file", found=found, fix=fix)


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("ascii")
    except UnicodeDecodeError:
        return False
    return True


# ---- quality checks: checkerboard, figures, inverse consistency -------------------------------------------------
def _spatial(image: Image | np.ndarray, parameter: str) -> np.ndarray:
    """(Y, X) for 2D Images, (Z, Y, X) for 3D Images; plain arrays are returned as given (2D or 3D)."""
    if isinstance(image, Image):
        if image.n_channels != 1:
            raise InvalidParameterError("expected one channel", parameter=parameter, expected="1 channel",
                                        found=f"{image.n_channels}", fix="pick one channel first")
        arr = np.asarray(image.voxels[0])
        return arr[0] if image.is_2d else arr
    arr = np.asarray(image)
    if arr.ndim not in (2, 3):
        raise InvalidParameterError("expected a 2D or 3D array", parameter=parameter, expected="(Y, X) or (Z, Y, X)",
                                    found=arr.shape, fix="give one channel of an image on the fixed grid")
    return arr


def checkerboard(fixed: Image | np.ndarray, warped: Image | np.ndarray, *, squares: int = 8) -> np.ndarray:
    """Checkerboard of two images on one grid: tiles alternate between ``fixed`` and ``warped``.

    Intensities are copied unchanged (no rescaling), as float64. Each axis is cut into ``squares`` tiles
    (the last one may be smaller); a tile comes from ``fixed`` when the sum of its tile indices is even.

    Args:
        fixed, warped: Images on the same grid (one channel), or arrays (Y, X) / (Z, Y, X) of one shape.
        squares: tiles per axis (>= 1).

    Returns:
        (Y, X) array for 2D inputs, (Z, Y, X) for 3D.

    Raises:
        InvalidParameterError: shapes differ, ``squares`` < 1.

    >>> checkerboard(np.zeros((4, 4)), np.ones((4, 4)), squares=2).tolist()[0]
    [0.0, 0.0, 1.0, 1.0]
    """
    a, b = _spatial(fixed, "fixed"), _spatial(warped, "warped")
    if a.shape != b.shape:
        raise InvalidParameterError("fixed and warped differ in shape", parameter="warped", expected=a.shape,
                                    found=b.shape, fix="resample the moving image onto the fixed grid (warp)")
    if int(squares) < 1:
        raise InvalidParameterError("invalid squares", parameter="squares", expected="an integer >= 1",
                                    found=squares, fix="give e.g. 8")
    n = int(squares)
    parity = np.zeros(a.shape, dtype=np.int64)
    for axis, size in enumerate(a.shape):
        tile = max(1, math.ceil(size / n))
        idx = np.arange(size) // tile
        shape = [1] * a.ndim
        shape[axis] = size
        parity = parity + idx.reshape(shape)
    return np.where(parity % 2 == 0, a.astype(np.float64), b.astype(np.float64))


def _middle_slice(arr: np.ndarray) -> np.ndarray:
    return arr if arr.ndim == 2 else arr[arr.shape[0] // 2]


def _render(draw: Any, *, width_px: int, height_px: int) -> np.ndarray:
    """Run ``draw(fig)`` on a matplotlib (Agg) figure and return its pixels as (H, W, 3) uint8."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    draw(fig)
    canvas.draw()
    return np.ascontiguousarray(np.asarray(canvas.buffer_rgba())[..., :3])


def registration_figures(result: RegistrationResult, moving_before: Image, *, squares: int = 8,
                         grid_step_vox: int | None = None) -> dict[str, np.ndarray]:
    """Figures of a registration on the middle slice of the fixed grid (2D images: the image itself).

    * ``"checkerboard"``: fixed and moving before (left) and fixed and warped after (right), alternating tiles
      (:func:`checkerboard`), both windowed to the fixed image's 1st-99th percentile.
    * ``"difference"``: ``|fixed - moving|`` before and ``|fixed - warped|`` after, one colour scale (0 to the
      99th percentile of the difference before), so the two panels compare directly.
    * ``"deformation grid"`` (deformable transforms only, :func:`is_deformable`: bspline, demons, learned):
      lines of the fixed voxel grid moved to ``T(x)`` (the full transform, pre-alignment included), drawn in
      fixed voxel indices over the fixed slice; in 3D the in-plane (x, y) components of the displacement are drawn.

    Args:
        result: what :func:`register` returned.
        moving_before: the moving image on the fixed grid without any transform (``warp`` with the identity).
        squares: checkerboard tiles per axis.
        grid_step_vox: spacing of the grid lines in voxels (default: about 24 lines across the slice).

    Returns:
        caption -> (H, W, 3) uint8 RGB array, in the order above.

    Raises:
        InvalidParameterError: ``moving_before`` is not on the fixed grid.
    """
    fixed = result.fixed_reference
    if not isinstance(moving_before, Image) or moving_before.spatial_shape != fixed.spatial_shape:
        raise InvalidParameterError(
            "moving_before is not on the fixed grid", parameter="moving_before",
            expected=f"an Image of shape {fixed.spatial_shape}",
            found=getattr(moving_before, "spatial_shape", type(moving_before).__name__),
            fix="warp the moving image with the identity transform onto the fixed image first")
    f = _middle_slice(_spatial(fixed, "fixed")).astype(np.float64)
    before = _middle_slice(_spatial(moving_before, "moving_before")).astype(np.float64)
    after = _middle_slice(_spatial(result.warped, "warped")).astype(np.float64)
    lo, hi = (float(v) for v in np.percentile(f, [1, 99]))
    hi = hi if hi > lo else lo + 1.0
    h, w = f.shape
    scale = max(1.0, 300.0 / max(h, w))  # small images drawn larger
    panel_w, panel_h = int(w * scale), int(h * scale)
    grey = {"cmap": "gray", "vmin": lo, "vmax": hi, "interpolation": "nearest"}

    def pair_of_panels(left: np.ndarray, right: np.ndarray, titles: tuple[str, str], style: dict[str, Any],
                       colorbar: bool = False):
        def draw(fig: Any) -> None:
            axes = fig.subplots(1, 2)
            fig.subplots_adjust(left=0.01, right=0.84 if colorbar else 0.99, bottom=0.01, top=0.92, wspace=0.04)
            im = None
            for ax, img, title in zip(axes, (left, right), titles):
                im = ax.imshow(img, **style)
                ax.set_title(title, fontsize=9)
                ax.set_axis_off()
            if colorbar and im is not None:
                fig.colorbar(im, cax=fig.add_axes((0.87, 0.1, 0.025, 0.75)), label="|difference|")
        return draw

    figures: dict[str, np.ndarray] = {}
    figures["checkerboard"] = _render(
        pair_of_panels(checkerboard(f, before, squares=squares), checkerboard(f, after, squares=squares),
                       ("fixed / moving, before", "fixed / warped, after"), grey),
        width_px=2 * panel_w + 40, height_px=panel_h + 40)
    d_before, d_after = np.abs(f - before), np.abs(f - after)
    vmax = float(np.percentile(d_before, 99)) or float(d_before.max()) or 1.0
    figures["difference"] = _render(
        pair_of_panels(d_before, d_after, ("|fixed - moving|, before", "|fixed - warped|, after"),
                       {"cmap": "magma", "vmin": 0.0, "vmax": vmax, "interpolation": "nearest"}, colorbar=True),
        width_px=2 * panel_w + 140, height_px=panel_h + 40)
    if is_deformable(result.transform):
        fld = result.displacement_field()
        d = 2 if fixed.is_2d else 3
        vox = np.asarray(fld.voxels, np.float64)  # (D, Z, Y, X), physical components in mm
        direction = fixed.geometry.direction_matrix[:d, :d]
        spacing = np.asarray(fixed.geometry.spacing[:d], np.float64)
        idx = np.tensordot(direction.T, vox, axes=(1, 0)) / spacing[:, None, None, None]  # along index axes, voxels
        z = 0 if fixed.is_2d else fixed.spatial_shape[0] // 2
        ux, uy = idx[0, z], idx[1, z]
        step = int(grid_step_vox) if grid_step_vox else max(2, max(h, w) // 24)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        px, py = xx + ux, yy + uy

        def draw_grid(fig: Any) -> None:
            ax = fig.add_axes((0.02, 0.02, 0.96, 0.90))
            ax.imshow(f, **grey)
            for r in range(0, h, step):
                ax.plot(px[r, :], py[r, :], color="yellow", linewidth=0.6)
            for c in range(0, w, step):
                ax.plot(px[:, c], py[:, c], color="yellow", linewidth=0.6)
            ax.set_xlim(-0.5, w - 0.5)
            ax.set_ylim(h - 0.5, -0.5)
            ax.set_title(f"fixed grid deformed by T (every {step} voxels)", fontsize=9)
            ax.set_axis_off()

        figures["deformation grid"] = _render(draw_grid, width_px=panel_w + 20, height_px=panel_h + 40)
    return figures


def _components(transform: sitk.Transform) -> list[sitk.Transform]:
    """The transforms of a (nested) composite in list order (the last is applied first)."""
    if transform.GetName() == "CompositeTransform":
        comp = sitk.CompositeTransform(transform)
        out: list[sitk.Transform] = []
        for i in range(comp.GetNumberOfTransforms()):
            out.extend(_components(comp.GetNthTransform(i)))
        return out
    return [transform.Downcast() if hasattr(transform, "Downcast") else transform]


def _invert_component(tx: sitk.Transform, ref: sitk.Image, *, iterations: int) -> tuple[sitk.Transform, str]:
    if tx.IsLinear():
        return tx.GetInverse(), "exact inverse"
    flt = sitk.TransformToDisplacementFieldFilter()
    flt.SetReferenceImage(ref)
    flt.SetOutputPixelType(sitk.sitkVectorFloat64)
    fwd = flt.Execute(tx)
    inv = sitk.InvertDisplacementField(fwd, maximumNumberOfIterations=int(iterations),
                                       maxErrorToleranceThreshold=0.01, meanErrorToleranceThreshold=0.0001,
                                       enforceBoundaryCondition=True)
    return sitk.DisplacementFieldTransform(sitk.Cast(inv, sitk.sitkVectorFloat64)), \
        f"InvertDisplacementField ({int(iterations)} iterations max)"


def inverse_consistency(transform: sitk.Transform | RegistrationResult, reference: Image | None = None, *,
                        iterations: int = 50, mask: Image | None = None) -> dict[str, Any]:
    """Inverse consistency ``|T^-1(T(x)) - x|`` in mm over the voxel centres ``x`` of ``reference``.

    ``T^-1`` is built part by part: linear parts (rigid, affine, the pre-alignment) use their exact inverse;
    every other part (B-spline, displacement field) is sampled as a displacement field on ``reference``'s grid
    and inverted numerically with ITK's ``InvertDisplacementField`` (fixed-point iteration; the inverse field
    lives on the same grid, with zero displacement at its border). For ``T = A(D(x))`` (a result of
    :func:`register`) the round trip is ``D^-1(A^-1(A(D(x))))``, so it measures how well the numerically
    inverted deformable part undoes the deformable part; for linear transforms it is rounding error only
    (~1e-12 mm). It is not the inverse consistency of registering the pair both ways.

    Args:
        transform: a SimpleITK transform (fixed points -> moving points) or a :class:`RegistrationResult`.
        reference: the fixed image (its grid); default: the result's fixed image.
        iterations: at most this many iterations of the field inversion.
        mask: optional region on the reference grid (e.g. the fixed foreground) to summarise over.

    Returns:
        ``{"mean_mm", "median_mm", "p95_mm", "max_mm", "inverse", "definition"}``.

    >>> ref = Image.from_array(np.zeros((5, 6), np.float32))
    >>> inverse_consistency(sitk.Euler2DTransform((2.0, 3.0), 0.3, (1.0, -2.0)), ref)["max_mm"] < 1e-9
    True
    """
    if isinstance(transform, RegistrationResult):
        reference = transform.fixed_reference if reference is None else reference
        transform = transform.transform
    field_img = displacement_field(transform, reference)  # checks reference and dimensions
    assert reference is not None
    ref = to_sitk(reference.replace(voxels=np.zeros((1,) + reference.spatial_shape, np.uint8)))
    parts = _components(transform)
    inverses, how = [], set()
    for part in reversed(parts):
        inv, kind = _invert_component(part, ref, iterations=iterations)
        inverses.append(inv)
        how.add(kind)
    round_trip = sitk.CompositeTransform(inverses + parts)  # the last is applied first: parts, then inverses
    err = displacement_field(round_trip, reference).voxels.astype(np.float64)
    dist = np.sqrt(np.sum(err**2, axis=0))
    if mask is not None:
        _check_on_grid(field_img, mask, "reference", "mask")
        dist = dist[np.asarray(mask.array) != 0]
    dist = dist.ravel()
    return {"mean_mm": float(dist.mean()), "median_mm": float(np.median(dist)),
            "p95_mm": float(np.percentile(dist, 95)), "max_mm": float(dist.max()),
            "inverse": " + ".join(sorted(how)),
            "definition": "|T^-1(T(x)) - x| in mm over the fixed voxel centres; linear parts inverted exactly, "
                          "deformable parts by InvertDisplacementField on the fixed grid"}
