"""DICOM series discovery: :func:`scan_dicom` finds the image series under a file, a series or study folder
(recursively, skipping non-DICOM files), a DICOMDIR or a zip archive (extracted safely by :mod:`medimg.io.archive`)
and describes each as a :class:`SeriesInfo`, reading headers only; :func:`select_series` picks the one to read."""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from medimg.core.errors import DicomError, InvalidParameterError, SeriesSelectionError
from medimg.io.archive import extract_zip_safely
from medimg.io.dicom_guards import (
    READER_TAGS,
    check_declared_size,
    check_transfer_syntax,
    dcmread_bounded,
    force_parse,
    frame_count,
    is_multiframe,
    non_image_kind,
    quiet_pydicom,
    text_value,
)
from medimg.io.files import check_input

__all__ = ["SeriesInfo", "scan_dicom", "find_series", "no_images_error", "select_series", "is_zip"]

logger = logging.getLogger(__name__)

#: Files with these suffixes are never DICOM and are skipped silently.
_SKIP_SUFFIXES = frozenset({
    ".txt", ".md", ".json", ".xml", ".csv", ".tsv", ".html", ".htm", ".pdf", ".png", ".jpg", ".jpeg", ".gif",
    ".bmp", ".tif", ".tiff", ".nii", ".gz", ".nrrd", ".mha", ".mhd", ".zip", ".py", ".ini", ".log", ".db",
    ".exe", ".bat", ".sh", ".npy", ".npz", ".yaml", ".yml",
})
#: Files with these suffixes are expected to be DICOM: when they cannot be read, they are reported.
_DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic", ".ima"})
_RESULTS_FIX = "reading SEG/SR comes with DICOM support for results (issue 14)"
_SELECT_FIX = "pass --series <index or SeriesInstanceUID> (read_dicom(..., series=...))"
_DEFER_BYTES = 16 * 1024  # values larger than this are read lazily


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


# ---- file discovery ----------------------------------------------------------------------------------------
class _Skip(Exception):
    """Internal: the file is not a DICOM image and is skipped silently; ``kind`` names a non-image DICOM object
    (e.g. 'Segmentation (SEG)')."""

    def __init__(self, kind: str | None = None) -> None:
        super().__init__(kind or "")
        self.kind = kind


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
        with quiet_pydicom():
            # Large values (pixel data) are deferred: read from the file only when the series is loaded, so the
            # header parsed here is reused by _load instead of parsing every file twice.
            ds = dcmread_bounded(path, defer_size=_DEFER_BYTES, force=not has_magic)
            check_transfer_syntax(ds, path)
            force_parse(ds, path, READER_TAGS)  # a bad VR or value length fails here, not later
            rows = ds.get("Rows")
            cols = ds.get("Columns")
            uid = ds.get("SeriesInstanceUID")
            kind = non_image_kind(ds)
    except DicomError:
        raise
    except MemoryError as exc:  # large values are deferred and lengths checked: a header never needs much memory
        raise DicomError("unreadable DICOM file", path=path, expected="a DICOM header of sensible size",
                         found="MemoryError while parsing the header",
                         fix="the file is damaged or hostile; remove it") from exc
    except Exception as exc:  # noqa: BLE001 - see READ_ERRORS
        raise DicomError("unreadable DICOM file", path=path, expected="a valid DICOM file",
                         found=f"{type(exc).__name__}: {str(exc)[:200]}",
                         fix="the file is damaged or truncated; copy it again or remove it") from exc
    if kind is not None:
        logger.debug("skipping non-image DICOM object %s (%s)", path, kind)
        raise _Skip(kind)
    if rows is None or cols is None:
        if not has_magic:
            raise DicomError("unreadable DICOM file", path=path, expected="a DICOM image",
                             found="no DICOM header (no 'DICM' prefix, no image tags)",
                             fix="remove the file or give the folder of a DICOM series")
        logger.debug("skipping non-image DICOM object %s", path)
        raise _Skip
    check_declared_size(ds, path)
    if not uid:
        logger.debug("%s has no SeriesInstanceUID; grouped by folder, frame of reference and description", path)
    return ds


