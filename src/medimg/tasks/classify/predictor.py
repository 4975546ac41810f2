"""Prediction with a trained classification model folder: calibrated probabilities, uncertainty and an explanation
map for every sample, computed in memory.

* :func:`load` reads a model folder written by :func:`medimg.tasks.classify.trainer.train`: ``plan.json``, one
  network per ``fold_*/model.pt`` and each fold's temperature (``fold_*/calibration.json``).
* :func:`predict` classifies what a user points at (a path, as :func:`~medimg.tasks.classify.inputs.
  open_prediction_inputs` opens it, an Image, or :class:`~medimg.tasks.classify.inputs.PredictionInputs`) and
  returns a :class:`~medimg.tasks.classify.writer.ClassifyResult`; it writes nothing (``result.write(out)`` does).
* :func:`predict_samples` is the computation: it preprocesses the samples exactly as in training, runs every fold
  (batched, bf16 autocast where the CPU computes bf16 natively: ``precision``; inference mode), averages the folds'
  temperature-scaled probabilities, measures the uncertainty (predictive entropy and mutual information over a
  fold ensemble, MC dropout or flip TTA) and computes a saliency map (Grad-CAM, Grad-CAM++ or occlusion) of the
  predicted class.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medimg.core.errors import ImageReadError, InvalidParameterError
from medimg.core.image import Image
from medimg.tasks.classify.inputs import PredictionInputs, label_names, open_prediction_inputs
from medimg.tasks.classify.plan import ClassifyPlan
from medimg.tasks.classify.preprocess import prepare_input
from medimg.tasks.classify.writer import ClassifyResult, ClassPrediction

logger = logging.getLogger(__name__)

__all__ = [
    "UNCERTAINTY_METHODS",
    "EXPLAIN_METHODS",
    "ClassificationModel",
    "load",
    "predict",
    "predict_samples",
    "network_logits",
]

#: Values of ``uncertainty=`` in :func:`predict_samples`.
UNCERTAINTY_METHODS = ("auto", "ensemble", "mc_dropout", "tta")
#: Values of ``explain=`` in :func:`predict_samples`.
EXPLAIN_METHODS = ("gradcam", "gradcam++", "occlusion", "none")
_MC_DEFAULT = 20


# ---- the model -------------------------------------------------------------------------------------------------
@dataclass
class ClassificationModel:
    """A loaded classification model folder: its plan, one network per fold and each fold's temperature."""

    path: Path
    plan: Any
    networks: list[torch.nn.Module]
    folds: list[str]
    temperatures: list[float]
    name: str = ""

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.plan.class_names)

    @property
    def multilabel(self) -> bool:
        return self.plan.task == "multilabel"


def _fold_names(folds: Sequence[str | int] | None, root: Path) -> list[str]:
    if folds is None:
        return sorted(p.parent.name for p in root.glob("fold_*/model.pt"))
    names = []
    for f in folds:
        text = str(f).strip()
        names.append(text if text.startswith("fold_") else f"fold_{text}")
    return names


