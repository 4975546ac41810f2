"""Folders of cases in the nnU-Net naming: ``CASE_0000.nii.gz``, ``CASE_0001.nii.gz``, ... are the channels of CASE.

Used by every command that takes a folder of cases (``predict``, ``analyze``): :func:`case_files` groups the image
files by case, :func:`read_case` reads one case's channels into one multi-channel image on one grid.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

__all__ = ["IMAGE_SUFFIXES", "image_extension", "case_files", "read_case"]

#: File name endings of the images a case folder may hold.
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png", ".tif", ".tiff", ".jpg", ".jpeg", ".npz")


def image_extension(name: str) -> str:
    """The image extension of a file name (lower case, e.g. ".nii.gz"), "" when it is not an image file.

    >>> image_extension("Case_0000.NII.GZ"), image_extension("notes.txt")
    ('.nii.gz', '')
    """
    low = name.lower()
    return next((e for e in IMAGE_SUFFIXES if low.endswith(e)), "")


def case_files(folder: str | os.PathLike[str]) -> dict[str, list[Path]]:
    """Group the image files of a folder by case id (the ``_0000`` channel suffix removed), channels in order.

    Hidden files and files of other types are skipped; a file without a channel suffix is a one-channel case.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> for n in ("a_0000.nii.gz", "a_0001.nii.gz", "b.png", "notes.txt"):
        ...     _ = (d / n).write_bytes(b"")
        >>> {k: [p.name for p in v] for k, v in case_files(d).items()}
        {'a': ['a_0000.nii.gz', 'a_0001.nii.gz'], 'b': ['b.png']}
    """
    cases: dict[str, list[Path]] = {}
    for f in sorted(Path(folder).iterdir()):
        ext = image_extension(f.name)
        if not ext or f.name.startswith("."):
            continue
        stem = f.name[: -len(ext)]
        m = re.fullmatch(r"(.+)_(\d{4})", stem)
        cases.setdefault(m.group(1) if m else stem, []).append(f)
    return cases


def read_case(files: Sequence[str | os.PathLike[str]]):
    """One case's channel files as one image (channels stacked); the channels must share one grid.

    Raises:
        GeometryMismatchError: two channel files on different grids (the message names both files).
    """
    import numpy as np

    from medimg.io.api import read

    paths = [Path(f) for f in files]
    images = [read(f) for f in paths]
    for other, f in zip(images[1:], paths[1:]):
        images[0].check_same_grid(other, what=f"channel files '{paths[0].name}' and '{f.name}'")
    if len(images) == 1:
        return images[0]
    return images[0].replace(voxels=np.concatenate([im.voxels for im in images]))
