"""``medimg train classify``: dataset (class folders, CSV, MedMNIST) -> verified, planned, trained, calibrated model.

A classification model folder describes itself (nnU-Net habit), like a segmentation one:

* ``plan.json``: the :class:`~medimg.tasks.classify.plan.ClassifyPlan` (frozen, versioned), made on the first run
  and reused by later folds, so all folds of a model share one plan;
* ``splits.json``: the stratified k-fold split by sample id (seeded; whole groups per fold with ``group_by`` or a
  CSV ``group``/``patient`` column);
* one ``fold_<k>/`` (or ``fold_all/``) per trained fold with ``model.pt`` (float16 state dict, loaded as float32),
  ``calibration.json`` (the temperature T fitted on the validation logits), ``metrics.json`` (AUC, accuracy,
  balanced accuracy, ECE before/after T, confusion matrix, per-class sensitivity/specificity),
  ``reliability.png``, ``validation_predictions.csv``, ``training_curve.png``, ``training_log.json`` and
  ``checkpoint.pt`` (to resume; not needed for prediction).

Calibration set: the temperature is fitted on the fold's validation samples (or on ``val_data`` when given) and
the calibrated metrics of ``metrics.json`` are measured on that same set, so they are optimistic. Benchmarks must
report metrics on a separate held-out split (e.g. MedMNIST ``val``/``test``) predicted with
:func:`medimg.tasks.classify.predictor.predict`.

Memory: every sample is preprocessed once (:func:`~medimg.tasks.classify.preprocess.preprocess_sample`) and kept in
memory as float32, ``N x in_channels x prod(input_size) x 4`` bytes; above ``max_data_gb`` (default 4 GB) the run
stops before preprocessing with an error that says how to shrink it. AdrenalMNIST3D at 64^3: 1,286 x 1 MB = 1.3 GB;
BUSI at 224^2: 628 x 0.2 MB = 0.13 GB.

Precision: training runs under bf16 autocast, except when the network has a 3D convolution whose input depth Z
lies strictly between 1 and the kernel depth (for example a 3x3x3 convolution on a 2 x 2 x 2 feature map: ResNet-18
on 16^3 inputs with the small stem, or on 64^3 inputs with the ImageNet stem). There the bf16 weight gradient of
PyTorch 2.13's CPU convolution reads memory it never wrote (garbage or NaN gradients, varying from run to run; see
:func:`bf16_conv3d_hazards`), so such runs train in float32; ``metrics.json`` records which (``autocast_bf16``).

Seeds: ``seed`` is the one seed of a run: it is written into the plan, and the weight initialisation, the batch
sampler and the augmenter each get a seed derived from it and the fold (recorded in ``metrics.json``). With
``deterministic=True`` the run is repeatable bit for bit on the same machine and thread count: PyTorch's
deterministic algorithms are switched on and only the iteration budget stops the run (a wall-clock budget would
make the learning-rate schedule depend on timing).

The run goes through :class:`medimg.train.run.TrainingRun` (checks before anything is written, the folder's plan,
resume, the atomic ``model.pt`` and ``metrics.json``); options are the one :class:`medimg.train.run.TrainOptions`,
of which classification uses the common ones and :data:`OPTIONS`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from medimg.core.errors import InvalidParameterError, MedimgError
from medimg.io.csv_safe import safe_writer
from medimg.io.files import atomic_output, write_json_atomic
from medimg.tasks.classify import OPTIONS
from medimg.tasks.classify.data import (
    make_classification_splits,
    open_classification_dataset,
    verify_classification_dataset,
)
from medimg.tasks.classify.evaluate import validation_metrics
from medimg.tasks.classify.losses import LOSS_LABELS, classification_loss
from medimg.tasks.classify.plan import ClassifyPlan
from medimg.tasks.classify.planner import plan_classification
from medimg.tasks.classify.preprocess import preprocess_samples
from medimg.train.loop import Callback
from medimg.train.precision import bf16_conv3d_hazards
from medimg.train.run import TrainingRun, TrainOptions, derived_seeds

logger = logging.getLogger(__name__)

__all__ = [
    "OPTIONS",
    "train",
    "make_classification_splits",
    "bf16_conv3d_hazards",
    "PLAN_NETWORK_FIELDS",
    "TRANSFER_FIELDS",
    "pretrained_classifier",
    "transfer_weights",
]


#: Plan fields that decide the weights' shapes or the preprocessing: they may not change once a fold is trained.
PLAN_NETWORK_FIELDS = ("task", "class_names", "dims", "in_channels", "input_size", "resize", "normalization",
                       "percentiles", "channel_mean", "channel_std", "model", "model_width", "stem", "dropout", "se")


# ---- transfer from our own models --------------------------------------------------------------------------------
#: Plan fields copied from the model named by ``init_from`` unless overridden: the network must match to transfer.
TRANSFER_FIELDS = ("model", "model_width", "stem", "se")


def pretrained_classifier(source: str | os.PathLike[str], dims: int) -> tuple[dict[str, torch.Tensor], Any, str]:
    """The weights, plan and name of a trained classification model to start from (a folder or a zoo name).

    The fold ``fold_all`` is taken when it exists, else the lowest fold. Only models trained by medimg are
    accepted: nothing is downloaded.

    Raises:
        InvalidParameterError: not a classification model folder, no trained fold, or another dimensionality.
    """
    from medimg.tasks.registry import task_of_folder
    from medimg.train.callbacks import load_weights
    from medimg.zoo import resolve_model

    root = resolve_model(source)
    try:
        is_classifier = task_of_folder(root) == "classify"
    except MedimgError:
        is_classifier = False
    if not is_classifier:
        raise InvalidParameterError("not a classification model folder", path=root, parameter="--init",
                                    expected="a folder written by `medimg train classify` (plan.json, fold_*/model.pt)"
                                    " or a shipped classifier name", found="no classification plan",
                                    fix="give a trained classification model (see `medimg models`)")
    files = sorted(root.glob("fold_*/model.pt"))
    if not files:
        raise InvalidParameterError("the model has no trained fold", path=root, parameter="--init",
                                    expected="fold_*/model.pt", found="none", fix="train it first")
    chosen = next((f for f in files if f.parent.name == "fold_all"), files[0])
    plan = ClassifyPlan.load(root / "plan.json")
    if int(plan.dims) != int(dims):
        raise InvalidParameterError("the starting model has another dimensionality", path=root, parameter="--init",
                                    expected=f"a {dims}D classifier", found=f"a {plan.dims}D classifier",
                                    fix="start from a model trained on data of the same dimensionality")
    state = load_weights(chosen)
    return state, plan, f"{root.name}/{chosen.parent.name}"


def transfer_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Copy every tensor of ``state`` whose name and shape match ``model`` (cast to the model's dtype).

    The rest keeps its fresh initialisation: typically the head when the classes differ and the first convolution
    when the channel count differs. Returns ``loaded``/``kept_fresh`` tensor names and ``fraction`` (share of the
    model's parameter elements that were loaded).

    Example:
        >>> from medimg.models import ClassifierSpec, build_classifier
        >>> src = build_classifier(ClassifierSpec(name="resnet18", dims=2, width=4, n_classes=3))
        >>> dst = build_classifier(ClassifierSpec(name="resnet18", dims=2, width=4, n_classes=2))
        >>> report = transfer_weights(dst, src.state_dict())
        >>> report["kept_fresh"], report["fraction"] > 0.9
        (['head.fc.bias', 'head.fc.weight'], True)
    """
    own = model.state_dict()
    take = {k: v.to(own[k].dtype) for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    model.load_state_dict(take, strict=False)
    params = dict(model.named_parameters())
    total = sum(p.numel() for p in params.values())
    loaded = sum(params[k].numel() for k in take if k in params)
    return {"loaded": sorted(take), "kept_fresh": sorted(k for k in own if k not in take),
            "fraction": loaded / max(total, 1)}


# ---- batches, augmentation ---------------------------------------------------------------------------------------
def _batches(x: np.ndarray, y: np.ndarray, *, batch_size: int, balanced: bool, n_classes: int,
             seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless batches: uniform = shuffled epochs without replacement; balanced = class first, then a sample."""
    rng = np.random.default_rng(seed)
    n = len(x)
    if balanced:
        pools = [np.flatnonzero(y == k) for k in range(n_classes)]
        pools = [p for p in pools if p.size]
        while True:
            cls = rng.integers(len(pools), size=batch_size)
            idx = np.array([pools[c][rng.integers(pools[c].size)] for c in cls])
            yield torch.from_numpy(x[idx]), torch.from_numpy(y[idx])
    order = np.empty(0, np.int64)
    while True:
        while order.size < batch_size:
            order = np.concatenate([order, rng.permutation(n)])
        idx, order = order[:batch_size], order[batch_size:]
        yield torch.from_numpy(x[idx]), torch.from_numpy(y[idx])


class _AugmentImages:
    """The batch augmenter on images only: it needs a label map, so it gets a dummy one; class labels pass."""

    def __init__(self, augmenter: Any) -> None:
        self.augmenter = augmenter

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dummy = torch.zeros((image.shape[0], *image.shape[2:]), dtype=torch.int64)
        return self.augmenter(image, dummy)[0], label


# ---- the run -------------------------------------------------------------------------------------------------------
def _verify(ds: Any, what: str) -> None:
    """Raise one error listing (up to five of) the problems of a dataset."""
    report = verify_classification_dataset(ds)
    for case, w, _ in report.warnings[:5]:
        logger.warning("%s: sample '%s': %s", what, case, w)
    if report.problems:
        n = len(report.problems)
        listed = "; ".join(f"'{c}': {w}" for c, w, _ in report.problems[:5]) + (f"; and {n - 5} more" if n > 5
                                                                                else "")
        raise InvalidParameterError(
            f"{what} has {n} problem(s): {listed}", path=ds.source, expected="a dataset that verifies cleanly",
            fix=f"{report.problems[0][2]} (list every problem with verify_classification_dataset(ds).to_text())",
        )


def _check_model_folder(plan_path: Path) -> None:
    """Refuse a model folder whose plan.json is another task's (by its task field), naming the kind."""
    from medimg.tasks.registry import task_of_folder

    if plan_path.is_file() and task_of_folder(plan_path.parent) != "classify":
        raise InvalidParameterError(
            "the model folder holds another kind of plan (a segmentation model?)", path=plan_path,
            parameter="-o", expected="a new folder, or a folder written by `medimg train classify`",
            found="a plan.json without the classification plan fields",
            fix="choose a new model folder for the classification model",
        )


def _trained_folds(out: Path) -> list[str]:
    return sorted(p.parent.name for p in out.glob("fold_*/model.pt"))


def _plan(ds: Any, out: Path, options: TrainOptions, old: ClassifyPlan | None) -> ClassifyPlan:
    plan_path = out / "plan.json"
    overrides = dict(options.overrides)
    if options.n_folds is not None:
        overrides["n_folds"] = int(options.n_folds)
    if old is not None:
        if tuple(old.class_names) != tuple(ds.class_names) or old.task != ds.task or old.dims != ds.dims:
            raise InvalidParameterError(
                "the dataset does not match the model folder's plan", path=plan_path,
                expected=f"a {old.dims}D {old.task} dataset with classes {list(old.class_names)}",
                found=f"a {ds.dims}D {ds.task} dataset with classes {list(ds.class_names)}",
                fix="train into a new model folder, or use the dataset the plan was made for")
        plan = old.replace(**overrides) if overrides else old
        trained = _trained_folds(out)
        changed = [f for f in PLAN_NETWORK_FIELDS if getattr(plan, f) != getattr(old, f)]
        if trained and changed:
            raise InvalidParameterError(
                "overrides would change the network or preprocessing of already trained folds", path=plan_path,
                parameter="--set", expected="only training settings (iterations, minutes, learning_rate, ...)",
                found=f"changes to {changed} with {trained} trained",
                fix="train with these settings into a new model folder")
    else:
        plan = plan_classification(ds, minutes=options.minutes or 30.0, overrides=overrides or None,
                                   seed=options.seed)
    changes: dict[str, Any] = {}
    if options.seed != plan.seed:
        changes["seed"] = int(options.seed)
    if options.iterations is not None:
        changes["iterations"] = int(options.iterations)
    if options.minutes is not None:
        changes["minutes"] = float(options.minutes)
    if changes:
        plan = plan.replace(**changes)
    return plan


def _splits(ds: Any, out: Path, plan: Any,
            options: TrainOptions) -> tuple[list[dict[str, list[str]]], dict[str, Any] | None]:
    """The folds, and the splits.json content to write when they are new (None when read from the folder)."""
    from medimg.train.splits import case_groups

    path = out / "splits.json"
    if path.exists():
        saved = json.loads(path.read_text())
        folds = saved["folds"]
        ids = {s for f in folds for s in f["val"]}
        if ids != set(ds.ids) or len(folds) != plan.n_folds:
            raise InvalidParameterError(
                "splits.json does not match the dataset or the number of folds", path=path,
                expected=f"{plan.n_folds} folds over the {len(ds)} samples of the dataset",
                found=f"{len(folds)} folds over {len(ids)} samples ({len(ids ^ set(ds.ids))} ids differ)",
                fix="train into a new model folder (or remove splits.json and plan.json there)")
        return folds, None
    if options.group_by:
        groups, grouped_by = case_groups(list(ds.ids), options.group_by), f"regex {options.group_by}"
    elif any(ds.groups):
        groups = {sid: (g or sid) for sid, g in zip(ds.ids, ds.groups)}
        grouped_by = "the CSV group column"
    else:
        groups, grouped_by = None, None
    folds = make_classification_splits(list(ds.ids), np.asarray(ds.labels), plan.n_folds, plan.seed, groups=groups)
    if ds.task != "multilabel":
        smallest = min(ds.class_counts.values())
        if smallest < plan.n_folds:
            logger.warning("the smallest class has %d samples for %d folds: some validation folds miss it",
                           smallest, plan.n_folds)
    return folds, {"seed": plan.seed, "n_folds": plan.n_folds, "stratified_by": (
        "label combination" if ds.task == "multilabel" else "class"), "grouped_by": grouped_by, "folds": folds}


def _labels_array(ds: Any, positions: Sequence[int]) -> np.ndarray:
    labels = np.asarray(ds.labels)[list(positions)]
    return labels.astype(np.float32) if ds.task == "multilabel" else labels.astype(np.int64)


def _check_memory(n: int, plan: Any, limit_gb: float) -> float:
    gb = n * plan.in_channels * math.prod(plan.input_size) * 4 / 1e9
    if gb > limit_gb:
        raise InvalidParameterError(
            "the preprocessed samples would not fit the in-memory limit", parameter="max_data_gb",
            expected=f"at most {limit_gb:g} GB", found=f"{gb:.2f} GB = {n} samples x {plan.in_channels} channel(s) "
            f"x {'x'.join(map(str, plan.input_size))} voxels x 4 bytes",
            fix="use a smaller input (--set input_size=[...]) or fewer samples (--split), or raise the limit "
                "(--max-data-gb)")
    return gb


def _write_validation_csv(path: Path, ids: Sequence[str], labels: np.ndarray, probs: np.ndarray,
                          class_names: Sequence[str], multilabel: bool) -> None:
    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = safe_writer(fh)
        w.writerow(["id", "label", *[f"prob_{c}" for c in class_names]])
        for sid, lab, p in zip(ids, labels, probs):
            text = ";".join(c for c, v in zip(class_names, lab) if v) if multilabel else class_names[int(lab)]
            w.writerow([sid, text, *[f"{v:.6f}" for v in p]])


def train(data: str | os.PathLike[str], out: str | os.PathLike[str], options: TrainOptions = TrainOptions(), *,  # noqa: B008 (frozen)
          callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Train one fold (or every sample) of a classification model, calibrate it and return the fold's metrics.

    Steps: open and verify the dataset (one error listing its problems), plan (``plan.json``, reused by later
    folds), stratified k-fold split (``splits.json``), preprocess the fold's samples into memory, train with
    :func:`medimg.train.train_loop` (bf16 autocast, the plan's optimizer, schedule, loss, sampling and batch
    augmentation; checkpoints, resume, progress and training curve as callbacks), then validate: fit the
    temperature on the validation logits (``calibration.json``), compute :func:`validation_metrics`
    (``metrics.json``) and draw the reliability diagram before/after (``reliability.png``). See the module
    docstring for the folder layout, memory use, seeds and why calibrated validation metrics are optimistic.

    Args:
        data: dataset folder of class folders, CSV file or MedMNIST .npz.
        out: the model folder (created).
        options: :class:`~medimg.train.run.TrainOptions` (the common options and :data:`OPTIONS`); None for the
            defaults.
        callbacks: extra training-loop callbacks (e.g. the command line's progress line).

    Returns:
        the fold's metrics (as written to ``fold_k/metrics.json``).

    Raises:
        ImageReadError: the dataset cannot be opened (layout, missing files, one class, mixed 2D/3D ...).
        InvalidParameterError: dataset problems, bad options or overrides, a model folder of another kind, too
            much data for memory.

    Example:
        >>> metrics = train("adrenal.npz", "runs/adrenal", TrainOptions(
        ...     split="train", fold=0, iterations=200))                            # doctest: +SKIP
        >>> metrics["validation"]["auc_macro"], metrics["temperature"]            # doctest: +SKIP
        (0.87, 1.31)
    """
    from medimg.augment.batch import BatchAugmenter
    from medimg.explain.calibration import apply_temperature, fit_temperature, reliability_diagram, reliability_png
    from medimg.models import ClassifierSpec, build_classifier
    from medimg.plans.model_folder import check_network_memory
    from medimg.tasks.classify.predictor import network_logits
    from medimg.train import CheckpointCallback, CurveCallback, LogCallback, make_optimizer
    from medimg.train.loop import schedule, train_loop
    from medimg.train.precision import precision_name, resolve_precision

    options = (options or TrainOptions()).check_applies("classify", OPTIONS)
    # nothing is written before these checks: the fold, the model folder is not an input, a trained fold is kept,
    # the folder holds no other task's model
    out = Path(out)
    run = TrainingRun("classify", out, options, inputs=[data, options.val_data])
    precision = resolve_precision(options.precision, "cpu")
    _check_model_folder(run.plan_path)
    old_plan = run.existing_plan(ClassifyPlan)
    ds = open_classification_dataset(data, split=options.split)
    _verify(ds, "dataset")
    val_ds = None
    if options.val_data is not None:
        val_split = options.val_split
        if val_split is None and str(options.val_data).lower().endswith(".npz"):
            val_split = "val"
        val_ds = open_classification_dataset(options.val_data, split=val_split, class_names=ds.class_names)
        if (val_ds.task, val_ds.dims, tuple(val_ds.class_names)) != (ds.task, ds.dims, tuple(ds.class_names)):
            raise InvalidParameterError(
                "the validation data do not match the training data", path=val_ds.source, parameter="--val",
                expected=f"a {ds.dims}D {ds.task} dataset with classes {list(ds.class_names)}",
                found=f"a {val_ds.dims}D {val_ds.task} dataset with classes {list(val_ds.class_names)}",
                fix="give validation data with the same classes and dimensionality")
        _verify(val_ds, "validation data")
    pretrained = None
    if options.init_from is not None:
        state_dict, source_plan, source_name = pretrained_classifier(options.init_from, ds.dims)
        given = {k for k, _ in options.overrides}
        copied = tuple((f, getattr(source_plan, f)) for f in TRANSFER_FIELDS if f not in given)
        options = dataclasses.replace(options, overrides=tuple(options.overrides) + copied)
        pretrained = (state_dict, source_name)
    plan = _plan(ds, out, options, old_plan)
    multilabel = plan.task == "multilabel"
    new_splits = None
    if options.fold == "all":
        fold_name, fold_index = "fold_all", plan.n_folds
        train_ids, val_ids = list(ds.ids), []
    else:
        k = int(options.fold)
        if plan.n_folds < 2:
            raise InvalidParameterError("the plan has a single fold", parameter="--fold", expected="--fold all",
                                        found=k, fix="use --fold all, or --folds 5")
        folds, new_splits = _splits(ds, out, plan, options)
        if not 0 <= k < len(folds):
            raise InvalidParameterError("fold out of range", parameter="--fold", expected=f"0..{len(folds) - 1}",
                                        found=k, fix="pick an existing fold, or 'all'")
        fold_name, fold_index = f"fold_{k}", k
        train_ids, val_ids = folds[k]["train"], folds[k]["val"]
    position = {sid: i for i, sid in enumerate(ds.ids)}
    train_pos = [position[s] for s in train_ids]
    if val_ds is not None:
        val_source, val_pos = val_ds, list(range(len(val_ds)))
        calibration_set = f"the separate validation data {val_ds.source} ({len(val_ds)} samples)"
    else:
        val_source, val_pos = ds, [position[s] for s in val_ids]
        calibration_set = f"the validation samples of {fold_name} ({len(val_pos)} samples)" if val_pos else ""
    if not multilabel and len(np.unique(_labels_array(ds, train_pos))) < 2:
        raise InvalidParameterError("the training samples of this fold hold one class only", parameter="--folds",
                                    expected="at least 2 classes", found=f"{len(train_pos)} samples of one class",
                                    fix="use fewer folds or more samples")
    data_gb = _check_memory(len(train_pos) + len(val_pos), plan, options.max_data_gb)
    check_network_memory(batch=plan.batch_size, spatial=plan.input_size, channels=max(int(plan.in_channels), 1),
                         path=out / "plan.json", fields="input_size, batch_size")
    seeds = derived_seeds(plan.seed, fold_index)
    torch.manual_seed(seeds["init"])
    model = build_classifier(ClassifierSpec(**plan.network_kwargs()))
    transfer = None
    if pretrained is not None and not options.resume:
        transfer = transfer_weights(model, pretrained[0])
        if transfer["fraction"] < 0.5:
            raise InvalidParameterError(
                "the starting model's network does not match the plan", parameter="--init",
                expected="the same network (model, width, stem, SE) for at least half of the weights",
                found=f"{transfer['fraction']:.0%} of the weights of {pretrained[1]} fit",
                fix="drop the --set overrides of model/model_width/stem/se, or start from another model")
        logger.info("started from %s: %.0f%% of the weights (fresh: %s)", pretrained[1], 100 * transfer["fraction"],
                    ", ".join(transfer["kept_fresh"]) or "none")
    # every check passed: from here on the model folder is written
    out.mkdir(parents=True, exist_ok=True)
    plan.save(out / "plan.json")
    if new_splits is not None:
        write_json_atomic(out / "splits.json", new_splits)
    fold_dir = run.folder
    fold_dir.mkdir(exist_ok=True)

    x_train = preprocess_samples(ds, train_pos, plan, "training samples")
    y_train = _labels_array(ds, train_pos)
    x_val = preprocess_samples(val_source, val_pos, plan, "validation samples") if val_pos else None
    y_val = _labels_array(val_source, val_pos) if val_pos else None

    optimizer = make_optimizer(model.parameters(), plan.optimizer, plan.learning_rate, plan.weight_decay)
    ckpt_path = fold_dir / "checkpoint.pt"
    state = run.resume_state(model, optimizer)
    if state is not None:
        logger.info("resuming %s at iteration %d", fold_name, state.iteration)
    elif options.resume:
        logger.warning("--resume: no checkpoint at %s; training from the start", ckpt_path)
    start_it = state.iteration if state else 0
    batch_size = int(min(plan.batch_size, max(2, len(train_pos))))
    batches = _batches(x_train, y_train, batch_size=batch_size, balanced=plan.sampling == "balanced",
                       n_classes=plan.n_classes, seed=seeds["sampler"] + start_it)
    augmenter = _AugmentImages(BatchAugmenter(plan.augmentation, dims=plan.dims, seed=seeds["augment"] + start_it))
    lr_at = schedule(plan.schedule, plan.learning_rate)
    loop_callbacks: list[Callback] = [
        LogCallback(label=f"train {fold_name}"), *callbacks,
        CheckpointCallback(ckpt_path, model, optimizer, every_s=300,
                           extra=lambda: {"fold": fold_name, "seeds": seeds}),
        CurveCallback(fold_dir / "training_curve.png", fold_dir / "training_log.json",
                      loss_label=LOSS_LABELS.get(plan.loss, plan.loss)),
    ]
    hazards = (bf16_conv3d_hazards(model, (plan.in_channels, *plan.input_size))
               if plan.dims == 3 and precision is not None else [])
    autocast_bf16 = precision is not None and not hazards
    if hazards:
        logger.warning("training in float32: %d 3D convolutions see a depth below their kernel (e.g. depth %d, "
                       "kernel %d), where PyTorch's CPU bf16 weight gradient is wrong", len(hazards), *hazards[0])
    # The plan's iteration count is an estimate from an assumed throughput; unless the user fixed it (or asked for
    # a repeatable run), the wall-clock budget decides, so a fast machine is not left idle.
    clock_governs = (options.iterations is None and "iterations" not in dict(options.overrides)
                     and not options.deterministic)
    max_iterations = None if clock_governs else int(plan.iterations)
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    t0 = time.perf_counter()
    try:
        if options.deterministic:
            torch.use_deterministic_algorithms(True)
        state = train_loop(model, optimizer, batches, classification_loss(plan), max_iterations=max_iterations,
                           lr_at=lr_at, minutes=None if options.deterministic else plan.minutes, state=state,
                           callbacks=loop_callbacks, transform=augmenter, autocast_bf16=autocast_bf16)
    finally:
        torch.use_deterministic_algorithms(previous_deterministic)
    train_s = time.perf_counter() - t0
    run.save_weights(model)  # float16 state dict, atomically

    metrics: dict[str, Any] = {
        "fold": fold_name, "task": plan.task, "class_names": list(plan.class_names), "n_train": len(train_pos),
        "n_val": len(val_pos), "iterations": state.iteration, "batch_size": batch_size,
        "training_minutes": round(state.elapsed_s / 60, 3), "stop_reason": state.stop_reason,
        "wall_minutes_this_run": round(train_s / 60, 3), "threads": torch.get_num_threads(),
        "budget": (f"wall clock ({plan.minutes:g} min; the plan estimated {plan.iterations} iterations)"
                   if clock_governs else f"{plan.iterations} iterations"),
        "seed": plan.seed, "seeds": seeds, "deterministic": bool(options.deterministic),
        "loss": plan.loss, "sampling": plan.sampling, "preprocessed_gb": round(data_gb, 4),
        "autocast_bf16": autocast_bf16, "bf16_conv3d_hazards": len(hazards),
        "precision": precision_name(torch.bfloat16 if autocast_bf16 else None), "precision_option": options.precision,
        "train_class_counts": _counts(y_train, plan.class_names, multilabel),
    }
    if transfer is not None:
        metrics["init_from"] = {"model": pretrained[1], "fraction_loaded": round(transfer["fraction"], 4),
                                "kept_fresh": transfer["kept_fresh"]}
    calibration: dict[str, Any] = {"method": "temperature_scaling", "temperature": 1.0, "fitted": False}
    if x_val is not None and y_val is not None:
        logits = network_logits(model, x_val, batch_size=max(batch_size, 16),
                                autocast_bf16=precision is not None)
        if len(val_pos) >= 2:
            temperature = fit_temperature(logits, y_val, multilabel=multilabel)
            calibration.update(temperature=temperature, fitted=True, calibration_set=calibration_set,
                               n_samples=len(val_pos))
        else:
            temperature = 1.0
            calibration["reason"] = "a single validation sample: temperature left at 1"
        val = validation_metrics(y_val, logits, task=plan.task, class_names=plan.class_names,
                                 temperature=temperature)
        metrics["validation"] = val
        metrics["calibration_set"] = calibration_set
        metrics["calibration_note"] = (
            "the temperature was fitted on the same samples these metrics are measured on, so the calibrated "
            "metrics (ece_after, brier_after, log_loss_after) are optimistic; benchmarks must report metrics on a "
            "separate held-out split")
        yl = y_val.astype(np.int64)
        before = reliability_diagram(yl, apply_temperature(logits, 1.0, multilabel=multilabel))
        after = reliability_diagram(yl, apply_temperature(logits, temperature, multilabel=multilabel))
        reliability_png(before, after, fold_dir / "reliability.png")
        metrics["reliability"] = {"before": before, "after": after}
        _write_validation_csv(fold_dir / "validation_predictions.csv", [val_source.ids[i] for i in val_pos], y_val,
                              apply_temperature(logits, temperature, multilabel=multilabel), plan.class_names,
                              multilabel)
        logger.info("%s validation (%d samples): AUC %s, accuracy %.4f, ECE %.4f -> %.4f (T = %.3f)", fold_name,
                    len(val_pos), "n/a" if val["auc_macro"] is None else f"{val['auc_macro']:.4f}",
                    val["accuracy"], val["ece_before"], val["ece_after"], temperature)
    else:
        calibration["reason"] = "no validation samples (--fold all without --val): temperature left at 1"
    metrics["temperature"] = calibration["temperature"]
    write_json_atomic(fold_dir / "calibration.json", calibration)
    run.write_metrics(metrics)
    return metrics


def _counts(y: np.ndarray, class_names: Sequence[str], multilabel: bool) -> dict[str, int]:
    counts = y.sum(axis=0) if multilabel else np.bincount(y.astype(np.int64), minlength=len(class_names))
    return {str(c): int(v) for c, v in zip(class_names, counts)}
