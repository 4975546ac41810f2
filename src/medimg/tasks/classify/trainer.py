"""``medimg train classify``: dataset (class folders, CSV, MedMNIST) -> verified, planned, trained, calibrated model.

A classification model folder describes itself (nnU-Net habit), like a segmentation one:

* ``plan.json``: the :class:`~medimg.plans.classify_plan.ClassifyPlan` (frozen, versioned), made on the first run
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
:func:`medimg.tasks.classify.predict.predict_samples`.

Memory: every sample is preprocessed once (:func:`~medimg.plans.classify_plan.preprocess_sample`) and kept in
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
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from medimg.core.errors import InvalidParameterError, MedimgError
from medimg.io.csv_safe import safe_writer
from medimg.io.files import write_json_atomic
from medimg.train.loop import Callback
from medimg.train.precision import bf16_conv3d_hazards

logger = logging.getLogger(__name__)

_LOSS_LABELS = {"ce": "cross-entropy", "weighted_ce": "weighted cross-entropy", "bce": "binary cross-entropy",
                "weighted_bce": "weighted binary cross-entropy"}

__all__ = [
    "ClassifyTrainOptions",
    "train_classification",
    "make_classification_splits",
    "classification_loss",
    "validation_metrics",
    "bf16_conv3d_hazards",
    "PLAN_NETWORK_FIELDS",
    "TRANSFER_FIELDS",
    "pretrained_classifier",
    "transfer_weights",
]

#: Plan fields that decide the weights' shapes or the preprocessing: they may not change once a fold is trained.
PLAN_NETWORK_FIELDS = ("task", "class_names", "dims", "in_channels", "input_size", "resize", "normalization",
                       "percentiles", "channel_mean", "channel_std", "model", "model_width", "stem", "dropout", "se")


@dataclass(frozen=True)
class ClassifyTrainOptions:
    """Options of one classification training run (everything else lives in the plan).

    Attributes:
        fold: a fold number, or "all" to train on every sample (validated on ``val_data`` if given, else not).
        n_folds: cross-validation folds; None: the plan's choice (5, fewer when a class is small).
        minutes: wall-clock budget per fold (also sizes the plan); None: the plan's 30 minutes.
        iterations: iteration budget (the first budget reached stops training); None: the wall clock decides
            (``minutes``; the plan's iteration count is only its estimate), or the plan's count when deterministic.
        seed: the one seed of the run.
        overrides: plan field -> value pairs, e.g. ``(("model_width", 8), ("input_size", [16, 16, 16]))``.
        split: dataset split(s) to train on, e.g. "train" for MedMNIST; None: every split except "test".
        val_data: a separate validation source (folder, CSV or NPZ) for the final metrics and the temperature,
            instead of the fold's validation samples.
        val_split: the split of ``val_data`` to use; None: "val" for a .npz, every non-test sample otherwise.
        threads: torch threads; None: leave as is.
        resume: continue from ``fold_k/checkpoint.pt`` when it exists.
        group_by: regex whose first group names the patient of a sample id: a patient's samples stay in one fold.
            None: the CSV ``group``/``patient`` column when the dataset has one, else one group per sample.
        deterministic: repeatable run (see the module docstring); ignores the wall-clock budget.
        max_data_gb: limit of the preprocessed samples kept in memory.
        init_from: start from the weights of a trained classification model (folder or shipped name) of the same
            dimensionality: its network settings (:data:`TRANSFER_FIELDS`) are taken into the plan unless
            overridden, every matching tensor is loaded, the head is new when the classes differ. Only models
            trained by medimg: nothing is downloaded.
        precision: "auto" (bf16 autocast where the CPU computes bf16 natively, else float32), "fp32" or "bf16"
            (:func:`medimg.train.precision.resolve_precision`); metrics.json records the one used.
    """

    fold: int | str = 0
    n_folds: int | None = None
    minutes: float | None = None
    iterations: int | None = None
    seed: int = 0
    overrides: tuple[tuple[str, Any], ...] = ()
    split: str | tuple[str, ...] | None = None
    val_data: str | os.PathLike[str] | None = None
    val_split: str | tuple[str, ...] | None = None
    threads: int | None = None
    resume: bool = False
    group_by: str | None = None
    deterministic: bool = False
    max_data_gb: float = 4.0
    init_from: str | os.PathLike[str] | None = None
    precision: str = "auto"


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
    from medimg.plans.classify_plan import ClassifyPlan
    from medimg.tasks.classify.predict import is_classification_model
    from medimg.train.callbacks import load_weights
    from medimg.zoo import resolve_model

    root = resolve_model(source)
    if not is_classification_model(root):
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


# ---- splits -----------------------------------------------------------------------------------------------------
def make_classification_splits(ids: Sequence[str], labels: np.ndarray, n_folds: int, seed: int, *,
                               groups: dict[str, str] | None = None) -> list[dict[str, list[str]]]:
    """Stratified k-fold split by sample id: every sample is validated exactly once, classes spread over folds.

    Single-label: the groups of each class (a group's class is its most common one) are shuffled with ``seed``
    and dealt to the folds in turn, continuing where the previous class stopped, so every fold gets its share of
    each class and the folds have about equal size. Multi-label: the same with the label combination as stratum.
    With ``groups`` (sample id -> group id) whole groups go to one fold, so no patient is on both sides.

    Args:
        ids: sample ids.
        labels: (N,) class ids, or (N, K) 0/1 indicators (multi-label), in ``ids`` order.
        n_folds: number of folds, 2..number of groups.
        seed: shuffling seed.
        groups: optional sample id -> group id.

    Returns:
        one ``{"train": [...], "val": [...]}`` per fold, ids sorted.

    Raises:
        InvalidParameterError: ``n_folds`` outside 2..number of groups, or labels not matching ids.

    Example:
        >>> ids = [f"s{i}" for i in range(8)]
        >>> folds = make_classification_splits(ids, np.array([0, 0, 0, 0, 1, 1, 1, 1]), 2, 0)
        >>> [sorted(int(s[1:]) >= 4 for s in f["val"]) for f in folds]  # two of each class per fold
        [[False, False, True, True], [False, False, True, True]]
    """
    labels = np.asarray(labels)
    if labels.shape[0] != len(ids):
        raise InvalidParameterError("labels do not match the ids", parameter="labels", expected=f"{len(ids)} rows",
                                    found=labels.shape[0], fix="give one label per sample id")
    group_of = groups or {sid: sid for sid in ids}
    members: dict[str, list[int]] = defaultdict(list)
    for i, sid in enumerate(ids):
        members[group_of[sid]].append(i)
    keys = sorted(members)
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or not 2 <= n_folds <= len(keys):
        raise InvalidParameterError("bad number of folds", parameter="--folds",
                                    expected=f"2..{len(keys)} (number of {'groups' if groups else 'samples'})",
                                    found=n_folds, fix="use fewer folds, or --fold all to train on every sample")

    def stratum(g: str) -> Any:
        rows = labels[members[g]]
        if rows.ndim == 2:
            return Counter(tuple(int(v) for v in r) for r in rows).most_common(1)[0][0]
        return int(np.bincount(rows.astype(np.int64)).argmax())

    strata: dict[Any, list[str]] = defaultdict(list)
    for g in keys:
        strata[stratum(g)].append(g)
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    offset = 0
    for s in sorted(strata):
        gs = list(strata[s])
        rng.shuffle(gs)
        for j, g in enumerate(gs):
            fold_of[g] = (offset + j) % n_folds
        offset += len(gs)
    folds = [sorted(sid for sid in ids if fold_of[group_of[sid]] == k) for k in range(n_folds)]
    return [{"train": sorted(s for j, f in enumerate(folds) if j != k for s in f), "val": folds[k]}
            for k in range(n_folds)]


# ---- loss, batches, augmentation ----------------------------------------------------------------------------------
def classification_loss(plan: Any) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The plan's loss as ``loss(logits (B, K), target) -> scalar``.

    ``ce`` / ``weighted_ce``: softmax cross-entropy on class ids (B,) int64, with the plan's class weights;
    ``bce`` / ``weighted_bce``: one sigmoid per class on (B, K) 0/1 targets, with the plan's positive weights.

    Example:
        >>> from medimg.plans.classify_plan import ClassifyPlan
        >>> plan = ClassifyPlan(schema_version=1, task="binary", class_names=("a", "b"), dims=2, in_channels=1,
        ...                     input_size=(8, 8), loss="weighted_ce", class_weights=(1.0, 3.0))
        >>> loss = classification_loss(plan)
        >>> round(float(loss(torch.zeros(2, 2), torch.tensor([0, 1]))), 4)  # log 2 whatever the weights
        0.6931
    """
    import torch.nn.functional as F

    weights = None if plan.class_weights is None else torch.tensor(plan.class_weights, dtype=torch.float32)
    if plan.loss in ("bce", "weighted_bce"):
        def bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return F.binary_cross_entropy_with_logits(logits.float(), target.float(), pos_weight=weights)
        return bce

    def ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), target.long(), weight=weights)
    return ce


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


