"""One small training loop with callbacks, mixed precision (bf16 on CPU), checkpoints and schedules."""

from medimg.train.callbacks import (
    CheckpointCallback,
    CurveCallback,
    LogCallback,
    load_checkpoint,
    load_torch_file,
    load_weights,
    save_checkpoint,
)
from medimg.train.loop import Callback, TrainState, cosine_lr, make_optimizer, poly_lr, train_loop

__all__ = [
    "train_loop", "TrainState", "Callback", "poly_lr", "cosine_lr", "make_optimizer", "LogCallback",
    "CheckpointCallback", "CurveCallback", "save_checkpoint", "load_checkpoint",
    "load_weights", "load_torch_file",
]
