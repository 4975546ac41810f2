"""Running out of memory on a real, consistent input keeps the one-line contract: exit 2 and one line on stderr
that names the command's input(s) (issue 12, item 13; the line named no file)."""

from __future__ import annotations

import numpy as np
import pytest

from medimg.cli.main import main
from medimg.io import write
from medimg.testing import phantom


def _no_memory(*args, **kwargs):
    raise MemoryError


@pytest.mark.parametrize("command", ["convert", "measure"])
def test_out_of_memory_line_names_the_inputs(command, tmp_path, monkeypatch, capfd):
    import importlib

    from medimg.cli.main import COMMANDS

    image = tmp_path / "big image.nii.gz"
    labels = tmp_path / "labels.nii.gz"
    write(phantom((4, 8, 8)), image)
    write(phantom((4, 8, 8)).replace(voxels=np.zeros((1, 4, 8, 8), np.uint8)), labels)
    monkeypatch.setattr(importlib.import_module(COMMANDS[command][0]), "run", _no_memory)
    argv = ["convert", str(image), str(tmp_path / "out.nrrd")] if command == "convert" \
        else ["measure", str(image), str(labels)]
    assert main(argv) == 2
    err = capfd.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "out of memory" in err and str(image) in err
    if command == "measure":
        assert str(labels) in err
    assert not (tmp_path / "out.nrrd").exists()
