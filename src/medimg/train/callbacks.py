"""Callbacks for :func:`medimg.train.loop.train_loop`: progress line, checkpoints, training-curve PNG."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch

from medimg.train.loop import Callback, TrainState

__all__ = ["LogCallback", "CheckpointCallback", "CurveCallback", "save_checkpoint", "load_checkpoint", "load_weights",
           "load_torch_file"]

logger = logging.getLogger(__name__)


class LogCallback(Callback):
    """Log the mean loss and speed every ``every`` iterations through the module logger (progress bars are the
    command line's business: see ``medimg.cli.progress.TrainProgress``)."""

    def __init__(self, *, every: int = 100, label: str = "train") -> None:
        self.every = every
        self.label = label

    def on_iteration(self, state: TrainState, record: dict[str, float]) -> None:
        if state.iteration % self.every:
            return
        recent = state.history[-self.every:]
        logger.debug("%s: it %d loss %.4f lr %.2e %.1f min", self.label, state.iteration,
                     sum(r["loss"] for r in recent) / len(recent), record["lr"], state.elapsed_s / 60)

    def on_end(self, state: TrainState) -> None:
        logger.debug("%s: stopped: %s", self.label, state.stop_reason)


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: TrainState,
                    extra: dict[str, Any] | None = None) -> None:
    """Atomically save weights, optimizer state and loop state (for --resume)."""
    from medimg.io.files import atomic_output

    with atomic_output(path) as tmp:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "iteration": state.iteration,
                    "elapsed_s": state.elapsed_s, "history": state.history, "extra": extra or {}}, tmp)


def load_torch_file(path: str | os.PathLike[str], *, what: str = "weights") -> Any:
    """``torch.load`` of a file medimg wrote, with ``weights_only=True``: tensors, numbers, strings, lists and dicts
    only, so a crafted file cannot run code while it is read.

    Raises:
        ImageReadError: the file cannot be read, is not a torch file, or holds anything but plain data (one line).
    """
    import pickle
    import warnings

    from medimg.core.errors import ImageReadError

    p = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's note on a crafted file's pickle protocol
            return torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError, KeyError,
            ImportError, IndexError, UnicodeDecodeError, OSError) as exc:
        detail = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise ImageReadError(f"refused or unreadable {what}", path=p,
                             expected=f"{what} written by medimg (plain tensors and dicts, loaded with "
                             "weights_only=True)", found=f"{type(exc).__name__}: {detail}",
                             fix="train the model again, or give the file medimg wrote") from exc


def load_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A ``model.pt`` state dict (name -> tensor), floating tensors as float32; see :func:`load_torch_file`.

    Raises:
        ImageReadError: unreadable, refused (not plain data) or not a mapping of names to tensors.
    """
    from medimg.core.errors import ImageReadError

    state = load_torch_file(path, what="model weights")
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ImageReadError("not a weights file", path=Path(path), expected="a state dict (name -> tensor)",
                             found=type(state).__name__, fix="train the model again")
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None
                    ) -> TrainState:
    """Restore a checkpoint written by :func:`save_checkpoint`; returns the loop state to continue from.

    The file is read with ``weights_only=True`` (:func:`load_torch_file`): a checkpoint holding anything but
    tensors and plain data is refused, never executed.

    Raises:
        ImageReadError: unreadable, refused, or not a checkpoint of this model.
    """
    from medimg.core.errors import ImageReadError

    ckpt = load_torch_file(path, what="checkpoint")
    try:
        model.load_state_dict(ckpt["model"])
        if optimizer is not None:
            optimizer.load_state_dict(ckpt["optimizer"])
        return TrainState(iteration=int(ckpt["iteration"]), elapsed_s=float(ckpt["elapsed_s"]),
                          history=list(ckpt["history"]))
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        detail = " ".join(str(exc).split())[:160]
        raise ImageReadError("checkpoint does not fit this model", path=Path(path),
                             expected="a checkpoint.pt written by this model's training",
                             found=f"{type(exc).__name__}: {detail}",
                             fix="remove the fold folder and train it again, or leave out --resume") from exc


class CheckpointCallback(Callback):
    """Save a resumable checkpoint every ``every_s`` seconds and at the end."""

    def __init__(self, path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *,
                 every_s: float = 300.0, extra: Callable[[], dict[str, Any]] | None = None) -> None:
        self.path = Path(path)
        self.model = model
        self.optimizer = optimizer
        self.every_s = every_s
        self.extra = extra
        self._last = time.perf_counter()

    def _save(self, state: TrainState) -> None:
        save_checkpoint(self.path, self.model, self.optimizer, state, self.extra() if self.extra else None)
        self._last = time.perf_counter()

    def on_iteration(self, state: TrainState, record: dict[str, float]) -> None:
        if time.perf_counter() - self._last >= self.every_s:
            self._save(state)

    def on_end(self, state: TrainState) -> None:
        self._save(state)


class CurveCallback(Callback):
    """Write the training curve (loss, smoothed, and validation Dice if any) as PNG and JSON at the end."""

    def __init__(self, png_path: Path, json_path: Path | None = None, *, loss_label: str = "Dice + CE loss") -> None:
        self.png_path = Path(png_path)
        self.json_path = Path(json_path) if json_path else None
        self.loss_label = loss_label

    def on_end(self, state: TrainState) -> None:
        if not state.history:
            return
        if self.json_path is not None:
            self.json_path.write_text(json.dumps({"history": state.history, "validation": state.validation}))
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np

        it = np.array([r["iteration"] for r in state.history])
        loss = np.array([r["loss"] for r in state.history])
        k = max(1, len(loss) // 50)
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
        ax.plot(it, loss, color="0.8", lw=0.8, label="loss")
        ax.plot(it[k - 1:], smooth, color="C0", lw=1.5, label=f"loss (mean of {k})")
        ax.set_xlabel("iteration")
        ax.set_ylabel(self.loss_label)
        if state.validation:
            ax2 = ax.twinx()
            ax2.plot([v["iteration"] for v in state.validation], [v["mean_dice"] for v in state.validation],
                     "o-", color="C1", label="validation Dice")
            ax2.set_ylabel("validation mean Dice")
            ax2.set_ylim(0, 1)
        ax.set_title(f"{state.iteration} iterations, {state.elapsed_s / 60:.1f} min")
        ax.legend(loc="upper right")
        fig.tight_layout()
        self.png_path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(self.png_path)
        plt.close(fig)
