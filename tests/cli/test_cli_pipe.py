"""`medimg ... | head`: a reader that goes away early is not an internal error (issue 12, item 9)."""

import os
import subprocess
import sys

from medimg.testing import require_data


def _run_into_closed_pipe(argv):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (e.g. `head`) has already gone
    try:
        proc = subprocess.run([sys.executable, "-m", "medimg", *argv], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=300)
    finally:
        os.close(write_end)
    return proc


def test_info_into_a_closed_pipe_exits_quietly_with_141():
    image = require_data("hippocampus", "imagesTr", "hippocampus_001_0000.nii.gz")
    proc = _run_into_closed_pipe(["info", str(image)])
    assert proc.returncode == 141, proc.stderr
    assert "internal error" not in proc.stderr and "BrokenPipeError" not in proc.stderr
    assert proc.stderr.strip() == ""


def test_help_into_a_closed_pipe_exits_quietly():
    proc = _run_into_closed_pipe(["--help"])
    assert proc.returncode in (0, 141), proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr
