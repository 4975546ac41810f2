"""Models that ship with medimg, trained by our own commands from ../shared/data (see each model card).

Entries are listed here explicitly (never found by scanning folders); each points at a model folder inside the
package with ``plan.json``, ``fold_*/model.pt`` and ``MODEL_CARD.md``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from medimg.core.errors import ImageReadError

__all__ = ["ZooEntry", "ZOO", "list_zoo", "resolve_model"]


@dataclass(frozen=True)
class ZooEntry:
    name: str
    folder: str  # inside medimg/zoo/
    task: str
    description: str
    retrain: str  # the command that made it

    @property
    def path(self) -> Path:
        return Path(str(files("medimg.zoo") / self.folder))

    @property
    def available(self) -> bool:
        return (self.path / "plan.json").is_file() and any(self.path.glob("fold_*/model.pt"))


ZOO: dict[str, ZooEntry] = {
    "hippocampus": ZooEntry(
        name="hippocampus", folder="hippocampus", task="segment",
        description="3D U-Net: anterior and posterior hippocampus on T1 MRI crops (MSD Task04 layout, ~1 mm)",
        retrain="make zoo-hippocampus  (= medimg train segment ../shared/data/hippocampus -o runs/hippocampus "
                "--fold 0 --minutes 55 --iterations 100000 --set batch_size=4, then copy; see MODEL_CARD.md)",
    ),
}


def list_zoo() -> list[ZooEntry]:
    return [ZOO[k] for k in sorted(ZOO)]


def resolve_model(name_or_path: str | os.PathLike[str]) -> Path:
    """A zoo model name or a model folder path -> the model folder."""
    text = os.fspath(name_or_path)
    if text in ZOO:
        entry = ZOO[text]
        if not entry.available:
            raise ImageReadError("the shipped model has no weights in this installation", path=entry.path,
                                 fix=f"retrain it: {entry.retrain}")
        return entry.path
    p = Path(text)
    if p.is_dir():
        return p
    raise ImageReadError("no such model", path=p, expected=f"a model folder or one of: {', '.join(sorted(ZOO))}",
                         found="neither", fix="list the shipped models with `medimg models`")
