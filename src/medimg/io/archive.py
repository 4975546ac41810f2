"""Safe extraction of zip archives (DICOM studies often arrive zipped).

:func:`extract_zip_safely` is the only place medimg unpacks an archive. It refuses members that would land
outside the destination (absolute paths, ``..`` components, drive letters), symbolic links, archives with too
many members, and decompression bombs: the declared total size and the per-member compression ratio are
checked before anything is written, and the bytes actually produced are counted while extracting so that a
header that lies about sizes is caught too. On any refusal the files written by the call are removed.
"""

from __future__ import annotations

import logging
import os
import stat
import zipfile
from pathlib import Path, PurePosixPath

from medimg.core.errors import ImageReadError, UnsafeArchiveError

__all__ = ["extract_zip_safely", "DEFAULT_MAX_TOTAL_BYTES", "DEFAULT_MAX_RATIO", "DEFAULT_MAX_FILES"]

logger = logging.getLogger(__name__)

#: Largest total uncompressed size accepted by default (2 GiB).
DEFAULT_MAX_TOTAL_BYTES = 2 * 1024**3
#: Largest compression ratio (uncompressed / compressed) accepted for a member larger than 1 MiB.
DEFAULT_MAX_RATIO = 200
#: Largest number of members accepted by default.
DEFAULT_MAX_FILES = 100_000

# Members smaller than this are never refused for their ratio alone (tiny files of zeros compress very well and
# cannot hurt); the total-size limit still counts them.
_RATIO_MIN_BYTES = 1024**2
_CHUNK = 1024**2


def _unsafe(zip_path: Path, member: str, what: str, *, expected: object = None, found: object = None,
            fix: str | None = None) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"unsafe archive member '{member}': {what}", path=zip_path, expected=expected, found=found,
        fix=fix or "extract the archive yourself with a tool you trust and pass the folder instead",
    )


def _member_parts(zip_path: Path, info: zipfile.ZipInfo) -> tuple[str, ...]:
    """Validated relative path components of a member name (raises for escaping names)."""
    name = info.filename
    if "\x00" in name:
        raise _unsafe(zip_path, name, "name contains a NUL character")
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) >= 2 and norm[1] == ":"):
        raise _unsafe(zip_path, name, "absolute path", expected="paths relative to the archive root",
                      found=name)
    parts = tuple(p for p in PurePosixPath(norm).parts if p not in ("", "."))
    if ".." in parts:
        raise _unsafe(zip_path, name, "path with a '..' component escapes the destination folder",
                      expected="paths inside the archive root", found=name)
    return parts


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    mode = (info.external_attr >> 16) & 0xFFFF
    return stat.S_ISLNK(mode)


