"""Checks a trainer makes on its model folder before it writes anything: the folder is not an input, and a trained
fold is not silently overwritten."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from medimg.core.errors import ImageWriteError

__all__ = ["fold_name", "check_model_folder_outside_inputs", "check_fold_not_trained"]


def fold_name(fold: int | str) -> str:
    """The folder name of a fold: ``fold_3``, ``fold_all``."""
    return "fold_all" if fold == "all" else f"fold_{int(fold)}"


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_model_folder_outside_inputs(out: str | os.PathLike[str],
                                      inputs: Iterable[str | os.PathLike[str] | None]) -> None:
    """Refuse a model folder that equals, contains or lies inside an input (dataset folder or file).

    Paths are compared after resolving links, so ``-o data/../data`` or a link to the dataset are caught too.

    Raises:
        ImageWriteError: one line naming the input.

    Example:
        >>> check_model_folder_outside_inputs("runs/model", ["data/hippocampus"])  # fine: returns None
    """
    o = Path(out).resolve()
    for inp in inputs:
        if inp is None:
            continue
        i = Path(inp).resolve()
        if o == i:
            what = "model folder is an input"
        elif _inside(o, i):
            what = "model folder lies inside an input"
        elif _inside(i, o):
            what = "model folder contains an input"
        else:
            continue
        raise ImageWriteError(what, path=Path(out), expected="a model folder outside the training data",
                              found=f"the input '{inp}'", fix="choose a model folder (-o) outside the dataset")


def check_fold_not_trained(out: str | os.PathLike[str], fold: int | str, *, resume: bool) -> None:
    """Refuse to train a fold again over its ``model.pt`` unless ``resume`` (continue from its checkpoint).

    With ``resume``, the fold's ``checkpoint.pt`` is read here, weights-only, so that a refused or unreadable
    checkpoint stops the run before the trainer writes anything (plan, fingerprint, splits).

    Raises:
        ImageWriteError: the fold already has ``model.pt`` and ``resume`` is False.
        ImageReadError: ``resume`` and the checkpoint is refused or unreadable.
    """
    if resume:
        checkpoint = Path(out) / fold_name(fold) / "checkpoint.pt"
        if checkpoint.exists():
            from medimg.train.callbacks import load_torch_file

            load_torch_file(checkpoint, what="checkpoint")
        return
    weights = Path(out) / fold_name(fold) / "model.pt"
    if weights.exists():
        raise ImageWriteError("fold already trained", path=weights.parent, expected="an untrained fold",
                              found="model.pt", fix="pass --resume to continue training it, choose another -o, or "
                              "remove the fold folder")