def load(path: str | os.PathLike[str], *, folds: Sequence[str | int] | None = None) -> ClassificationModel:
    """Load ``plan.json``, the weights of every ``fold_*/model.pt`` (or of ``folds``) and their temperatures.

    Args:
        path: a model folder written by ``medimg train classify``.
        folds: fold names ("fold_0", "fold_all") or numbers (0, "1"); None: every trained fold.

    Returns:
        the :class:`ClassificationModel` (networks in eval mode, float32).

    Raises:
        ImageReadError: no plan.json, a plan of another kind (segmentation), no trained fold, missing weights or
            weights that do not fit the plan.

    Example:
        >>> model = load("runs/adrenal")            # doctest: +SKIP
        >>> model.folds, model.temperatures                    # doctest: +SKIP
        (['fold_0', 'fold_1'], [1.21, 1.34])
    """
    from medimg.models import ClassifierSpec, build_classifier
    from medimg.plans.model_folder import check_network_memory
    from medimg.tasks.registry import task_of_folder
    from medimg.train.callbacks import load_weights

    root = Path(path)
    task = task_of_folder(root)
    if task != "classify":
        raise ImageReadError("not a classification model folder", path=root / "plan.json",
                             expected="a classification plan (task binary, multiclass or multilabel)",
                             found=f"a {task} plan",
                             fix="give a folder written by `medimg train classify`; segmentation models are used "
                                 "by `medimg predict` directly")
    plan = ClassifyPlan.load(root / "plan.json")
    check_network_memory(batch=min(int(plan.batch_size), 32), spatial=plan.input_size,
                         channels=max(int(plan.in_channels), 1), path=root / "plan.json",
                         fields="input_size, batch_size")
    names = _fold_names(folds, root)
    if not names:
        raise ImageReadError("model folder has no trained fold", path=root, expected="fold_*/model.pt",
                             found="none", fix="train a fold first: medimg train classify DATA -o MODEL_DIR")
    nets, temperatures = [], []
    for name in names:
        weights = root / name / "model.pt"
        if not weights.is_file():
            raise ImageReadError("missing weights", path=weights, expected="a trained fold",
                                 found="no model.pt", fix="train this fold or leave it out of --folds")
        net = build_classifier(ClassifierSpec(**plan.network_kwargs()))
        state = load_weights(weights)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise ImageReadError("weights do not fit the plan's network", path=weights,
                                 expected=f"{plan.model} width {plan.model_width}",
                                 found=str(exc).splitlines()[0], fix="retrain the fold, or restore its plan.json"
                                 ) from exc
        net.eval()
        nets.append(net)
        calib = root / name / "calibration.json"
        temperature = 1.0
        if calib.is_file():
            temperature = _read_temperature(calib)
        else:
            logger.warning("%s has no calibration.json: temperature 1 (uncalibrated)", name)
        temperatures.append(temperature)
    logger.info("loaded %s: %s, folds %s, temperatures %s", root, plan.model, names,
                [round(t, 3) for t in temperatures])
    return ClassificationModel(path=root, plan=plan, networks=nets, folds=names, temperatures=temperatures,
                               name=root.name)


def _read_temperature(path: Path) -> float:
    """A fold's temperature from its calibration.json (a positive finite number), else one-line ImageReadError."""
    import math

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        value = float(data.get("temperature", 1.0)) if isinstance(data, dict) else float("nan")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError) as exc:
        raise ImageReadError("unreadable calibration.json", path=path, expected='{"temperature": T > 0}',
                             found=type(exc).__name__, fix="train the fold again or remove the file") from exc
    if not (math.isfinite(value) and value > 0):
        raise ImageReadError("invalid calibration.json", path=path, expected="a temperature > 0", found=value,
                             fix="train the fold again or remove the file")
    return value


def network_logits(network: torch.nn.Module, inputs: np.ndarray | torch.Tensor, *, batch_size: int = 32,
                   autocast_bf16: bool = True) -> np.ndarray:
    """Logits of a classifier for a stack of preprocessed inputs, in eval mode and batches, under inference mode.

    Args:
        network: a classifier returning (B, K) logits.
        inputs: (N, C, *spatial) float32.
        batch_size: samples per forward pass.
        autocast_bf16: bf16 autocast for the forward passes (logits come back as float32).

    Returns:
        (N, K) float64 logits.

    Example:
        >>> from medimg.models import ClassifierSpec, build_classifier
        >>> net = build_classifier(ClassifierSpec(name="resnet18", dims=2, width=4))
        >>> network_logits(net, np.zeros((3, 1, 16, 16), np.float32), batch_size=2).shape
        (3, 2)
    """
    was_training = network.training
    network.eval()
    out = []
    try:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast_bf16):
            for i in range(0, len(inputs), batch_size):
                chunk = inputs[i:i + batch_size]
                x = chunk if isinstance(chunk, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(chunk))
                out.append(network(x).float().numpy())
    finally:
        network.train(was_training)
    return np.concatenate(out).astype(np.float64)



