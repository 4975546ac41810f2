"""The optimisation stages of classical registration on SimpleITK's framework: the linear (rigid/affine) stage with
its initialisation, the B-spline stage, the demons stage, and the metric of a pair under a transform."""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager

import numpy as np
import SimpleITK as sitk

from medimg.classical.registration_checks import NoOverlapError, check_overlap, is_outside_error, raise_no_overlap
from medimg.core.errors import InvalidParameterError

__all__ = ["evaluate_metric", "itk_threads", "linear_stage", "bspline_stage", "demons_stage"]

logger = logging.getLogger(__name__)


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


def evaluate_metric(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform | None, metric: str,
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
        if is_outside_error(exc):
            raise_no_overlap(init, "the optimiser's samples all map outside the moving image", exc)
        raise InvalidParameterError(
            "the registration failed inside ITK", parameter="moving", expected="images ITK can register",
            found=_itk_message(exc), fix="check both images (medimg info): a constant image, or one with a "
            "single voxel along an axis, cannot be registered; try another --metric or --init") from exc


@contextmanager
def itk_threads(threads: int):
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


def linear_stage(fixed: sitk.Image, moving: sitk.Image, kind: str, *, metric: str, init: str,
                  fixed_mask: sitk.Image | None, moving_mask: sitk.Image | None, levels: tuple[int, ...],
                  iterations: int, sampling: float, seed: int, bins: int) -> tuple[sitk.Transform, int, str]:
    initial = _initial_transform(fixed, moving, kind, init)
    check_overlap(fixed, moving, initial, init)
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


def bspline_stage(fixed: sitk.Image, moving: sitk.Image, prealign: sitk.Transform, *, metric: str, init: str,
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


def demons_stage(fixed: sitk.Image, moving: sitk.Image, prealign: sitk.Transform, *, diffeomorphic: bool,
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

