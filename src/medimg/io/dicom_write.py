"""Writing an image that came from DICOM back as a classic DICOM series (one file per slice).

Used through :func:`medimg.io.dicom.write_dicom_series`. The header of every slice starts from a template (the
first slice of the series the image was read from, kept in ``image.metadata["dicom_template"]``); geometry
tags come from the image's Geometry, values are stored as 16-bit integers with a Rescale Slope/Intercept chosen
so that they fit.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from medimg.core.errors import ImageWriteError
from medimg.core.image import Image

__all__ = ["write_dicom_series"]

logger = logging.getLogger(__name__)

_ENHANCED_TO_CLASSIC = {
    "1.2.840.10008.5.1.4.1.1.2.1": "1.2.840.10008.5.1.4.1.1.2",  # Enhanced CT -> CT Image Storage
    "1.2.840.10008.5.1.4.1.1.4.1": "1.2.840.10008.5.1.4.1.1.4",  # Enhanced MR -> MR Image Storage
}
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
_UID_NAMES = {
    "1.2.840.10008.5.1.4.1.1.2": "CT", "1.2.840.10008.5.1.4.1.1.2.1": "enhanced CT",
    "1.2.840.10008.5.1.4.1.1.4": "MR", "1.2.840.10008.5.1.4.1.1.4.1": "enhanced MR",
}

# Elements of the template that would be wrong for the new pixel data or for a single-frame file.
_DROP = frozenset({
    "PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence", "NumberOfFrames",
    "FrameIncrementPointer", "DimensionIndexSequence", "DimensionOrganizationSequence",
    "SmallestImagePixelValue", "LargestImagePixelValue", "SmallestPixelValueInSeries",
    "LargestPixelValueInSeries", "PixelPaddingValue", "PixelPaddingRangeLimit", "PlanarConfiguration",
    "ImagerPixelSpacing", "NominalScannedPixelSpacing", "ModalityLUTSequence", "RescaleType",
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceLocation",
    "LossyImageCompression", "LossyImageCompressionRatio", "LossyImageCompressionMethod",
    "GridFrameOffsetVector", "PixelAspectRatio", "RedPaletteColorLookupTableDescriptor",
})


def _ds(value: float) -> str:
    return format_number_as_ds(float(value))


def _quantise(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Stored integers (int16 or uint16) and (slope, intercept) with values ~= stored * slope + intercept."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(values.shape, np.int16), 1.0, 0.0
    lo, hi = float(finite.min()), float(finite.max())
    integral = np.issubdtype(values.dtype, np.integer) or bool(np.all(finite == np.round(finite)))
    if integral and lo >= -32768 and hi <= 32767:
        return np.nan_to_num(values).astype(np.int16), 1.0, 0.0
    if integral and lo >= 0 and hi <= 65535:
        return np.nan_to_num(values).astype(np.uint16), 1.0, 0.0
    intercept = float(_ds(lo))
    slope = float(_ds((hi - intercept) / 65000.0 if hi > intercept else 1.0))
    if slope <= 0:
        slope = 1.0
    stored = np.clip(np.round((np.nan_to_num(values, nan=lo) - intercept) / slope), 0, 65535)
    return stored.astype(np.uint16), slope, intercept


def write_dicom_series(image: Image, folder: str | os.PathLike[str], *, template: Dataset | None = None,
                       keep_identifiers: bool | None = None) -> None:
    """Write a single-channel 2D/3D image as a DICOM series, one file per slice (Explicit VR Little Endian).

    The series gets a new SeriesInstanceUID and new SOPInstanceUIDs. By default the header is the template
    de-identified with the PS3.15 basic profile (:func:`medimg.io.deid.deidentify_template`): new Study and
    Frame-of-Reference UIDs, a pseudonymous Patient's Name/ID, no dates the profile removes, no private tags. With
    ``keep_identifiers`` (or ``image.metadata["keep_identifiers"] = True``) patient and study tags and UIDs are
    copied from the template as they are. The images are marked as derived: ImageType DERIVED\\SECONDARY,
    DerivationDescription, and ConversionType WSD when written as Secondary Capture.
    ImagePositionPatient, ImageOrientationPatient, PixelSpacing, SliceThickness and SpacingBetweenSlices come from
    the image geometry. Values are stored as int16 (or uint16) with Rescale Slope/Intercept chosen so that they
    fit; integer values in the int16 range are stored exactly. Files are named ``IM00001.dcm``, ... in slice order.

    Args:
        image: single-channel image (C = 1), for example one returned by :func:`medimg.io.dicom.read_dicom`.
        folder: destination folder (created if missing; files already there are never overwritten). Callers
            that need all-or-nothing output wrap it in :func:`medimg.io.files.atomic_output_dir`.
        template: a pydicom Dataset whose header to copy; default ``image.metadata["dicom_template"]``.
        keep_identifiers: copy identifying attributes as they are; None: ``image.metadata["keep_identifiers"]``.

    Raises:
        ImageWriteError: no template (the image did not come from DICOM), more than one channel, a file that
            already exists, or a write failure.
    """
    tmpl = template if template is not None else image.metadata.get("dicom_template")
    if tmpl is None:
        raise ImageWriteError(
            "no DICOM header to copy", parameter="template", expected="an image read from DICOM or a template",
            found="no metadata['dicom_template']",
            fix="save the image as NIfTI (.nii.gz) instead, or pass template=<pydicom Dataset of the source series>",
        )
    if not isinstance(tmpl, Dataset):
        raise ImageWriteError("template is not a pydicom Dataset", parameter="template",
                              expected="pydicom.Dataset", found=type(tmpl).__name__,
                              fix="pass a Dataset read with pydicom.dcmread")
    if image.n_channels != 1:
        raise ImageWriteError(
            "only single-channel images can be written as a DICOM series", parameter="image",
            expected="1 channel", found=f"{image.n_channels} channels",
            fix="write one channel (image.voxels[c]) at a time, or save as NIfTI/PNG",
        )
    from medimg.io.deid import deidentify_template, keeps_identifiers

    keep = keeps_identifiers(image) if keep_identifiers is None else bool(keep_identifiers)
    if not keep:
        tmpl = deidentify_template(tmpl)
    out = Path(folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageWriteError("cannot create the output folder", path=out, found=str(exc),
                              fix="check the path and its permissions") from exc

    geo = image.geometry
    d = geo.direction_matrix
    sx, sy, sz = geo.spacing
    origin = np.asarray(geo.origin)
    stored, slope, intercept = _quantise(np.asarray(image.voxels[0]))
    signed = stored.dtype == np.int16
    series_uid = generate_uid()
    base = _base_dataset(tmpl)
    source_class = str(tmpl.get("SOPClassUID", "") or "").strip() or str(
        getattr(tmpl, "file_meta", {}).get("MediaStorageSOPClassUID", "") or "").strip()
    sop_class = _ENHANCED_TO_CLASSIC.get(source_class, source_class)
    sop_class = sop_class or _SECONDARY_CAPTURE
    photometric = str(tmpl.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        photometric = "MONOCHROME2"
    _mark_derived(base, tmpl, source_class, sop_class, slope, intercept)
    n_z = stored.shape[0]
    for k in range(n_z):
        ds = copy.deepcopy(base)
        sop_uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.file_meta = meta
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = sop_uid
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = k + 1
        pos = origin + d[:, 2] * sz * k
        ds.ImagePositionPatient = [_ds(v) for v in pos]
        ds.ImageOrientationPatient = [_ds(v) for v in np.concatenate([d[:, 0], d[:, 1]])]
        ds.PixelSpacing = [_ds(sy), _ds(sx)]
        if n_z > 1:
            ds.SliceThickness = _ds(sz)
            ds.SpacingBetweenSlices = _ds(sz)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.Rows, ds.Columns = int(stored.shape[1]), int(stored.shape[2])
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleSlope = _ds(slope)
        ds.RescaleIntercept = _ds(intercept)
        ds.PixelData = np.ascontiguousarray(stored[k]).astype("<i2" if signed else "<u2").tobytes()
        target = out / f"IM{k + 1:05d}.dcm"
        if target.exists():
            raise ImageWriteError("output file exists", path=target, expected="a new file",
                                  found="an existing file", fix="write into a new or empty folder")
        try:
            pydicom.dcmwrite(target, ds, enforce_file_format=True)
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise ImageWriteError("cannot write DICOM file", path=target, found=f"{type(exc).__name__}: {exc}",
                                  fix="check free disk space and permissions") from exc
    logger.info("wrote %d DICOM slices to %s (slope %s, intercept %s)", n_z, out, slope, intercept)


def _base_dataset(tmpl: Dataset) -> Dataset:
    base = Dataset()
    for elem in tmpl:
        if elem.tag.group in (0x0002, 0x7FE0) or elem.keyword in _DROP:
            continue
        base.add(copy.deepcopy(elem))
    return base


def _mark_derived(ds: Dataset, tmpl: Dataset, source_class: str, sop_class: str, slope: float,
                  intercept: float) -> None:
    """A written image is not the acquired one: ImageType DERIVED\\SECONDARY (further values kept), a
    DerivationDescription, and for Secondary Capture the ConversionType (WSD: workstation) its module requires."""
    from medimg import __version__

    old = tmpl.get("ImageType")
    values = [str(v) for v in old] if isinstance(old, (list, tuple, pydicom.multival.MultiValue)) else (
        [str(old)] if old else [])
    ds.ImageType = ["DERIVED", "SECONDARY"] + values[2:]
    source = _UID_NAMES.get(source_class, "DICOM")
    ds.DerivationDescription = (f"converted by medimg {__version__} from {source}; values stored with rescale "
                                f"slope {_ds(slope)} and intercept {_ds(intercept)}")[:1024]
    if sop_class == _SECONDARY_CAPTURE:
        ds.ConversionType = "WSD"