# ---- metrics -------------------------------------------------------------------------------------------------------
def _safe(fn: Callable[..., Any], *args: Any, notes: list[str], what: str, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except InvalidParameterError as exc:
        notes.append(f"{what} undefined: {exc.what}")
        return None


def validation_metrics(labels: np.ndarray, logits: np.ndarray, *, task: str, class_names: Sequence[str],
                       temperature: float = 1.0, n_bins: int = 15) -> dict[str, Any]:
    """Metrics of validation logits before and after temperature scaling, as a JSON-ready dict.

    Single-label: ``auc_macro`` (one-vs-rest macro AUC of the calibrated probabilities), ``auc_per_class``,
    ``accuracy``, ``balanced_accuracy``, ``confusion_matrix`` (rows = true class, columns = predicted, class
    order), ``per_class`` sensitivity/specificity (one class against the rest, predicted = argmax), ``ece_before``
    / ``ece_after``, ``brier_*``, ``log_loss_*`` and ``uncertainty_auroc`` (does the predictive entropy flag the
    errors?). Multi-label (one sigmoid per class, threshold 0.5): macro ``auc_macro``, ``accuracy`` (exact match),
    ``label_accuracy``, ``balanced_accuracy`` (mean over labels), per-label 2x2 confusion matrices ``[[tn, fp],
    [fn, tp]]``, sensitivity/specificity and multi-label ECE. A value that is undefined on this set (a class
    without samples) is None and explained in ``notes``.

    Args:
        labels: (N,) class ids or (N, K) 0/1 indicators.
        logits: (N, K) network outputs.
        task: "binary", "multiclass" or "multilabel".
        class_names: the K class names.
        temperature: T of the calibrated probabilities (``*_after``); 1.0 gives identical before/after.
        n_bins: ECE bins.

    Example:
        >>> m = validation_metrics(np.array([0, 1, 1, 0]), np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0],
        ...                        [0.0, 1.0]]), task="binary", class_names=("a", "b"))
        >>> m["accuracy"], m["auc_macro"], m["confusion_matrix"]
        (0.5, 0.75, [[1, 1], [1, 1]])
    """
    from medimg.explain.calibration import apply_temperature
    from medimg.explain.uncertainty import predictive_entropy, uncertainty_auroc
    from medimg.metrics.classification import (
        accuracy,
        balanced_accuracy,
        brier_score,
        confusion_matrix,
        expected_calibration_error,
        log_loss,
        macro_roc_auc,
        multilabel_expected_calibration_error,
        multilabel_roc_auc,
        roc_auc,
        sensitivity_specificity,
    )

    multilabel = task == "multilabel"
    z = np.asarray(logits, np.float64)
    y = np.asarray(labels)
    before = apply_temperature(z, 1.0, multilabel=multilabel)
    after = apply_temperature(z, float(temperature), multilabel=multilabel)
    names = [str(n) for n in class_names]
    notes: list[str] = []
    out: dict[str, Any] = {"n": int(len(z)), "temperature": float(temperature)}
    if multilabel:
        y = y.astype(np.int64)
        pred = (after >= 0.5).astype(np.int64)
        out["auc_macro"] = _safe(multilabel_roc_auc, y, after, notes=notes, what="macro AUC")
        out["auc_per_class"] = {n: _safe(roc_auc, y[:, k], after[:, k], notes=notes, what=f"AUC of '{n}'")
                                for k, n in enumerate(names)}
        out["accuracy"] = float(np.mean((pred == y).all(axis=1)))
        out["label_accuracy"] = float(np.mean(pred == y))
        per_class, cms = {}, {}
        for k, n in enumerate(names):
            r = sensitivity_specificity(y[:, k], after[:, k], threshold=0.5)
            per_class[n] = {"sensitivity": r["sensitivity"], "specificity": r["specificity"],
                            "ppv": r["ppv"], "npv": r["npv"], "positives": int(y[:, k].sum())}
            cms[n] = [[int(r["tn"]), int(r["fp"])], [int(r["fn"]), int(r["tp"])]]
        out["balanced_accuracy"] = float(np.mean([(v["sensitivity"] + v["specificity"]) / 2
                                                  for v in per_class.values()]))
        out["per_class"] = per_class
        out["confusion_matrix"] = cms
        out["ece_before"] = multilabel_expected_calibration_error(y, before, n_bins=n_bins)
        out["ece_after"] = multilabel_expected_calibration_error(y, after, n_bins=n_bins)
        out["brier_before"] = float(np.mean((before - y) ** 2))
        out["brier_after"] = float(np.mean((after - y) ** 2))
        eps = np.finfo(float).eps
        for tag, p in (("before", before), ("after", after)):
            p = np.clip(p, eps, 1 - eps)
            out[f"log_loss_{tag}"] = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    else:
        y = y.astype(np.int64)
        pred = after.argmax(axis=1)
        k_all = list(range(len(names)))
        out["auc_macro"] = _safe(macro_roc_auc, y, after, notes=notes, what="macro AUC")
        out["auc_per_class"] = {n: _safe(roc_auc, (y == k).astype(int), after[:, k], notes=notes,
                                         what=f"AUC of '{n}'") for k, n in enumerate(names)}
        out["accuracy"] = accuracy(y, pred)
        out["balanced_accuracy"] = balanced_accuracy(y, pred)
        out["confusion_matrix"] = confusion_matrix(y, pred, labels=k_all).tolist()
        per_class = {}
        for k, n in enumerate(names):
            r = sensitivity_specificity((y == k).astype(int), (pred == k).astype(float), threshold=0.5)
            per_class[n] = {"sensitivity": r["sensitivity"], "specificity": r["specificity"], "ppv": r["ppv"],
                            "npv": r["npv"], "support": int((y == k).sum())}
        out["per_class"] = per_class
        out["ece_before"] = expected_calibration_error(y, before, n_bins=n_bins)
        out["ece_after"] = expected_calibration_error(y, after, n_bins=n_bins)
        out["brier_before"] = brier_score(y, before)
        out["brier_after"] = brier_score(y, after)
        out["log_loss_before"] = log_loss(y, before)
        out["log_loss_after"] = log_loss(y, after)
        entropy = predictive_entropy(after[None])
        out["uncertainty_auroc"] = _safe(uncertainty_auroc, entropy, pred == y, notes=notes,
                                         what="uncertainty AUROC (entropy vs errors)")
    out["notes"] = notes
    return out


# ---- the run -------------------------------------------------------------------------------------------------------
def _open(source: Any, split: Any, class_names: Sequence[str] | None = None) -> Any:
    from medimg.tasks.classify.data import open_classification_dataset

    return open_classification_dataset(source, split=split, class_names=class_names)


def _verify(ds: Any, what: str) -> None:
    """Raise one error listing (up to five of) the problems of a dataset."""
    from medimg.tasks.classify.data import verify_classification_dataset

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


def _check_model_folder(out: Path) -> None:
    plan_path = out / "plan.json"
    if not plan_path.is_file():
        return
    from medimg.tasks.classify.predict import is_classification_model

    if not is_classification_model(out):
        raise InvalidParameterError(
            "the model folder holds another kind of plan (a segmentation model?)", path=plan_path,
            parameter="-o", expected="a new folder, or a folder written by `medimg train classify`",
            found="a plan.json without the classification plan fields",
            fix="choose a new model folder for the classification model",
        )


def _trained_folds(out: Path) -> list[str]:
    return sorted(p.parent.name for p in out.glob("fold_*/model.pt"))


def _plan(ds: Any, out: Path, options: ClassifyTrainOptions) -> Any:
    from medimg.plans.classify_plan import ClassifyPlan, plan_classification

    plan_path = out / "plan.json"
    overrides = dict(options.overrides)
    if options.n_folds is not None:
        overrides["n_folds"] = int(options.n_folds)
    if plan_path.exists():
        old = ClassifyPlan.load(plan_path)
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
            options: ClassifyTrainOptions) -> tuple[list[dict[str, list[str]]], dict[str, Any] | None]:
    """The folds, and the splits.json content to write when they are new (None when read from the folder)."""
    from medimg.tasks.segment.trainer import case_groups

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