def _group_key(path: Path, ds: Dataset) -> str:
    """SeriesInstanceUID, or for anonymised files without one a surrogate built from folder and series tags."""
    uid = text_value(ds, "SeriesInstanceUID")
    if uid:
        return uid
    parts = [str(path.parent), text_value(ds, "FrameOfReferenceUID"), text_value(ds, "Modality"),
             text_value(ds, "SeriesDescription"), text_value(ds, "SeriesNumber")]
    return "no-uid:" + "|".join(parts)


def _dicomdir_files(path: Path) -> list[Path]:
    """Image files referenced by a DICOMDIR; refuses a reference that resolves outside the DICOMDIR's folder."""
    try:
        with quiet_pydicom():
            ds = dcmread_bounded(path)
            records = list(ds.DirectoryRecordSequence)
            refs = [rec.get("ReferencedFileID") for rec in records]
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - see READ_ERRORS
        raise DicomError("unreadable DICOMDIR", path=path, found=f"{type(exc).__name__}: {str(exc)[:200]}",
                         fix="give the folder that holds the DICOM files instead") from exc
    root = path.parent.resolve()
    files = []
    for ref in refs:
        if ref is None:
            continue
        values = ref if isinstance(ref, (list, tuple, pydicom.multival.MultiValue)) else [ref]
        # each value is one path component; split anyway, since hostile files put 'a/../..' into one value
        parts = [q for v in values for q in str(v).replace("\\", "/").split("/")]
        text = "\\".join(str(v) for v in values)[:120]
        if str(values[0]).startswith(("/", "\\")) or (len(str(values[0])) > 1 and str(values[0])[1] == ":") \
                or any(q in ("..", "") for q in parts):
            raise _outside_dicomdir(path, text)
        f = path.parent.joinpath(*parts)
        if not f.exists():  # file systems that changed the case of names
            alt = path.parent.joinpath(*[q.lower() for q in parts])
            f = alt if alt.exists() else f
        if not _is_within(f.resolve(), root):  # a symbolic link inside the folder that points out of it
            raise _outside_dicomdir(path, text)
        files.append(f)
    return files


def _outside_dicomdir(path: Path, ref: str) -> DicomError:
    return DicomError("DICOMDIR references a file outside its folder", path=path,
                      expected="ReferencedFileID relative to the DICOMDIR's folder, without '..'", found=f"'{ref}'",
                      fix="the DICOMDIR is damaged or hostile; give the folder that holds the DICOM files instead")


def _is_within(child: Path, root: Path) -> bool:
    try:
        child.relative_to(root)
    except ValueError:
        return False
    return True


def _iter_files(root: Path, outside: list[Path] | None = None) -> Iterable[Path]:
    """Files below ``root`` in sorted order; symbolic links that resolve outside ``root`` are not followed (they
    are appended to ``outside``), and linked folders are never entered."""
    real_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            f = Path(dirpath) / fn
            if f.is_symlink() and not _is_within(f.resolve(), real_root):
                if outside is not None:
                    outside.append(f)
                continue
            yield f


