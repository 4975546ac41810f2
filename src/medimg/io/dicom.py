"""DICOM series discovery, reading and writing.

This module owns everything medimg does with DICOM *images*:

* :func:`scan_dicom` finds the image series under a file, a series or study folder (recursively, skipping
  non-DICOM files), a DICOMDIR or a zip archive (extracted safely by :mod:`medimg.io.archive`) and describes
  each as a :class:`SeriesInfo`, reading headers only.
* :func:`read_dicom` turns one series (classic one-file-per-slice, or an enhanced multi-frame object) into an
  :class:`~medimg.core.image.Image` in LPS: slices sorted by their position along the slice normal, oblique
  orientation kept exactly, Rescale Slope/Intercept applied (CT in HU), compressed transfer syntaxes decoded by
  the pydicom pixel handlers. It refuses what other readers get silently wrong: a missing pixel spacing, missing
  or unevenly spaced slices, mixed orientations or sizes, duplicate positions, sheared (gantry-tilt) stacks.
* :func:`write_dicom_series` writes a single-channel image that came from DICOM back as one file per slice.

DICOM patient coordinates are LPS, the library's space, so no axis flips happen here. Nothing in this module
logs patient-identifying values.
"""

from __future__ import annotations

import copy
import logging
import multiprocessing as mp
import os
import struct
import tempfile
import zipfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from medimg.core.enums import Kind, Modality
from medimg.core.errors import DicomError, InvalidParameterError, SeriesSelectionError
from medimg.core.geometry import Geometry
from medimg.core.image import Image, Operation
from medimg.io._files import check_input
from medimg.io.archive import extract_zip_safely
from medimg.io.dicom_write import write_dicom_series

__all__ = ["SeriesInfo", "scan_dicom", "read_dicom", "write_dicom_series"]

logger = logging.getLogger(__name__)

#: Files with these suffixes are never DICOM and are skipped silently.
_SKIP_SUFFIXES = frozenset({
    ".txt", ".md", ".json", ".xml", ".csv", ".tsv", ".html", ".htm", ".pdf", ".png", ".jpg", ".jpeg", ".gif",
    ".bmp", ".tif", ".tiff", ".nii", ".gz", ".nrrd", ".mha", ".mhd", ".zip", ".py", ".ini", ".log", ".db",
    ".exe", ".bat", ".sh", ".npy", ".npz", ".yaml", ".yml",
})
#: Files with these suffixes are expected to be DICOM: when they cannot be read, they are reported.
_DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic", ".ima"})
#: DICOM objects that are not images (or not images this reader turns into volumes).
_NON_IMAGE_MODALITIES = frozenset({"SEG", "RTSTRUCT", "RTPLAN", "RTRECORD", "SR", "KO", "PR", "REG", "DOC"})

# Exceptions pydicom raises on malformed input (it has no single base class for them).
_READ_ERRORS = (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, IndexError,
                struct.error, NotImplementedError, OverflowError)
_DECODE_ERRORS = _READ_ERRORS + (RuntimeError,)
_DEFER_BYTES = 16 * 1024  # values larger than this are read lazily

_GAP_FIX = 'pass on_gap="resample" (CLI --allow-gaps) to resample linearly onto an even grid, or find the missing files'
_SELECT_FIX = "pass --series <index or SeriesInstanceUID> (read_dicom(..., series=...))"


