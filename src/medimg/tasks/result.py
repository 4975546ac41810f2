"""The result every front end gets back from the library: in memory first, files only when asked.

``medimg.api.predict``, ``analyze`` and ``register`` return a :class:`Result`. Nothing is written while it is made;
``result.to_dict()`` is the JSON a REST service or a DICOM node returns, ``result.write(out)`` writes the files the
command line writes (the task's writer decides the file names; the list of written paths is returned) and
``result.summary_lines()`` is what the command line prints.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

__all__ = ["Result"]


class Result(ABC):
    """In-memory output of a task or pipeline (see the module docstring)."""

    #: The task or pipeline family that made it ("segment", "classify", "register", "analyze", ...).
    kind: str = ""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (no arrays): what an API returns."""

    @abstractmethod
    def write(self, out: str | os.PathLike[str], **options: Any) -> list[Path]:
        """Write the result's files under ``out`` (atomically; nothing is left half-written); returns the paths."""

    def summary_lines(self) -> list[str]:
        """The lines the command line prints (default: none)."""
        return []
