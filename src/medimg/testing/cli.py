"""Checks of the command line's error contract: one line, no traceback."""

from __future__ import annotations


def one_line_error(stderr: str, *words: str) -> str:
    """Assert that ``stderr`` holds exactly one error line, without a traceback or an internal error, containing
    every one of ``words``; return the line.

    Example:
        >>> one_line_error("medimg predict: error: 'x.png': no such file\\n", "x.png")
        "medimg predict: error: 'x.png': no such file"
    """
    err = stderr.strip()
    assert err, "expected an error message on stderr"
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    for w in words:
        assert w in err, (w, err)
    return err
