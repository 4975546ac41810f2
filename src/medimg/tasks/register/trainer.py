"""`medimg train register`: self-configuring training of a learned deformable registration model.

Steps of :func:`train` (the shared :class:`~medimg.train.run.TrainingRun` around the task's own parts): open the
dataset (:class:`~medimg.tasks.register.data.RegDataset`), plan (``plan.json``; see
:mod:`medimg.tasks.register.planner` for the rules; ``--set FIELD=VALUE`` overrides), split the cases into folds
(``splits.json``; or reuse another model's split with ``options.splits``, e.g. the segmentation model's, so that its
validation cases stay unseen), resample every case of the fold onto the plan's grid
(:mod:`medimg.tasks.register.preprocess`: normalised to [0, 1]; with ``prealign="affine"`` after a classical affine
registration to a template case), then train with the shared loop (:func:`medimg.train.train_loop`, bf16 autocast,
cosine schedule, checkpoints, resume, curve) on random inter-subject pairs of training cases (never a case with
itself), and validate on a fixed, seeded list of pairs of validation cases (:mod:`medimg.tasks.register.evaluate`:
label Dice before/after, folding fraction, seconds per pair).

Model folder::

    MODEL_DIR/plan.json, splits.json
    MODEL_DIR/fold_k/model.pt            float32 weights of the RegistrationUNet
    MODEL_DIR/fold_k/metrics.json        budget, iterations, validation (per pair and mean)
    MODEL_DIR/fold_k/training_curve.png  loss; training_log.json; checkpoint.pt (resume)
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from medimg.core.errors import InvalidParameterError
from medimg.tasks.register.plan import RegisterPlan
from medimg.train.loop import Callback
from medimg.train.run import TrainOptions

logger = logging.getLogger(__name__)

__all__ = ["OPTIONS", "train", "train_registration", "RegisterTrainOptions", "simulate_field", "pair_batches",
           "DEFAULT_MINUTES"]

#: Options of :class:`~medimg.train.run.TrainOptions` this task uses beyond the common ones.
OPTIONS = ("splits",)
#: Training budget when neither minutes nor iterations are given.
DEFAULT_MINUTES = 15.0
#: The former options type of :func:`train_registration`: now the one :class:`~medimg.train.run.TrainOptions`.
RegisterTrainOptions = TrainOptions
_DEFAULT_OPTIONS = TrainOptions()


class _PairNet(torch.nn.Module):
    """Adapter for the shared loop: ``cat(fixed, moving)`` -> the raw field (velocity or displacement)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.predict_field(x[:, :1], x[:, 1:2])


# ---- pairs -----------------------------------------------------------------------------------------------------
def simulate_field(shape: Sequence[int], max_voxels: float, rng: np.random.Generator, *, steps: int = 7,
                   control: int = 6) -> torch.Tensor:
    """A random smooth diffeomorphic displacement ``(D, *shape)`` in voxels (component order of the axes).

    A Gaussian random velocity on a coarse grid of ``control`` points per axis is upsampled by linear
    interpolation, scaled so its largest vector is ``max_voxels`` and integrated by scaling and squaring.
    """
    from medimg.models.spatial import integrate_velocity

    dims = len(shape)
    coarse = torch.from_numpy(rng.standard_normal((1, dims, *([control] * dims))).astype(np.float32))
    mode = "trilinear" if dims == 3 else "bilinear"
    v = torch.nn.functional.interpolate(coarse, size=tuple(int(s) for s in shape), mode=mode, align_corners=True)
    norm = v.pow(2).sum(1).sqrt().max()
    v = v * (float(max_voxels) / float(norm + 1e-8))
    return integrate_velocity(v, steps)[0]


def _onehot(labels: np.ndarray, values: Sequence[int]) -> np.ndarray:
    """(K, *spatial) float32 one-hot of the foreground values (background left out)."""
    return np.stack([(labels == v) for v in values[1:]]).astype(np.float32)


