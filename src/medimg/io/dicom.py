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

The reader is one module per job; this one reads a series and re-exports the public names:
:mod:`~medimg.io.dicom_scan` (discovery, :class:`SeriesInfo`, series selection), :mod:`~medimg.io.dicom_guards`
(hostile-input guards, bounded header reading), :mod:`~medimg.io.dicom_geometry` (slices and their stack),
:mod:`~medimg.io.dicom_pixels` (decoding, rescale) and :mod:`~medimg.io.dicom_write` (writing).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from medimg.core.checks import check_memory_budget
from medimg.core.enums import Kind, Modality
from medimg.core.errors import DicomError, InvalidParameterError
from medimg.core.geometry import Geometry
from medimg.core.image import Image, Operation
from medimg.io.archive import extract_zip_safely
from medimg.io.dicom_geometry import (
    classic_slice,
    first_float,
    gap_error,
    multiframe_slices,
    resample_even,
    sequence_item,
    stack_slices,
)
from medimg.io.dicom_guards import (
    dcmread_bounded,
    declared_bytes,
    force_parse,
    frame_count,
    is_multiframe,
    quiet_pydicom,
    text_value,
)
from medimg.io.dicom_pixels import (
    acquisition_info,
    decode_slices,
    frame_array,
    read_full,
    rescaled,
    template_dataset,
)
from medimg.io.dicom_scan import (
    SeriesInfo,
    find_series,
    is_zip,
    no_images_error,
    scan_dicom,
    select_series,
)
from medimg.io.dicom_write import write_dicom_series
from medimg.io.files import check_input

__all__ = ["SeriesInfo", "scan_dicom", "read_dicom", "write_dicom_series", "dcmread_bounded"]

logger = logging.getLogger(__name__)


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
    datasets = [(headers[f] if f in headers else read_full(f), f) for f in info.files]
    check_memory_budget(sum(declared_bytes(ds) for ds, _ in datasets), path=where, what="series pixel data",
                        error=DicomError, detail=f"{len(datasets)} file(s)")
    photometric = text_value(datasets[0][0], "PhotometricInterpretation", "MONOCHROME2").upper()
    samples = int(datasets[0][0].get("SamplesPerPixel", 1) or 1)
    rgb = samples == 3
    if samples not in (1, 3):
        raise DicomError("unsupported samples per pixel", path=datasets[0][1], expected="1 or 3",
                         found=samples, fix="convert the image to grey-scale or RGB first")
    note = None
    user_sz = user_spacing[2] if user_spacing is not None else None
    if len(datasets) == 1 and is_multiframe(datasets[0][0]):
        ds, f = datasets[0]
        slices, note = multiframe_slices(ds, f, user_sz)
        frames = frame_array(ds, f, len(slices), rgb)
        first_ds = ds
    else:
        for ds, f in datasets:
            if is_multiframe(ds):
                raise DicomError("multi-frame file inside a multi-file series", path=f,
                                 expected="one frame per file", found=f"{frame_count(ds)} frames",
                                 fix="read this file on its own")
            if int(ds.get("SamplesPerPixel", 1) or 1) != samples:
                raise DicomError("mixed grey-scale and colour images in one series", path=f,
                                 expected=f"SamplesPerPixel {samples}", found=ds.get("SamplesPerPixel"),
                                 fix="split the series")
        slices = [classic_slice(ds, f) for ds, f in datasets]
        frames = None
        first_ds = None
    single_sz = first_float(_acquisition_source(first_ds or datasets[0][0]).get("SliceThickness"))
    stack = stack_slices(slices, where, user_spacing, single_sz)
    if stack.gaps and on_gap == "error":
        raise gap_error(stack, slices, where)

    # pixel values in physical order
    if frames is None:
        ordered = [datasets[i] for i in stack.order]
        raw = decode_slices(ordered, rgb)
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
        vox = rescaled(raw, slopes, intercepts)[None]
        del raw
        out_photometric = photometric
    spacing = stack.spacing
    if stack.gaps:
        vox, grid = resample_even(vox, stack.positions, stack.spacing[2])
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
        with quiet_pydicom():
            force_parse(meta_ds, where)
            if getattr(meta_ds, "file_meta", None) is not None:
                force_parse(meta_ds.file_meta, where)
    except DicomError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - see READ_ERRORS
        raise DicomError("unreadable DICOM header", path=where, found=f"{type(exc).__name__}: {str(exc)[:200]}",
                         fix="the file is damaged; repair or remove it") from exc
    metadata: dict[str, Any] = {
        "source_format": "dicom",
        "source_path": str(source),
        "modality": (Modality.parse(text_value(meta_ds, "Modality")).value if text_value(meta_ds, "Modality")
                     else "UNKNOWN"),
        "series_uid": info.series_uid or None,
        "study_uid": info.study_uid or None,
        "frame_of_reference_uid": info.frame_of_reference_uid or None,
        "series_description": info.description,
        "window": first.window,
        "rescale": (first.slope, first.intercept),
        "transfer_syntax": str(meta_ds.file_meta.TransferSyntaxUID)
        if "TransferSyntaxUID" in getattr(meta_ds, "file_meta", {}) else None,
        "manufacturer": text_value(meta_ds, "Manufacturer") or None,
        "acquisition": acquisition_info(_acquisition_source(meta_ds)),
        "spacing_source": stack.spacing_source,
        "photometric": out_photometric,
        # Private to medimg.io (used by write_dicom_series); a pydicom Dataset, not JSON-able.
        "dicom_template": template_dataset(meta_ds),
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
    pm = sequence_item(sequence_item(ds, "SharedFunctionalGroupsSequence"), "PixelMeasuresSequence")
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
    if is_zip(p):
        with tempfile.TemporaryDirectory(prefix="medimg-dicom-") as tmp:
            root = extract_zip_safely(p, tmp)
            found = find_series(root)
            if not found.series:
                raise no_images_error(p, found)
            found.log_problems(p)
            info = select_series(found.series, series, p)
            return _load(info, source=p, where=p, user_spacing=user_spacing, on_gap=on_gap, headers=found.headers)
    found = find_series(p)
    if not found.series:
        raise no_images_error(p, found)
    found.log_problems(p)
    info = select_series(found.series, series, p)
    where = info.files[0].parent if len(info.files) > 1 else info.files[0]
    return _load(info, source=p, where=where, user_spacing=user_spacing, on_gap=on_gap, headers=found.headers)
