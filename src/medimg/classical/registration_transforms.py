"""What a registration returns (:class:`RegistrationResult`) and how its transform is used: applied to another image
or label map (:func:`warp`), sampled as a dense displacement field (:func:`displacement_field`) with its Jacobian
statistics (:func:`jacobian_summary`), and whether it deforms (:func:`is_deformable`).

ITK conventions (see :mod:`medimg.classical.registration`): a transform maps fixed points (LPS mm) into the moving
image; a displacement field lives on the fixed grid and holds ``u(x) = T(x) - x`` in mm, physical x, y(, z)
components as channels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import SimpleITK as sitk

from medimg.classical.registration_checks import check_on_grid, check_same_dim
from medimg.core.enums import Kind
from medimg.core.errors import InvalidParameterError
from medimg.core.image import Image, Operation
from medimg.io.sitk_bridge import from_sitk, to_sitk

__all__ = ["RegistrationResult", "warp", "displacement_field", "jacobian_summary", "is_deformable",
           "transform_parts"]

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
    check_same_dim(reference, image, "reference", "image")
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
        check_on_grid(field, mask, "field", "mask")
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
    return any(tx.GetName() in _DEFORMING_TRANSFORMS for tx in transform_parts(transform))



def transform_parts(transform: sitk.Transform) -> list[sitk.Transform]:
    """The transforms of a (nested) composite in list order (the last is applied first)."""
    if transform.GetName() == "CompositeTransform":
        comp = sitk.CompositeTransform(transform)
        out: list[sitk.Transform] = []
        for i in range(comp.GetNumberOfTransforms()):
            out.extend(transform_parts(comp.GetNthTransform(i)))
        return out
    return [transform.Downcast() if hasattr(transform, "Downcast") else transform]