def pair_batches(images: np.ndarray, labels: np.ndarray | None, plan: RegisterPlan, batch: int, seed: int
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches for the shared loop: (cat(fixed, moving), cat(fixed, moving, extras)).

    Unsupervised: extras = one-hot labels of fixed then moving (foreground only) when labels exist. Supervised:
    fixed = moving warped by a simulated field, extras = that field (voxels).
    """
    from medimg.models.spatial import warp

    rng = np.random.default_rng(seed)
    n = len(images)
    max_vox = float(plan.simulate_max_mm) / float(min(plan.spacing))
    while True:
        fixed_l, moving_l, extra_l = [], [], []
        for _ in range(batch):
            if plan.mode == "supervised":
                i = int(rng.integers(n))
                moving = torch.from_numpy(images[i])[None, None]
                u = simulate_field(images[i].shape, max_vox, rng)
                fixed = warp(moving, u[None])
                fixed_l.append(fixed[0])
                moving_l.append(moving[0])
                extra_l.append(u)
                continue
            i, j = (int(v) for v in rng.choice(n, size=2, replace=False))
            fixed_l.append(torch.from_numpy(images[i])[None])
            moving_l.append(torch.from_numpy(images[j])[None])
            if labels is not None and plan.dice_weight > 0:
                extra_l.append(torch.from_numpy(np.concatenate([_onehot(labels[i], plan.label_values),
                                                                _onehot(labels[j], plan.label_values)])))
        fixed_t, moving_t = torch.stack(fixed_l), torch.stack(moving_l)
        target = [fixed_t, moving_t] + ([torch.stack(extra_l)] if extra_l else [])
        yield torch.cat([fixed_t, moving_t], dim=1), torch.cat(target, dim=1)


def _make_plan(ds: Any, run: Any, options: TrainOptions) -> RegisterPlan:
    """The folder's plan or a new one (not saved yet), with ``options.overrides`` applied and noted."""
    from medimg.tasks.register.planner import plan_registration

    plan = run.existing_plan(RegisterPlan)
    if plan is None:
        spacings, shapes = [], []
        for case in ds.cases:
            sp, sh = ds.header(case)
            spacings.append(sp)
            shapes.append(sh)
        plan = plan_registration(spacings, shapes, dims=ds.dims, label_values=ds.label_values if ds.has_labels
                                 else (), dataset=str(ds.root))
    overrides = dict(options.overrides)
    if overrides:
        text = ", ".join(f"{k}={v}" for k, v in overrides.items())
        note = f"overridden with --set: {text} (notes above are the planner's)"
        plan = plan.replace(**overrides)
        if note not in plan.notes:
            plan = plan.replace(notes=plan.notes + (note,))
    if plan.dims != ds.dims:
        raise InvalidParameterError("the model folder's plan is for other images", path=run.plan_path,
                                    parameter="-o", expected=f"a {ds.dims}D plan", found=f"{plan.dims}D",
                                    fix="choose a new model folder")
    return plan


# ---- the command -----------------------------------------------------------------------------------------------
def train(data: str | os.PathLike[str], out: str | os.PathLike[str], options: TrainOptions = _DEFAULT_OPTIONS, *,
          callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Train one fold (or every case) of a learned registration model; returns the fold's metrics.

    Raises:
        ImageReadError: the dataset cannot be opened.
        InvalidParameterError: bad options or plan overrides, an option registration does not use, a model folder of
            another kind, too few cases.

    Example:
        >>> m = train("../shared/data/hippocampus", "runs/reg", TrainOptions(minutes=30))   # doctest: +SKIP
        >>> m["validation"]["mean_dice_after"]   # doctest: +SKIP
        0.80
    """
    from medimg.plans.model_folder import check_network_memory
    from medimg.tasks.register.data import RegDataset
    from medimg.tasks.register.evaluate import val_pairs, validate_pairs
    from medimg.tasks.register.losses import registration_loss
    from medimg.tasks.register.predictor import build_registration_network
    from medimg.tasks.register.preprocess import preprocess_cases, template_case
    from medimg.train import CheckpointCallback, CurveCallback, LogCallback, make_optimizer
    from medimg.train.loop import schedule, train_loop
    from medimg.train.precision import bf16_conv3d_hazards, precision_name, resolve_precision
    from medimg.train.run import TrainingRun
    from medimg.train.splits import make_splits

    options = (options or TrainOptions()).check_applies("register", OPTIONS)
    precision = resolve_precision(options.precision, "cpu")
    for name in ("minutes", "iterations"):
        v = getattr(options, name)
        if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise InvalidParameterError(f"invalid {name}", parameter=f"--{name}", expected="a positive number",
                                        found=v, fix=f"e.g. --{name} {15 if name == 'minutes' else 1000}")
    # nothing is written before every check passed: the model folder is not the dataset, a trained fold is kept
    run = TrainingRun("register", out, options, inputs=[data, options.splits])
    ds = RegDataset.open(data)
    if len(ds) < 2:
        raise InvalidParameterError("too few images", path=ds.root, parameter="dataset", expected=">= 2 images",
                                    found=len(ds), fix="add images")
    plan = _make_plan(ds, run, options)
    n_folds = options.n_folds_or_default
    fold = run.fold(ds.cases, lambda: make_splits(ds.cases, n_folds, options.seed),
                    record={"seed": options.seed, "n_folds": n_folds}, write=False)
    train_ids, val_ids = fold.train, fold.val
    if len(train_ids) < (1 if plan.mode == "supervised" else 2):
        raise InvalidParameterError("too few training cases in this fold", parameter="--fold",
                                    expected="at least 2 (pairs of different cases)", found=len(train_ids),
                                    fix="use fewer folds or --fold all")
    fold_index = len(train_ids) if options.fold == "all" else int(options.fold)
    check_network_memory(batch=plan.batch_size, spatial=plan.grid, channels=max(int(plan.features[0]), 2),
                         path=run.plan_path, fields="grid, batch_size")
    torch.manual_seed(options.seed * 1000 + fold_index)
    net = build_registration_network(plan)
    # every check passed: from here on the model folder is written
    plan = run.plan(RegisterPlan, make=lambda: plan, adjust=lambda _: plan)
    fold_dir = run.write_fold()

    t_pre = time.perf_counter()
    template, template_id = (template_case(ds, train_ids, plan) if plan.prealign == "affine" else (None, None))
    x_train, l_train = preprocess_cases(ds, train_ids, plan, template, "training cases")
    x_val, l_val = preprocess_cases(ds, val_ids, plan, template, "validation cases") if val_ids else (None, None)
    preprocess_s = time.perf_counter() - t_pre

    model = _PairNet(net)
    optimizer = make_optimizer(model.parameters(), "adamw", plan.lr, plan.weight_decay)
    state = run.resume_state(model, optimizer)
    if options.resume and state is None:
        logger.warning("--resume: no checkpoint at %s; training from the start", fold_dir / "checkpoint.pt")
    start_it = state.iteration if state else 0
    batch = int(min(plan.batch_size, max(1, len(train_ids))))
    batches = pair_batches(x_train, l_train, plan, batch, options.seed * 7919 + fold_index + start_it)
    hazards = bf16_conv3d_hazards(model, (2, *plan.grid)) if plan.dims == 3 and precision is not None else []
    bf16 = precision is not None and not hazards
    minutes = options.minutes
    if minutes is None and options.iterations is None:
        minutes = DEFAULT_MINUTES
    loop_callbacks: list[Callback] = [
        LogCallback(label=f"train {fold.name}"), *callbacks,
        CheckpointCallback(fold_dir / "checkpoint.pt", model, optimizer, every_s=300,
                           extra=lambda: {"fold": fold.name}),
        CurveCallback(fold_dir / "training_curve.png", fold_dir / "training_log.json",
                      loss_label="similarity + regulariser" + (" + Dice" if plan.dice_weight else "")
                      if plan.mode == "unsupervised" else "field MSE (voxels^2)"),
    ]
    t0 = time.perf_counter()
    state = train_loop(model, optimizer, batches, registration_loss(plan), max_iterations=options.iterations,
                       lr_at=schedule("cosine", plan.lr), minutes=minutes, state=state, callbacks=loop_callbacks,
                       autocast_bf16=bf16, grad_clip=5.0)
    train_s = time.perf_counter() - t0
    run.save_weights(net, half=False)
    metrics: dict[str, Any] = {
        "fold": fold.name, "n_train": len(train_ids), "n_val": len(val_ids), "iterations": state.iteration,
        "batch_size": batch, "training_minutes": round(state.elapsed_s / 60, 3), "stop_reason": state.stop_reason,
        "wall_minutes_this_run": round(train_s / 60, 3), "preprocess_seconds": round(preprocess_s, 2),
        "threads": torch.get_num_threads(), "seed": options.seed, "autocast_bf16": bf16,
        "precision": precision_name(torch.bfloat16 if bf16 else None), "precision_option": options.precision,
        "budget": " / ".join(b for b in (minutes and f"{minutes:g} min",
                                         options.iterations and f"{options.iterations} iterations") if b),
        "mode": plan.mode, "similarity": plan.similarity, "prealign": plan.prealign,
        "final_loss_mean_of_last_100": (float(np.mean([r["loss"] for r in state.history[-100:]]))
                                        if state.history else None),
    }
    if template_id is not None:
        metrics["prealign_template"] = template_id
    if x_val is not None and len(x_val) >= 2:
        pairs = val_pairs(len(x_val), plan.val_pairs, options.seed)
        metrics["validation"] = validate_pairs(net, x_val, l_val, val_ids, pairs, plan,
                                               autocast_bf16=precision is not None)
        v = metrics["validation"]
        if "mean_dice_after" in v:
            logger.info("%s validation (%d pairs): Dice %.4f -> %.4f, folding %.5f", fold.name, v["n_pairs"],
                        v["mean_dice_before"], v["mean_dice_after"], v["folding_fraction_mean"])
    run.write_metrics(metrics)
    return metrics


#: The former name of :func:`train` (``medimg train register``).
train_registration = train