def _resolve_uncertainty(model: ClassificationModel, uncertainty: str, n_samples: int | None) -> tuple[str, int]:
    if uncertainty not in UNCERTAINTY_METHODS:
        raise InvalidParameterError("unknown uncertainty method", parameter="--uncertainty",
                                    expected=" | ".join(UNCERTAINTY_METHODS), found=repr(uncertainty),
                                    fix="pick one of the listed methods")
    n_folds, dropout, dims = len(model.networks), float(model.plan.dropout), int(model.plan.dims)
    method = uncertainty
    if method == "auto":
        method = "ensemble" if n_folds > 1 else "mc_dropout" if dropout > 0 else "tta"
    if method == "ensemble" and n_folds < 2:
        raise InvalidParameterError("an ensemble needs several folds", parameter="--uncertainty",
                                    expected="a model with 2 or more trained folds", found=f"{n_folds} fold",
                                    fix="train more folds, or use --uncertainty tta (or mc_dropout)")
    if method == "mc_dropout" and dropout <= 0:
        raise InvalidParameterError("the model has no dropout to sample", parameter="--uncertainty",
                                    expected="a plan with dropout > 0", found=f"dropout {dropout:g}",
                                    fix="use --uncertainty tta or ensemble, or train with --set dropout=0.2")
    if n_samples is not None and (isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer))
                                  or n_samples < 1):
        raise InvalidParameterError("not a positive number of samples", parameter="--samples",
                                    expected="an integer >= 1", found=repr(n_samples), fix="e.g. --samples 20")
    flips = 2 ** dims
    if method == "tta":
        if n_samples is not None and n_samples > flips:
            raise InvalidParameterError("more TTA samples than flip sets", parameter="--samples",
                                        expected=f"at most {flips} for {dims}D inputs", found=n_samples,
                                        fix=f"use --samples {flips} or fewer, or --uncertainty mc_dropout")
        per_fold = n_samples or flips
    elif method == "mc_dropout":
        per_fold = n_samples or _MC_DEFAULT
    else:
        per_fold = 1
    return method, per_fold * n_folds


def _accessor(model: ClassificationModel, samples: Any) -> tuple[list[str], Callable[[int], tuple[Any, str]],
                                                                   list[Any]]:
    """(ids, get(i) -> (array or Image, description), labels) for every kind of ``samples``."""
    dims = int(model.plan.dims)
    if hasattr(samples, "ids") and hasattr(samples, "load_image"):
        sdims = getattr(samples, "dims", None)
        if sdims is not None and int(sdims) != dims:
            raise InvalidParameterError(
                f"the inputs are {sdims}D but the model takes {dims}D inputs", path=getattr(samples, "source", None),
                parameter="input", expected=f"{dims}D images", found=f"{sdims}D images",
                fix="use a model trained on data of this dimensionality")
        if isinstance(samples, PredictionInputs):
            labels = list(samples.labels)
        elif hasattr(samples, "class_names") and hasattr(samples, "task") and hasattr(samples, "labels"):
            labels = label_names(samples)  # a ClassificationDataset
        else:
            labels = [None] * len(samples.ids)
        describe = getattr(samples, "describe", lambda i: str(samples.ids[i]))
        return list(samples.ids), lambda i: (samples.load_image(i), describe(i)), labels
    if isinstance(samples, Image):
        samples = [samples]
    if isinstance(samples, np.ndarray):
        if samples.ndim != dims + 2:
            raise InvalidParameterError("a stacked array must be (N, C, *spatial)", parameter="samples",
                                        expected=f"{dims + 2} axes for a {dims}D model", found=samples.shape,
                                        fix="pass a list of samples, or stack them with a channel axis")
        samples = list(samples)
    if isinstance(samples, Mapping):
        ids = [str(k) for k in samples]
        values = list(samples.values())
    elif isinstance(samples, Sequence) and not isinstance(samples, (str, bytes)):
        ids = [str(i) for i in range(len(samples))]
        values = list(samples)
    else:
        raise InvalidParameterError("unsupported samples", parameter="samples",
                                    expected="arrays, Images, a mapping id -> array, a ClassificationDataset or "
                                             "PredictionInputs", found=type(samples).__name__,
                                    fix="wrap the sample in a list")
    return ids, lambda i: (values[i], f"sample '{ids[i]}'"), [None] * len(ids)



