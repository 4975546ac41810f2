"""DICOM series discovery, reading and writing.

This package owns everything medimg does with DICOM *images*:

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

DICOM patient coordinates are LPS, the library's space, so no axis flips happen here. Nothing in this package
logs patient-identifying values.

The package's modules, one job each: :mod:`~medimg.io.dicom.series` (finding and grouping series),
:mod:`~medimg.io.dicom.headers` (bounded header reading and the checks on hostile files),
:mod:`~medimg.io.dicom.geometry` (slice geometry, order and gaps), :mod:`~medimg.io.dicom.pixels` (decoding and
rescaling) and :mod:`~medimg.io.dicom.read` (one series as an Image); writing is :mod:`medimg.io.dicom_write`.
"""

from medimg.io.dicom.headers import dcmread_bounded
from medimg.io.dicom.read import read_dicom
from medimg.io.dicom.series import SeriesInfo, scan_dicom
from medimg.io.dicom_write import write_dicom_series

__all__ = ["SeriesInfo", "scan_dicom", "read_dicom", "write_dicom_series", "dcmread_bounded"]
