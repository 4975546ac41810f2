"""`medimg train register`: self-configuring training of a learned deformable registration model.

Steps of :func:`train_registration`: open the dataset (:class:`~medimg.tasks.register.data.RegDataset`), plan
(``plan.json``; see :mod:`medimg.tasks.register.plan` for the rules; ``--set FIELD=VALUE`` overrides), split the
cases into folds (``splits.json``; or reuse another model's split with ``splits=``, e.g. the segmentation model's,
so that its validation cases stay unseen), resample every case of the fold onto the plan's grid (normalised to
[0, 1]; with ``prealign="affine"`` after a classical affine registration to a template case), then train with the
shared loop (:func:`medimg.train.train_loop`, bf16 autocast, cosine schedule, checkpoints, resume, curve) on random
inter-subject pairs of training cases (never a case with itself), and validate on a fixed, seeded list of pairs
of validation cases: label Dice before/after, folding fraction, seconds per pair.

Model folder::

    MODEL_DIR/plan.json, splits.json
    MODEL_DIR/fold_k/model.pt            float32 weights of the RegistrationUNet
    MODEL_DIR/fold_k/metrics.json        budget, iterations, validation (per pair and mean)
    MODEL_DIR/fold_k/training_curve.png  loss; training_log.json; checkpoint.pt (resume)
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from medimg.core.errors import InvalidParameterError
from medimg.io.files import write_json_atomic
from medimg.tasks.register.plan import RegisterPlan
from medimg.train.loop import Callback

logger = logging.getLogger(__name__)

__all__ = ["RegisterTrainOptions", "train_registration", "build_registration_network", "simulate_field",
           "registration_loss", "validate_pairs", "DEFAULT_MINUTES"]

#: Training budget when neither minutes nor iterations are given.
DEFAULT_MINUTES = 15.0


@dataclass(frozen=True)
class RegisterTrainOptions:
    """Options of :func:`train_registration` (the command line's flags)."""

    fold: int | str = 0
    n_folds: int = 5
    minutes: float | None = None
    iterations: int | None = None
    seed: int = 0
    overrides: tuple[tuple[str, Any], ...] = ()
    splits: str | None = None
    resume: bool = False
    threads: int | None = None
    precision: str = "auto"  # auto | fp32 | bf16 (medimg.train.precision.resolve_precision)


def build_registration_network(plan: RegisterPlan) -> torch.nn.Module:
    """The plan's network, built through the model registry."""
    from medimg.models import RegistrationSpec, build_registration_net

    return build_registration_net(RegistrationSpec(name="registration_unet", dims=plan.dims,
                                                   features=plan.features, integrate=plan.integrate,
                                                   steps=plan.steps))


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
    from medimg.tasks.register.transform import integrate_velocity

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


def _pairs_iter(images: np.ndarray, labels: np.ndarray | None, plan: RegisterPlan, batch: int, seed: int
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches for the shared loop: (cat(fixed, moving), cat(fixed, moving, extras)).

    Unsupervised: extras = one-hot labels of fixed then moving (foreground only) when labels exist. Supervised:
    fixed = moving warped by a simulated field, extras = that field (voxels).
    """
    from medimg.tasks.register.transform import warp

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


def registration_loss(plan: RegisterPlan) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``loss(raw field, target)`` for the shared loop (target as built by the pair iterator)."""
    from medimg.tasks.register.losses import (
        bending_energy,
        diffusion_regulariser,
        local_ncc_loss,
        mse_loss,
        mutual_information_loss,
        soft_dice_loss,
    )
    from medimg.tasks.register.transform import integrate_velocity, warp

    dims = plan.dims
    k = max(plan.n_labels - 1, 0)

    def similarity(fixed: torch.Tensor, warped: torch.Tensor) -> torch.Tensor:
        if plan.similarity == "ncc":
            return local_ncc_loss(fixed, warped, window=plan.ncc_window)
        if plan.similarity == "mi":
            return mutual_information_loss(fixed, warped)
        return mse_loss(fixed, warped)

    def regulariser(v: torch.Tensor) -> torch.Tensor:
        return diffusion_regulariser(v) if plan.regulariser == "diffusion" else bending_energy(v)

    def loss(raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raw = raw.float()
        u = integrate_velocity(raw, plan.steps) if plan.integrate else raw
        fixed, moving = target[:, :1], target[:, 1:2]
        if plan.mode == "supervised":
            truth = target[:, 2:2 + dims]
            return (u - truth).pow(2).sum(1).mean() + plan.reg_weight * 0.01 * regulariser(raw)
        total = similarity(fixed, warp(moving, u)) + plan.reg_weight * regulariser(raw)
        if plan.dice_weight > 0 and k > 0 and target.shape[1] >= 2 + 2 * k:
            fixed_oh, moving_oh = target[:, 2:2 + k], target[:, 2 + k:2 + 2 * k]
            total = total + plan.dice_weight * soft_dice_loss(fixed_oh, warp(moving_oh, u),
                                                              include_background=True)
        return total

    return loss


# ---- validation ------------------------------------------------------------------------------------------------
def _dice(a: np.ndarray, b: np.ndarray, values: Sequence[int]) -> dict[str, float]:
    out = {}
    for v in values[1:]:
        pa, pb = a == v, b == v
        denom = int(pa.sum() + pb.sum())
        out[str(v)] = 1.0 if denom == 0 else float(2 * (pa & pb).sum() / denom)
    return out


def network_displacement(nets: Sequence[torch.nn.Module], fixed: np.ndarray, moving: np.ndarray, plan: RegisterPlan,
                         *, autocast_bf16: bool = True) -> torch.Tensor:
    """The displacement ``(1, D, *spatial)`` (voxels) of canonical arrays: every network's raw field (under bf16
    autocast when ``autocast_bf16``, no gradients), averaged, then integrated when the plan's networks predict
    velocities."""
    from medimg.tasks.register.transform import integrate_velocity

    f = torch.from_numpy(np.ascontiguousarray(fixed, dtype=np.float32))[None, None]
    m = torch.from_numpy(np.ascontiguousarray(moving, dtype=np.float32))[None, None]
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast_bf16):
            raws = [net.predict_field(f, m).float() for net in nets]
        raw = torch.stack(raws).mean(0)
        return integrate_velocity(raw, plan.steps) if plan.integrate else raw


def validate_pairs(net: torch.nn.Module, images: np.ndarray, labels: np.ndarray | None, ids: Sequence[str],
                   pairs: Sequence[tuple[int, int]], plan: RegisterPlan, *, autocast_bf16: bool = True
                   ) -> dict[str, Any]:
    """Register validation pairs on the canonical grid: label Dice before/after, folding fraction, seconds."""
    from medimg.metrics.registration import jacobian_statistics
    from medimg.tasks.register.transform import to_metric_layout, warp

    net.eval()
    rows = []
    for i, j in pairs:
        t0 = time.perf_counter()
        u = network_displacement([net], images[i], images[j], plan, autocast_bf16=autocast_bf16)
        seconds = time.perf_counter() - t0
        jac = jacobian_statistics(to_metric_layout(u[0], plan.spacing[::-1]).numpy(), spacing_mm=plan.spacing)
        row: dict[str, Any] = {"fixed": ids[i], "moving": ids[j], "seconds": seconds,
                               "folding_fraction": jac["folding_fraction"],
                               "std_log_jacobian": jac["std_log_jacobian"]}
        if labels is not None and plan.n_labels > 1:
            moved = warp(torch.from_numpy(labels[j].astype(np.float32))[None, None], u, mode="nearest")
            before = _dice(labels[j], labels[i], plan.label_values)
            after = _dice(moved[0, 0].numpy().astype(np.int16), labels[i], plan.label_values)
            row.update(dice_before=before, dice_after=after, mean_dice_before=float(np.mean(list(before.values()))),
                       mean_dice_after=float(np.mean(list(after.values()))))
        rows.append(row)
    summary: dict[str, Any] = {"n_pairs": len(rows), "pairs": rows}
    if rows:
        summary["seconds_mean"] = float(np.mean([r["seconds"] for r in rows]))
        summary["folding_fraction_mean"] = float(np.mean([r["folding_fraction"] for r in rows]))
        if "mean_dice_after" in rows[0]:
            summary["mean_dice_before"] = float(np.mean([r["mean_dice_before"] for r in rows]))
            summary["mean_dice_after"] = float(np.mean([r["mean_dice_after"] for r in rows]))
    summary["definition"] = ("pairs of the fold's validation cases on the plan's grid (centre- or template-aligned "
                             "as in training); labels warped by nearest neighbour; seconds = network + integration")
    return summary


def _val_pairs(n: int, count: int, seed: int) -> list[tuple[int, int]]:
    if n < 2 or count < 1:
        return []
    rng = np.random.default_rng(seed)
    all_pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    idx = rng.choice(len(all_pairs), size=min(count, len(all_pairs)), replace=False)
    return [all_pairs[int(k)] for k in idx]


# ---- folders, plan, splits -------------------------------------------------------------------------------------
def _existing_plan(out: Path) -> RegisterPlan | None:
    path = out / "plan.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidParameterError("unreadable plan in the model folder", path=path, parameter="-o",
                                    found=str(exc), fix="choose a new model folder") from exc
    if not isinstance(data, dict) or data.get("task") != "register":
        raise InvalidParameterError(
            "the model folder holds another kind of model", path=path, parameter="-o",
            expected="a new folder, or a folder written by `medimg train register`",
            found=f"a plan.json of task {data.get('task', 'segment') if isinstance(data, dict) else '?'}",
            fix="choose a new model folder for the registration model")
    return RegisterPlan.from_dict(data)


def _make_plan(ds: Any, out: Path, options: RegisterTrainOptions) -> RegisterPlan:
    from medimg.tasks.register.plan import plan_registration

    plan = _existing_plan(out)
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
        raise InvalidParameterError("the model folder's plan is for other images", path=out / "plan.json",
                                    parameter="-o", expected=f"a {ds.dims}D plan", found=f"{plan.dims}D",
                                    fix="choose a new model folder")
    return plan


def _load_splits(path: str, cases: Sequence[str]) -> list[dict[str, list[str]]]:
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidParameterError("cannot read the splits file", path=p, parameter="--splits",
                                    expected="a splits.json written by medimg (folds of train/val case ids)",
                                    found=str(exc), fix="give the splits.json of another model folder") from exc
    folds = data.get("folds") if isinstance(data, dict) else data
    if not isinstance(folds, list) or not all(isinstance(f, dict) and "train" in f and "val" in f for f in folds):
        raise InvalidParameterError("not a splits file", path=p, parameter="--splits",
                                    expected="{'folds': [{'train': [...], 'val': [...]}, ...]}",
                                    found=type(folds).__name__, fix="give the splits.json of another model folder")
    known = set(cases)
    unknown = sorted({c for f in folds for c in f["train"] + f["val"]} - known)
    if unknown:
        raise InvalidParameterError(f"{len(unknown)} case(s) of the splits file are not in the dataset", path=p,
                                    parameter="--splits", expected="case ids of this dataset",
                                    found=", ".join(unknown[:3]), fix="give the splits of a model of this dataset")
    return [{"train": list(f["train"]), "val": list(f["val"])} for f in folds]


def _fold_cases(ds: Any, out: Path, options: RegisterTrainOptions) -> tuple[str, list[str], list[str], Any]:
    from medimg.train.splits import make_splits

    if options.fold == "all":
        return "fold_all", list(ds.cases), [], None
    if isinstance(options.fold, bool) or not isinstance(options.fold, (int, np.integer)):
        raise InvalidParameterError("bad fold", parameter="--fold", expected="a fold number or 'all'",
                                    found=repr(options.fold), fix="e.g. --fold 0, or --fold all")
    new = None
    if options.splits:
        folds = _load_splits(options.splits, ds.cases)
        new = {"source": str(options.splits), "folds": folds}
    elif (out / "splits.json").is_file():
        folds = _load_splits(str(out / "splits.json"), ds.cases)
    else:
        folds = make_splits(ds.cases, options.n_folds, options.seed)
        new = {"seed": options.seed, "n_folds": options.n_folds, "folds": folds}
    k = int(options.fold)
    if not 0 <= k < len(folds):
        raise InvalidParameterError("fold out of range", parameter="--fold", expected=f"0..{len(folds) - 1}",
                                    found=k, fix="pick an existing fold, or 'all'")
    return f"fold_{k}", list(folds[k]["train"]), list(folds[k]["val"]), new


def _preprocess(ds: Any, cases: Sequence[str], plan: RegisterPlan, template: Any, what: str
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """Every case on the plan's grid (centred on itself, or affinely aligned to ``template``)."""
    from medimg.tasks.register.data import canonical_grid, to_canonical

    images, labels = [], []
    t0 = time.perf_counter()
    for n, case in enumerate(cases):
        image, label = ds.load_image(case), ds.load_label(case)
        tx = None
        if template is not None:
            from medimg.classical.registration import register

            ref_image, ref = template
            tx = register(ref_image, image, method="affine", metric="mattes", init="moments", levels=(2, 1),
                          seed=0).transform
        else:
            ref = canonical_grid(image, plan.spacing, plan.grid)
        images.append(to_canonical(image, ref, transform=tx, percentiles=plan.percentiles))
        if label is not None and plan.n_labels > 1:
            labels.append(to_canonical(label, ref, transform=tx, label=True))
        if (n + 1) % 50 == 0:
            logger.info("preprocessed %d/%d %s (%.0f s)", n + 1, len(cases), what, time.perf_counter() - t0)
    arr = np.stack(images) if images else np.zeros((0, *plan.grid), np.float32)
    return arr, (np.stack(labels) if labels else None)


def _template(ds: Any, cases: Sequence[str], plan: RegisterPlan) -> tuple[Any, Any]:
    """The training case of median size (ties: first id) and its grid: the space of affine pre-alignment."""
    from medimg.tasks.register.data import canonical_grid

    sizes = [(int(np.prod(ds.header(c)[1])), c) for c in cases]
    sizes.sort()
    case = sizes[len(sizes) // 2][1]
    image = ds.load_image(case)
    return (image, canonical_grid(image, plan.spacing, plan.grid)), case


# ---- the command -----------------------------------------------------------------------------------------------
def train_registration(data: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                       options: RegisterTrainOptions | None = None, *,
                       callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Train one fold (or every case) of a learned registration model; returns the fold's metrics.

    Raises:
        ImageReadError: the dataset cannot be opened.
        InvalidParameterError: bad options or plan overrides, a model folder of another kind, too few cases.

    Example:
        >>> m = train_registration("../shared/data/hippocampus", "runs/reg", RegisterTrainOptions(minutes=30))
        ... # doctest: +SKIP
        >>> m["validation"]["mean_dice_after"]   # doctest: +SKIP
        0.80
    """
    from medimg.plans.model_folder import check_network_memory
    from medimg.tasks.register.data import RegDataset
    from medimg.train import CheckpointCallback, CurveCallback, LogCallback, load_checkpoint, make_optimizer
    from medimg.train.loop import schedule, train_loop
    from medimg.train.outputs import check_fold_not_trained, check_model_folder_outside_inputs
    from medimg.train.precision import bf16_conv3d_hazards, precision_name, resolve_precision

    options = options or RegisterTrainOptions()
    precision = resolve_precision(options.precision, "cpu")
    if options.threads:
        torch.set_num_threads(int(options.threads))
    for name in ("minutes", "iterations"):
        v = getattr(options, name)
        if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise InvalidParameterError(f"invalid {name}", parameter=f"--{name}", expected="a positive number",
                                        found=v, fix=f"e.g. --{name} {15 if name == 'minutes' else 1000}")
    out = Path(out_dir)
    # nothing is written before these checks: the model folder is not the dataset, a trained fold is kept
    check_model_folder_outside_inputs(out, [data, options.splits])
    check_fold_not_trained(out, options.fold, resume=options.resume)
    ds = RegDataset.open(data)
    if len(ds) < 2:
        raise InvalidParameterError("too few images", path=ds.root, parameter="dataset", expected=">= 2 images",
                                    found=len(ds), fix="add images")
    plan = _make_plan(ds, out, options)
    fold_name, train_ids, val_ids, new_splits = _fold_cases(ds, out, options)
    if len(train_ids) < (1 if plan.mode == "supervised" else 2):
        raise InvalidParameterError("too few training cases in this fold", parameter="--fold",
                                    expected="at least 2 (pairs of different cases)", found=len(train_ids),
                                    fix="use fewer folds or --fold all")
    fold_index = len(train_ids) if options.fold == "all" else int(options.fold)
    check_network_memory(batch=plan.batch_size, spatial=plan.grid, channels=max(int(plan.features[0]), 2),
                         path=out / "plan.json", fields="grid, batch_size")
    torch.manual_seed(options.seed * 1000 + fold_index)
    net = build_registration_network(plan)
    # every check passed: from here on the model folder is written
    out.mkdir(parents=True, exist_ok=True)
    plan.save(out / "plan.json")
    if new_splits is not None:
        write_json_atomic(out / "splits.json", new_splits)
    fold_dir = out / fold_name
    fold_dir.mkdir(exist_ok=True)

    t_pre = time.perf_counter()
    template, template_case = (_template(ds, train_ids, plan) if plan.prealign == "affine" else (None, None))
    x_train, l_train = _preprocess(ds, train_ids, plan, template, "training cases")
    x_val, l_val = _preprocess(ds, val_ids, plan, template, "validation cases") if val_ids else (None, None)
    preprocess_s = time.perf_counter() - t_pre

    model = _PairNet(net)
    optimizer = make_optimizer(model.parameters(), "adamw", plan.lr, plan.weight_decay)
    ckpt_path = fold_dir / "checkpoint.pt"
    state = None
    if options.resume:
        if ckpt_path.exists():
            state = load_checkpoint(ckpt_path, model, optimizer)
        else:
            logger.warning("--resume: no checkpoint at %s; training from the start", ckpt_path)
    start_it = state.iteration if state else 0
    batch = int(min(plan.batch_size, max(1, len(train_ids))))
    batches = _pairs_iter(x_train, l_train, plan, batch, options.seed * 7919 + fold_index + start_it)
    hazards = bf16_conv3d_hazards(model, (2, *plan.grid)) if plan.dims == 3 and precision is not None else []
    bf16 = precision is not None and not hazards
    minutes = options.minutes
    if minutes is None and options.iterations is None:
        minutes = DEFAULT_MINUTES
    loop_callbacks: list[Callback] = [
        LogCallback(label=f"train {fold_name}"), *callbacks,
        CheckpointCallback(ckpt_path, model, optimizer, every_s=300, extra=lambda: {"fold": fold_name}),
        CurveCallback(fold_dir / "training_curve.png", fold_dir / "training_log.json",
                      loss_label="similarity + regulariser" + (" + Dice" if plan.dice_weight else "")
                      if plan.mode == "unsupervised" else "field MSE (voxels^2)"),
    ]
    t0 = time.perf_counter()
    state = train_loop(model, optimizer, batches, registration_loss(plan), max_iterations=options.iterations,
                       lr_at=schedule("cosine", plan.lr), minutes=minutes, state=state, callbacks=loop_callbacks,
                       autocast_bf16=bf16, grad_clip=5.0)
    train_s = time.perf_counter() - t0
    part = fold_dir / ".model.pt.part"
    torch.save(net.state_dict(), part)
    os.replace(part, fold_dir / "model.pt")
    metrics: dict[str, Any] = {
        "fold": fold_name, "n_train": len(train_ids), "n_val": len(val_ids), "iterations": state.iteration,
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
    if template_case is not None:
        metrics["prealign_template"] = template_case
    if x_val is not None and len(x_val) >= 2:
        pairs = _val_pairs(len(x_val), plan.val_pairs, options.seed)
        metrics["validation"] = validate_pairs(net, x_val, l_val, val_ids, pairs, plan,
                                               autocast_bf16=precision is not None)
        v = metrics["validation"]
        if "mean_dice_after" in v:
            logger.info("%s validation (%d pairs): Dice %.4f -> %.4f, folding %.5f", fold_name, v["n_pairs"],
                        v["mean_dice_before"], v["mean_dice_after"], v["folding_fraction_mean"])
    write_json_atomic(fold_dir / "metrics.json", metrics)
    return metrics
