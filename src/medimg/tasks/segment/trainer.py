"""``medimg train segment``: dataset folder -> verified, fingerprinted, planned, cached, trained model folder.

A model folder describes itself (nnU-Net habit): ``plan.json`` (frozen, versioned), ``fingerprint.json``,
``splits.json`` (k-fold split by case, seeded) and one ``fold_<k>/`` per trained fold with ``model.pt``
(weights), ``metrics.json`` (validation Dice per class and the Dice-vs-minutes curve), ``training_curve.png``
and ``checkpoint.pt`` (to resume; not needed for prediction).

The run around the segmentation-specific parts (options, plan, splits, fold folder, resume, weights, metrics) is
:class:`medimg.train.run.TrainingRun`'s; the options are :class:`medimg.train.run.TrainOptions`, of which
segmentation uses the common ones and :data:`OPTIONS`.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Sequence

import torch

from medimg.core.errors import InvalidParameterError
from medimg.io.files import write_json_atomic
from medimg.tasks.segment import OPTIONS
from medimg.tasks.segment.evaluate import decide_postprocess, validate_cases
from medimg.train.loop import Callback, TrainState
from medimg.train.run import TrainingRun, TrainOptions
from medimg.train.splits import case_groups, make_splits

logger = logging.getLogger(__name__)

__all__ = ["OPTIONS", "TrainOptions", "train", "train_segmentation", "ValidationCallback"]

class ValidationCallback(Callback):
    """Validate every ``every_s`` seconds of training; the time spent validating does not count as training."""

    def __init__(self, every_s: float, run: Callable[[], dict[str, Any]]) -> None:
        self.every_s = every_s
        self.run = run
        self._next = every_s

    def on_iteration(self, state: TrainState, record: dict[str, float]) -> None:
        if state.elapsed_s < self._next:
            return
        t0 = time.perf_counter()
        res = self.run()
        res.update(iteration=state.iteration, minutes=state.elapsed_s / 60)
        state.validation.append(res)
        state.started += time.perf_counter() - t0  # validation time is not training time
        self._next = state.elapsed_s + self.every_s
        logger.info("validation at %.1f min: mean Dice %.4f", res["minutes"], res["mean_dice"])


def train(data: str | os.PathLike[str], out: str | os.PathLike[str], options: TrainOptions = TrainOptions(), *,  # noqa: B008
          callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Train one fold (or all cases) of a segmentation model from a dataset folder; returns the fold's metrics.

    The plan is computed on the first run and reused from ``out/plan.json`` by later folds, so that all folds of
    a model share one plan; ``options.overrides`` (e.g. ``("network.base_channels", 24)``) change it.

    Raises:
        InvalidParameterError: an option segmentation does not use, a bad fold, a model folder of another task.
        ImageReadError: a dataset that cannot be read or does not verify.
    """
    from medimg.augment.batch import BatchAugmenter
    from medimg.models import NetworkSpec, build_network
    from medimg.plans.fingerprint import compute_fingerprint
    from medimg.plans.model_folder import check_network_memory
    from medimg.tasks.segment.data import SegDataset, verify_dataset
    from medimg.tasks.segment.losses import DeepSupervisionLoss, DiceCELoss
    from medimg.tasks.segment.plan import SegmentPlan
    from medimg.tasks.segment.planner import plan_segmentation
    from medimg.tasks.segment.preprocess import PreprocessedCache
    from medimg.tasks.segment.sampling import PatchSampler
    from medimg.train import CheckpointCallback, CurveCallback, LogCallback, make_optimizer, train_loop
    from medimg.train.loop import schedule
    from medimg.train.precision import bf16_conv3d_hazards, precision_name, resolve_precision

    options.check_applies("segment", OPTIONS)
    # nothing is written before these checks: the model folder is not the dataset, a trained fold is kept
    run = TrainingRun("segment", out, options, inputs=[data])
    precision = resolve_precision(options.precision, "cpu")
    ds = SegDataset.open(data, foreground_only=options.foreground_only)
    verify_dataset(ds).raise_if_bad()
    fingerprints = []

    def make() -> SegmentPlan:
        fingerprints.append(compute_fingerprint(ds, seed=options.seed))
        return plan_segmentation(fingerprints[0], minutes=options.minutes or 30.0,
                                 overrides=dict(options.overrides) or None)

    def adjust(plan: SegmentPlan) -> SegmentPlan:
        if options.iterations is not None or options.minutes is not None or options.seed != plan.seed:
            changes: dict[str, Any] = {"seed": options.seed}
            if options.iterations is not None:
                changes["iterations"] = int(options.iterations)
            if options.minutes is not None:
                changes["minutes"] = float(options.minutes)
            plan = plan.replace(**changes)
        check_network_memory(batch=plan.batch_size, spatial=plan.patch_size,
                             channels=max(int(plan.network.get("base_channels", 1) or 1), plan.n_classes),
                             path=run.plan_path, fields="patch_size, batch_size")
        return plan

    plan = run.plan(SegmentPlan, make=make, adjust=adjust)
    if fingerprints:
        write_json_atomic(run.out / "fingerprint.json", fingerprints[0].to_dict())
    n_folds = options.n_folds_or_default
    record = {"seed": options.seed, "n_folds": n_folds, "group_by": options.group_by}

    def splits() -> list[dict[str, list[str]]]:
        groups = case_groups(ds.cases, options.group_by) if options.group_by else None
        return make_splits(ds.cases, n_folds, options.seed, groups=groups)

    if options.fold == "all":
        _record_splits(run, splits, record)
    fold = run.fold(ds.cases, splits, record=record)
    train_ids, val_ids, fold_name, fold_dir = fold.train, fold.val, fold.name, fold.folder

    cache = PreprocessedCache(options.cache_dir or None, plan, ds)
    cache.build(list(train_ids) + list(val_ids))
    train_cases = [cache.get(c)[:2] for c in train_ids]
    val_cases = [cache.get(c)[:2] for c in val_ids]

    torch.manual_seed(plan.seed)
    model = build_network(NetworkSpec.from_dict(plan.network))
    optimizer = make_optimizer(model.parameters(), plan.optimizer, plan.learning_rate, plan.weight_decay)
    state = run.resume_state(model, optimizer)
    start_it = state.iteration if state else 0
    sampler = PatchSampler(train_cases, patch_size=plan.patch_size, batch_size=plan.batch_size,
                           foreground_oversample=plan.foreground_oversample, seed=plan.seed + start_it)
    spacing_zyx = (plan.target_spacing[2], plan.target_spacing[1], plan.target_spacing[0])
    augmenter = BatchAugmenter(_aug_spec(plan), dims=plan.dims,
                               spacing_zyx=spacing_zyx[-plan.dims:], seed=plan.seed + start_it,
                               intensity_channels=plan.in_channels)  # cascade channels: spatial transforms only
    loss = DeepSupervisionLoss(DiceCELoss())
    lr_at = schedule(plan.schedule, plan.learning_rate)
    loop_callbacks: list[Callback] = [
        LogCallback(label=f"train {fold_name}"), *callbacks,
        CheckpointCallback(fold_dir / "checkpoint.pt", model, optimizer, every_s=300),
        CurveCallback(fold_dir / "training_curve.png", fold_dir / "training_log.json"),
    ]
    if options.validate_every_minutes and val_cases:
        periodic = val_cases[: options.max_val_cases] if options.max_val_cases else val_cases
        loop_callbacks.insert(1, ValidationCallback(options.validate_every_minutes * 60,
                                                    lambda: validate_cases(model, periodic, plan,
                                                                           autocast_bf16=precision is not None)))
    t0 = time.perf_counter()
    hazards = (bf16_conv3d_hazards(model, (plan.network_in_channels, *plan.patch_size))
               if plan.dims == 3 and precision is not None else [])
    bf16 = precision is not None and not hazards
    if hazards:
        logger.warning("training in float32: bf16 Conv3d weight gradients are wrong on this CPU for feature maps "
                       "of depth 1 < Z < kernel depth (found %s)", sorted(set(hazards)))
    state = train_loop(model, optimizer, iter(sampler), loss, max_iterations=plan.iterations, lr_at=lr_at,
                       minutes=plan.minutes, state=state, callbacks=loop_callbacks, transform=augmenter,
                       autocast_bf16=bf16)
    train_s = time.perf_counter() - t0
    run.save_weights(model)
    metrics: dict[str, Any] = {
        "fold": fold_name, "n_train": len(train_ids), "n_val": len(val_ids), "iterations": state.iteration,
        "autocast_bf16": bf16, "precision": precision_name(torch.bfloat16 if bf16 else None),
        "precision_option": options.precision,
        "training_minutes": round(state.elapsed_s / 60, 2), "stop_reason": state.stop_reason,
        "wall_minutes_this_run": round(train_s / 60, 2), "curve": state.validation,
        "threads": torch.get_num_threads(),
    }
    if val_cases:
        final = validate_cases(model, val_cases, plan, autocast_bf16=precision is not None)  # forward only
        metrics["validation"] = {k: v for k, v in final.items() if k != "dice_per_case"}
        metrics["validation"]["cases"] = dict(zip(val_ids, final["dice_per_case"]))
        metrics["postprocess"] = decide_postprocess(run.out, fold_name, final)["largest_component_classes"]
    run.write_metrics(metrics)
    return metrics


#: The former name of :func:`train` (``medimg.tasks.segment.trainer.train_segmentation``).
train_segmentation = train


def _record_splits(run: TrainingRun, make: Callable[[], list[dict[str, list[str]]]],
                   record: dict[str, Any]) -> None:
    """``--fold all`` still records the k-fold split of the model's cases in ``splits.json`` (as the folds trained
    later will use it), unless there is one already or the dataset has too few cases to split."""
    path = run.out / "splits.json"
    if path.exists() or run.options.splits:
        return
    try:
        folds = make()
    except InvalidParameterError:
        return
    write_json_atomic(path, {**record, "folds": folds})


def _aug_spec(plan: Any):
    """The plan's augmentation settings as the augmenter's spec (same field names)."""
    from dataclasses import asdict, fields, is_dataclass

    from medimg.augment.batch import AugSpec

    src = asdict(plan.augmentation) if is_dataclass(plan.augmentation) else dict(plan.augmentation)
    names = {f.name for f in fields(AugSpec)}
    return AugSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in src.items() if k in names})
