"""DICOM series discovery, reading and writing.

This module owns everything medimg does with DICOM *images*:

* :func:`scan_dicom` finds the image series under a file, a series or study folder (recursively, skipping
  non-DICOM files), a DICOMDIR or a zip archive (extracted safely by :mod:`medimg.io.archive`) and describes
  each as a :class:`SeriesInfo`, reading headers only.
* :func:`read_dicom` turns one series (classic one-file-per-slice, or an enhanced multi-frame object) into an
  :class:`~medimg.core.image.Image` in LPS: slices sorted by their position along the slice normal, oblique
  orientation kept exactly, Rescale Slope/Intercept applied (CT in HU), compressed transfer syntaxes decoded by
  the pydicom pixel handlers. It refuses what other readers get silently wrong: a missing pixel spacing, missing
  or unevenly spaced slices, mixed orientations or sizes, duplicate positions, sheared (gantry-tilt) stacks, a
  Rescale Slope of 0 or NaN, a decoder that returns zeros for a damaged stream. Non-image objects (SEG, SR, RT,
  PR, ...) are named, not read.

Hostile files end in one :class:`~medimg.core.errors.DicomError`: every element is converted inside the reader's
error handling (unknown VRs, bad value lengths, unknown transfer syntaxes, sequences nested deeper than 64 levels),
decoder logging and warnings are captured (no tracebacks on stderr), a decoder's Rust panic is caught, and the
size a header declares is checked against ``MEDIMG_MAX_BYTES`` and the bytes present before anything is decoded.
Paths never leave the input: DICOMDIR references outside its folder are refused, symbolic links out of a scanned
folder are not followed.
* :func:`write_dicom_series` writes a single-channel image that came from DICOM back as one file per slice.

DICOM patient coordinates are LPS, the library's space, so no axis flips happen here. Nothing in this module
logs patient-identifying values.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import multiprocessing as mp
import os
import struct
import sys
import tempfile
import warnings
import zipfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from medimg.core.checks import check_memory_budget
from medimg.core.enums import Kind, Modality
from medimg.core.errors import DicomError, InvalidParameterError, SeriesSelectionError
from medimg.core.geometry import Geometry
from medimg.core.image import Image, Operation
from medimg.io.archive import extract_zip_safely
from medimg.io.dicom_write import write_dicom_series
from medimg.io.files import check_input

__all__ = ["SeriesInfo", "scan_dicom", "read_dicom", "write_dicom_series", "dcmread_bounded"]

logger = logging.getLogger(__name__)

#: Files with these suffixes are never DICOM and are skipped silently.
_SKIP_SUFFIXES = frozenset({
    ".txt", ".md", ".json", ".xml", ".csv", ".tsv", ".html", ".htm", ".pdf", ".png", ".jpg", ".jpeg", ".gif",
    ".bmp", ".tif", ".tiff", ".nii", ".gz", ".nrrd", ".mha", ".mhd", ".zip", ".py", ".ini", ".log", ".db",
    ".exe", ".bat", ".sh", ".npy", ".npz", ".yaml", ".yml",
})
#: Files with these suffixes are expected to be DICOM: when they cannot be read, they are reported.
_DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic", ".ima"})
#: DICOM objects that are not images (or not images this reader turns into volumes), by Modality.
_NON_IMAGE_KINDS = {
    "SEG": "Segmentation (SEG)", "SR": "Structured Report (SR)", "RTSTRUCT": "RT Structure Set (RTSTRUCT)",
    "RTPLAN": "RT Plan (RTPLAN)", "RTDOSE": "RT Dose (RTDOSE)", "RTRECORD": "RT Treatment Record (RTRECORD)",
    "RTIMAGE": "RT Image (RTIMAGE)", "PR": "Presentation State (PR)", "KO": "Key Object Selection (KO)",
    "REG": "Spatial Registration (REG)", "DOC": "Encapsulated Document (DOC)", "ECG": "Waveform (ECG)",
}
_NON_IMAGE_MODALITIES = frozenset(_NON_IMAGE_KINDS)
#: ... and by words in the SOP Class name (Modality may be missing or wrong).
_NON_IMAGE_CLASSES = (
    ("Segmentation Storage", "SEG"), ("SR Storage", "SR"), ("Structured Report", "SR"),
    ("RT Structure Set", "RTSTRUCT"), ("RT Plan", "RTPLAN"), ("RT Ion Plan", "RTPLAN"), ("RT Dose", "RTDOSE"),
    ("Treatment Record", "RTRECORD"), ("Presentation State", "PR"), ("Key Object Selection", "KO"),
    ("Registration Storage", "REG"), ("Encapsulated", "DOC"), ("Waveform", "ECG"),
)

# Exceptions pydicom raises on malformed input (it has no single base class for them: InvalidDicomError,
# BytesLengthException, struct.error, NotImplementedError for unknown VRs, RecursionError, ...). Parsing a file
# catches every Exception but MemoryError; this tuple is for the narrower places.
_READ_ERRORS = (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, IndexError,
                struct.error, NotImplementedError, OverflowError, RecursionError, UnicodeError)
_DEFER_BYTES = 16 * 1024  # values larger than this are read lazily
_MAX_SEQUENCE_DEPTH = 64
#: Environment variable with the most bytes one decoded series may take (suffixes K, M, G, T allowed).
_RESULTS_FIX = "reading SEG/SR comes with DICOM support for results (issue 14)"
_DECOMPRESS_FIX = ("decompress it first, e.g. `gdcmconv --raw IN OUT` (GDCM) or `dcmdjpeg`/`dcmdrle`/`dcmdjpls` "
                   "(DCMTK), and read the result")

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


# ---- hostile input guards ----------------------------------------------------------------------------------
class _Collect(logging.Handler):
    def __init__(self, notes: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.notes = notes

    def emit(self, record: logging.LogRecord) -> None:
        self.notes.append(record.getMessage().splitlines()[0] if record.getMessage() else "")


@contextlib.contextmanager
def _quiet_pydicom() -> Iterator[list[str]]:
    """Keep pydicom's and its decoder plugins' chatter off stderr while parsing or decoding one file; yields the
    list of what they reported (warnings and log messages, first line of each).

    pydicom logs a full traceback (logger ``pydicom``, level ERROR) for every decoder plugin that fails and
    warns (``warnings``) about invalid values; on a hostile file that is dozens of lines before medimg's one-line
    error. Both are collected here (and logged at debug level); the error raised afterwards says what went wrong.
    """
    notes: list[str] = []
    pd_logger = logging.getLogger("pydicom")
    handler = _Collect(notes)
    was_propagating = pd_logger.propagate
    old_handlers = pd_logger.handlers[:]
    if not logger.isEnabledFor(logging.DEBUG):
        pd_logger.propagate = False
        pd_logger.handlers = [handler]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield notes
            notes.extend(str(w.message).splitlines()[0] for w in caught if str(w.message))
    finally:
        pd_logger.propagate = was_propagating
        pd_logger.handlers = old_handlers
    for note in notes[:5]:
        logger.debug("pydicom: %s", note)


@contextlib.contextmanager
def _native_stderr(enabled: bool) -> Iterator[list[str]]:
    """Hold back what native decoders write straight to file descriptor 2 while they run (a Rust panic hook
    prints 'thread ... panicked at ...' and a backtrace there, beyond Python's logging). Yields a list that
    receives the captured text; the caller decides: on success the text is written back to stderr unchanged,
    on failure it becomes part of the one-line error (and the debug log)."""
    captured: list[str] = []
    if not enabled:
        yield captured
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2 (embedded interpreter): nothing to hold back
        yield captured
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read(64 * 1024).decode("utf-8", "replace")
            if text:
                captured.append(text)


def _is_panic(exc: BaseException) -> bool:
    """A Rust panic surfacing from a decoder (pyo3's PanicException derives from BaseException)."""
    return type(exc).__name__ == "PanicException"


def _int_tag(ds: Dataset, keyword: str, default: int) -> int:
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return -1


def _declared_bytes(ds: Dataset) -> int:
    """Bytes the decoded frames of ``ds`` take as stored values (exact Python ints: no overflow)."""
    rows, cols = _int_tag(ds, "Rows", 0), _int_tag(ds, "Columns", 0)
    frames = _int_tag(ds, "NumberOfFrames", 1) or 1
    samples = _int_tag(ds, "SamplesPerPixel", 1) or 1
    bits = _int_tag(ds, "BitsAllocated", 16) or 16
    return max(rows, 0) * max(cols, 0) * max(frames, 0) * max(samples, 0) * max((bits + 7) // 8, 1)


def _check_declared_size(ds: Dataset, path: Path) -> None:
    """Refuse, before anything is decoded or looped over, a header that declares more than the memory budget, or
    (uncompressed) more pixel bytes than the file holds, or (compressed) more frames than it can hold."""
    rows, cols = _int_tag(ds, "Rows", 0), _int_tag(ds, "Columns", 0)
    frames = _int_tag(ds, "NumberOfFrames", 1) or 1
    samples = _int_tag(ds, "SamplesPerPixel", 1) or 1
    bits = _int_tag(ds, "BitsAllocated", 16) or 16
    if min(rows, cols) <= 0 or frames < 0 or samples < 0 or bits < 0 or bits > 64:
        raise DicomError("invalid image size in the header", path=path,
                         expected="positive Rows, Columns, NumberOfFrames, SamplesPerPixel and BitsAllocated <= 64",
                         found=f"Rows {ds.get('Rows')}, Columns {ds.get('Columns')}, NumberOfFrames "
                               f"{ds.get('NumberOfFrames', 1)}, BitsAllocated {ds.get('BitsAllocated')}",
                         fix="the header is damaged; repair or remove the file")
    check_memory_budget(_declared_bytes(ds), path=path, what="image", error=DicomError,
                        detail=f"{cols}x{rows} x {frames} frame(s) x {samples} sample(s) x {bits} bits")
    raw = getattr(ds, "_dict", {}).get(0x7FE00010)
    length = getattr(raw, "length", None)
    if length is None:
        return
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    compressed = length == 0xFFFFFFFF or bool(syntax is not None and syntax.is_transfer_syntax
                                              and syntax.is_compressed)
    if not compressed:
        needed = (rows * cols * frames * samples * bits + 7) // 8
        if length < needed:
            raise DicomError(
                "pixel data shorter than the header declares", path=path,
                expected=f"{needed} bytes for {cols}x{rows} x {frames} frame(s) x {samples} sample(s) x {bits} bits",
                found=f"{length} bytes", fix="the file is truncated or its header is damaged; copy it again")
    elif frames > 1:
        size = path.stat().st_size
        if frames * 8 > size:  # every compressed frame needs at least one 8-byte item header
            raise DicomError("more frames declared than the file can hold", path=path,
                             expected=f"at most {size // 8} frames in {size} bytes", found=f"NumberOfFrames {frames}",
                             fix="the header is damaged or hostile; repair or remove the file")


class _BoundedFile(io.BufferedReader):
    """A binary file whose ``read(n)`` never asks for more than the bytes left in it.

    pydicom reads an element's value with ``fp.read(declared_length)``, and a buffered read allocates the
    declared length first: a value length of 0xFFFFFFF0 in a 1 KB file was a MemoryError. Capped, pydicom gets the
    short value and reports the file as truncated. Still an ``io.BufferedReader``, so pydicom keeps the file name
    for deferred reads."""

    def __init__(self, path: Path) -> None:
        super().__init__(io.FileIO(str(path), "rb"))  # a str name: pydicom reopens it for deferred reads
        self._size = os.fstat(self.fileno()).st_size

    def read(self, size: int | None = -1) -> bytes:
        if size is not None and size > 0:
            size = min(size, max(self._size - self.tell(), 0))
        return super().read(size)


def dcmread_bounded(path: Path, **kwargs: Any) -> Dataset:
    """``pydicom.dcmread`` through :class:`_BoundedFile`, then :func:`_check_deferred_lengths`."""
    with _BoundedFile(path) as fh:
        ds = pydicom.dcmread(fh, **kwargs)
    _check_deferred_lengths(ds, path)
    return ds


def _check_deferred_lengths(ds: Dataset, path: Path) -> None:
    """Refuse a deferred (large, not yet read) element whose declared length runs past the end of the file, before
    anything reads it (pydicom and _fetch_deferred_pixels would allocate the declared length)."""
    size = path.stat().st_size
    for tag, raw in getattr(ds, "_dict", {}).items():
        if isinstance(raw, RawDataElement) and raw.value is None and raw.length not in (0, 0xFFFFFFFF) \
                and raw.value_tell + raw.length > size:
            raise DicomError(
                "DICOM file is truncated or an element length is damaged", path=path,
                expected=f"element {tag} with {raw.length} bytes inside the file's {size} bytes",
                found=f"{max(size - raw.value_tell, 0)} bytes after the element's start",
                fix="copy the file again; if it persists the file is damaged or hostile, remove it")


def _check_transfer_syntax(ds: Dataset, path: Path) -> None:
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None:
        return
    uid = UID(str(syntax).strip().rstrip("\0"))
    if not uid.is_transfer_syntax:
        raise DicomError(
            "unknown transfer syntax", path=path, expected="a DICOM transfer syntax UID (1.2.840.10008.1.2...)",
            found=f"'{str(uid)[:64]}'", fix="the file meta header is damaged or uses a private encoding; convert "
            "the file to Explicit VR Little Endian with the software that wrote it (or `gdcmconv --raw`)")


#: The attributes this reader uses (geometry, values, grouping, metadata): converted when a header is probed.
_READER_KEYWORDS = (
    "SOPClassUID", "Modality", "SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID", "SeriesDescription",
    "SeriesNumber", "Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "BitsAllocated", "BitsStored",
    "HighBit", "PixelRepresentation", "PhotometricInterpretation", "PlanarConfiguration", "PixelSpacing",
    "ImagerPixelSpacing", "NominalScannedPixelSpacing", "ImageOrientationPatient", "ImagePositionPatient",
    "SliceThickness", "SpacingBetweenSlices", "GridFrameOffsetVector", "RescaleSlope", "RescaleIntercept",
    "WindowCenter", "WindowWidth", "Manufacturer", "KVP", "RepetitionTime", "EchoTime", "MagneticFieldStrength",
    "ConvolutionKernel", "BodyPartExamined", "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence",
)
_READER_TAGS = frozenset(int(pydicom.datadict.tag_for_keyword(k)) for k in _READER_KEYWORDS)


def _force_parse(ds: Dataset, path: Path, tags: frozenset[int] | None = None) -> None:
    """Convert elements now (pydicom converts lazily), so that a bad VR or value length fails inside the reader's
    error handling instead of later: the top-level ``tags`` (all when None) and everything nested in them, at most
    _MAX_SEQUENCE_DEPTH deep. Deferred pixel data is left unread."""
    stack = [(ds, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > _MAX_SEQUENCE_DEPTH:
            raise DicomError("sequences nested too deeply", path=path,
                             expected=f"at most {_MAX_SEQUENCE_DEPTH} levels", found="more",
                             fix="the file is damaged or hostile; remove it")
        for tag in list(item.keys()):
            if depth == 0 and (int(tag) in _PIXEL_TAG_SET or (tags is not None and int(tag) not in tags)):
                continue
            elem = item[tag]
            if elem.VR == "SQ":
                stack.extend((sub, depth + 1) for sub in (elem.value or ()))


def _non_image_kind(ds: Dataset) -> str | None:
    """What a non-image object is ('Segmentation (SEG)', ...) from its Modality or SOP Class; None for images."""
    modality = _str(ds, "Modality").upper()
    if modality in _NON_IMAGE_KINDS:
        return _NON_IMAGE_KINDS[modality]
    sop = _str(ds, "SOPClassUID") or _str(getattr(ds, "file_meta", Dataset()), "MediaStorageSOPClassUID")
    name = UID(sop).name if sop else ""
    for words, code in _NON_IMAGE_CLASSES:
        if words.lower() in name.lower():
            return _NON_IMAGE_KINDS[code]
    return None


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
        with _quiet_pydicom():
            # Large values (pixel data) are deferred: read from the file only when the series is loaded, so the
            # header parsed here is reused by _load instead of parsing every file twice.
            ds = dcmread_bounded(path, defer_size=_DEFER_BYTES, force=not has_magic)
            _check_transfer_syntax(ds, path)
            _force_parse(ds, path, _READER_TAGS)  # a bad VR or value length fails here, not later
            rows = ds.get("Rows")
            cols = ds.get("Columns")
            uid = ds.get("SeriesInstanceUID")
            kind = _non_image_kind(ds)
    except DicomError:
        raise
    except MemoryError as exc:  # large values are deferred and lengths checked: a header never needs much memory
        raise DicomError("unreadable DICOM file", path=path, expected="a DICOM header of sensible size",
                         found="MemoryError while parsing the header",
                         fix="the file is damaged or hostile; remove it") from exc
    except Exception as exc:  # noqa: BLE001 - see _READ_ERRORS
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
    _check_declared_size(ds, path)
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
    """Image files referenced by a DICOMDIR; refuses a reference that resolves outside the DICOMDIR's folder."""
    try:
        with _quiet_pydicom():
            ds = dcmread_bounded(path)
            records = list(ds.DirectoryRecordSequence)
            refs = [rec.get("ReferencedFileID") for rec in records]
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - see _READ_ERRORS
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


def _is_zip(path: Path) -> bool:
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


def _scan(root: Path) -> _Found:
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
    return _Found(series, problems, n_seen, dict(headers), non_images)


def _no_images_error(path: Path, found: _Found) -> DicomError:
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


def _rescale(*sources: Dataset | None, path: Path) -> tuple[float, float]:
    """(slope, intercept) from the first source that states either; a slope of 0, or a value that is not a finite
    number, is refused (treating it as 1 would give wrong values without a word)."""
    for src in sources:
        if src is None:
            continue
        raw_slope, raw_intercept = src.get("RescaleSlope"), src.get("RescaleIntercept")
        if _empty(raw_slope) and _empty(raw_intercept):
            continue
        slope = 1.0 if _empty(raw_slope) else _first_float(raw_slope)
        intercept = 0.0 if _empty(raw_intercept) else _first_float(raw_intercept)
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


def _item(seq_owner: Dataset | None, keyword: str) -> Dataset | None:
    if seq_owner is None:
        return None
    seq = seq_owner.get(keyword)
    if not seq:
        return None
    return seq[0]


def _classic_slice(ds: Dataset, path: Path) -> _Slice:
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
        with _quiet_pydicom():
            ds = dcmread_bounded(path, force=True)
            _check_transfer_syntax(ds, path)
            _force_parse(ds, path)
    except DicomError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - see _READ_ERRORS
        raise DicomError("unreadable DICOM file", path=path, found=f"{type(exc).__name__}: {str(exc)[:200]}",
                         fix="the file is damaged or truncated; copy it again or remove it") from exc
    _check_declared_size(ds, path)
    return ds


_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
_PIXEL_TAG_SET = frozenset(_PIXEL_TAGS)
_JPEG_SOF_MARKERS = (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2", b"\xff\xc3", b"\xff\xf7")


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
            # never allocate more than the file holds (the header check refuses such lengths; this is the backstop)
            data = fh.read(min(raw.length, max(os.fstat(fh.fileno()).st_size - raw.value_tell, 0)))
        if len(data) != raw.length:
            raise DicomError("DICOM file is truncated", path=path, expected=f"{raw.length} bytes of pixel data",
                             found=f"{len(data)} bytes", fix="copy the file again; it was cut short")
        raw_dict[tag] = raw._replace(value=data)


def _decode_failure(syntax: str, exc: BaseException) -> tuple[str, str]:
    """(short reason, fix) for a decoder failure: the first plugin's message, on one line."""
    text = " ".join(str(exc).split())
    marker = "plugins:"
    if marker in text:
        text = text.split(marker, 1)[1].strip()
    reason = f"{type(exc).__name__}: {text[:160]}" if not _is_panic(exc) else f"decoder panicked: {text[:160]}"
    lowered = text.lower()
    if "missing required dependencies" in lowered or "no pixel data decoders" in lowered \
            or "plugins are available" in lowered:
        fix = ("install the decoders: pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle; "
               "or " + _DECOMPRESS_FIX)
    else:
        fix = "the pixel data are damaged or use a variant the installed decoders do not support; " + _DECOMPRESS_FIX
    return reason, fix


def _syntax_label(ds: Dataset) -> str:
    uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if uid is None:
        return "an unstated transfer syntax"
    name = uid.name if uid.is_transfer_syntax else ""
    return f"{name} ({uid})" if name and name != str(uid) else str(uid)


def _decode(ds: Dataset, path: Path) -> np.ndarray:
    _fetch_deferred_pixels(ds, path)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise DicomError("DICOM file has no pixel data", path=path, expected="an image with PixelData",
                         found="no PixelData element (truncated?)", fix="copy the file again or remove it")
    syntax = _syntax_label(ds)
    uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    native = bool(uid is not None and uid.is_transfer_syntax and uid.is_compressed)
    failed = False
    printed: list[str] = []
    try:
        with _native_stderr(native) as printed, _quiet_pydicom() as notes:
            try:
                arr = np.asarray(ds.pixel_array)
            except BaseException:
                failed = True
                raise
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - decoder plugins raise anything; all mean "cannot decode"
        reason, fix = _decode_failure(syntax, exc)
        _log_native(printed)
        raise DicomError(f"cannot decode pixel data ({syntax})", path=path, expected="decodable pixel data",
                         found=reason, fix=fix) from exc
    except BaseException as exc:
        if not _is_panic(exc):  # KeyboardInterrupt, SystemExit: never swallowed
            raise
        reason, fix = _decode_failure(syntax, exc)
        _log_native(printed)
        raise DicomError(f"cannot decode pixel data ({syntax})", path=path, expected="decodable pixel data",
                         found=reason, fix=fix) from None
    finally:
        if not failed:  # nothing went wrong: what the decoder printed is not ours to hide
            for text in printed:
                sys.stderr.write(text)
    notes.extend(line for text in printed for line in text.splitlines()[:1])
    _check_decoded(ds, arr, path, syntax, notes)
    return arr


def _log_native(printed: list[str]) -> None:
    for text in printed:
        logger.debug("decoder output: %s", " ".join(text.split())[:500])


def _check_decoded(ds: Dataset, arr: np.ndarray, path: Path, syntax: str, notes: list[str]) -> None:
    """Refuse what a decoder returned without raising but cannot be the image: too few values, or an all-zero
    frame from compressed data whose stream is clearly not empty of content (garbage JPEG-LS decodes to zeros)."""
    rows, cols = _int_tag(ds, "Rows", 0), _int_tag(ds, "Columns", 0)
    frames = _int_tag(ds, "NumberOfFrames", 1) or 1
    samples = _int_tag(ds, "SamplesPerPixel", 1) or 1
    expected = rows * cols * frames * samples
    if arr.size < expected:
        raise DicomError(f"decoded pixel data are too short ({syntax})", path=path,
                         expected=f"{expected} values", found=f"{arr.size} values",
                         fix="the compressed stream is damaged; " + _DECOMPRESS_FIX)
    uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if uid is None or not uid.is_transfer_syntax or not uid.is_compressed or arr.size == 0 or np.any(arr):
        return
    if notes or not _stream_is_valid(ds, uid):
        what = f"the decoder reported '{notes[0][:100]}'" if notes else "the stream has no valid codestream header"
        raise DicomError(f"compressed pixel data decoded to an all-zero image ({syntax})", path=path,
                         expected="a compressed stream the decoder accepts", found=f"only zeros; {what}",
                         fix="the compressed stream is damaged; " + _DECOMPRESS_FIX)


def _stream_is_valid(ds: Dataset, uid: UID) -> bool:
    """Whether the first frame of encapsulated pixel data has the markers of the codestream its syntax names (a
    decoder fed a header followed by garbage may return zeros without a word: pylibjpeg-libjpeg on JPEG-LS)."""
    from pydicom.encaps import generate_frames

    try:
        first = next(generate_frames(ds.PixelData, number_of_frames=_n_frames(ds)))
    except (StopIteration, *_READ_ERRORS):
        return False
    name = uid.name.upper()
    if "JPEG 2000" in name or "HTJ2K" in name:  # SOC + SIZ, and a tile (SOT) to decode
        if first[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n":  # JP2 file format
            return b"\xff\x4f\xff\x51" in first and b"\xff\x90" in first
        return first[:4] == b"\xff\x4f\xff\x51" and b"\xff\x90" in first
    if "JPEG" in name:  # baseline, extended, lossless, JPEG-LS: SOI, a start-of-frame and a start-of-scan marker
        return first[:2] == b"\xff\xd8" and any(m in first for m in _JPEG_SOF_MARKERS) and b"\xff\xda" in first
    return True


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
    check_memory_budget(sum(_declared_bytes(ds) for ds, _ in datasets), path=where, what="series pixel data",
                        error=DicomError, detail=f"{len(datasets)} file(s)")
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
    single_sz = _first_float(_acquisition_source(first_ds or datasets[0][0]).get("SliceThickness"))
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
    try:  # this header is copied whole into the writer's template: every element must be readable
        with _quiet_pydicom():
            _force_parse(meta_ds, where)
            if getattr(meta_ds, "file_meta", None) is not None:
                _force_parse(meta_ds.file_meta, where)
    except DicomError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - see _READ_ERRORS
        raise DicomError("unreadable DICOM header", path=where, found=f"{type(exc).__name__}: {str(exc)[:200]}",
                         fix="the file is damaged; repair or remove it") from exc
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
    metadata["spacing_source_z"] = stack.z_source
    if stack.z_source == "default_1mm":
        z_note = ("single slice without SliceThickness: a slice thickness of 1 mm is assumed (volumes in mL are "
                  "not physical; pass spacing=(sx, sy, sz), CLI --spacing, if you know it)")
        note = f"{note}; {z_note}" if note else z_note
        logger.warning("%s: %s", where, z_note)
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
            found.log_problems(p)
            info = _select(found.series, series, p)
            return _load(info, source=p, where=p, user_spacing=user_spacing, on_gap=on_gap, headers=found.headers)
    found = _scan(p)
    if not found.series:
        raise _no_images_error(p, found)
    found.log_problems(p)
    info = _select(found.series, series, p)
    where = info.files[0].parent if len(info.files) > 1 else info.files[0]
    return _load(info, source=p, where=where, user_spacing=user_spacing, on_gap=on_gap, headers=found.headers)

