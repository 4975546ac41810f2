"""Hostile-input guards of the DICOM reader (:mod:`medimg.io.dicom`): reading a header with bounded memory
(:func:`dcmread_bounded`), the declared-size and transfer-syntax checks, forcing the parse of every element inside
the reader's error handling, quieting pydicom's logging and a decoder's native stderr, recognising non-image
objects, and the small dataset accessors every part of the reader uses."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import struct
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from medimg.core.checks import check_memory_budget
from medimg.core.errors import DicomError

__all__ = ["dcmread_bounded", "text_value", "frame_count", "is_multiframe", "quiet_pydicom", "native_stderr",
           "is_panic", "int_tag", "declared_bytes", "check_declared_size", "check_transfer_syntax", "READER_TAGS",
           "force_parse", "non_image_kind", "READ_ERRORS", "PIXEL_TAGS", "PIXEL_TAG_SET"]

logger = logging.getLogger(__name__)

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
READ_ERRORS = (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, IndexError,
               struct.error, NotImplementedError, OverflowError, RecursionError, UnicodeError)
_MAX_SEQUENCE_DEPTH = 64
#: The pixel data elements (Pixel Data, Float Pixel Data, Double Float Pixel Data).
PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
PIXEL_TAG_SET = frozenset(PIXEL_TAGS)


# ---- dataset values -----------------------------------------------------------------------------------------
def text_value(ds: Dataset, keyword: str, default: str = "") -> str:
    value = ds.get(keyword)
    if value is None:
        return default
    return str(value).strip()


def frame_count(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def is_multiframe(ds: Dataset) -> bool:
    return frame_count(ds) > 1 or "PerFrameFunctionalGroupsSequence" in ds


# ---- hostile input guards ----------------------------------------------------------------------------------
class _Collect(logging.Handler):
    def __init__(self, notes: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.notes = notes

    def emit(self, record: logging.LogRecord) -> None:
        self.notes.append(record.getMessage().splitlines()[0] if record.getMessage() else "")


@contextlib.contextmanager
def quiet_pydicom() -> Iterator[list[str]]:
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
def native_stderr(enabled: bool) -> Iterator[list[str]]:
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


def is_panic(exc: BaseException) -> bool:
    """A Rust panic surfacing from a decoder (pyo3's PanicException derives from BaseException)."""
    return type(exc).__name__ == "PanicException"


def int_tag(ds: Dataset, keyword: str, default: int) -> int:
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return -1


def declared_bytes(ds: Dataset) -> int:
    """Bytes the decoded frames of ``ds`` take as stored values (exact Python ints: no overflow)."""
    rows, cols = int_tag(ds, "Rows", 0), int_tag(ds, "Columns", 0)
    frames = int_tag(ds, "NumberOfFrames", 1) or 1
    samples = int_tag(ds, "SamplesPerPixel", 1) or 1
    bits = int_tag(ds, "BitsAllocated", 16) or 16
    return max(rows, 0) * max(cols, 0) * max(frames, 0) * max(samples, 0) * max((bits + 7) // 8, 1)


def check_declared_size(ds: Dataset, path: Path) -> None:
    """Refuse, before anything is decoded or looped over, a header that declares more than the memory budget, or
    (uncompressed) more pixel bytes than the file holds, or (compressed) more frames than it can hold."""
    rows, cols = int_tag(ds, "Rows", 0), int_tag(ds, "Columns", 0)
    frames = int_tag(ds, "NumberOfFrames", 1) or 1
    samples = int_tag(ds, "SamplesPerPixel", 1) or 1
    bits = int_tag(ds, "BitsAllocated", 16) or 16
    if min(rows, cols) <= 0 or frames < 0 or samples < 0 or bits < 0 or bits > 64:
        raise DicomError("invalid image size in the header", path=path,
                         expected="positive Rows, Columns, NumberOfFrames, SamplesPerPixel and BitsAllocated <= 64",
                         found=f"Rows {ds.get('Rows')}, Columns {ds.get('Columns')}, NumberOfFrames "
                               f"{ds.get('NumberOfFrames', 1)}, BitsAllocated {ds.get('BitsAllocated')}",
                         fix="the header is damaged; repair or remove the file")
    check_memory_budget(declared_bytes(ds), path=path, what="image", error=DicomError,
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


def check_transfer_syntax(ds: Dataset, path: Path) -> None:
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
READER_TAGS = frozenset(int(pydicom.datadict.tag_for_keyword(k)) for k in _READER_KEYWORDS)


def force_parse(ds: Dataset, path: Path, tags: frozenset[int] | None = None) -> None:
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
            if depth == 0 and (int(tag) in PIXEL_TAG_SET or (tags is not None and int(tag) not in tags)):
                continue
            elem = item[tag]
            if elem.VR == "SQ":
                stack.extend((sub, depth + 1) for sub in (elem.value or ()))


def non_image_kind(ds: Dataset) -> str | None:
    """What a non-image object is ('Segmentation (SEG)', ...) from its Modality or SOP Class; None for images."""
    modality = text_value(ds, "Modality").upper()
    if modality in _NON_IMAGE_KINDS:
        return _NON_IMAGE_KINDS[modality]
    sop = text_value(ds, "SOPClassUID") or text_value(getattr(ds, "file_meta", Dataset()), "MediaStorageSOPClassUID")
    name = UID(sop).name if sop else ""
    for words, code in _NON_IMAGE_CLASSES:
        if words.lower() in name.lower():
            return _NON_IMAGE_KINDS[code]
    return None
