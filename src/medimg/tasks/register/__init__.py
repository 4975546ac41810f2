"""Learned deformable registration, and the library side of ``medimg register`` (classical and learned methods).

Fields are ``(B, D, *spatial)`` displacements in voxels, components in spatial-axis order (z, y, x / y, x), applied
as a pull-back ``warped(x) = moving(x + u(x))`` on the fixed grid; the network and the field transforms live in
:mod:`medimg.models.registration_unet` and :mod:`medimg.models.spatial`.

* ``plan`` (:class:`RegisterPlan`), ``planner`` (:func:`plan_registration`), ``data`` (datasets, pairs, landmarks),
  ``preprocess`` (the fixed grid of training and prediction), ``losses``, ``trainer`` (``medimg train register``:
  :func:`~medimg.tasks.register.trainer.train`), ``evaluate`` (validation pairs, label Dice, TRE), ``predictor``
  (:class:`LearnedRegistration`), ``pairs`` (:class:`RegisterOptions`, :func:`register_images`), ``writer``
  (:class:`RegisterResult`: the per-pair folder of ``medimg register``, the batch summary).
* A registration model is not run by ``medimg predict``: it registers pairs (``medimg register FIXED MOVING -o OUT
  --method learned --model MODEL``).

Example:
    >>> from medimg.tasks.register import RegisterOptions, register_images              # doctest: +SKIP
    >>> result = register_images(fixed, moving, RegisterOptions(method="learned", model="hippocampus_registration"))
    ... # doctest: +SKIP
    >>> result.write("out/")   # warped.nii.gz, transform.h5, displacement.nii.gz, metrics.json, ...  # doctest: +SKIP

Names are imported on first use (importing the package registers the task and imports neither torch nor ITK).
"""

from __future__ import annotations

import importlib
from typing import Any

from medimg.tasks.registry import TaskSpec, register_task

register_task(TaskSpec(
    name="register",
    summary="learned deformable registration of image pairs (fixed, moving)",
    plan="medimg.tasks.register.plan:RegisterPlan",
    train="medimg.tasks.register.trainer:train",
    load="medimg.tasks.register.predictor:load",
    predict=None,
    pointer="medimg register FIXED MOVING -o OUT --method learned --model MODEL",
    options=("splits",),
    legacy_keys=("grid", "features"),
))

_LAZY = {
    "RegisterPlan": "plan", "plan_registration": "planner", "RegDataset": "data", "read_pairs": "data",
    "read_landmarks": "data", "Pair": "data", "LearnedRegistration": "predictor", "RegisterOptions": "pairs",
    "register_images": "pairs", "register_pair": "pairs", "RegisterResult": "writer",
    "train": "trainer", "train_registration": "trainer", "RegisterTrainOptions": "trainer",
    "local_ncc_loss": "losses", "mutual_information_loss": "losses", "mse_loss": "losses",
    "diffusion_regulariser": "losses", "bending_energy": "losses", "soft_dice_loss": "losses",
    "registration_loss": "losses",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'medimg.tasks.register' has no attribute {name!r}")
    return getattr(importlib.import_module(f"medimg.tasks.register.{module}"), name)
