"""DICOM series discovery, reading and writing (see :mod:`medimg.io.dicom.series`)."""

from medimg.io.dicom.series import SeriesInfo, dcmread_bounded, read_dicom, scan_dicom, write_dicom_series

__all__ = ["SeriesInfo", "scan_dicom", "read_dicom", "write_dicom_series", "dcmread_bounded"]
