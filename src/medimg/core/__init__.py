"""Core types: Image, Geometry, enums and errors. Nothing here touches files."""

from medimg.core.enums import Kind, Modality, Space
from medimg.core.errors import (
    DicomError,
    GeometryMismatchError,
    ImageReadError,
    ImageWriteError,
    InvalidParameterError,
    MedimgError,
    SeriesSelectionError,
    UnsafeArchiveError,
    UnsupportedFormatError,
)
from medimg.core.geometry import Geometry, orientation_code
from medimg.core.image import Image, Operation

__all__ = [
    "Image", "Operation", "Geometry", "orientation_code", "Kind", "Modality", "Space",
    "MedimgError", "InvalidParameterError", "GeometryMismatchError", "ImageReadError", "UnsupportedFormatError",
    "DicomError", "SeriesSelectionError", "UnsafeArchiveError", "ImageWriteError",
]
