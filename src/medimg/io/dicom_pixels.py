"""Pixel data of the DICOM reader: reading a whole file, decoding (compressed transfer syntaxes through the pydicom
pixel handlers, in worker processes for many slices) with the checks that a decoder did not return zeros for a
damaged stream, Rescale Slope/Intercept, and the header template and acquisition values a read image keeps."""

from __future__ import annotations

import copy
import logging
import multiprocessing as mp
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID

from medimg.core.errors import DicomError
from medimg.io.dicom_geometry import first_float
from medimg.io.dicom_guards import (
    PIXEL_TAGS,
    READ_ERRORS,
    check_declared_size,
    check_transfer_syntax,
    dcmread_bounded,
    force_parse,
    frame_count,
    int_tag,
    is_panic,
    native_stderr,
    quiet_pydicom,
    text_value,
)

__all__ = ["read_full", "frame_array", "decode_slices", "rescaled", "template_dataset", "acquisition_info"]

logger = logging.getLogger(__name__)

_DECOMPRESS_FIX = ("decompress it first, e.g. `gdcmconv --raw IN OUT` (GDCM) or `dcmdjpeg`/`dcmdrle`/`dcmdjpls` "
                  "(DCMTK), and read the result")
_JPEG_SOF_MARKERS = (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2", b"\xff\xc3", b"\xff\xf7")


# ---- pixels ------------------------------------------------------------------------------------------------
def read_full(path: Path) -> Dataset:
    try:
        with quiet_pydicom():
            ds = dcmread_bounded(path, force=True)
            check_transfer_syntax(ds, path)
            force_parse(ds, path)
    except DicomError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - see READ_ERRORS
        raise DicomError("unreadable DICOM file", path=path, found=f"{type(exc).__name__}: {str(exc)[:200]}",
                         fix="the file is damaged or truncated; copy it again or remove it") from exc
    check_declared_size(ds, path)
    return ds


def _fetch_deferred_pixels(ds: Dataset, path: Path) -> None:
    """Read a deferred pixel data value straight from its file offset.

    The header was parsed once with ``defer_size``; pydicom's own deferred read would parse the whole file a
    second time. Uses pydicom's raw element (offset and length); anything unexpected falls back to pydicom.
    """
    raw_dict = getattr(ds, "_dict", None)
    if raw_dict is None:
        return
    for tag in PIXEL_TAGS:
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
    reason = f"{type(exc).__name__}: {text[:160]}" if not is_panic(exc) else f"decoder panicked: {text[:160]}"
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
        with native_stderr(native) as printed, quiet_pydicom() as notes:
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
        if not is_panic(exc):  # KeyboardInterrupt, SystemExit: never swallowed
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
    rows, cols = int_tag(ds, "Rows", 0), int_tag(ds, "Columns", 0)
    frames = int_tag(ds, "NumberOfFrames", 1) or 1
    samples = int_tag(ds, "SamplesPerPixel", 1) or 1
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
        first = next(generate_frames(ds.PixelData, number_of_frames=frame_count(ds)))
    except (StopIteration, *READ_ERRORS):
        return False
    name = uid.name.upper()
    if "JPEG 2000" in name or "HTJ2K" in name:  # SOC + SIZ, and a tile (SOT) to decode
        if first[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n":  # JP2 file format
            return b"\xff\x4f\xff\x51" in first and b"\xff\x90" in first
        return first[:4] == b"\xff\x4f\xff\x51" and b"\xff\x90" in first
    if "JPEG" in name:  # baseline, extended, lossless, JPEG-LS: SOI, a start-of-frame and a start-of-scan marker
        return first[:2] == b"\xff\xd8" and any(m in first for m in _JPEG_SOF_MARKERS) and b"\xff\xda" in first
    return True


def frame_array(ds: Dataset, path: Path, n_frames: int, rgb: bool) -> np.ndarray:
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
        return frame_array(read_full(path), path, 1, rgb)[0]
    except DicomError:
        return None


def _release_pixels(ds: Dataset) -> None:
    """Drop the encoded pixel bytes of a private dataset once decoded (keeps peak memory near one volume)."""
    for tag in PIXEL_TAGS:
        if tag in ds:
            del ds[tag]


def decode_slices(ordered: list[tuple[Dataset, Path]], rgb: bool) -> np.ndarray:
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
                frame = frame_array(ds, f, 1, rgb)[0]
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


def rescaled(raw: np.ndarray, slopes: np.ndarray, intercepts: np.ndarray) -> np.ndarray:
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


def template_dataset(ds: Dataset) -> Dataset:
    """Header of ``ds`` without pixel data (private to medimg.io: used by the writer).

    Shares the (raw, unconverted) elements of ``ds`` instead of deep-copying them: ``ds`` is a private parse
    that nothing else keeps, and the writer copies the template before changing it.
    """
    out = Dataset({tag: ds.get_item(tag) for tag in ds.keys() if tag.group != 0x7FE0})
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        out.file_meta = copy.deepcopy(meta)
    return out


def acquisition_info(ds: Dataset) -> dict[str, Any]:
    out: dict[str, Any] = {}
    numeric = {"slice_thickness": "SliceThickness", "kvp": "KVP", "repetition_time": "RepetitionTime",
               "echo_time": "EchoTime", "magnetic_field_strength": "MagneticFieldStrength"}
    for key, keyword in numeric.items():
        v = first_float(ds.get(keyword))
        if v is not None:
            out[key] = v
    kernel = ds.get("ConvolutionKernel")
    if kernel:
        out["convolution_kernel"] = "\\".join(kernel) if isinstance(kernel, pydicom.multival.MultiValue) \
            else str(kernel)
    body = text_value(ds, "BodyPartExamined")
    if body:
        out["body_part"] = body
    return out
