"""Locating the shared real data sets (../shared/data beside the repository, or $MEDIMG_DATA)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_root", "require_data"]


def data_root() -> Path | None:
    """The shared data folder: $MEDIMG_DATA if set, else ../shared/data from the repository root; None if absent."""
    env = os.environ.get("MEDIMG_DATA")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    # src/medimg/testing/data.py -> repo root is parents[3]
    for parent in here.parents[2:5]:
        candidates.append(parent.parent / "shared" / "data")
        candidates.append(parent / "shared" / "data")
    for c in candidates:
        if c.is_dir() and (c / "README.md").exists():
            return c
    return None


def require_data(*parts: str) -> Path:
    """Path to a shared data set (or a file in it); skips the calling pytest test when it is absent."""
    import pytest

    root = data_root()
    if root is None:
        pytest.skip("shared real data not found: set MEDIMG_DATA or place it at ../shared/data")
    path = root.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data '{'/'.join(parts)}' not found under {root}")
    return path
