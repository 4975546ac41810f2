"""The one memory budget (medimg.core.checks) and the one voxel check every reader calls."""

from __future__ import annotations

import numpy as np
import pytest

from medimg.core import ImageReadError, InvalidParameterError
from medimg.core.checks import check_memory_budget, check_voxels, declared_nbytes, memory_budget_bytes


def test_default_budget_is_bounded(monkeypatch):
    monkeypatch.delenv("MEDIMG_MAX_BYTES", raising=False)
    assert 0 < memory_budget_bytes() <= 8 * 1024**3


@pytest.mark.parametrize(("text", "value"), [("3G", 3 * 1024**3), ("512M", 512 * 1024**2), ("1000", 1000),
                                             ("1.5K", 1536)])
def test_budget_from_environment(text, value, monkeypatch):
    monkeypatch.setenv("MEDIMG_MAX_BYTES", text)
    assert memory_budget_bytes() == value


@pytest.mark.parametrize("text", ["lots", "-1", "0", "G"])
def test_bad_budget_names_the_variable(text, monkeypatch):
    monkeypatch.setenv("MEDIMG_MAX_BYTES", text)
    with pytest.raises(InvalidParameterError, match="MEDIMG_MAX_BYTES"):
        memory_budget_bytes()


def test_check_names_file_size_budget_and_fix(monkeypatch):
    monkeypatch.setenv("MEDIMG_MAX_BYTES", "1M")
    check_memory_budget(1024**2, path="x.nii")
    with pytest.raises(ImageReadError) as exc:
        check_memory_budget(declared_nbytes((2**40, 2**40, 2**40), 8), path="x.nii")  # no overflow
    msg = str(exc.value)
    assert "'x.nii'" in msg and "1 MiB" in msg and "declared" in msg and "raise MEDIMG_MAX_BYTES" in msg
    assert declared_nbytes((3, -1), 4) == 0


def test_check_voxels():
    check_voxels(np.zeros((2, 2), np.float32), path="a")
    check_voxels(np.zeros((2, 2), np.int16), path="a")
    with pytest.raises(ImageReadError, match="1 NaN/Inf voxels of 4"):
        check_voxels(np.array([[0, np.inf], [1, 2]], np.float32), path="a")
    with pytest.raises(ImageReadError, match="complex"):
        check_voxels(np.zeros(3, np.complex64), path="a")