def is_zip(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".zip" and zipfile.is_zipfile(path)


@dataclass
class _Found:
    series: list[SeriesInfo]
    problems: list[DicomError]
    n_seen: int
    headers: dict[Path, Dataset]
    non_images: dict[str, int]

    def log_problems(self, where: Path) -> None:
        """One warning for the unreadable files of a scan that found images (not one line per file)."""
        if len(self.problems) == 1:
            logger.warning("%s", self.problems[0])
        elif self.problems:
            first = self.problems[0]
            logger.warning("%s: %d files are not readable DICOM and were skipped, e.g. '%s' (%s)", where,
                           len(self.problems), first.path, first.what)


def find_series(root: Path) -> _Found:
    """Scan a file, folder or DICOMDIR (no zip) and group image headers by series."""
    problems: list[DicomError] = []
    headers: list[tuple[Path, Dataset]] = []
    outside: list[Path] = []
    non_images: dict[str, int] = {}
    if root.is_file():
        if root.name.upper() == "DICOMDIR":
            candidates = _dicomdir_files(root)
        else:
            try:
                headers.append((root, _probe(root)))
            except _Skip as exc:
                if exc.kind is not None:
                    raise DicomError(f"{root.name} is a DICOM {exc.kind} object, not an image", path=root,
                                     expected="a DICOM image", found=f"a {exc.kind} object",
                                     fix=_RESULTS_FIX) from exc
                raise DicomError("not a DICOM image file", path=root, expected="a DICOM image",
                                 found="a file without a DICOM image header",
                                 fix="give a DICOM file, a series folder, a DICOMDIR or a .zip") from exc
            candidates = []
    else:
        candidates = list(_iter_files(root, outside))
        if outside:
            logger.warning("%s: %d symbolic link(s) point outside the input folder and were not followed, e.g. %s",
                           root, len(outside), outside[0].relative_to(root))
    n_seen = len(candidates) + len(headers)
    for f in candidates:
        try:
            headers.append((f, _probe(f)))
        except _Skip as exc:
            if exc.kind is not None:
                non_images[exc.kind] = non_images.get(exc.kind, 0) + 1
            logger.debug("skipping non-DICOM file %s", f)
        except DicomError as exc:
            logger.debug("%s", exc)
            problems.append(exc)

    groups: dict[str, list[tuple[Path, Dataset]]] = {}
    for f, ds in headers:
        groups.setdefault(_group_key(f, ds), []).append((f, ds))
    series: list[SeriesInfo] = []
    for uid, members in groups.items():
        members.sort(key=lambda m: str(m[0]))
        if len(members) > 1 and any(is_multiframe(ds) for _, ds in members):
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
                study_uid=text_value(ds0, "StudyInstanceUID"),
                modality=text_value(ds0, "Modality"),
                description=text_value(ds0, "SeriesDescription"),
                series_number=number,
                n_files=len(part),
                rows=int(ds0.Rows),
                columns=int(ds0.Columns),
                n_frames=sum(frame_count(ds) for _, ds in part),
                files=tuple(f for f, _ in part),
                frame_of_reference_uid=text_value(ds0, "FrameOfReferenceUID"),
            ))
    series.sort(key=lambda s: (s.study_uid, s.series_number if s.series_number is not None else 1 << 30,
                               s.description, s.series_uid, str(s.files[0])))
    return _Found(series, problems, n_seen, dict(headers), non_images)


def no_images_error(path: Path, found: _Found) -> DicomError:
    detail = f"{found.n_seen} files, none a readable DICOM image"
    if found.problems:
        first = found.problems[0]
        detail += f"; {len(found.problems)} unreadable, e.g. '{first.path}' ({first.what})"
    fix = "give the folder of a DICOM series (files with a 'DICM' header), a DICOMDIR or a .zip"
    if found.non_images:
        detail += "; " + ", ".join(f"{n} {kind} object(s)" for kind, n in sorted(found.non_images.items()))
        fix = _RESULTS_FIX + "; for images, " + fix
    return DicomError("no DICOM images found", path=path, expected="at least one DICOM image file", found=detail,
                      fix=fix)


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
    if is_zip(p):
        with tempfile.TemporaryDirectory(prefix="medimg-dicom-") as tmp:
            root = extract_zip_safely(p, tmp).resolve()
            found = find_series(root)
            series = [replace(s, files=tuple(p / f.resolve().relative_to(root) for f in s.files))
                      for s in found.series]
    else:
        found = find_series(p)
        series = found.series
    if not series:
        raise no_images_error(p, found)
    found.log_problems(p)
    logger.log(logging.INFO if found.n_seen > 1 else logging.DEBUG, "found %d DICOM series under %s", len(series), p)
    return series


def _selection_list(series: Sequence[SeriesInfo]) -> list[dict[str, Any]]:
    return [{"index": i, **s.summary()} for i, s in enumerate(series)]


def _describe(series: Sequence[SeriesInfo]) -> str:
    """The series for an error message: index, modality, size and SeriesNumber; no SeriesDescription (free text
    that may identify the patient: ``medimg info --show-identifiers`` prints it)."""
    return "; ".join(f"[{i}] {s.modality or '?'} {s.columns}x{s.rows}x{s.n_frames}"
                     + (f" series {s.series_number}" if s.series_number is not None else "")
                     for i, s in enumerate(series))


def select_series(series: list[SeriesInfo], selector: str | int | None, path: Path) -> SeriesInfo:
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
            return select_series(series, int(key), path)
        raise SeriesSelectionError(
            "no series with this SeriesInstanceUID", series=_selection_list(series), path=path,
            parameter="series", expected="an index or one of the listed UIDs",
            found=f"'{key}'; series: {_describe(series)}", fix=_SELECT_FIX,
        )
    raise InvalidParameterError("wrong type", parameter="series", expected="an int index, a UID string or None",
                                found=type(selector).__name__, fix=_SELECT_FIX)