def _preprocess(ds: Any, positions: Sequence[int], plan: Any, what: str) -> np.ndarray:
    """Preprocess samples into one (N, C, *input_size) float32 array; errors name the sample."""
    from medimg.plans.classify_plan import preprocess_sample

    out = np.empty((len(positions), plan.in_channels, *plan.input_size), np.float32)
    t0 = time.perf_counter()
    for n, i in enumerate(positions):
        try:
            out[n] = preprocess_sample(ds.load(i), plan)
        except MedimgError as exc:
            raise InvalidParameterError(f"sample '{ds.ids[i]}': {exc.what}", path=exc.path or ds.describe(i),
                                        parameter=exc.parameter, expected=exc.expected, found=exc.found,
                                        fix=exc.fix) from exc
        if (n + 1) % 200 == 0:
            logger.info("%s: preprocessed %d of %d samples", what, n + 1, len(positions))
    logger.info("%s: %d samples preprocessed to %s in %.1f s", what, len(positions), tuple(out.shape[1:]),
                time.perf_counter() - t0)
    return out


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


def _derived_seeds(seed: int, fold_index: int) -> dict[str, int]:
    children = np.random.SeedSequence([int(seed), int(fold_index)]).spawn(3)
    return {name: int(c.generate_state(1, np.uint32)[0]) for name, c in zip(("init", "sampler", "augment"),
                                                                             children)}


