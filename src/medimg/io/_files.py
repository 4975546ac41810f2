"""File-system safety shared by every reader and writer.

* :func:`check_input` — an input path exists, is readable, is not absurdly large.
* :func:`atomic_output` — writes go to a temporary name in the destination folder and are renamed into place
  only when the whole write succeeded; an output that would overwrite an input is refused.
* :func:`write_json_atomic` — a JSON file (a model folder's plan, splits or metrics) through such a rename.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from medimg.core.errors import ImageReadError, ImageWriteError

__all__ = ["check_input", "atomic_output", "atomic_output_dir", "same_path", "MAX_INPUT_BYTES", "compound_suffix",
           "write_json_atomic"]

#: Largest single input file medimg reads without being told otherwise (MEDIMG_MAX_INPUT_BYTES overrides).
MAX_INPUT_BYTES = int(os.environ.get("MEDIMG_MAX_INPUT_BYTES", str(8 * 1024**3)))

_COMPOUND = (".nii.gz", ".tar.gz", ".npy.gz")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def compound_suffix(path: str | os.PathLike[str]) -> str:
    """Lower-case extension, keeping compound ones like '.nii.gz'."""
    name = Path(path).name.lower()
    for ext in _COMPOUND:
        if name.endswith(ext):
            return ext
    return Path(name).suffix


def check_input(path: str | os.PathLike[str], *, allow_dir: bool = True) -> Path:
    """Validate an input path and return it as a Path.

    Raises:
        ImageReadError: missing path, unreadable path, an empty file, or a file above MAX_INPUT_BYTES.
    """
    p = Path(path)
    if not p.exists():
        raise ImageReadError(
            "no such file or folder", path=p, expected="an existing image file or DICOM folder",
            found="nothing at this path", fix="check the spelling and the working directory",
        )
    if p.is_dir():
        if not allow_dir:
            raise ImageReadError(
                "is a folder", path=p, expected="a single image file", found="a folder",
                fix="give one file of the folder",
            )
        if not os.access(p, os.R_OK | os.X_OK):
            raise ImageReadError("folder is not readable", path=p, fix="check its permissions")
        return p
    if not os.access(p, os.R_OK):
        raise ImageReadError("file is not readable", path=p, fix="check its permissions")
    size = p.stat().st_size
    if size == 0:
        raise ImageReadError(
            "file is empty", path=p, expected="an image file", found="0 bytes",
            fix="the file was probably truncated during copy or download; copy it again",
        )
    if size > MAX_INPUT_BYTES:
        raise ImageReadError(
            "file is larger than the input limit", path=p, expected=f"at most {MAX_INPUT_BYTES} bytes",
            found=f"{size} bytes", fix="set MEDIMG_MAX_INPUT_BYTES to a larger value if this is intended",
        )
    return p


def same_path(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True when both paths name the same file or folder (also through links), or would once created."""
    pa, pb = Path(a), Path(b)
    try:
        if pa.exists() and pb.exists():
            return os.path.samefile(pa, pb)
    except OSError:
        pass
    return pa.resolve() == pb.resolve()


def _is_inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def _check_not_input(out: Path, inputs: Iterable[str | os.PathLike[str]]) -> None:
    for inp in inputs:
        if inp is None:
            continue
        ip = Path(inp)
        if same_path(out, ip) or (ip.is_dir() and _is_inside(out, ip) and out.exists()):
            raise ImageWriteError(
                "output would overwrite an input", path=out, expected="an output path different from the input",
                found=f"the input '{ip}'", fix="choose another output file name or folder",
            )


def write_json_atomic(path: str | os.PathLike[str], payload: object) -> None:
    """Write ``payload`` as indented JSON to ``path`` through a temporary file renamed into place, so a reader never
    sees half a file (the folder must exist)."""
    out = Path(path)
    tmp = out.with_name(f".{out.name}.part")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out)


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike[str],
    *,
    inputs: Iterable[str | os.PathLike[str]] = (),
    overwrite: bool = True,
) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; rename it to ``path`` only if the block succeeds.

    The temporary name keeps the extension (writers choose the format from it). On any exception the
    temporary file is removed and nothing appears at ``path``.

    Raises:
        ImageWriteError: ``path`` equals one of ``inputs``; ``path`` exists and ``overwrite`` is False;
            the folder cannot be created.
    """
    out = Path(path)
    _check_not_input(out, inputs)
    if out.exists() and out.is_dir():
        raise ImageWriteError(
            "output is an existing folder", path=out, expected="a file name", found="a folder",
            fix="give a file name with an extension, e.g. out.nii.gz",
        )
    if out.exists() and not overwrite:
        raise ImageWriteError(
            "output exists", path=out, expected="a new file", found="an existing file",
            fix="remove it or allow overwriting",
        )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageWriteError("cannot create the output folder", path=out.parent, found=str(exc),
                              fix="check the path and its permissions") from exc
    suffix = compound_suffix(out)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=f".part{suffix}", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_output_dir(
    path: str | os.PathLike[str],
    *,
    inputs: Iterable[str | os.PathLike[str]] = (),
) -> Iterator[Path]:
    """Like :func:`atomic_output` for a folder: yields a temporary folder renamed to ``path`` on success.

    ``path`` must not exist yet or be an empty folder (never merges into, or replaces, a folder with content).
    """
    out = Path(path)
    _check_not_input(out, inputs)
    for inp in inputs:
        if inp is not None and Path(inp).is_dir() and _is_inside(out, Path(inp)):
            raise ImageWriteError(
                "output folder lies inside the input folder", path=out, expected="a folder outside the input",
                found=f"inside '{inp}'", fix="choose an output folder outside the input folder",
            )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ImageWriteError(
            "output folder exists and is not empty", path=out, expected="a new or empty folder",
            found="existing content", fix="choose a new folder name or empty it first",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        for f in tmp.rglob("*"):
            if f.is_file() and not (f.stat().st_mode & 0o044):
                os.chmod(f, 0o666 & ~_umask())
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