def extract_zip_safely(
    zip_path: str | os.PathLike[str],
    dest_dir: str | os.PathLike[str],
    *,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_ratio: float = DEFAULT_MAX_RATIO,
    max_files: int = DEFAULT_MAX_FILES,
) -> Path:
    """Extract ``zip_path`` into ``dest_dir`` after checking every member.

    Args:
        zip_path: the archive.
        dest_dir: destination folder (created if missing).
        max_total_bytes: largest total uncompressed size, declared or actually produced.
        max_ratio: largest uncompressed/compressed ratio of a member above 1 MiB (and of the whole archive).
        max_files: largest number of members.

    Returns:
        ``dest_dir`` as a Path.

    Raises:
        ImageReadError: the file is not a readable zip archive.
        UnsafeArchiveError: an absolute or escaping member path, a symbolic link, too many members, a declared
            or actual size/ratio above the limits, or a member whose data do not match its header. The message
            names the archive and the offending member. Files written before the problem was found are removed.
    """
    zpath = Path(zip_path)
    dest = Path(dest_dir)
    try:
        zf = zipfile.ZipFile(zpath)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ImageReadError(
            "not a readable zip archive", path=zpath, expected="a zip file", found=str(exc),
            fix="check the file is a complete .zip (download or copy it again)",
        ) from exc
    with zf:
        infos = zf.infolist()
        if len(infos) > max_files:
            raise _unsafe(zpath, infos[max_files].filename, "too many members",
                          expected=f"at most {max_files}", found=len(infos),
                          fix="raise max_files if the archive is trusted")
        plan: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
        declared_total = 0
        compressed_total = 0
        for info in infos:
            parts = _member_parts(zpath, info)
            if _is_symlink(info):
                raise _unsafe(zpath, info.filename, "symbolic link", expected="regular files and folders",
                              found="a symbolic link")
            if info.flag_bits & 0x1:
                raise _unsafe(zpath, info.filename, "encrypted member", expected="unencrypted members",
                              found="an encrypted member", fix="decrypt the archive first")
            if not parts:
                continue
            declared_total += info.file_size
            compressed_total += info.compress_size
            if info.file_size > _RATIO_MIN_BYTES and info.file_size > max_ratio * max(info.compress_size, 1):
                raise _unsafe(zpath, info.filename, "compression ratio above the limit (zip bomb?)",
                              expected=f"ratio <= {max_ratio}",
                              found=f"{info.file_size} bytes from {info.compress_size} bytes",
                              fix="raise max_ratio if the archive is trusted")
            plan.append((info, parts))
        if declared_total > max_total_bytes:
            biggest = max(plan, key=lambda item: item[0].file_size)[0].filename
            raise _unsafe(zpath, biggest, "declared total size above the limit (zip bomb?)",
                          expected=f"at most {max_total_bytes} bytes", found=f"{declared_total} bytes",
                          fix="raise max_total_bytes if the archive is trusted")
        if declared_total > _RATIO_MIN_BYTES and declared_total > max_ratio * max(compressed_total, 1):
            biggest = max(plan, key=lambda item: item[0].file_size)[0].filename
            raise _unsafe(zpath, biggest, "overall compression ratio above the limit (zip bomb?)",
                          expected=f"ratio <= {max_ratio}",
                          found=f"{declared_total} bytes from {compressed_total} bytes",
                          fix="raise max_ratio if the archive is trusted")

        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        created: list[Path] = []
        written_total = 0
        try:
            for info, parts in plan:
                target = root.joinpath(*parts)
                if not target.resolve().is_relative_to(root):
                    raise _unsafe(zpath, info.filename, "path escapes the destination folder",
                                  expected=f"inside '{root}'", found=str(target.resolve()))
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.exists():
                    raise _unsafe(zpath, info.filename, "member appears twice or overwrites a file",
                                  expected="unique member names", found=f"'{target}' exists")
                written = 0
                created.append(target)
                with zf.open(info) as src, open(target, "wb") as out:
                    while True:
                        chunk = src.read(_CHUNK)
                        if not chunk:
                            break
                        written += len(chunk)
                        written_total += len(chunk)
                        if written > info.file_size:
                            raise _unsafe(zpath, info.filename, "member is larger than its header declares",
                                          expected=f"{info.file_size} bytes", found=f"more than {written - 1}")
                        if written_total > max_total_bytes:
                            raise _unsafe(zpath, info.filename, "extracted total size above the limit",
                                          expected=f"at most {max_total_bytes} bytes",
                                          found=f"more than {written_total - 1} bytes")
                        if written > _RATIO_MIN_BYTES and written > max_ratio * max(info.compress_size, 1):
                            raise _unsafe(zpath, info.filename, "compression ratio above the limit (zip bomb?)",
                                          expected=f"ratio <= {max_ratio}",
                                          found=f"{written} bytes from {info.compress_size} bytes")
                        out.write(chunk)
        except UnsafeArchiveError:
            _remove(created)
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, RuntimeError,
                ValueError) as exc:
            _remove(created)
            member = created[-1].relative_to(root).as_posix() if created else "?"
            raise _unsafe(zpath, member, "member data are corrupt or do not match the header",
                          found=str(exc), fix="obtain a fresh copy of the archive") from exc
        except OSError as exc:
            _remove(created)
            member = created[-1].relative_to(root).as_posix() if created else "?"
            raise ImageReadError(
                f"cannot extract archive member '{member}'", path=zpath, found=str(exc),
                fix="check free disk space and permissions of the destination folder",
            ) from exc
    logger.debug("extracted %d members (%d bytes) from %s", len(plan), written_total, zpath)
    return dest


def _remove(paths: list[Path]) -> None:
    for p in reversed(paths):
        try:
            p.unlink()
        except OSError:
            logger.debug("could not remove partially extracted file %s", p)
