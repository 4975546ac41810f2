"""Everything that touches files: reading and writing images in medical formats, de-identification.

This is the only package where LPS<->RAS flips happen. Use :func:`read` and :func:`write`; the format modules
(``dicom``, ``nifti``, ``itk_formats``, ``raster``, ``npz``) are imported lazily by them.
"""

from medimg.io.api import detect_format, read, write

__all__ = ["read", "write", "detect_format"]
