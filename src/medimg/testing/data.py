"""Locating the shared real data sets (../shared/data beside the repository, or $MEDIMG_DATA)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_root", "require_data", "hippocampus_subset"]


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


def hippocampus_subset(dest: Path, cases: list[str]) -> Path:
    """A small nnU-Net raw dataset at ``dest`` holding the named cases of the shared hippocampus set (copies).

    Skips the calling pytest test when the shared data are absent.
    """
    import json
    import shutil

    src = require_data("hippocampus")
    dest = Path(dest)
    (dest / "imagesTr").mkdir(parents=True, exist_ok=True)
    (dest / "labelsTr").mkdir(exist_ok=True)
    meta = json.loads((src / "dataset.json").read_text())
    for c in cases:
        shutil.copy(src / "imagesTr" / f"{c}_0000.nii.gz", dest / "imagesTr")
        shutil.copy(src / "labelsTr" / f"{c}.nii.gz", dest / "labelsTr")
    meta["training"] = [t for t in meta.get("training", []) if any(c in str(t) for c in cases)]
    meta["numTraining"] = len(cases)
    (dest / "dataset.json").write_text(json.dumps(meta))
    return dest