# ---- series description ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeriesInfo:
    """One image series found by :func:`scan_dicom` (headers only; no pixel data read).

    Attributes:
        series_uid: SeriesInstanceUID.
        study_uid: StudyInstanceUID.
        modality: Modality code ("CT", "MR", ...), "" when absent.
        description: SeriesDescription, "" when absent.
        series_number: SeriesNumber or None.
        n_files: number of files.
        rows, columns: size of the first image (Y, X).
        n_frames: number of slices/frames over all files.
        files: the files, sorted by path. For a zip archive, paths are ``<archive>/<member>`` (inside the zip).
        frame_of_reference_uid: FrameOfReferenceUID, "" when absent.
    """

    series_uid: str
    study_uid: str
    modality: str
    description: str
    series_number: int | None
    n_files: int
    rows: int
    columns: int
    n_frames: int
    files: tuple[Path, ...]
    frame_of_reference_uid: str = ""

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly description with no patient-identifying values (no names, IDs, dates, accession)."""
        return {
            "series_uid": self.series_uid,
            "modality": self.modality,
            "description": self.description,
            "series_number": self.series_number,
            "n_files": self.n_files,
            "size": f"{self.columns}x{self.rows}x{self.n_frames}",
            "rows": self.rows,
            "columns": self.columns,
            "n_frames": self.n_frames,
        }


def _str(ds: Dataset, keyword: str, default: str = "") -> str:
    value = ds.get(keyword)
    if value is None:
        return default
    return str(value).strip()


def _n_frames(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def _is_multiframe(ds: Dataset) -> bool:
    return _n_frames(ds) > 1 or "PerFrameFunctionalGroupsSequence" in ds


# ---- file discovery ----------------------------------------------------------------------------------------
class _Skip(Exception):
    """Internal: the file is not a DICOM image and is skipped silently."""


def _probe(path: Path) -> Dataset:
    """Header of a DICOM image file; raises _Skip for non-DICOM/non-image files and DicomError when unreadable."""
    name = path.name
    suffix = path.suffix.lower()
    if name.startswith(".") or name.upper() == "DICOMDIR" or suffix in _SKIP_SUFFIXES:
        raise _Skip
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise DicomError("file cannot be opened", path=path, found=str(exc), fix="check its permissions") from exc
    has_magic = len(head) == 132 and head[128:132] == b"DICM"
    looks_dicom = has_magic or suffix in _DICOM_SUFFIXES
    if not looks_dicom:
        raise _Skip
    if not head:
        raise DicomError("DICOM file is empty", path=path, expected="a DICOM file", found="0 bytes",
                         fix="copy the file again; it was probably truncated")
    try:
        # Large values (pixel data) are deferred: read from the file only when the series is loaded, so the
        # header parsed here is reused by _load instead of parsing every file twice.
        ds = pydicom.dcmread(path, defer_size=_DEFER_BYTES, force=not has_magic)
        rows = ds.get("Rows")
        cols = ds.get("Columns")
        uid = ds.get("SeriesInstanceUID")
        modality = _str(ds, "Modality").upper()
    except _READ_ERRORS as exc:
        raise DicomError("unreadable DICOM file", path=path, expected="a valid DICOM file",
                         found=f"{type(exc).__name__}: {exc}",
                         fix="the file is damaged or truncated; copy it again or remove it") from exc
    if rows is None or cols is None or modality in _NON_IMAGE_MODALITIES:
        if not has_magic:
            raise DicomError("unreadable DICOM file", path=path, expected="a DICOM image",
                             found="no DICOM header (no 'DICM' prefix, no image tags)",
                             fix="remove the file or give the folder of a DICOM series")
        logger.debug("skipping non-image DICOM object %s (modality %s)", path, modality or "?")
        raise _Skip
    if not uid:
        logger.debug("%s has no SeriesInstanceUID; grouped by folder, frame of reference and description", path)
    return ds


def _group_key(path: Path, ds: Dataset) -> str:
    """SeriesInstanceUID, or for anonymised files without one a surrogate built from folder and series tags."""
    uid = _str(ds, "SeriesInstanceUID")
    if uid:
        return uid
    parts = [str(path.parent), _str(ds, "FrameOfReferenceUID"), _str(ds, "Modality"),
             _str(ds, "SeriesDescription"), _str(ds, "SeriesNumber")]
    return "no-uid:" + "|".join(parts)


def _dicomdir_files(path: Path) -> list[Path]:
    """Image files referenced by a DICOMDIR."""
    try:
        ds = pydicom.dcmread(path)
        records = ds.DirectoryRecordSequence
    except _READ_ERRORS as exc:
        raise DicomError("unreadable DICOMDIR", path=path, found=f"{type(exc).__name__}: {exc}",
                         fix="give the folder that holds the DICOM files instead") from exc
    files = []
    for rec in records:
        ref = rec.get("ReferencedFileID")
        if ref is None:
            continue
        parts = [str(p) for p in (ref if isinstance(ref, (list, tuple, pydicom.multival.MultiValue)) else [ref])]
        if any(p in ("..", "") for p in parts):
            logger.warning("DICOMDIR %s references a file outside its folder; skipped", path)
            continue
        f = path.parent.joinpath(*parts)
        if not f.exists():  # file systems that changed the case of names
            alt = path.parent.joinpath(*[p.lower() for p in parts])
            f = alt if alt.exists() else f
        files.append(f)
    return files


def _iter_files(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            yield Path(dirpath) / fn


def _is_zip(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".zip" and zipfile.is_zipfile(path)


@dataclass
class _Found:
    series: list[SeriesInfo]
    problems: list[DicomError]
    n_seen: int
    headers: dict[Path, Dataset]


def _scan(root: Path) -> _Found:
    """Scan a file, folder or DICOMDIR (no zip) and group image headers by series."""
    problems: list[DicomError] = []
    headers: list[tuple[Path, Dataset]] = []
    if root.is_file():
        if root.name.upper() == "DICOMDIR":
            candidates = _dicomdir_files(root)
        else:
            try:
                headers.append((root, _probe(root)))
            except _Skip as exc:
                raise DicomError("not a DICOM image file", path=root, expected="a DICOM image",
                                 found="a file without a DICOM image header",
                                 fix="give a DICOM file, a series folder, a DICOMDIR or a .zip") from exc
            candidates = []
    else:
        candidates = list(_iter_files(root))
    n_seen = len(candidates) + len(headers)
    for f in candidates:
        try:
            headers.append((f, _probe(f)))
        except _Skip:
            logger.debug("skipping non-DICOM file %s", f)
        except DicomError as exc:
            logger.warning("%s", exc)
            problems.append(exc)

    groups: dict[str, list[tuple[Path, Dataset]]] = {}
    for f, ds in headers:
        groups.setdefault(_group_key(f, ds), []).append((f, ds))
    series: list[SeriesInfo] = []
    for uid, members in groups.items():
        members.sort(key=lambda m: str(m[0]))
        if len(members) > 1 and any(_is_multiframe(ds) for _, ds in members):
            parts: list[list[tuple[Path, Dataset]]] = [[m] for m in members]  # one object per multi-frame file
        else:
            parts = [members]
        for part in parts:
            ds0 = part[0][1]
            try:
                number: int | None = int(ds0.get("SeriesNumber")) if ds0.get("SeriesNumber") is not None else None
            except (TypeError, ValueError):
                number = None
            series.append(SeriesInfo(
                series_uid="" if uid.startswith("no-uid:") else uid,
                study_uid=_str(ds0, "StudyInstanceUID"),
                modality=_str(ds0, "Modality"),
                description=_str(ds0, "SeriesDescription"),
                series_number=number,
                n_files=len(part),
                rows=int(ds0.Rows),
                columns=int(ds0.Columns),
                n_frames=sum(_n_frames(ds) for _, ds in part),
                files=tuple(f for f, _ in part),
                frame_of_reference_uid=_str(ds0, "FrameOfReferenceUID"),
            ))
    series.sort(key=lambda s: (s.study_uid, s.series_number if s.series_number is not None else 1 << 30,
                               s.description, s.series_uid, str(s.files[0])))
    return _Found(series, problems, n_seen, dict(headers))


def _no_images_error(path: Path, found: _Found) -> DicomError:
    detail = f"{found.n_seen} files, none a readable DICOM image"
    if found.problems:
        first = found.problems[0]
        detail += f"; {len(found.problems)} unreadable, e.g. '{first.path}' ({first.what})"
    return DicomError("no DICOM images found", path=path, expected="at least one DICOM image file", found=detail,
                      fix="give the folder of a DICOM series (files with a 'DICM' header), a DICOMDIR or a .zip")


def scan_dicom(path: str | os.PathLike[str]) -> list[SeriesInfo]:
    """Find the DICOM image series in a file, folder (recursive), DICOMDIR or .zip archive.

    Non-DICOM files (.txt, .DS_Store, DICOMDIR inside a folder, ...) are skipped silently; files that look
    like DICOM (a 'DICM' prefix or a .dcm suffix) but cannot be read are logged as warnings. Only headers are
    read. Series are ordered by study, SeriesNumber, description and UID; the list index is the series index
    accepted by :func:`read_dicom`.

    Args:
        path: a DICOM file, a series or study folder, a DICOMDIR file or a .zip archive.

    Returns:
        One :class:`SeriesInfo` per series (an enhanced multi-frame file sharing its series UID with other
        multi-frame files is listed on its own).

    Raises:
        ImageReadError: the path does not exist or is an empty file; the zip is unsafe
            (:class:`~medimg.core.errors.UnsafeArchiveError`).
        DicomError: a single file that is not a readable DICOM image; a folder without any DICOM image.
    """
    p = check_input(path)
    if _is_zip(p):
        with tempfile.TemporaryDirectory(prefix="medimg-dicom-") as tmp:
            root = extract_zip_safely(p, tmp).resolve()
            found = _scan(root)
            series = [replace(s, files=tuple(p / f.resolve().relative_to(root) for f in s.files))
                      for s in found.series]
    else:
        found = _scan(p)
        series = found.series
    if not series:
        raise _no_images_error(p, found)
    logger.info("found %d DICOM series under %s", len(series), p)
    return series


def _selection_list(series: Sequence[SeriesInfo]) -> list[dict[str, Any]]:
    return [{"index": i, **s.summary()} for i, s in enumerate(series)]


def _describe(series: Sequence[SeriesInfo]) -> str:
    return "; ".join(f"[{i}] '{s.description or '?'}' {s.modality or '?'} {s.columns}x{s.rows}x{s.n_frames}"
                     for i, s in enumerate(series))


def _select(series: list[SeriesInfo], selector: str | int | None, path: Path) -> SeriesInfo:
    if selector is None:
        if len(series) == 1:
            return series[0]
        raise SeriesSelectionError(
            f"{len(series)} DICOM series found, pick one", series=_selection_list(series), path=path,
            expected="one series", found=_describe(series), fix=_SELECT_FIX,
        )
    if isinstance(selector, (int, np.integer)) and not isinstance(selector, bool):
        idx = int(selector)
        if 0 <= idx < len(series):
            return series[idx]
        raise SeriesSelectionError(
            "series index out of range", series=_selection_list(series), path=path, parameter="series",
            expected=f"an index in [0, {len(series) - 1}]", found=f"{idx}; series: {_describe(series)}",
            fix=_SELECT_FIX,
        )
    if isinstance(selector, str):
        key = selector.strip()
        matches = [s for s in series if key and s.series_uid == key]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise SeriesSelectionError(
                "several multi-frame objects share this SeriesInstanceUID", series=_selection_list(series),
                path=path, parameter="series", expected="one object", found=_describe(series),
                fix="pass the series index instead of the UID",
            )
        if key.isdigit():
            return _select(series, int(key), path)
        raise SeriesSelectionError(
            "no series with this SeriesInstanceUID", series=_selection_list(series), path=path,
            parameter="series", expected="an index or one of the listed UIDs",
            found=f"'{key}'; series: {_describe(series)}", fix=_SELECT_FIX,
        )
    raise InvalidParameterError("wrong type", parameter="series", expected="an int index, a UID string or None",
                                found=type(selector).__name__, fix=_SELECT_FIX)


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


def _first_float(value: Any) -> float | None:
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
        c = _first_float(src.get("WindowCenter"))
        w = _first_float(src.get("WindowWidth"))
        if c is not None and w is not None:
            return (c, w)
    return None


def _rescale(*sources: Dataset | None) -> tuple[float, float]:
    for src in sources:
        if src is None:
            continue
        slope = _first_float(src.get("RescaleSlope"))
        intercept = _first_float(src.get("RescaleIntercept"))
        if slope is not None or intercept is not None:
            return (1.0 if slope is None or slope == 0 else slope, 0.0 if intercept is None else intercept)
    return (1.0, 0.0)


def _item(seq_owner: Dataset | None, keyword: str) -> Dataset | None:
    if seq_owner is None:
        return None
    seq = seq_owner.get(keyword)
    if not seq:
        return None
    return seq[0]


def _classic_slice(ds: Dataset, path: Path) -> _Slice:
    ps, source = _pixel_spacing(ds)
    slope, intercept = _rescale(ds)
    return _Slice(
        path=path, frame=None, rows=int(ds.Rows), columns=int(ds.Columns),
        iop=_floats(ds.get("ImageOrientationPatient"), 6), ipp=_floats(ds.get("ImagePositionPatient"), 3),
        pixel_spacing=ps, spacing_source=source, slope=slope, intercept=intercept, window=_window(ds),
    )


def _slice_step(ds: Dataset, user_sz: float | None) -> float | None:
    """Distance between frames of a multi-frame object that has no per-frame positions."""
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        v = _first_float(ds.get(keyword))
        if v is not None and v > 0:
            return v
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    pm = _item(shared, "PixelMeasuresSequence")
    if pm is not None:
        for keyword in ("SpacingBetweenSlices", "SliceThickness"):
            v = _first_float(pm.get(keyword))
            if v is not None and v > 0:
                return v
    return user_sz


def _multiframe_slices(ds: Dataset, path: Path, user_sz: float | None) -> tuple[list[_Slice], str | None]:
    """One _Slice per frame of an (enhanced or classic) multi-frame object, plus a note when positions were
    derived rather than read."""
    n = _n_frames(ds)
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    rows, cols = int(ds.Rows), int(ds.Columns)
    slices = []
    for k in range(n):
        pf = per_frame[k] if k < len(per_frame) else None

        def group(keyword: str, pf: Dataset | None = pf) -> Dataset | None:
            return _item(pf, keyword) or _item(shared, keyword)

        ori = group("PlaneOrientationSequence")
        pos = group("PlanePositionSequence")
        ps, source = _pixel_spacing(group("PixelMeasuresSequence"), ds)
        slope, intercept = _rescale(group("PixelValueTransformationSequence"), ds)
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


def _stack(slices: list[_Slice], where: Path, user_spacing: tuple[float, float, float] | None,
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
        sz = user_spacing[2] if user_spacing is not None else (single_sz or 1.0)
        return _Stack(np.array([0]), np.array([float(origin @ normal)]), direction, np.asarray(origin, float),
                      (float(sx), float(sy), float(sz)), source, [])
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


def _gap_error(stack: _Stack, slices: list[_Slice], where: Path) -> DicomError:
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


def _resample_even(values: np.ndarray, positions: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
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


# ---- pixels ------------------------------------------------------------------------------------------------
def _read_full(path: Path) -> Dataset:
    try:
        return pydicom.dcmread(path, force=True)
    except _READ_ERRORS as exc:
        raise DicomError("unreadable DICOM file", path=path, found=f"{type(exc).__name__}: {exc}",
                         fix="the file is damaged or truncated; copy it again or remove it") from exc


_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)


def _fetch_deferred_pixels(ds: Dataset, path: Path) -> None:
    """Read a deferred pixel data value straight from its file offset.

    The header was parsed once with ``defer_size``; pydicom's own deferred read would parse the whole file a
    second time. Uses pydicom's raw element (offset and length); anything unexpected falls back to pydicom.
    """
    raw_dict = getattr(ds, "_dict", None)
    if raw_dict is None:
        return
    for tag in _PIXEL_TAGS:
        raw = raw_dict.get(tag)
        if not isinstance(raw, RawDataElement) or raw.value is not None or raw.length in (0, 0xFFFFFFFF):
            continue
        with open(path, "rb") as fh:
            fh.seek(raw.value_tell)
            data = fh.read(raw.length)
        if len(data) != raw.length:
            raise DicomError("DICOM file is truncated", path=path, expected=f"{raw.length} bytes of pixel data",
                             found=f"{len(data)} bytes", fix="copy the file again; it was cut short")
        raw_dict[tag] = raw._replace(value=data)


def _decode(ds: Dataset, path: Path) -> np.ndarray:
    _fetch_deferred_pixels(ds, path)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise DicomError("DICOM file has no pixel data", path=path, expected="an image with PixelData",
                         found="no PixelData element (truncated?)", fix="copy the file again or remove it")
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown"))
    try:
        arr = ds.pixel_array
    except _DECODE_ERRORS as exc:
        raise DicomError(
            "cannot decode pixel data", path=path, expected="decodable pixel data",
            found=f"transfer syntax {ts}: {type(exc).__name__}: {exc}",
            fix="the file may be truncated; for compressed data install pylibjpeg, pylibjpeg-openjpeg, "
                "pylibjpeg-libjpeg and pylibjpeg-rle",
        ) from exc
    return np.asarray(arr)


def _frames(ds: Dataset, path: Path, n_frames: int, rgb: bool) -> np.ndarray:
    """Decoded frames as (F, Y, X) or (F, Y, X, 3)."""
    arr = _decode(ds, path)
    base = 3 if rgb else 2
    if arr.ndim == base:
        arr = arr[None]
    expected = (n_frames, int(ds.Rows), int(ds.Columns)) + ((3,) if rgb else ())
    if arr.shape != expected:
        raise DicomError("decoded pixel data have an unexpected shape", path=path, expected=expected,
                         found=arr.shape, fix="the file is inconsistent; check Rows/Columns/NumberOfFrames")
    return arr


def _decode_workers() -> int:
    """Worker processes for decoding compressed series: $MEDIMG_DECODE_WORKERS, else up to 2 (1 = serial)."""
    env = os.environ.get("MEDIMG_DECODE_WORKERS")
    if env is not None:
        try:
            return max(1, int(env))
        except ValueError:
            logger.warning("MEDIMG_DECODE_WORKERS=%r is not an integer; decoding serially", env)
            return 1
    return min(2, os.cpu_count() or 1)


def _decode_path(path: Path, rgb: bool) -> np.ndarray | None:
    """Worker: decode one single-frame file (runs in a forked process); None when it fails, so that the parent
    decodes that file itself and raises the full error."""
    try:
        return _frames(_read_full(path), path, 1, rgb)[0]
    except DicomError:
        return None


def _release_pixels(ds: Dataset) -> None:
    """Drop the encoded pixel bytes of a private dataset once decoded (keeps peak memory near one volume)."""
    for tag in _PIXEL_TAGS:
        if tag in ds:
            del ds[tag]


def _decode_slices(ordered: list[tuple[Dataset, Path]], rgb: bool) -> np.ndarray:
    """Decode one frame per file into one preallocated (Z, Y, X[, 3]) array.

    Compressed series of 8 or more files are decoded by forked worker processes: the JPEG 2000 / JPEG-LS
    decoders hold the GIL, so threads would not help.
    """
    workers = _decode_workers()
    syntax = getattr(getattr(ordered[0][0], "file_meta", None), "TransferSyntaxUID", None)
    compressed = bool(syntax is not None and syntax.is_compressed)
    decoded: Iterable[np.ndarray | None] | None = None
    pool = None
    if workers > 1 and compressed and len(ordered) >= 8 and "fork" in mp.get_all_start_methods():
        try:
            pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"))
            chunk = max(1, len(ordered) // (4 * workers))
            decoded = pool.map(_decode_path, [f for _, f in ordered], [rgb] * len(ordered), chunksize=chunk)
        except (BrokenProcessPool, OSError) as exc:  # no processes here (sandbox, limits): decode serially
            logger.debug("parallel decoding unavailable (%s); decoding serially", exc)
            decoded = None
    try:
        out: np.ndarray | None = None
        results = iter(decoded) if decoded is not None else None
        for k, (ds, f) in enumerate(ordered):
            frame = None
            if results is not None:
                try:
                    frame = next(results)
                except (BrokenProcessPool, OSError) as exc:
                    logger.debug("parallel decoding failed (%s); decoding serially", exc)
                    results = None
            if frame is None:
                frame = _frames(ds, f, 1, rgb)[0]
            _release_pixels(ds)
            if out is None:
                out = np.empty((len(ordered),) + frame.shape, frame.dtype)
            elif frame.dtype != out.dtype:
                raise DicomError("slices of one series decode to different pixel types", path=f,
                                 expected=str(out.dtype), found=str(frame.dtype), fix="split the series")
            out[k] = frame
        assert out is not None
        return out
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _rescaled(raw: np.ndarray, slopes: np.ndarray, intercepts: np.ndarray) -> np.ndarray:
    """Stored values to modality values (HU for CT), slice by slice, without a float64 copy of the volume.

    int16/int32 when slopes and intercepts are integers and the result fits, else float32.
    """
    identity = bool(np.all(slopes == 1.0) and np.all(intercepts == 0.0))
    if np.issubdtype(raw.dtype, np.floating):
        dtype = np.dtype(np.float32)
    else:
        axes = tuple(range(1, raw.ndim))
        lo_raw = raw.min(axis=axes).astype(np.float64)
        hi_raw = raw.max(axis=axes).astype(np.float64)
        ends = np.stack([lo_raw * slopes + intercepts, hi_raw * slopes + intercepts])
        dtype = _output_dtype(slopes, intercepts, float(ends.min()), float(ends.max()))
    if identity:
        return raw if raw.dtype == dtype else raw.astype(dtype)
    out = np.empty(raw.shape, dtype)
    for k in range(raw.shape[0]):
        if np.issubdtype(dtype, np.integer):
            np.multiply(raw[k], int(slopes[k]), out=out[k], dtype=dtype, casting="unsafe")
            out[k] += dtype.type(int(intercepts[k]))
        else:
            out[k] = raw[k] * dtype.type(slopes[k]) + dtype.type(intercepts[k])
    return out


def _output_dtype(slopes: np.ndarray, intercepts: np.ndarray, lo: float, hi: float) -> np.dtype:
    integral = np.all(slopes == np.round(slopes)) and np.all(intercepts == np.round(intercepts))
    if not integral:
        return np.dtype(np.float32)
    if lo >= np.iinfo(np.int16).min and hi <= np.iinfo(np.int16).max:
        return np.dtype(np.int16)
    if lo >= np.iinfo(np.int32).min and hi <= np.iinfo(np.int32).max:
        return np.dtype(np.int32)
    return np.dtype(np.float64)


def _template(ds: Dataset) -> Dataset:
    """Header of ``ds`` without pixel data (private to medimg.io: used by the writer).

    Shares the (raw, unconverted) elements of ``ds`` instead of deep-copying them: ``ds`` is a private parse
    that nothing else keeps, and the writer copies the template before changing it.
    """
    out = Dataset({tag: ds.get_item(tag) for tag in ds.keys() if tag.group != 0x7FE0})
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        out.file_meta = copy.deepcopy(meta)
    return out


def _acquisition(ds: Dataset) -> dict[str, Any]:
    out: dict[str, Any] = {}
    numeric = {"slice_thickness": "SliceThickness", "kvp": "KVP", "repetition_time": "RepetitionTime",
               "echo_time": "EchoTime", "magnetic_field_strength": "MagneticFieldStrength"}
    for key, keyword in numeric.items():
        v = _first_float(ds.get(keyword))
        if v is not None:
            out[key] = v
    kernel = ds.get("ConvolutionKernel")
    if kernel:
        out["convolution_kernel"] = "\\".join(kernel) if isinstance(kernel, pydicom.multival.MultiValue) \
            else str(kernel)
    body = _str(ds, "BodyPartExamined")
    if body:
        out["body_part"] = body
    return out


# ---- reading -----------------------------------------------------------------------------------------------
def _check_options(spacing: Any, on_gap: str) -> tuple[float, float, float] | None:
    if on_gap not in ("error", "resample"):
        raise InvalidParameterError("unknown value", parameter="on_gap", expected="'error' or 'resample'",
                                    found=repr(on_gap), fix='use on_gap="resample" to fill slice gaps')
    if spacing is None:
        return None
    try:
        values = tuple(float(v) for v in spacing)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError("not numbers", parameter="spacing", expected="(sx, sy, sz) in mm",
                                    found=repr(spacing), fix="give three positive numbers") from exc
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise InvalidParameterError("wrong spacing", parameter="spacing", expected="three positive numbers in mm",
                                    found=values, fix="give spacing=(sx, sy, sz), x first")
    return values  # type: ignore[return-value]


def _load(info: SeriesInfo, *, source: Path, where: Path, user_spacing: tuple[float, float, float] | None,
          on_gap: str, headers: dict[Path, Dataset] | None = None) -> Image:
    headers = headers or {}
    datasets = [(headers[f] if f in headers else _read_full(f), f) for f in info.files]
    photometric = _str(datasets[0][0], "PhotometricInterpretation", "MONOCHROME2").upper()
    samples = int(datasets[0][0].get("SamplesPerPixel", 1) or 1)
    rgb = samples == 3
    if samples not in (1, 3):
        raise DicomError("unsupported samples per pixel", path=datasets[0][1], expected="1 or 3",
                         found=samples, fix="convert the image to grey-scale or RGB first")
    note = None
    user_sz = user_spacing[2] if user_spacing is not None else None
    if len(datasets) == 1 and _is_multiframe(datasets[0][0]):
        ds, f = datasets[0]
        slices, note = _multiframe_slices(ds, f, user_sz)
        frames = _frames(ds, f, len(slices), rgb)
        first_ds = ds
    else:
        for ds, f in datasets:
            if _is_multiframe(ds):
                raise DicomError("multi-frame file inside a multi-file series", path=f,
                                 expected="one frame per file", found=f"{_n_frames(ds)} frames",
                                 fix="read this file on its own")
            if int(ds.get("SamplesPerPixel", 1) or 1) != samples:
                raise DicomError("mixed grey-scale and colour images in one series", path=f,
                                 expected=f"SamplesPerPixel {samples}", found=ds.get("SamplesPerPixel"),
                                 fix="split the series")
        slices = [_classic_slice(ds, f) for ds, f in datasets]
        frames = None
        first_ds = None
    single_sz = _first_float((first_ds or datasets[0][0]).get("SliceThickness"))
    stack = _stack(slices, where, user_spacing, single_sz)
    if stack.gaps and on_gap == "error":
        raise _gap_error(stack, slices, where)

    # pixel values in physical order
    if frames is None:
        ordered = [datasets[i] for i in stack.order]
        raw = _decode_slices(ordered, rgb)
    else:
        raw = frames[stack.order]
    ordered_slices = [slices[i] for i in stack.order]
    first_ds = first_ds if first_ds is not None else datasets[int(stack.order[0])][0]
    first = ordered_slices[0]
    history: list[Operation] = []
    if rgb:
        vox = np.moveaxis(raw, -1, 0)  # (3, Z, Y, X)
        out_photometric = "RGB"
    else:
        slopes = np.array([s.slope for s in ordered_slices], dtype=np.float64)
        intercepts = np.array([s.intercept for s in ordered_slices], dtype=np.float64)
        vox = _rescaled(raw, slopes, intercepts)[None]
        del raw
        out_photometric = photometric
    spacing = stack.spacing
    if stack.gaps:
        vox, grid = _resample_even(vox, stack.positions, stack.spacing[2])
        new_sz = float((grid[-1] - grid[0]) / (len(grid) - 1))
        spacing = (spacing[0], spacing[1], new_sz)
        history.append(Operation("dicom_fill_slice_gaps", {
            "method": "linear", "source_positions_mm": np.round(stack.positions, 4).tolist(),
            "spacing_mm": new_sz, "n_slices": len(grid), "gaps_after_slices": stack.gaps,
        }))
        logger.warning("%s: %d irregular slice gaps resampled linearly to %.4g mm", where, len(stack.gaps), new_sz)
    geometry = Geometry(spacing=spacing, origin=stack.origin, direction=stack.direction)
    meta_ds = first_ds
    metadata: dict[str, Any] = {
        "source_format": "dicom",
        "source_path": str(source),
        "modality": Modality.parse(_str(meta_ds, "Modality")).value if _str(meta_ds, "Modality") else "UNKNOWN",
        "series_uid": info.series_uid or None,
        "study_uid": info.study_uid or None,
        "frame_of_reference_uid": info.frame_of_reference_uid or None,
        "series_description": info.description,
        "window": first.window,
        "rescale": (first.slope, first.intercept),
        "transfer_syntax": str(meta_ds.file_meta.TransferSyntaxUID)
        if "TransferSyntaxUID" in getattr(meta_ds, "file_meta", {}) else None,
        "manufacturer": _str(meta_ds, "Manufacturer") or None,
        "acquisition": _acquisition(_acquisition_source(meta_ds)),
        "spacing_source": stack.spacing_source,
        "photometric": out_photometric,
        # Private to medimg.io (used by write_dicom_series); a pydicom Dataset, not JSON-able.
        "dicom_template": _template(meta_ds),
    }
    if note:
        metadata["geometry_note"] = note
    logger.info("read DICOM series (%s, %d slices, %s) from %s", metadata["modality"], vox.shape[1],
                "x".join(f"{s:.4g}" for s in spacing), where)
    return Image(voxels=vox, geometry=geometry, kind=Kind.INTENSITY, metadata=metadata, history=tuple(history))


def _acquisition_source(ds: Dataset) -> Dataset:
    """For enhanced objects, SliceThickness lives in the shared PixelMeasuresSequence: merge it in."""
    if "SliceThickness" in ds:
        return ds
    pm = _item(_item(ds, "SharedFunctionalGroupsSequence"), "PixelMeasuresSequence")
    if pm is None or "SliceThickness" not in pm:
        return ds
    merged = Dataset()
    for elem in ds:
        if elem.tag.group != 0x7FE0 and elem.keyword not in ("PerFrameFunctionalGroupsSequence",):
            merged.add(elem)
    merged.SliceThickness = pm.SliceThickness
    return merged


def read_dicom(
    path: str | os.PathLike[str],
    *,
    series: str | int | None = None,
    spacing: tuple[float, float, float] | None = None,
    on_gap: str = "error",
) -> Image:
    """Read one DICOM image series as an LPS :class:`Image`.

    Slices are ordered by the projection of ImagePositionPatient on the slice normal (row cosine x column
    cosine), never by file name or InstanceNumber. Geometry: direction columns = row cosine, column cosine,
    normal; spacing = (PixelSpacing[1], PixelSpacing[0], distance between slice positions); origin = position of
    the first slice. Values: Rescale Slope/Intercept applied per slice (CT in HU); int16/int32 when slope and
    intercept are integers, else float32. Colour images (RGB, YBR_*) give 3 channels (RGB); single images give
    Z = 1.

    Args:
        path: a DICOM file, series/study folder, DICOMDIR or .zip (see :func:`scan_dicom`).
        series: which series when several are found: an index into :func:`scan_dicom`'s list or a
            SeriesInstanceUID.
        spacing: (sx, sy, sz) in mm, x first, for files that lack it: the in-plane part is used only when no
            slice has PixelSpacing / ImagerPixelSpacing / NominalScannedPixelSpacing (recorded as
            ``spacing_source="user"``); sz only where slice positions do not define it (a single slice, or a
            multi-frame object without positions or slice spacing). What the file states always wins.
        on_gap: "error" (default) raises on missing slices or uneven slice spacing; "resample" resamples
            linearly onto an even grid (float32), recording it in the image history.

    Returns:
        The image (C, Z, Y, X) with metadata: source_format, source_path, modality, series_uid, study_uid,
        frame_of_reference_uid, series_description, window, rescale, transfer_syntax, manufacturer,
        acquisition, spacing_source, photometric and dicom_template (private to medimg.io).

    Raises:
        SeriesSelectionError: several series and ``series`` is None, or ``series`` matches none.
        DicomError: unreadable files; no pixel spacing; slice gaps; mixed orientations, sizes or pixel spacing;
            duplicate positions; sheared stacks; pixel data that cannot be decoded.
        ImageReadError: missing path, empty file, unsafe zip.
        InvalidParameterError: a wrong ``spacing`` or ``on_gap``.

    Example:
        >>> from pydicom.data import get_testdata_file
        >>> img = read_dicom(get_testdata_file("CT_small.dcm"))
        >>> img.shape, img.metadata["modality"], img.dtype
        ((1, 1, 128, 128), 'CT', dtype('int16'))
    """
    user_spacing = _check_options(spacing, on_gap)
    p = check_input(path)
    if _is_zip(p):
        with tempfile.TemporaryDirectory(prefix="medimg-dicom-") as tmp:
            root = extract_zip_safely(p, tmp)
            found = _scan(root)
            if not found.series:
                raise _no_images_error(p, found)
            info = _select(found.series, series, p)
            return _load(info, source=p, where=p, user_spacing=user_spacing, on_gap=on_gap, headers=found.headers)
    found = _scan(p)
    if not found.series:
        raise _no_images_error(p, found)
    info = _select(found.series, series, p)
    where = info.files[0].parent if len(info.files) > 1 else info.files[0]
    return _load(info, source=p, where=where, user_spacing=user_spacing, on_gap=on_gap, headers=found.headers)

