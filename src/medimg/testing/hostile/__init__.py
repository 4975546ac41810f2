"""A hostile-input corpus for medimg's command line: every case writes its own small files into a folder.

Each :class:`Case` has an id, the issue-12 area that owns its fix (``dicom``, ``readers``, ``predict``,
``register``), the command lines to run it through and the outcome expected:

* ``refuse``: exit code 2, exactly one line on stderr naming the file or parameter (one of ``names``), no
  traceback, nothing written anywhere in the case folder, every input byte unchanged;
* ``ok``: exit code 0 and the inputs unchanged (a valid edge case), plus the case's own ``check`` of the outputs;
* ``ok_or_refuse``: either of the two above (a clean refusal or a clean result are both right);
* ``warn_or_refuse``: a refusal, or exit code 0 with a warning on stderr naming one of ``names``.

``markers`` are files that must never appear (code in a pickle that creates one has run). Cases with
``isolate=True`` (memory and time bombs, native crashes) must be run in a subprocess under a memory limit;
big declared sizes come from tiny headers or from compressed streams built in milliseconds, so the files on
disk stay small (at most a few MB).

The package's modules: :mod:`~medimg.testing.hostile.registry` (the cases and what they wrote),
:mod:`~medimg.testing.hostile.files` (the small file builders) and one module of cases per area
(``cases_predict``, ``cases_register``, ``cases_dicom``, ``cases_readers``).

Example:
    >>> import tempfile
    >>> from medimg.testing.hostile import CASES, build
    >>> with tempfile.TemporaryDirectory() as d:
    ...     built = build("nifti_dim0_9", d)
    ...     built.runs[0][0]
    'info'
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
from pathlib import Path

import numpy as np

# the case modules register their cases in CASES on import, in this order
# isort: off
from medimg.testing.hostile import cases_predict  # noqa: F401
from medimg.testing.hostile import cases_register  # noqa: F401
from medimg.testing.hostile import cases_dicom  # noqa: F401
from medimg.testing.hostile import cases_readers  # noqa: F401
# isort: on
from medimg.testing.hostile.files import dicom_bytes, dicom_dataset, nifti_bytes, tiff_pages
from medimg.testing.hostile.registry import AREAS, CASES, FUZZ_SUFFIXES, Built, Case

__all__ = ["Case", "Built", "CASES", "AREAS", "build", "write_corpus", "write_seeds", "FUZZ_SUFFIXES"]


# ---- public API ---------------------------------------------------------------------------------------------
def build(case_id: str, folder: str | os.PathLike[str]) -> Built:
    """Write case ``case_id`` into ``folder`` (created; should be empty) and return its runs and checks."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    return CASES[case_id].make(root)


def write_corpus(folder: str | os.PathLike[str], ids: list[str] | None = None) -> dict[str, Built]:
    """Write every case (or those in ``ids``) into ``folder/<id>/``."""
    return {cid: build(cid, Path(folder) / cid) for cid in (ids or list(CASES))}


def write_seeds(folder: str | os.PathLike[str]) -> dict[str, list[Path]]:
    """Seed files for the reader fuzz targets: small valid files per target, plus the hostile inputs of at most
    16 kB whose case names the target. Returns target -> files."""
    from PIL import Image as PILImage

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    seeds: dict[str, list[Path]] = {t: [] for t in FUZZ_SUFFIXES}

    def add(target: str, name: str, data: bytes) -> None:
        p = root / target / name
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(data)
        seeds[target].append(p)

    add("dicom", "valid.dcm", dicom_bytes(dicom_dataset(6, 5)))
    small = nifti_bytes((4, 5, 6), np.int16, data=np.arange(120, dtype=np.int16).reshape(4, 5, 6))
    add("nii", "valid.nii", bytes(small))
    add("nii", "valid2.nii", bytes(nifti_bytes((3, 4, 2), np.float32, nifti2=True)))
    add("nii_gz", "valid.nii.gz", gzip.compress(bytes(small), mtime=0))
    buf = io.BytesIO()
    np.savez_compressed(buf, voxels=np.arange(60, dtype=np.float32).reshape(3, 4, 5))
    add("npz", "valid.npz", buf.getvalue())
    add("itk", "valid.mha", b"ObjectType = Image\nNDims = 3\nBinaryData = True\nElementSpacing = 1 1 2\n"
        b"DimSize = 3 2 2\nElementType = MET_SHORT\nElementDataFile = LOCAL\n" + bytes(24))
    add("itk", "valid.nrrd", b"NRRD0004\ntype: short\ndimension: 3\nsizes: 3 2 2\nspacings: 1 1 2\n"
        b"encoding: raw\nendian: little\n\n" + bytes(24))
    for target, fmt, name in (("raster", "PNG", "valid.png"), ("raster", "TIFF", "valid.tif")):
        b = io.BytesIO()
        PILImage.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8)).save(b, format=fmt)
        add(target, name, b.getvalue())
    small_tif = root / "raster" / "pages.tif"
    tiff_pages(small_tif, 3, 8, 6)
    seeds["raster"].append(small_tif)
    for case in CASES.values():
        if case.fuzz is None or case.isolate:
            continue
        tmp = root / ".cases" / case.id
        build(case.id, tmp)
        for f in sorted(tmp.rglob("*")):
            ext = next((e for e in FUZZ_SUFFIXES[case.fuzz] if f.name.endswith(e)), None)
            if f.is_file() and not f.is_symlink() and ext and f.stat().st_size <= 16384:
                add(case.fuzz, f"{case.id}{ext}", f.read_bytes())
    shutil.rmtree(root / ".cases", ignore_errors=True)
    return seeds
