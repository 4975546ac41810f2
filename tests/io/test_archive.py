"""medimg.io.archive.extract_zip_safely: escaping paths, links and zip bombs are refused; nothing is left behind."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from medimg.core.errors import ImageReadError, UnsafeArchiveError
from medimg.io.archive import extract_zip_safely


def _zip(path: Path, members: dict[str, bytes], *, method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_normal_archive(tmp_path):
    z = _zip(tmp_path / "ok.zip", {"a/b/one.dcm": b"1" * 100, "two.txt": b"2", "a/": b""})
    out = extract_zip_safely(z, tmp_path / "out")
    assert out == tmp_path / "out"
    assert _files(out) == ["a/b/one.dcm", "two.txt"]
    assert (out / "a/b/one.dcm").read_bytes() == b"1" * 100


@pytest.mark.parametrize("member", ["../escape.txt", "a/../../escape.txt", "/etc/escape.txt", "C:/escape.txt",
                                    "..\\escape.txt"])
def test_escaping_paths_refused(tmp_path, member):
    z = _zip(tmp_path / "evil.zip", {"fine.txt": b"ok", member: b"bad"})
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError) as info:
        extract_zip_safely(z, dest)
    msg = str(info.value)
    assert "evil.zip" in msg and member in msg
    assert not (tmp_path / "escape.txt").exists()
    assert not dest.exists() or _files(dest) == []


def test_symlink_refused(tmp_path):
    z = tmp_path / "link.zip"
    with zipfile.ZipFile(z, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="symbolic link") as err:
        extract_zip_safely(z, tmp_path / "out")
    assert "'link'" in str(err.value)


def test_zip_bomb_ratio(tmp_path):
    z = _zip(tmp_path / "bomb.zip", {"zeros.bin": bytes(50 * 1024**2)})
    assert z.stat().st_size < 200 * 1024  # ~50 KB compressed
    with pytest.raises(UnsafeArchiveError, match="ratio") as info:
        extract_zip_safely(z, tmp_path / "out")
    assert "zeros.bin" in str(info.value) and "bomb.zip" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_total_size_limit(tmp_path):
    z = _zip(tmp_path / "big.zip", {"a.bin": b"x" * 3000, "b.bin": b"y" * 3000}, method=zipfile.ZIP_STORED)
    with pytest.raises(UnsafeArchiveError, match="total size"):
        extract_zip_safely(z, tmp_path / "out", max_total_bytes=5000)
    extract_zip_safely(z, tmp_path / "out2", max_total_bytes=6000)


def test_too_many_files(tmp_path):
    z = _zip(tmp_path / "many.zip", {f"f{i}.txt": b"x" for i in range(5)})
    with pytest.raises(UnsafeArchiveError, match="too many members"):
        extract_zip_safely(z, tmp_path / "out", max_files=4)


def test_lying_header_caught_while_extracting(tmp_path):
    """A member whose header under-states its size: the declared checks pass, extraction catches it."""
    data = bytes(range(256)) * 4096  # 1 MiB, stored
    z = _zip(tmp_path / "liar.zip", {"first.bin": b"ok", "liar.bin": data}, method=zipfile.ZIP_STORED)
    raw = bytearray(z.read_bytes())
    with zipfile.ZipFile(z) as zf:
        info = zf.getinfo("liar.bin")
    declared = 1000
    # patch uncompressed size in the local header (offset 22) and the central directory (offset 24)
    local = info.header_offset
    raw[local + 22: local + 26] = declared.to_bytes(4, "little")
    central = -1
    pos = raw.find(b"PK\x01\x02")
    while pos != -1:
        name_len = int.from_bytes(raw[pos + 28: pos + 30], "little")
        if raw[pos + 46: pos + 46 + name_len] == b"liar.bin":
            raw[pos + 24: pos + 28] = declared.to_bytes(4, "little")
            central = pos
        pos = raw.find(b"PK\x01\x02", pos + 4)
    assert central > 0
    z.write_bytes(bytes(raw))
    with pytest.raises(UnsafeArchiveError) as err:
        extract_zip_safely(z, tmp_path / "out")
    assert "liar.bin" in str(err.value)
    assert _files(tmp_path / "out") == []  # first.bin removed again


def test_not_a_zip(tmp_path):
    f = tmp_path / "fake.zip"
    f.write_bytes(b"not a zip at all")
    with pytest.raises(ImageReadError, match="not a readable zip"):
        extract_zip_safely(f, tmp_path / "out")
