import pytest

from medimg.core import ImageReadError, ImageWriteError
from medimg.io._files import atomic_output, atomic_output_dir, check_input, compound_suffix


def test_compound_suffix():
    assert compound_suffix("a/b.NII.GZ") == ".nii.gz"
    assert compound_suffix("x.mha") == ".mha"
    assert compound_suffix("noext") == ""


def test_check_input_errors(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        check_input(tmp_path / "missing.nii")
    empty = tmp_path / "empty.nii"
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        check_input(empty)
    with pytest.raises(ImageReadError, match="folder"):
        check_input(tmp_path, allow_dir=False)


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "sub" / "out.nii.gz"
    with pytest.raises(RuntimeError):
        with atomic_output(out) as tmp:
            assert tmp.name.endswith(".nii.gz") and tmp.parent == out.parent
            tmp.write_bytes(b"partial")
            raise RuntimeError("boom")
    assert not out.exists()
    assert list(out.parent.iterdir()) == []


def test_atomic_output_refuses_input(tmp_path):
    inp = tmp_path / "in.nii.gz"
    inp.write_bytes(b"data")
    with pytest.raises(ImageWriteError, match="overwrite an input"):
        with atomic_output(inp, inputs=[inp]):
            pass
    with pytest.raises(ImageWriteError, match="overwrite an input"):
        with atomic_output(tmp_path / "." / "in.nii.gz", inputs=[str(inp)]):
            pass
    assert inp.read_bytes() == b"data"


def test_atomic_output_dir(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.dcm").write_bytes(b"x")
    with pytest.raises(ImageWriteError, match="inside the input"):
        with atomic_output_dir(src / "out", inputs=[src]):
            pass
    with pytest.raises(ImageWriteError, match="not empty"):
        with atomic_output_dir(src):
            pass
    with pytest.raises(ValueError):
        with atomic_output_dir(tmp_path / "out") as tmp:
            (tmp / "f").write_text("partial")
            raise ValueError
    assert not (tmp_path / "out").exists()
    with atomic_output_dir(tmp_path / "out") as tmp:
        (tmp / "f").write_text("ok")
    assert (tmp_path / "out" / "f").read_text() == "ok"
