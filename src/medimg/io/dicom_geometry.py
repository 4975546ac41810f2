"""Slices and their geometry for the DICOM reader: the position, orientation, spacing, rescale and window of each
slice (classic one-file-per-slice or the frames of an enhanced multi-frame object), and the stack of slices sorted
along the slice normal with its spacing checked (gaps, duplicates, mixed orientations, shear)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from medimg.core.errors import DicomError
from medimg.io.dicom_guards import frame_count

__all__ = ["first_float", "sequence_item", "classic_slice", "multiframe_slices", "stack_slices", "gap_error",
           "resample_even"]

logger = logging.getLogger(__name__)

_GAP_FIX = 'pass on_gap="resample" (CLI --allow-gaps) to resample linearly onto an even grid, or find the missing files'


# ---- slices ------------------------------------------------------------------------------------------------
@dataclass
class _Slice:
    """Geometry and value mapping of one 2D image (a file, or one frame of a multi-frame file)."""

    path: Path
    frame: int | None
    rows: int
    columns: int
    iop: np.ndarray | None
    ipp: np.ndarray | None
    pixel_spacing: tuple[float, float] | None  # (row spacing = y, column spacing = x)
    spacing_source: str | None
    slope: float
    intercept: float
    window: tuple[float, float] | None

    @property
    def label(self) -> str:
        return self.path.name if self.frame is None else f"{self.path.name} frame {self.frame}"


def _floats(value: Any, n: int) -> np.ndarray | None:
    if value is None:
        return None
    try:
        arr = np.array([float(v) for v in (value if not isinstance(value, (str, bytes)) else [value])], float)
    except (TypeError, ValueError):
        return None
    if arr.size != n or not np.all(np.isfinite(arr)):
        return None
    return arr


def first_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        if not value:
            return None
        value = value[0]
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def _pixel_spacing(*sources: Dataset | None) -> tuple[tuple[float, float] | None, str | None]:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        for src in sources:
            if src is None:
                continue
            arr = _floats(src.get(keyword), 2)
            if arr is not None and np.all(arr > 0):
                return (float(arr[0]), float(arr[1])), keyword
    return None, None


def _window(*sources: Dataset | None) -> tuple[float, float] | None:
    for src in sources:
        if src is None:
            continue
        c = first_float(src.get("WindowCenter"))
        w = first_float(src.get("WindowWidth"))
        if c is not None and w is not None:
            return (c, w)
    return None


def _rescale(*sources: Dataset | None, path: Path) -> tuple[float, float]:
    """(slope, intercept) from the first source that states either; a slope of 0, or a value that is not a finite
    number, is refused (treating it as 1 would give wrong values without a word)."""
    for src in sources:
        if src is None:
            continue
        raw_slope, raw_intercept = src.get("RescaleSlope"), src.get("RescaleIntercept")
        if _empty(raw_slope) and _empty(raw_intercept):
            continue
        slope = 1.0 if _empty(raw_slope) else first_float(raw_slope)
        intercept = 0.0 if _empty(raw_intercept) else first_float(raw_intercept)
        if slope is None or slope == 0 or intercept is None:
            raise DicomError(
                "invalid Rescale Slope/Intercept", path=path,
                expected="a finite, non-zero RescaleSlope and a finite RescaleIntercept",
                found=f"RescaleSlope {_show(raw_slope)}, RescaleIntercept {_show(raw_intercept)}",
                fix="repair the header (RescaleSlope 1 and RescaleIntercept 0 if the stored values are already in "
                    "the modality's units); values would be wrong otherwise")
        return slope, intercept
    return (1.0, 0.0)


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, (str, bytes, list, tuple, pydicom.multival.MultiValue)) and not value)


def _show(value: Any) -> str:
    return "absent" if _empty(value) else repr(str(value))[:40]


def sequence_item(seq_owner: Dataset | None, keyword: str) -> Dataset | None:
    if seq_owner is None:
        return None
    seq = seq_owner.get(keyword)
    if not seq:
        return None
    return seq[0]


def classic_slice(ds: Dataset, path: Path) -> _Slice:
    ps, source = _pixel_spacing(ds)
    slope, intercept = _rescale(ds, path=path)
    return _Slice(
        path=path, frame=None, rows=int(ds.Rows), columns=int(ds.Columns),
        iop=_floats(ds.get("ImageOrientationPatient"), 6), ipp=_floats(ds.get("ImagePositionPatient"), 3),
        pixel_spacing=ps, spacing_source=source, slope=slope, intercept=intercept, window=_window(ds),
    )


def _slice_step(ds: Dataset, user_sz: float | None) -> float | None:
    """Distance between frames of a multi-frame object that has no per-frame positions."""
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        v = first_float(ds.get(keyword))
        if v is not None and v > 0:
            return v
    shared = sequence_item(ds, "SharedFunctionalGroupsSequence")
    pm = sequence_item(shared, "PixelMeasuresSequence")
    if pm is not None:
        for keyword in ("SpacingBetweenSlices", "SliceThickness"):
            v = first_float(pm.get(keyword))
            if v is not None and v > 0:
                return v
    return user_sz


def multiframe_slices(ds: Dataset, path: Path, user_sz: float | None) -> tuple[list[_Slice], str | None]:
    """One _Slice per frame of an (enhanced or classic) multi-frame object, plus a note when positions were
    derived rather than read."""
    n = frame_count(ds)
    shared = sequence_item(ds, "SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    rows, cols = int(ds.Rows), int(ds.Columns)
    slices = []
    for k in range(n):
        pf = per_frame[k] if k < len(per_frame) else None

        def group(keyword: str, pf: Dataset | None = pf) -> Dataset | None:
            return sequence_item(pf, keyword) or sequence_item(shared, keyword)

        ori = group("PlaneOrientationSequence")
        pos = group("PlanePositionSequence")
        ps, source = _pixel_spacing(group("PixelMeasuresSequence"), ds)
        slope, intercept = _rescale(group("PixelValueTransformationSequence"), ds, path=path)
        slices.append(_Slice(
            path=path, frame=k, rows=rows, columns=cols,
            iop=_floats((ori or ds).get("ImageOrientationPatient"), 6),
            ipp=_floats(pos.get("ImagePositionPatient"), 3) if pos is not None else None,
            pixel_spacing=ps, spacing_source=source, slope=slope, intercept=intercept,
            window=_window(group("FrameVOILUTSequence"), ds),
        ))
    note = None
    if n > 1 and all(s.ipp is None for s in slices):
        step = _slice_step(ds, user_sz)
        if step is None:
            raise DicomError(
                "multi-frame object without frame positions or slice spacing", path=path,
                expected="PlanePositionSequence, SpacingBetweenSlices or SliceThickness", found="none",
                fix="pass spacing=(sx, sy, sz) (CLI --spacing) with the slice spacing in mm",
            )
        base = _floats(ds.get("ImagePositionPatient"), 3)
        iop = slices[0].iop
        r, c = (iop[:3], iop[3:]) if iop is not None else (np.array([1.0, 0, 0]), np.array([0, 1.0, 0]))
        normal = np.cross(r, c)
        normal /= np.linalg.norm(normal)
        offsets = _floats(ds.get("GridFrameOffsetVector"), n)
        if offsets is None:
            offsets = np.arange(n) * step
        origin = base if base is not None else np.zeros(3)
        for s, off in zip(slices, offsets):
            s.ipp = origin + normal * off
        note = ("frame positions derived from " + ("GridFrameOffsetVector" if _floats(
            ds.get("GridFrameOffsetVector"), n) is not None else f"a slice spacing of {step:g} mm in frame order"))
        if iop is None:
            note += "; no ImageOrientationPatient, identity orientation assumed"
            for s in slices:
                s.iop = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
        logger.warning("%s: %s", path, note)
    return slices, note


# ---- geometry ----------------------------------------------------------------------------------------------
@dataclass
class _Stack:
    order: np.ndarray  # indices of slices in physical order
    positions: np.ndarray  # positions along the normal (mm), sorted
    direction: np.ndarray
    origin: np.ndarray
    spacing: tuple[float, float, float]
    spacing_source: str
    gaps: list[int]  # indices i where the distance between sorted slices i and i+1 is off
    z_source: str = "positions"  # where the slice spacing came from: positions, SliceThickness, user, default_1mm


def _orientation(slices: list[_Slice], where: Path) -> np.ndarray:
    have = [s.iop is not None for s in slices]
    if not any(have):
        if len(slices) > 1:
            raise DicomError(
                "slices have no ImageOrientationPatient/ImagePositionPatient", path=where,
                expected="position tags to order the slices", found=f"{len(slices)} slices without them",
                fix="this series cannot be stacked safely; read its files one at a time",
            )
        return np.eye(3)
    if not all(have):
        bad = slices[have.index(False)]
        raise DicomError("some slices lack ImageOrientationPatient", path=bad.path,
                         expected="the tag in every slice", found="missing", fix="remove the damaged file")
    ref = slices[0].iop
    for s in slices[1:]:
        if not np.allclose(s.iop, ref, atol=1e-4):
            raise DicomError(
                "mixed slice orientations in one series", path=where,
                expected=f"ImageOrientationPatient {np.round(ref, 4).tolist()} (as in {slices[0].label})",
                found=f"{np.round(s.iop, 4).tolist()} in {s.label}",
                fix="the series mixes several stacks (e.g. a localizer); split it or pick the files of one stack",
            )
    r = ref[:3] / np.linalg.norm(ref[:3])
    c = ref[3:] / np.linalg.norm(ref[3:])
    if abs(float(r @ c)) > 1e-3:
        raise DicomError("ImageOrientationPatient is not orthogonal", path=slices[0].path,
                         expected="perpendicular row and column cosines", found=np.round(ref, 6).tolist(),
                         fix="repair the header of the series")
    c = c - (r @ c) * r
    c /= np.linalg.norm(c)
    n = np.cross(r, c)
    return np.column_stack([r, c, n / np.linalg.norm(n)])


def stack_slices(slices: list[_Slice], where: Path, user_spacing: tuple[float, float, float] | None,
           single_sz: float | None) -> _Stack:
    s0 = slices[0]
    for s in slices[1:]:
        if (s.rows, s.columns) != (s0.rows, s0.columns):
            raise DicomError(
                "mixed image sizes in one series", path=where, expected=f"{s0.columns}x{s0.rows} (as {s0.label})",
                found=f"{s.columns}x{s.rows} in {s.label}",
                fix="the series mixes images of different sizes; split it by size",
            )
    missing = [s for s in slices if s.pixel_spacing is None]
    if missing and user_spacing is not None and len(missing) == len(slices):
        sx, sy = user_spacing[0], user_spacing[1]
        source = "user"
    elif missing:
        raise DicomError(
            "no pixel spacing", path=missing[0].path,
            expected="PixelSpacing (or ImagerPixelSpacing / NominalScannedPixelSpacing)",
            found=f"none in {len(missing)} of {len(slices)} slices",
            fix="pass spacing=(sx, sy, sz) in mm (CLI --spacing) if you know the pixel size",
        )
    else:
        for s in slices[1:]:
            if not np.allclose(s.pixel_spacing, s0.pixel_spacing, rtol=1e-4, atol=1e-6):
                raise DicomError("mixed pixel spacing in one series", path=where,
                                 expected=f"{s0.pixel_spacing} (as {s0.label})",
                                 found=f"{s.pixel_spacing} in {s.label}", fix="split the series by pixel spacing")
        sy, sx = s0.pixel_spacing  # PixelSpacing = (row spacing, column spacing) = (y, x)
        source = s0.spacing_source or "PixelSpacing"
        if user_spacing is not None and not np.allclose((sx, sy), user_spacing[:2], rtol=1e-4):
            logger.warning("%s states its pixel spacing (%s %.4g x %.4g mm); the spacing given is not used",
                           where, source, sx, sy)
    direction = _orientation(slices, where)
    normal = direction[:, 2]
    if len(slices) == 1:
        origin = s0.ipp if s0.ipp is not None else np.zeros(3)
        if user_spacing is not None:
            sz, z_source = user_spacing[2], "user"
        elif single_sz is not None and single_sz > 0:
            sz, z_source = single_sz, "SliceThickness"
        else:
            sz, z_source = 1.0, "default_1mm"
        return _Stack(np.array([0]), np.array([float(origin @ normal)]), direction, np.asarray(origin, float),
                      (float(sx), float(sy), float(sz)), source, [], z_source)
    if any(s.ipp is None for s in slices):
        bad = next(s for s in slices if s.ipp is None)
        raise DicomError("slice without ImagePositionPatient", path=bad.path, expected="the tag in every slice",
                         found="missing", fix="remove the damaged file; slices are never ordered by file name")
    positions = np.array([s.ipp for s in slices])
    proj = positions @ normal
    order = np.argsort(proj, kind="stable")
    d = proj[order]
    p = positions[order]
    diffs = np.diff(d)
    dup = np.flatnonzero(diffs < 1e-3)
    if dup.size:
        i = int(dup[0])
        a, b = slices[order[i]], slices[order[i + 1]]
        raise DicomError(
            "two slices at the same position", path=where, expected="one slice per position",
            found=f"{a.label} and {b.label} both at {d[i]:.3f} mm along the slice normal",
            fix="the series holds several volumes (echoes, phases or duplicates); remove duplicates or split it",
        )
    in_plane = (p - p[0]) - np.outer(d - d[0], normal)
    shear = float(np.abs(in_plane).max())
    if shear > max(0.05 * min(sx, sy), 0.01):
        raise DicomError(
            "slices are shifted in-plane from one to the next (gantry tilt or a sheared stack)", path=where,
            expected="slice positions along the slice normal", found=f"in-plane shift up to {shear:.3f} mm",
            fix="correct the gantry tilt (resample) with a dedicated tool before reading",
        )
    step = float(np.median(diffs))
    tol = max(0.01 * step, 0.02)
    gaps = [int(i) for i in np.flatnonzero(np.abs(diffs - step) > tol)]
    sz = float((d[-1] - d[0]) / (len(d) - 1)) if not gaps else step
    if user_spacing is not None and source == "user":
        logger.debug("slice spacing %.4g mm taken from positions, not from the spacing argument", sz)
    return _Stack(order, d, direction, np.asarray(p[0], float), (float(sx), float(sy), sz), source, gaps)


def gap_error(stack: _Stack, slices: list[_Slice], where: Path) -> DicomError:
    step = stack.spacing[2]
    d = stack.positions
    i = stack.gaps[0]
    dist = d[i + 1] - d[i]
    ratio = dist / step
    kind = (f"{round(ratio) - 1} missing slice(s)" if ratio > 1.5 and abs(ratio - round(ratio)) < 0.1
            else "uneven slice spacing")
    a, b = slices[stack.order[i]], slices[stack.order[i + 1]]
    more = f" ({len(stack.gaps)} irregular gaps in all)" if len(stack.gaps) > 1 else ""
    return DicomError(
        f"slice gap: {kind} between sorted slices {i} and {i + 1} ({a.label} at {d[i]:.3f} mm and {b.label} at "
        f"{d[i + 1]:.3f} mm along the normal){more}",
        path=where, expected=f"even spacing of {step:.4g} mm", found=f"{dist:.4g} mm", fix=_GAP_FIX,
    )


def resample_even(values: np.ndarray, positions: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation of (..., Z, Y, X) slices at sorted ``positions`` onto an even grid."""
    n = int(round((positions[-1] - positions[0]) / step)) + 1
    target = np.linspace(positions[0], positions[-1], n)
    j = np.clip(np.searchsorted(positions, target, side="right") - 1, 0, len(positions) - 2)
    w = (target - positions[j]) / (positions[j + 1] - positions[j])
    shape = [1] * values.ndim
    shape[-3] = n
    w = w.reshape(shape)
    lo = np.take(values, j, axis=-3).astype(np.float64)
    hi = np.take(values, j + 1, axis=-3).astype(np.float64)
    return ((1.0 - w) * lo + w * hi).astype(np.float32), target
