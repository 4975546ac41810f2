import shutil

import pytest

from medimg.core import ImageReadError, ImageWriteError
from medimg.io.files import atomic_output, atomic_output_dir, check_input, compound_suffix


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


def test_check_outputs_apart(tmp_path):
    from medimg.io.files import check_outputs_apart

    inp = tmp_path / "out" / "case.nii.gz"
    inp.parent.mkdir()
    inp.write_bytes(b"x")
    with pytest.raises(ImageWriteError, match="contains an input"):
        check_outputs_apart([tmp_path / "out"], [inp])
    with pytest.raises(ImageWriteError, match="contains an input"):
        check_outputs_apart([tmp_path], [tmp_path / "out"])
    with pytest.raises(ImageWriteError, match="inside the input"):
        check_outputs_apart([tmp_path / "out" / "o"], [tmp_path / "out"])
    with pytest.raises(ImageWriteError, match="overwrite an input"):
        check_outputs_apart([tmp_path / "out" / ".." / "out"], [tmp_path / "out"])
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "out")
    with pytest.raises(ImageWriteError, match="contains an input"):
        check_outputs_apart([link], [inp])  # through a link too
    check_outputs_apart([tmp_path / "elsewhere", None], [inp, None])


def test_atomic_output_dir_never_touches_other_folders(tmp_path):
    """A pre-existing `.OUT.partial` (or any sibling) is the user's: kept on success and on failure."""
    mine = tmp_path / ".out.partial"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    with pytest.raises(ValueError):
        with atomic_output_dir(tmp_path / "out") as tmp:
            assert tmp != mine and tmp.parent == tmp_path
            raise ValueError
    with atomic_output_dir(tmp_path / "out") as tmp:
        (tmp / "f").write_text("ok")
    assert (mine / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.partial", "out"]


def test_atomic_output_dir_replaces_only_an_earlier_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    marker = ("result.json", "medimg_test")
    with pytest.raises(ImageWriteError, match="not empty"):
        with atomic_output_dir(out, replace_marker=marker):
            pass
    assert (out / "notes.txt").read_text() == "keep"
    (out / "notes.txt").unlink()
    (out / "result.json").write_text('{"medimg_test": 1}')
    (out / "old.txt").write_text("old")
    with atomic_output_dir(out, replace_marker=marker) as tmp:
        (tmp / "result.json").write_text('{"medimg_test": 2}')
    assert sorted(p.name for p in out.iterdir()) == ["result.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the old output went, nothing else
    # an input inside an earlier output: refused, the input kept
    (out / "case.png").write_bytes(b"x")
    with pytest.raises(ImageWriteError, match="contains an input"):
        with atomic_output_dir(out, inputs=[out / "case.png"], replace_marker=marker):
            pass
    assert (out / "case.png").exists()


def _fake_previous_analysis(out):
    out.mkdir()
    (out / "measurements.json").write_text('{"medimg_analyze": true}')


def test_analyze_input_inside_output_is_refused_and_kept(tmp_path, capsys):
    """Issue 12: `analyze IN -o OUT` with IN inside an earlier OUT deleted IN."""
    from medimg.cli.main import main
    from medimg.testing import require_data

    out = tmp_path / "out"
    _fake_previous_analysis(out)
    inp = out / "000_HC.png"
    shutil.copy(require_data("fetal_head_hc18", "images", "000_HC.png"), inp)
    assert main(["analyze", str(inp), "-o", str(out), "--pixel-spacing", "0.0691"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "contains an input" in err
    assert inp.is_file() and (out / "measurements.json").is_file()


def test_analyze_keeps_a_users_partial_folder(tmp_path, capsys):
    """Issue 12: analyze removed a pre-existing `.OUT.partial` sibling."""
    from medimg.cli.main import main
    from medimg.testing import require_data

    mine = tmp_path / ".out.partial"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    src = require_data("fetal_head_hc18", "images", "000_HC.png")
    out = tmp_path / "out"
    assert main(["analyze", str(src), "-o", str(out), "--pixel-spacing", "0.0691", "--quiet"]) == 0
    assert main(["analyze", str(src), "-o", str(out), "--pixel-spacing", "0.0691", "--quiet"]) == 0  # replaces
    assert (mine / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.partial", "out"]
    assert (out / "report.html").is_file()
