"""File-system safety shared by every reader and writer.

* :func:`check_input` — an input path exists, is readable, is not absurdly large.
* :func:`atomic_output` — writes go to a temporary name in the destination folder and are renamed into place
  only when the whole write succeeded; an output that would overwrite an input is refused.
* :func:`atomic_output_dir` — the same for a folder; :func:`check_outputs_apart` — no output equals, contains or
  lies inside an input (nothing the user made is ever deleted).
* :func:`read_gzip_bounded` — gzip decompression that stops at a byte limit (no decompression bombs).
* :func:`is_inside` — whether a path resolves inside a folder (for references a file makes to other files).
* :func:`write_json_atomic` — a JSON file (a model folder's plan, splits or metrics) through such a rename.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from medimg.core.errors import ImageReadError, ImageWriteError

__all__ = ["check_input", "atomic_output", "atomic_output_dir", "check_outputs_apart", "same_path", "MAX_INPUT_BYTES",
           "compound_suffix", "write_json_atomic", "read_gzip_bounded", "is_inside", "native_stderr_to_log"]

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


@contextlib.contextmanager
def native_stderr_to_log(log: Callable[[str], None]) -> Iterator[None]:
    """Send what native libraries (ITK's MetaIO, libtiff) print straight to file descriptor 2 to ``log`` instead
    of the terminal, so a refused file still gets exactly one line. Python's own ``sys.stderr`` is untouched;
    fd 2 is shared by the process, so keep the block short (one library call)."""
    try:
        saved = os.dup(2)
    except OSError:  # no usable fd 2 (embedded interpreter): nothing to redirect
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read(1 << 16).decode("utf-8", "replace").strip()
            if text:
                log(text)


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


def is_inside(child: str | os.PathLike[str], folder: str | os.PathLike[str]) -> bool:
    """True when ``child`` resolves (links followed) to ``folder`` or to something below it."""
    try:
        Path(child).resolve().relative_to(Path(folder).resolve())
        return True
    except (ValueError, OSError, RuntimeError):
        return False


def read_gzip_bounded(path: str | os.PathLike[str], limit: int) -> bytes:
    """The first ``limit`` bytes (or fewer, if the stream is shorter) of the decompressed gzip file ``path``.

    Only what is returned is ever inflated, so a decompression bomb costs ``limit`` bytes of memory at most.
    Concatenated gzip members are followed; bytes after the last member are ignored (as ``gzip`` does).

    Raises:
        ImageReadError: a corrupt gzip stream, or one that ends (truncated) before ``limit`` bytes and before its
            end-of-stream marker.
    """
    p = Path(path)
    parts: list[bytes] = []
    size = 0
    step = min(1 << 20, max(4096, limit))  # a header needs only its first compressed bytes
    try:
        with open(p, "rb") as fh:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            while size < limit:
                if d.eof:
                    rest = d.unused_data or fh.read(step)
                    if rest[:2] != b"\x1f\x8b":
                        break  # end of the last member
                    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    chunk = rest
                else:
                    chunk = fh.read(step)
                    if not chunk:
                        raise EOFError("compressed stream ended before the end-of-stream marker")
                block = d.decompress(chunk, limit - size)
                parts.append(block)
                size += len(block)
    except (EOFError, zlib.error) as exc:
        raise ImageReadError(
            "corrupt or truncated gzip stream", path=p, expected="a complete gzip-compressed file",
            found=f"{type(exc).__name__}: {exc}",
            fix="the file was probably cut short during copy or download; copy it again",
        ) from exc
    return b"".join(parts)


def _check_not_input(out: Path, inputs: Iterable[str | os.PathLike[str]]) -> None:
    for inp in inputs:
        if inp is None:
            continue
        ip = Path(inp)
        if same_path(out, ip) or (ip.is_dir() and is_inside(out, ip) and out.exists()):
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


def read_json_file(path: str | os.PathLike[str], *, what: str, fix: str) -> Any:
    """The parsed JSON in ``path`` (a file medimg wrote, e.g. plan.json), or one-line ImageReadError.

    Args:
        what: how the error names the file, e.g. "plan.json".
        fix: the fix the error suggests.
    """
    from medimg.core.errors import ImageReadError

    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ImageReadError(f"unreadable {what}", path=p, expected=f"the JSON medimg wrote as {what}",
                             found=f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}", fix=fix) from exc


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


def check_outputs_apart(
    outputs: Iterable[str | os.PathLike[str] | None], inputs: Iterable[str | os.PathLike[str] | None],
) -> None:
    """Refuse outputs that equal an input, contain an input, or lie inside an input folder.

    The rule behind every writer: replacing or filling an output must never touch what the user gave as input.
    Paths are compared after resolving links (``a/link/..`` and a link to the input count as the input). Call it
    before any work so a refusal costs nothing; :func:`atomic_output_dir` calls it again before writing.

    Raises:
        ImageWriteError: naming the output, the input concerned, and how to fix it.
    """
    ins = [Path(i) for i in inputs if i is not None]
    for o in outputs:
        if o is None:
            continue
        out = Path(o)
        for inp in ins:
            if same_path(out, inp):
                raise ImageWriteError(
                    "output would overwrite an input", path=out, expected="an output path different from the input",
                    found=f"the input '{inp}'", fix="choose another output file name or folder",
                )
            if is_inside(inp, out):
                raise ImageWriteError(
                    "output folder contains an input", path=out, expected="an output folder that holds no input",
                    found=f"the input '{inp}' inside it (replacing the folder would delete it)",
                    fix="choose an output folder that does not contain the input, or move the input out of it",
                )
            if inp.is_dir() and is_inside(out, inp):
                raise ImageWriteError(
                    "output lies inside the input folder", path=out, expected="an output outside the input",
                    found=f"inside '{inp}'", fix="choose an output outside the input folder",
                )


def _is_previous_output(out: Path, marker: tuple[str, str] | None) -> bool:
    if marker is None:
        return False
    name, text = marker
    mf = out / name
    try:
        return mf.is_file() and not mf.is_symlink() and text in mf.read_text(errors="ignore")[:4096]
    except OSError:
        return False


@contextlib.contextmanager
def atomic_output_dir(
    path: str | os.PathLike[str],
    *,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    replace_marker: tuple[str, str] | None = None,
) -> Iterator[Path]:
    """Like :func:`atomic_output` for a folder: yields a new temporary folder renamed to ``path`` on success.

    The rule (nothing the user made is ever deleted):

    * ``path`` must not equal, contain or lie inside any of ``inputs`` (:func:`check_outputs_apart`);
    * ``path`` may be absent or an empty folder; a folder with content is replaced only when it is an earlier
      output of the same command, recognised by ``replace_marker = (file name, text)``: the file exists in the
      folder (not as a link) and holds the text (e.g. ``("measurements.json", "medimg_analyze")``). Anything
      else is refused, and nothing is merged into an existing folder;
    * the temporary folder gets a fresh unique name beside ``path`` (``tempfile.mkdtemp``), so no existing
      sibling is ever reused or removed; on failure only that folder is removed;
    * on success the old output is moved aside under another fresh name, the new one renamed into place, and only
      then the old one deleted (if the rename fails the old output is put back).

    Raises:
        ImageWriteError: one of the rules above is broken, or the parent folder cannot be created.
    """
    out = Path(path)
    inputs = [i for i in inputs if i is not None]
    check_outputs_apart([out], inputs)
    replacing = False
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ImageWriteError(
            "output exists and is not a folder", path=out, expected="a new or empty folder",
            found="a file or a link", fix="choose a new folder name",
        )
    if out.exists() and any(out.iterdir()):
        if not _is_previous_output(out, replace_marker):
            raise ImageWriteError(
                "output folder exists and is not empty", path=out,
                expected="a new or empty folder" + (", or an earlier output of this command" if replace_marker else ""),
                found="existing content", fix="choose a new folder name or empty it first",
            )
        replacing = True
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageWriteError("cannot create the output folder", path=out.parent, found=str(exc),
                              fix="check the path and its permissions") from exc
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        for f in tmp.rglob("*"):
            if f.is_file() and not (f.stat().st_mode & 0o044):
                os.chmod(f, 0o666 & ~_umask())
        check_outputs_apart([out], inputs)  # again: the folder may have changed while the work ran
        if not replacing:
            if out.exists():
                out.rmdir()  # still empty (fails, and keeps everything, if something appeared meanwhile)
            os.replace(tmp, out)
            return
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old)  # a folder renamed onto an empty folder replaces it
        try:
            os.replace(tmp, out)
        except BaseException:
            os.replace(old, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
