"""``medimg train segment``: dataset folder -> verified, fingerprinted, planned, cached, trained model folder.

A model folder describes itself (nnU-Net habit): ``plan.json`` (frozen, versioned), ``fingerprint.json``,
``splits.json`` (k-fold split by case, seeded) and one ``fold_<k>/`` per trained fold with ``model.pt``
(weights), ``metrics.json`` (validation Dice per class and the Dice-vs-minutes curve), ``training_curve.png``
and ``checkpoint.pt`` (to resume; not needed for prediction).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from medimg.core.errors import InvalidParameterError
from medimg.io.files import write_json_atomic
from medimg.train.loop import Callback, TrainState

logger = logging.getLogger(__name__)

__all__ = ["TrainOptions", "train_segmentation", "make_splits", "case_groups", "validate_cases", "dice_per_class",
           "decide_postprocess"]


@dataclass(frozen=True)
class TrainOptions:
    """Options of one training run (everything else lives in the plan)."""

    fold: int | str = 0  # a fold number, or "all" to train on every case
    n_folds: int = 5
    minutes: float | None = None
    iterations: int | None = None
    seed: int = 0
    overrides: tuple[tuple[str, Any], ...] = ()
    resume: bool = False
    validate_every_minutes: float | None = None
    max_val_cases: int | None = None  # cases used by the periodic validation (the final one uses all)
    threads: int | None = None
    cache_dir: str | None = None
    foreground_only: bool = False  # 2D layouts: binarise instance maps (each nucleus id -> 1)
    group_by: str | None = None  # regex; its first group (or whole match) names the patient: one fold per patient
    precision: str = "auto"  # auto | fp32 | bf16 (medimg.train.precision.resolve_precision)


def case_groups(cases: Sequence[str], pattern: str | None) -> dict[str, str]:
    """Group id of each case: the first capture group (or the whole match) of ``pattern`` searched in the case id.

    With ``pattern=None`` every case is its own group. Used to keep the images of one patient in one fold, e.g.
    ``r"^(\\d+)_"`` puts HC18's ``010_HC`` and ``010_2HC`` (the same fetus) together.

    Raises:
        InvalidParameterError: ``pattern`` is not a valid regular expression, or does not match a case id.

    Example:
        >>> case_groups(["010_HC", "010_2HC", "011_HC"], r"^(\\d+)_")
        {'010_HC': '010', '010_2HC': '010', '011_HC': '011'}
    """
    if pattern is None:
        return {c: c for c in cases}
    try:
        rx = re.compile(pattern)
    except re.error as err:
        raise InvalidParameterError("not a regular expression", parameter="--group-by", found=pattern,
                                    expected="a Python regex, e.g. '^(\\d+)_'", fix=f"fix the pattern ({err})") from err
    out = {}
    for case in cases:
        m = rx.search(case)
        if m is None:
            raise InvalidParameterError("group pattern does not match a case id", parameter="--group-by",
                                        expected=f"a match in every case id, e.g. in '{case}'", found=pattern,
                                        fix="write a pattern that matches every case, with the patient id as "
                                        "its first group")
        out[case] = m.group(1) if rx.groups else m.group(0)
    return out


def make_splits(cases: Sequence[str], n_folds: int, seed: int, *,
                groups: dict[str, str] | None = None) -> list[dict[str, list[str]]]:
    """k-fold split by case id (shuffled with ``seed``); every case is validated exactly once.

    With ``groups`` (case id -> group id, see :func:`case_groups`) whole groups go to one fold, so no patient has
    images on both sides of a split.
    """
    group_of = groups or {c: c for c in cases}
    keys = sorted({group_of[c] for c in cases})
    if n_folds < 2 or n_folds > len(keys):
        raise InvalidParameterError("bad number of folds", parameter="--folds",
                                    expected=f"2..{len(keys)} (number of {'groups' if groups else 'cases'})",
                                    found=n_folds, fix="use --folds 5, or --fold all to train on every case")
    np.random.default_rng(seed).shuffle(keys)
    fold_of = {g: k % n_folds for k, g in enumerate(keys)}
    folds = [sorted(c for c in cases if fold_of[group_of[c]] == k) for k in range(n_folds)]
    return [{"train": sorted(c for j, f in enumerate(folds) if j != k for c in f), "val": folds[k]}
            for k in range(n_folds)]


def dice_per_class(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> list[float]:
    """Dice of classes 1..K-1 (1.0 when a class is absent from both)."""
    out = []
    for c in range(1, n_classes):
        p, t = pred == c, truth == c
        denom = p.sum() + t.sum()
        out.append(1.0 if denom == 0 else float(2 * (p & t).sum() / denom))
    return out


def validate_cases(model: torch.nn.Module, cases: Sequence[tuple[np.ndarray, np.ndarray]], plan: Any, *,
                   autocast_bf16: bool = True) -> dict[str, Any]:
    """Sliding-window prediction of preprocessed cases and Dice per class on the plan's grid, also after keeping the
    largest connected component of each class (``dice_per_class_largest_component``, for :func:`decide_postprocess`).
    """
    from medimg.infer.postprocess import keep_largest_component
    from medimg.infer.sliding import sliding_window_predict

    model.eval()
    dices, dices_lcc = [], []

    def fn(x: torch.Tensor) -> torch.Tensor:
        return model(x)

    for img, lab in cases:
        probs = sliding_window_predict(fn, torch.from_numpy(np.array(img, dtype=np.float32)),
                                       patch_size=tuple(plan.patch_size), n_classes=plan.n_classes, overlap=0.5,
                                       batch_size=plan.batch_size, autocast_bf16=autocast_bf16)
        pred = probs.argmax(0).numpy()
        dices.append(dice_per_class(pred, lab, plan.n_classes))
        dices_lcc.append(dice_per_class(keep_largest_component(pred, range(1, plan.n_classes)), lab, plan.n_classes))
    model.train()
    arr = np.array(dices)
    per_class = arr.mean(axis=0).tolist() if len(arr) else []
    return {"n_cases": len(dices), "dice_per_class": per_class,
            "mean_dice": float(np.mean(per_class)) if per_class else float("nan"),
            "dice_per_class_largest_component": np.array(dices_lcc).mean(axis=0).tolist() if dices_lcc else [],
            "dice_per_case": arr.tolist()}


#: How ``postprocess.json`` is decided (the rule of benchmarks/segmentation.py --write-postprocess).
POSTPROCESS_RULE = ("keep the largest connected component of a class when that raises its mean Dice on the "
                    "validation cases of the trained folds")


def decide_postprocess(out_dir: str | os.PathLike[str], fold_name: str, validation: dict[str, Any]
                       ) -> dict[str, Any]:
    """Write ``out_dir/postprocess.json`` from the validation Dice of this fold (with and without keeping the largest
    component) and of the folds decided before; returns what was written.

    Each fold's figures are kept under ``per_fold``; the decision pools the folds (mean weighted by their number of
    validation cases): class ``c`` gets largest-component postprocessing when that raises its pooled mean Dice.
    :func:`medimg.tasks.segment.predict.predict_image` follows the file (``largest_component=None``).
    """
    path = Path(out_dir) / "postprocess.json"
    per_fold: dict[str, Any] = {}
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(old, dict) and isinstance(old.get("per_fold"), dict):
                per_fold = {k: v for k, v in old["per_fold"].items() if isinstance(v, dict)}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            per_fold = {}
    per_fold[fold_name] = {"n_cases": int(validation["n_cases"]), "dice": validation["dice_per_class"],
                           "dice_largest_component": validation["dice_per_class_largest_component"]}
    n_classes = len(validation["dice_per_class"]) + 1
    keep = []
    folds = [f for f in per_fold.values() if len(f.get("dice", [])) == n_classes - 1
             and len(f.get("dice_largest_component", [])) == n_classes - 1 and f.get("n_cases", 0) > 0]
    total = sum(f["n_cases"] for f in folds)
    for c in range(1, n_classes):
        plain = sum(f["n_cases"] * f["dice"][c - 1] for f in folds) / total
        lcc = sum(f["n_cases"] * f["dice_largest_component"][c - 1] for f in folds) / total
        if lcc > plain:
            keep.append(c)
    payload = {"largest_component_classes": keep,
               "decided_on": f"validation cases of {', '.join(sorted(per_fold))} ({total} cases)",
               "rule": POSTPROCESS_RULE, "per_fold": per_fold}
    write_json_atomic(path, payload)
    return payload


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


def train_segmentation(dataset_root: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                       options: TrainOptions = TrainOptions(), *,
                       callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Train one fold (or all cases) of a segmentation model; returns the fold's metrics.

    The plan is computed on the first run and reused from ``out_dir/plan.json`` by later folds, so that all
    folds of a model share one plan; ``overrides`` (e.g. ``("network.base_channels", 24)``) change it.
    """
    from medimg.augment.batch import BatchAugmenter
    from medimg.models import NetworkSpec, build_network
    from medimg.plans import (
        Plan,
        PreprocessedCache,
        SegDataset,
        compute_fingerprint,
        plan_segmentation,
        verify_dataset,
    )
    from medimg.plans.model_folder import check_network_memory, model_task
    from medimg.tasks.segment.losses import DeepSupervisionLoss, DiceCELoss
    from medimg.tasks.segment.sampling import PatchSampler
    from medimg.train import (
        CheckpointCallback,
        CurveCallback,
        LogCallback,
        load_checkpoint,
        make_optimizer,
        train_loop,
    )
    from medimg.train.loop import schedule
    from medimg.train.outputs import check_fold_not_trained, check_model_folder_outside_inputs
    from medimg.train.precision import precision_name, resolve_precision

    if options.threads:
        torch.set_num_threads(options.threads)
    out = Path(out_dir)
    # nothing is written before these checks: the model folder is not the dataset, a trained fold is kept
    check_model_folder_outside_inputs(out, [dataset_root])
    check_fold_not_trained(out, options.fold, resume=options.resume)
    precision = resolve_precision(options.precision, "cpu")
    ds = SegDataset.open(dataset_root, foreground_only=options.foreground_only)
    report = verify_dataset(ds)
    report.raise_if_bad()
    plan_path = out / "plan.json"
    fingerprint = None
    if plan_path.exists():
        if model_task(out) != "segment":
            raise InvalidParameterError("the model folder holds another kind of model", path=plan_path,
                                        parameter="-o", expected="a new folder, or one written by `medimg train "
                                        "segment`", found=f"a {model_task(out)} plan",
                                        fix="choose a new model folder")
        plan = Plan.load(plan_path)
        if options.overrides:
            plan = plan.replace(**dict(options.overrides))
    else:
        fingerprint = compute_fingerprint(ds, seed=options.seed)
        plan = plan_segmentation(fingerprint, minutes=options.minutes or 30.0,
                                 overrides=dict(options.overrides) or None)
    if options.iterations is not None or options.minutes is not None or options.seed != plan.seed:
        changes: dict[str, Any] = {"seed": options.seed}
        if options.iterations is not None:
            changes["iterations"] = int(options.iterations)
        if options.minutes is not None:
            changes["minutes"] = float(options.minutes)
        plan = plan.replace(**changes)
    check_network_memory(batch=plan.batch_size, spatial=plan.patch_size,
                         channels=max(int(plan.network.get("base_channels", 1) or 1), plan.n_classes),
                         path=plan_path, fields="patch_size, batch_size")
    out.mkdir(parents=True, exist_ok=True)
    if fingerprint is not None:
        write_json_atomic(out / "fingerprint.json", fingerprint.to_dict())
    plan.save(plan_path)

    splits_path = out / "splits.json"
    if splits_path.exists():
        splits = json.loads(splits_path.read_text())["folds"]
    else:
        splits = make_splits(ds.cases, options.n_folds, options.seed,
                             groups=case_groups(ds.cases, options.group_by) if options.group_by else None)
        write_json_atomic(splits_path, {"seed": options.seed, "n_folds": options.n_folds, "group_by": options.group_by,
                                   "folds": splits})
    if options.fold == "all":
        train_ids, val_ids, fold_name = list(ds.cases), [], "fold_all"
    else:
        k = int(options.fold)
        if not 0 <= k < len(splits):
            raise InvalidParameterError("fold out of range", parameter="--fold", expected=f"0..{len(splits) - 1}",
                                        found=k, fix="pick an existing fold or 'all'")
        train_ids, val_ids, fold_name = splits[k]["train"], splits[k]["val"], f"fold_{k}"
    fold_dir = out / fold_name
    fold_dir.mkdir(exist_ok=True)

    cache = PreprocessedCache(options.cache_dir, plan, ds) if options.cache_dir else PreprocessedCache(None, plan, ds)
    cache.build(list(train_ids) + list(val_ids))
    train_cases = [cache.get(c)[:2] for c in train_ids]
    val_cases = [cache.get(c)[:2] for c in val_ids]

    torch.manual_seed(plan.seed)
    spec = NetworkSpec.from_dict(plan.network)
    model = build_network(spec)
    optimizer = make_optimizer(model.parameters(), plan.optimizer, plan.learning_rate, plan.weight_decay)
    ckpt_path = fold_dir / "checkpoint.pt"
    state = load_checkpoint(ckpt_path, model, optimizer) if options.resume and ckpt_path.exists() else None
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
        CheckpointCallback(ckpt_path, model, optimizer, every_s=300),
        CurveCallback(fold_dir / "training_curve.png", fold_dir / "training_log.json"),
    ]
    if options.validate_every_minutes and val_cases:
        periodic = val_cases[: options.max_val_cases] if options.max_val_cases else val_cases
        loop_callbacks.insert(1, ValidationCallback(options.validate_every_minutes * 60,
                                               lambda: validate_cases(model, periodic, plan,
                                                                      autocast_bf16=precision is not None)))
    t0 = time.perf_counter()
    from medimg.train.precision import bf16_conv3d_hazards

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
    torch.save({k: v.to(torch.float16) if v.is_floating_point() else v for k, v in model.state_dict().items()},
               fold_dir / ".model.pt.part")
    os.replace(fold_dir / ".model.pt.part", fold_dir / "model.pt")
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
        metrics["postprocess"] = decide_postprocess(out, fold_name, final)["largest_component_classes"]
    write_json_atomic(fold_dir / "metrics.json", metrics)
    return metrics


def _aug_spec(plan: Any):
    """The plan's augmentation settings as the augmenter's spec (same field names)."""
    from dataclasses import asdict, fields, is_dataclass

    from medimg.augment.batch import AugSpec

    src = asdict(plan.augmentation) if is_dataclass(plan.augmentation) else dict(plan.augmentation)
    names = {f.name for f in fields(AugSpec)}
    return AugSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in src.items() if k in names})