def _explain(model: ClassificationModel, x: torch.Tensor, targets: list[int], method: str) -> np.ndarray:
    from medimg.explain.saliency import grad_cam, occlusion_sensitivity

    maps = []
    for net in model.networks:
        if method in ("gradcam", "gradcam++"):
            maps.append(grad_cam(net, x, target_layer=net.cam_layer, class_index=targets,
                                 plus_plus=method == "gradcam++"))
        else:
            size = tuple(int(s) for s in x.shape[2:])
            patch = tuple(max(1, s // 4) for s in size)
            stride = tuple(max(1, p // 2) for p in patch)
            maps.append(occlusion_sensitivity(net, x, patch=patch, stride=stride, class_index=targets,
                                              baseline="mean", batch_size=32))
    sal = np.mean(maps, axis=0).astype(np.float32)
    if method in ("gradcam", "gradcam++") and len(maps) > 1:  # the mean of [0, 1] maps, rescaled per sample
        flat = sal.reshape(len(sal), -1)
        top = flat.max(axis=1).reshape(-1, *[1] * (sal.ndim - 1))
        sal = np.where(top > 0, sal / np.where(top > 0, top, 1.0), 0.0).astype(np.float32)
    return sal


def predict_samples(
    model: ClassificationModel,
    samples: Any,
    *,
    uncertainty: str = "auto",
    n_samples: int | None = None,
    explain: str = "gradcam",
    batch_size: int | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    precision: str = "auto",
) -> list[ClassPrediction]:
    """Classify samples with every fold of ``model``: calibrated probabilities, uncertainty and a saliency map.

    Each sample is preprocessed as in training (:func:`~medimg.tasks.classify.preprocess.preprocess_sample`). Per batch:
    every fold's logits (eval mode, ``precision``, inference mode) are divided by that fold's temperature and
    turned into probabilities (softmax, or a sigmoid per label), and the folds are averaged: these are the
    reported, calibrated ``probabilities`` and the decision. The uncertainty comes from S probability samples:

    * ``"ensemble"``: one sample per fold (needs 2+ folds);
    * ``"mc_dropout"``: ``n_samples`` (default 20) dropout passes per fold (needs plan dropout > 0);
    * ``"tta"``: ``n_samples`` (default all: 4 in 2D, 8 in 3D) flip variants per fold;
    * ``"auto"``: the fold ensemble if there are several folds, else MC dropout if the model has dropout, else
      TTA.

    ``entropy`` is the predictive entropy of their mean, ``mutual_information`` the BALD disagreement (0 when all
    samples agree). The explanation map is of the predicted class (multi-label: the most probable label), the
    mean over folds, on the network's input grid (:meth:`ClassPrediction.saliency_on_input` maps it back):
    ``"gradcam"``, ``"gradcam++"`` (target layer ``model.cam_layer``, in [0, 1]), ``"occlusion"`` (patches of
    a quarter of each side, half-patch stride, mean baseline; the drop in the softmax probability of the class,
    for multi-label models the softmax over the labels) or ``"none"``.

    Args:
        model: from :func:`load`.
        samples: :class:`PredictionInputs`, a :class:`~medimg.tasks.classify.data.ClassificationDataset`, an
            :class:`~medimg.core.image.Image` or a list of them, a list of arrays ((C, *spatial) or (*spatial)),
            a mapping id -> array/Image, or a stacked (N, C, *spatial) array. Arrays and Images hold the values of
            the file (the plan normalises them).
        uncertainty: see above.
        n_samples: samples per fold for MC dropout and TTA.
        explain: see above.
        batch_size: samples per batch; None: the plan's batch size (at most 32).
        seed: seeds the MC dropout masks (the global random state is left alone).
        progress: called with (samples done, total) after each batch.
        precision: "auto" (bf16 autocast where the CPU computes bf16 natively, else float32), "fp32" or "bf16"
            (:func:`medimg.train.precision.resolve_precision`).

    Returns:
        one :class:`ClassPrediction` per sample, in input order.

    Raises:
        InvalidParameterError: an unknown method, an ensemble of one fold, MC dropout without dropout, a sample of
            the wrong dimensionality or channel count (named), NaN values.
        ImageReadError: a sample cannot be read (named).

    Example:
        >>> preds = predict_samples(load("runs/busi"), open_prediction_inputs("us.png"))  # doctest: +SKIP
        >>> preds[0].pred, preds[0].probabilities.sum(), preds[0].saliency.shape                   # doctest: +SKIP
        ('benign', 1.0, (224, 224))
    """
    from medimg.explain.calibration import apply_temperature
    from medimg.explain.uncertainty import mutual_information, predictive_entropy, sample_predictions
    from medimg.train.precision import resolve_precision

    bf16 = resolve_precision(precision, "cpu") is not None
    if explain not in EXPLAIN_METHODS:
        raise InvalidParameterError("unknown explanation method", parameter="--explain",
                                    expected=" | ".join(EXPLAIN_METHODS), found=repr(explain),
                                    fix="pick one of the listed methods")
    method, total_samples = _resolve_uncertainty(model, uncertainty, n_samples)
    per_fold = total_samples // len(model.networks) if method != "ensemble" else 1
    plan = model.plan
    multilabel = model.multilabel
    names = model.class_names
    ids, get, labels = _accessor(model, samples)
    bs = int(batch_size or min(int(plan.batch_size), 32))
    if bs < 1:
        raise InvalidParameterError("not a positive batch size", parameter="batch_size", found=bs, fix="e.g. 8")
    logger.info("classifying %d samples with %s (folds %s): uncertainty %s (%d samples), explanation %s",
                len(ids), model.name, ", ".join(model.folds), method, total_samples, explain)
    out: list[ClassPrediction] = []
    for start in range(0, len(ids), bs):
        chunk = list(range(start, min(start + bs, len(ids))))
        prepared = []
        for i in chunk:
            sample, where = get(i)
            prepared.append(prepare_input(sample, where, ids[i], plan))
        x = torch.from_numpy(np.stack([p[0] for p in prepared]))
        fold_probs = [np.asarray(apply_temperature(network_logits(net, x, batch_size=bs, autocast_bf16=bf16), t,
                                                   multilabel=multilabel))
                      for net, t in zip(model.networks, model.temperatures)]
        probs = np.mean(fold_probs, axis=0)
        if method == "ensemble":
            stack = np.stack(fold_probs)
        else:
            parts = []
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                for f, (net, t) in enumerate(zip(model.networks, model.temperatures)):
                    s = sample_predictions(net, x, n=per_fold, mode=method, multilabel=multilabel, temperature=t,
                                           seed=seed + 1000 * f + start if method == "mc_dropout" else None)
                    parts.append(s.float().numpy().astype(np.float64))
            stack = np.concatenate(parts)
        if not multilabel:
            stack = stack / stack.sum(axis=2, keepdims=True)  # float32 softmax rounding
        entropy = predictive_entropy(stack, multilabel=multilabel)
        mi = mutual_information(stack, multilabel=multilabel)
        targets = [int(np.argmax(p)) for p in probs]
        saliency = _explain(model, x, targets, explain) if explain != "none" else None
        for b, i in enumerate(chunk):
            p = probs[b]
            details: dict[str, Any] = {}
            if multilabel:
                pred: str | list[str] = [n for n, v in zip(names, p) if v >= 0.5]
                details["entropy_per_label"] = {n: float(v) for n, v in zip(names, entropy[b])}
                details["mutual_information_per_label"] = {n: float(v) for n, v in zip(names, mi[b])}
                e, m = float(np.mean(entropy[b])), float(np.mean(mi[b]))
            else:
                pred = names[targets[b]]
                e, m = float(entropy[b]), float(mi[b])
            if len(model.networks) > 1:
                details["fold_probabilities"] = {f: [float(v) for v in fp[b]] for f, fp in zip(model.folds,
                                                                                               fold_probs)}
            out.append(ClassPrediction(
                id=ids[i], class_names=names, task=plan.task, probabilities=p.astype(np.float64), pred=pred,
                entropy=e, mutual_information=m, uncertainty_method=method, n_samples=total_samples,
                saliency=None if saliency is None else saliency[b], explain_method=explain,
                explained_class=names[targets[b]] if explain != "none" else None, input_shape=prepared[b][1],
                resize=plan.resize, display=prepared[b][0][0].copy(), label=labels[i], details=details))
        if progress is not None:
            progress(len(out), len(ids))
    return out



def predict(model: ClassificationModel, inputs: Any, *, split: str | Sequence[str] | None = None,
            series: str | int | None = None, uncertainty: str = "auto", samples: int | None = None,
            explain: str = "gradcam", seed: int = 0, precision: str = "auto", batch_size: int | None = None,
            progress: Callable[[int, int], None] | None = None) -> ClassifyResult:
    """Classify ``inputs`` with ``model``, in memory: nothing is written (``result.write(out)`` writes the files of
    ``medimg predict``).

    Args:
        model: from :func:`load`.
        inputs: a path (an image file, a DICOM series folder, a folder of images or of series, a CSV or a MedMNIST
            .npz: :func:`~medimg.tasks.classify.inputs.open_prediction_inputs`), an
            :class:`~medimg.core.image.Image`, :class:`~medimg.tasks.classify.inputs.PredictionInputs`, or
            anything :func:`predict_samples` takes.
        split, series: for a path: which split (CSV, .npz, split folders) or DICOM series to read.
        uncertainty, samples, explain, seed, precision, batch_size, progress: as in :func:`predict_samples`
            (``samples`` is its ``n_samples``).

    Returns:
        the :class:`~medimg.tasks.classify.writer.ClassifyResult`.

    Raises:
        InvalidParameterError, ImageReadError: as :func:`open_prediction_inputs` and :func:`predict_samples`.

    Example:
        >>> result = predict(load("adrenalmnist3d_model"), "adrenal.npz", split="val")  # doctest: +SKIP
        >>> result.to_dict()["metrics"]["auc_macro"], result.write("out")[:1]               # doctest: +SKIP
        (0.87, [PosixPath('out/explain/val_0.nii.gz')])
    """
    from medimg.train.precision import precision_name, resolve_precision

    source = None
    if isinstance(inputs, (str, os.PathLike)):
        source = str(inputs)
        inputs = open_prediction_inputs(inputs, split=split, series=series)
    elif split is not None or series is not None:
        raise InvalidParameterError("split and series apply to a path", parameter="split", expected="a path input",
                                    found=type(inputs).__name__, fix="leave split and series out")
    preds = predict_samples(model, inputs, uncertainty=uncertainty, n_samples=samples, explain=explain,
                            batch_size=batch_size, seed=seed, progress=progress, precision=precision)
    return ClassifyResult(predictions=preds, model=model, images=[inputs] if isinstance(inputs, Image) else inputs,
                          source=source, precision=precision_name(resolve_precision(precision, "cpu")))