def _write_validation_csv(path: Path, ids: Sequence[str], labels: np.ndarray, probs: np.ndarray,
                          class_names: Sequence[str], multilabel: bool) -> None:
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = safe_writer(fh)
        w.writerow(["id", "label", *[f"prob_{c}" for c in class_names]])
        for sid, lab, p in zip(ids, labels, probs):
            text = ";".join(c for c, v in zip(class_names, lab) if v) if multilabel else class_names[int(lab)]
            w.writerow([sid, text, *[f"{v:.6f}" for v in p]])
    os.replace(tmp, path)


def train_classification(data: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                         options: ClassifyTrainOptions | None = None, *,
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
        out_dir: the model folder (created).
        options: :class:`ClassifyTrainOptions`; None for the defaults.
        callbacks: extra training-loop callbacks (e.g. the command line's progress line).

    Returns:
        the fold's metrics (as written to ``fold_k/metrics.json``).

    Raises:
        ImageReadError: the dataset cannot be opened (layout, missing files, one class, mixed 2D/3D ...).
        InvalidParameterError: dataset problems, bad options or overrides, a model folder of another kind, too
            much data for memory.

    Example:
        >>> metrics = train_classification("adrenal.npz", "runs/adrenal", ClassifyTrainOptions(
        ...     split="train", fold=0, iterations=200))                            # doctest: +SKIP
        >>> metrics["validation"]["auc_macro"], metrics["temperature"]            # doctest: +SKIP
        (0.87, 1.31)
    """
    from medimg.augment.batch import BatchAugmenter
    from medimg.explain.calibration import apply_temperature, fit_temperature, reliability_diagram, reliability_png
    from medimg.models import ClassifierSpec, build_classifier
    from medimg.plans.model_folder import check_network_memory
    from medimg.tasks.classify.predict import network_logits
    from medimg.train import CheckpointCallback, CurveCallback, LogCallback, load_checkpoint, make_optimizer
    from medimg.train.loop import schedule, train_loop
    from medimg.train.outputs import check_fold_not_trained, check_model_folder_outside_inputs
    from medimg.train.precision import precision_name, resolve_precision

    options = options or ClassifyTrainOptions()
    if options.fold != "all" and (isinstance(options.fold, bool) or not isinstance(options.fold, (int, np.integer))):
        raise InvalidParameterError("bad fold", parameter="--fold", expected="a fold number or 'all'",
                                    found=repr(options.fold), fix="e.g. --fold 0, or --fold all")
    precision = resolve_precision(options.precision, "cpu")
    if options.threads:
        torch.set_num_threads(int(options.threads))
    out = Path(out_dir)
    # nothing is written before these checks: the model folder is not an input, a trained fold is kept
    check_model_folder_outside_inputs(out, [data, options.val_data])
    _check_model_folder(out)
    check_fold_not_trained(out, options.fold, resume=options.resume)
    ds = _open(data, options.split)
    _verify(ds, "dataset")
    val_ds = None
    if options.val_data is not None:
        val_split = options.val_split
        if val_split is None and str(options.val_data).lower().endswith(".npz"):
            val_split = "val"
        val_ds = _open(options.val_data, val_split, class_names=ds.class_names)
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
    plan = _plan(ds, out, options)
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
    seeds = _derived_seeds(plan.seed, fold_index)
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
    fold_dir = out / fold_name
    fold_dir.mkdir(exist_ok=True)

    x_train = _preprocess(ds, train_pos, plan, "training samples")
    y_train = _labels_array(ds, train_pos)
    x_val = _preprocess(val_source, val_pos, plan, "validation samples") if val_pos else None
    y_val = _labels_array(val_source, val_pos) if val_pos else None

    optimizer = make_optimizer(model.parameters(), plan.optimizer, plan.learning_rate, plan.weight_decay)
    ckpt_path = fold_dir / "checkpoint.pt"
    state = None
    if options.resume:
        if ckpt_path.exists():
            state = load_checkpoint(ckpt_path, model, optimizer)
            logger.info("resuming %s at iteration %d", fold_name, state.iteration)
        else:
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
                      loss_label=_LOSS_LABELS.get(plan.loss, plan.loss)),
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
    part = fold_dir / ".model.pt.part"
    torch.save({k: v.to(torch.float16) if v.is_floating_point() else v for k, v in model.state_dict().items()}, part)
    os.replace(part, fold_dir / "model.pt")

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
    write_json_atomic(fold_dir / "metrics.json", metrics)
    return metrics


def _counts(y: np.ndarray, class_names: Sequence[str], multilabel: bool) -> dict[str, int]:
    counts = y.sum(axis=0) if multilabel else np.bincount(y.astype(np.int64), minlength=len(class_names))
    return {str(c): int(v) for c, v in zip(class_names, counts)}

