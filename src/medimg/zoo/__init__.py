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
    #: False for a model whose weights medimg may not redistribute: it appears here with its recipe and becomes
    #: usable once trained locally into its folder (``retrain``).
    shipped: bool = True
    note: str = ""

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
    "adrenalmnist3d": ZooEntry(
        name="adrenalmnist3d", folder="adrenalmnist3d", task="classify",
        description="3D ResNet-18 ensemble of 3 folds: normal adrenal gland vs adrenal hyperplasia from shape masks "
                    "resized to 28^3 (AdrenalMNIST3D, CC BY 4.0); calibrated probability, ensemble uncertainty and "
                    "Grad-CAM per volume",
        retrain="make zoo-adrenal  (= medimg train classify ../shared/data/adrenalmnist3d/"
                "adrenalmnist3d_64_trainval.npz --split train -o runs/cls/adrenal28 --fold K --minutes 15 --seed 0 "
                "--set 'input_size=[28,28,28]' for K = 0, 1, 2, then copy; see MODEL_CARD.md)",
    ),
    "hippocampus_registration": ZooEntry(
        name="hippocampus_registration", folder="hippocampus_registration", task="register",
        description="learned deformable registration (VoxelMorph-style U-Net, diffeomorphic) of hippocampus T1 MRI "
                    "crops (MSD Task04 layout, ~1 mm): one network pass per pair after centre alignment",
        retrain="make zoo-hippocampus-registration  (= medimg train register ../shared/data/hippocampus -o "
                "runs/reg/hippocampus --fold 0 --minutes 40 --seed 0 --splits "
                "src/medimg/zoo/hippocampus/splits.json, then copy; see MODEL_CARD.md)",
    ),
    "fetal_head": ZooEntry(
        name="fetal_head", folder="fetal_head", task="segment",
        description="2D U-Net: fetal head in 2D ultrasound frames at 0.5 mm pixels (HC18, CC BY 4.0); `medimg "
                    "analyze` fits an ellipse to its mask for the head circumference",
        retrain="make zoo-fetal-head  (= medimg train segment ../shared/data/fetal_head_hc18 -o runs/fetal_head "
                "--fold 0 --minutes 32 --iterations 100000 --group-by '^(\\d+)_' --cache runs/cache --seed 0 "
                "--set 'target_spacing=[0.5,0.5,1.0]' --set 'patch_size=[256,320]', then copy; see MODEL_CARD.md)",
    ),
    "busi": ZooEntry(
        name="busi", folder="busi", task="classify",
        description="2D ResNet-18: benign / malignant / normal breast ultrasound (BUSI), 224 x 224",
        retrain="make zoo-busi  (= medimg train classify ../shared/data/breast_ultrasound_busi -o runs/cls/busi_zoo "
                "--fold 0 --minutes 15 --seed 0, then copy into the package folder)",
        shipped=False,
        note="weights are not shipped: the licence of the BUSI copy they would be trained on is not confirmed, "
             "so train them locally with the command below",
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
            what = ("the shipped model has no weights in this installation" if entry.shipped else
                    f"the '{entry.name}' model is not shipped ({entry.note})")
            raise ImageReadError(what, path=entry.path, fix=f"train it: {entry.retrain}")
        return entry.path
    p = Path(text)
    if p.is_dir():
        return p
    raise ImageReadError("no such model", path=p, expected=f"a model folder or one of: {', '.join(sorted(ZOO))}",
                         found="neither", fix="list the shipped models with `medimg models`")
