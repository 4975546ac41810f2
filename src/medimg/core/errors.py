"""The medimg error hierarchy.

Every error names *where* the problem is (a file or a parameter), *what* was expected, what was *found*, and
one way to *fix* it, so that the command line can print it as a single line. Library code raises these; the
CLI turns them into a one-line message and exit code 2.

Hierarchy::

    MedimgError
    ├── InvalidParameterError (ValueError)   a function argument or CLI option is wrong
    ├── GeometryMismatchError (ValueError)   two images that must share a grid do not
    ├── ImageReadError (OSError)             an input file or folder cannot be turned into an image
    │   ├── UnsupportedFormatError           the format is not recognised / not supported
    │   ├── DicomError                       DICOM-specific problems (tags, slices, series)
    │   │   └── SeriesSelectionError         several series: the user must pick one
    │   └── UnsafeArchiveError               a zip with escaping paths or a decompression bomb
    └── ImageWriteError (OSError)            an output cannot be written (would overwrite input, bad extension)
"""

from __future__ import annotations

import os
from typing import Any

__all__ = [
    "bad_value",
    "MedimgError",
    "InvalidParameterError",
    "GeometryMismatchError",
    "ImageReadError",
    "UnsupportedFormatError",
    "DicomError",
    "SeriesSelectionError",
    "UnsafeArchiveError",
    "ImageWriteError",
]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    return str(value)


class MedimgError(Exception):
    """Base class of every error medimg raises on purpose.

    Args:
        what: the problem in a few words ("unreadable DICOM file", "slice gap").
        path: the file or folder concerned, if any.
        parameter: the parameter or option concerned, if any.
        expected: what was expected.
        found: what was found instead.
        fix: one concrete way to fix it.

    The message is one line: ``<path or parameter>: <what>; expected <expected>, found <found>. Fix: <fix>``.
    """

    def __init__(
        self,
        what: str,
        *,
        path: str | os.PathLike[str] | None = None,
        parameter: str | None = None,
        expected: Any = None,
        found: Any = None,
        fix: str | None = None,
    ) -> None:
        self.what = what
        self.path = None if path is None else os.fspath(path)
        self.parameter = parameter
        self.expected = expected
        self.found = found
        self.fix = fix
        super().__init__(self._message())

    def _message(self) -> str:
        where = []
        if self.path is not None:
            where.append(f"'{self.path}'")
        if self.parameter is not None:
            where.append(f"parameter '{self.parameter}'")
        msg = (", ".join(where) + ": " if where else "") + self.what
        details = []
        if self.expected is not None:
            details.append(f"expected {_fmt(self.expected)}")
        if self.found is not None:
            details.append(f"found {_fmt(self.found)}")
        if details:
            msg += "; " + ", ".join(details)
        if self.fix:
            msg += f". Fix: {self.fix}"
        return " ".join(msg.split("\n"))


class InvalidParameterError(MedimgError, ValueError):
    """A function argument or command-line option has a wrong value, type or shape."""


class GeometryMismatchError(MedimgError, ValueError):
    """Two images that must share a voxel grid do not."""


class ImageReadError(MedimgError, OSError):
    """An input file or folder cannot be read as an image."""


class UnsupportedFormatError(ImageReadError):
    """The file format is not recognised or not supported."""


class DicomError(ImageReadError):
    """A DICOM file or series is malformed or inconsistent (missing tags, gaps, mixed geometry)."""


class SeriesSelectionError(DicomError):
    """A folder holds several series; the user must choose one.

    ``series`` holds one summary mapping per series (uid, description, modality, size, number of files).
    """

    def __init__(self, what: str, *, series: list[dict[str, Any]] | None = None, **kwargs: Any) -> None:
        self.series = list(series or [])
        super().__init__(what, **kwargs)


class UnsafeArchiveError(ImageReadError):
    """A zip archive with paths that escape the target folder, or that would expand to an unsafe size."""


class ImageWriteError(MedimgError, OSError):
    """An output cannot be written (it would overwrite an input, the extension is unknown, ...)."""


def bad_value(parameter: str, what: str, expected: Any, found: Any, fix: str) -> InvalidParameterError:
    """The one helper for "this value is wrong": an :class:`InvalidParameterError` naming ``parameter``.

    Plans, specs and options use it so that every refusal reads the same way.

    >>> str(bad_value("dims", "unsupported dimensionality", "2 or 3", 4, "plan 2D or 3D data"))
    "parameter 'dims': unsupported dimensionality; expected 2 or 3, found 4. Fix: plan 2D or 3D data"
    """
    return InvalidParameterError(what, parameter=parameter, expected=expected, found=found, fix=fix)
