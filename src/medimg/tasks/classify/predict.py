"""Prediction with a trained classification model folder: calibrated probabilities, uncertainty and an explanation map
for every sample, and the files that carry them.

* :func:`load_classifier` reads a model folder written by :func:`medimg.tasks.classify.train_classification`:
  ``plan.json``, one network per ``fold_*/model.pt`` and each fold's temperature (``fold_*/calibration.json``).
* :func:`open_prediction_inputs` turns what a user points at into samples: an image file, a DICOM series folder,
  a folder of images (class sub-folders, split folders or flat), a folder of DICOM series folders (one sample
  each), a CSV (a ``path`` column; labels optional) or a MedMNIST ``.npz``.
* :func:`predict_samples` preprocesses the samples exactly as in training, runs every fold (batched, bf16
  autocast where the CPU computes bf16 natively: ``precision``; inference mode), averages the folds'
  temperature-scaled probabilities, measures the uncertainty
  (predictive entropy and mutual information over a fold ensemble, MC dropout or flip TTA) and computes a
  saliency map (Grad-CAM, Grad-CAM++ or occlusion) of the predicted class.
* :func:`write_predictions` writes ``predictions.csv`` (one row per sample), ``predictions.json`` and, per
  sample, ``explain/<id>.png`` (2D: overlay; 3D: montage of the most salient slices) and ``explain/<id>.nii.gz``
  (the map on the input's grid), into a temporary folder renamed into place at the end: never a half-written
  output folder.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medimg.core.enums import Kind
from medimg.core.errors import ImageReadError, InvalidParameterError, MedimgError
from medimg.core.image import Image
from medimg.io.csv_safe import safe_writer

logger = logging.getLogger(__name__)

__all__ = [
    "UNCERTAINTY_METHODS",
    "EXPLAIN_METHODS",
    "ClassificationModel",
    "ClassPrediction",
    "PredictionInputs",
    "is_classification_model",
    "load_classifier",
    "network_logits",
    "open_prediction_inputs",
    "predict_samples",
    "map_to_input",
    "safe_file_stem",
    "write_predictions",
    "prediction_metrics",
    "write_explanation",
]

#: Values of ``uncertainty=`` in :func:`predict_samples`.
UNCERTAINTY_METHODS = ("auto", "ensemble", "mc_dropout", "tta")
#: Values of ``explain=`` in :func:`predict_samples`.
EXPLAIN_METHODS = ("gradcam", "gradcam++", "occlusion", "none")
_CLASSIFY_TASKS = ("binary", "multiclass", "multilabel")
_MC_DEFAULT = 20


# ---- the model -------------------------------------------------------------------------------------------------
def is_classification_model(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder whose ``plan.json`` is a classification plan (task binary, multiclass or
    multilabel, with an ``input_size``), as :class:`~medimg.plans.classify_plan.ClassifyPlan` writes it.

    A segmentation plan (task "segment", ``patch_size``) or a folder without ``plan.json`` gives False.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "plan.json").write_text('{"schema_version": 1, "task": "segment"}')
        >>> is_classification_model(folder)
        False
    """
    plan = Path(path) / "plan.json"
    if not plan.is_file():
        return False
    try:
        data = json.loads(plan.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and data.get("task") in _CLASSIFY_TASKS and "input_size" in data


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


def load_classifier(path: str | os.PathLike[str], *, folds: Sequence[str | int] | None = None) -> ClassificationModel:
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
        >>> model = load_classifier("runs/adrenal")            # doctest: +SKIP
        >>> model.folds, model.temperatures                    # doctest: +SKIP
        (['fold_0', 'fold_1'], [1.21, 1.34])
    """
    from medimg.models import ClassifierSpec, build_classifier
    from medimg.plans.classify_plan import ClassifyPlan
    from medimg.plans.model_folder import check_network_memory, model_task
    from medimg.train.callbacks import load_weights

    root = Path(path)
    task = model_task(root)
    if task != "classify" or not is_classification_model(root):
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


# ---- inputs ----------------------------------------------------------------------------------------------------
class PredictionInputs:
    """Samples to classify, read lazily one at a time: ids, an optional known label per sample, ``load_image``.

    Build with :func:`open_prediction_inputs`. ``labels[i]`` is the class name (multi-label: the list of present
    labels) when the source says it (class folders, a CSV label column, MedMNIST), else None.
    """

    def __init__(self, *, source: Path, layout: str, ids: Sequence[str], dims: int,
                 paths: Sequence[Path] | None = None, dataset: Any = None, labels: Sequence[Any] | None = None,
                 series: str | int | None = None, images: Sequence[Image] | None = None) -> None:
        self.source = Path(source)
        self.layout = layout
        self._ids = tuple(ids)
        self.dims = int(dims)
        self._paths = tuple(paths) if paths is not None else None
        self._dataset = dataset
        self._images = tuple(images) if images is not None else None
        self.labels: tuple[Any, ...] = tuple(labels) if labels is not None else (None,) * len(self._ids)
        self._series = series
        self._index = {sid: i for i, sid in enumerate(self._ids)}
        if len(self._index) != len(self._ids):
            dup = next(s for s in self._ids if self._ids.count(s) > 1)
            raise ImageReadError("duplicate sample id", path=self.source, expected="each sample once",
                                 found=repr(dup), fix="remove the duplicate, or give the rows distinct 'id' values")

    @property
    def ids(self) -> tuple[str, ...]:
        return self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return f"PredictionInputs(source='{self.source}', layout={self.layout}, samples={len(self)}, dims={self.dims})"

    def _position(self, i: int | str) -> int:
        if isinstance(i, str):
            if i not in self._index:
                raise InvalidParameterError("unknown sample id", parameter="i", found=repr(i),
                                            fix="take ids from inputs.ids")
            return self._index[i]
        return int(i)

    def describe(self, i: int | str) -> str:
        """Where a sample comes from (for messages)."""
        pos = self._position(i)
        if self._dataset is not None:
            return self._dataset.describe(pos)
        if self._paths is not None:
            return str(self._paths[pos])
        return str(self.source)

    def load_image(self, i: int | str) -> Image:
        """The sample as read (C, Z, Y, X), with its geometry; never rescaled."""
        from medimg.tasks.classify.data import _read_file

        pos = self._position(i)
        if self._images is not None:
            return self._images[pos]
        if self._dataset is not None:
            return self._dataset.load_image(pos)
        assert self._paths is not None
        path = self._paths[pos]
        if path.is_dir():
            from medimg.io import read

            return read(path, series=self._series)
        return _read_file(path)


def _label_names(ds: Any) -> list[Any]:
    names = list(ds.class_names)
    if ds.task == "multilabel":
        return [[n for n, v in zip(names, row) if v] for row in np.asarray(ds.labels)]
    return [names[int(v)] for v in np.asarray(ds.labels)]


def _from_dataset(ds: Any) -> PredictionInputs:
    return PredictionInputs(source=ds.source, layout=ds.layout, ids=ds.ids, dims=ds.dims, dataset=ds,
                            labels=_label_names(ds))


def _is_medmnist(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            names = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
    except (OSError, zipfile.BadZipFile):
        return False
    return any(n in ("train_images", "val_images", "test_images") for n in names)


def _looks_dicom_series(folder: Path) -> bool:
    """A folder of files only, none with a non-DICOM image extension."""
    from medimg.tasks.classify.data import IMAGE_EXTENSIONS, _suffix, _visible

    entries = [p for p in folder.iterdir() if _visible(p)]
    if not entries or any(p.is_dir() for p in entries):
        return False
    other_images = [p for p in entries if _suffix(p) in IMAGE_EXTENSIONS and _suffix(p) != ".dcm"]
    return not other_images


def _probe_dims(source: Path, paths: Sequence[Path], where: Sequence[str]) -> int:
    from medimg.tasks.classify.data import _check_consistency, _probe_all

    headers = _probe_all(list(paths), list(where))
    return _check_consistency(source, headers, [str(p) for p in paths])[1]


def _csv_inputs(path: Path, split: str | Sequence[str] | None) -> PredictionInputs:
    from medimg.tasks.classify.data import (
        _ID_COLUMNS,
        _LABEL_COLUMNS,
        _PATH_COLUMNS,
        _SPLIT_COLUMNS,
        _find_column,
        _read_csv,
    )

    columns, rows = _read_csv(path)
    path_col = _find_column(columns, _PATH_COLUMNS)
    if path_col is None:
        raise ImageReadError("CSV has no path column", path=path, expected="a column named " + " or ".join(
            f"'{c}'" for c in _PATH_COLUMNS), found=f"columns {columns}",
            fix="name the column holding the image paths 'path'")
    id_col, split_col = _find_column(columns, _ID_COLUMNS), _find_column(columns, _SPLIT_COLUMNS)
    label_col = _find_column(columns, _LABEL_COLUMNS)
    if split is not None:
        if split_col is None:
            raise InvalidParameterError("split given but the CSV has no 'split' column", path=path,
                                        parameter="--split", expected="a 'split' column", found=f"columns {columns}",
                                        fix="leave --split out, or add a 'split' column")
        wanted = {split.lower()} if isinstance(split, str) else {s.lower() for s in split}
        rows = [(line, r) for line, r in rows if r[split_col].lower() in wanted]
    if not rows:
        raise ImageReadError("CSV has no rows" + (f" for split {split}" if split else ""), path=path,
                             expected="one row per image", found="none", fix="add rows, or check --split")
    ids, paths, where, labels = [], [], [], []
    for k, (line, r) in enumerate(rows, start=1):
        cell = r[path_col]
        p = Path(cell).expanduser() if cell else None
        p = p if p is None or p.is_absolute() else path.parent / p
        if p is None or not p.exists():
            raise ImageReadError(
                f"row {k} (line {line}) points to a missing file", path=path,
                expected="an existing image file or DICOM folder", found=f"'{p}' does not exist" if p else "an empty "
                "path", fix="correct the path (relative paths are relative to the CSV's folder) or remove the row")
        ids.append(r[id_col] if id_col is not None and r[id_col] else cell)
        paths.append(p)
        where.append(f"row {k} (line {line})")
        labels.append(r[label_col] if label_col is not None and r[label_col] else None)
    dims = _probe_dims(path, paths, where)
    return PredictionInputs(source=path, layout="csv", ids=ids, dims=dims, paths=paths, labels=labels)


def open_prediction_inputs(source: str | os.PathLike[str], *, split: str | Sequence[str] | None = None,
                           series: str | int | None = None) -> PredictionInputs:
    """The samples of ``source`` for prediction (every file is probed first, so a bad input fails before any work).

    Layouts, by what ``source`` is:

    * an image file (PNG/JPEG/TIFF, NIfTI, NRRD/MHA, a single DICOM file, an image .npz): one sample, id = name;
    * a MedMNIST ``.npz``: the ``split`` arrays (default: "test" if present, else "val"), ids ``split_index``,
      labels known;
    * a CSV/TSV with a ``path`` column (``id``, ``label``/``class`` and ``split`` optional; every row unless
      ``split`` is given);
    * a folder of DICOM files (no sub-folders): one 3D sample (``series`` picks one of several series);
    * a folder whose sub-folders hold only DICOM files: one sample per sub-folder (a study of series);
    * a folder of class sub-folders, or of split folders (``train/``, ``val/``, ``test/`` holding class folders;
      default split "test", else "val"): as :func:`~medimg.tasks.classify.data.open_classification_dataset`
      opens it, labels known;
    * a flat folder of image files (``*_mask*`` files skipped): one sample per file, id = file name.

    Raises:
        ImageReadError: nothing at ``source``, an unknown layout (empty folder, unsupported file), a CSV row
            pointing to a missing file, mixed 2D and 3D inputs, unreadable files (named).
        InvalidParameterError: ``split`` for an input without splits, an unknown split.

    Example:
        >>> import tempfile
        >>> from PIL import Image as PILImage
        >>> folder = Path(tempfile.mkdtemp())
        >>> for name in ("a.png", "b.png", "b_mask.png"):
        ...     PILImage.fromarray(np.zeros((8, 6), np.uint8)).save(folder / name)
        >>> inputs = open_prediction_inputs(folder)
        >>> inputs.ids, inputs.dims, inputs.load_image(0).spatial_shape
        (('a.png', 'b.png'), 2, (1, 8, 6))
    """
    from medimg.tasks.classify.data import (
        DEFAULT_EXCLUDE,
        IMAGE_EXTENSIONS,
        SPLIT_NAMES,
        _excluded,
        _probe,
        _suffix,
        _visible,
        open_classification_dataset,
    )

    src = Path(source).expanduser()
    if not src.exists():
        raise ImageReadError("no such file or folder", path=src, expected="an image file, a folder, a CSV or a .npz",
                             found="nothing at this path", fix="check the path")
    suffix = _suffix(src)
    if src.is_file():
        if suffix in (".csv", ".tsv"):
            return _csv_inputs(src, split)
        if suffix == ".npz" and _is_medmnist(src):
            if split is None:
                from medimg.tasks.classify.data import _NpzStore

                have = {k[: -len("_images")] for k in _NpzStore(src).headers if k.endswith("_images")}
                split = "test" if "test" in have else "val" if "val" in have else "train"
                logger.info("%s: predicting the '%s' split", src, split)
            return _from_dataset(open_classification_dataset(src, split=split, single_class_ok=True))
        if split is not None:
            raise InvalidParameterError("--split applies to CSV files, MedMNIST .npz files and split folders",
                                        parameter="--split", expected="no --split for a single image",
                                        found=repr(split), fix="leave --split out")
        if suffix not in IMAGE_EXTENSIONS:
            from medimg.io.api import detect_format

            try:
                detect_format(src)
            except MedimgError as exc:
                raise ImageReadError(
                    "unknown input layout", path=src, expected="an image file, a DICOM series folder, a folder of "
                    "images, a CSV or a MedMNIST .npz", found=f"a file with extension '{suffix or 'none'}'",
                    fix="give an image (PNG, NIfTI, DICOM, ...) or list the images in a CSV file") from exc
        header = _probe(src)
        return PredictionInputs(source=src, layout="file", ids=[src.name], dims=header.dims, paths=[src])
    subdirs = sorted(p for p in src.iterdir() if p.is_dir() and _visible(p))
    if subdirs:
        if all(_looks_dicom_series(p) for p in subdirs):
            if split is not None:
                raise InvalidParameterError("--split given for a folder of DICOM series", parameter="--split",
                                            expected="no --split", found=repr(split), fix="leave --split out")
            dims = _probe_dims(src, subdirs, [p.name for p in subdirs])
            return PredictionInputs(source=src, layout="series_folders", ids=[p.name for p in subdirs], dims=dims,
                                    paths=subdirs, series=series)
        names = [p.name for p in subdirs]
        if split is None and all(n.lower() in SPLIT_NAMES for n in names):
            split = next((n for want in ("test", "val", "valid", "validation") for n in names if n.lower() == want),
                         None)
            if split:
                logger.info("%s: predicting the '%s' split folder", src, split)
        return _from_dataset(open_classification_dataset(src, split=split, single_class_ok=True))
    if split is not None:
        raise InvalidParameterError("--split applies to CSV files, MedMNIST .npz files and split folders",
                                    parameter="--split", expected="no --split for a flat folder", found=repr(split),
                                    fix="leave --split out")
    files = sorted(p for p in src.iterdir() if p.is_file() and _visible(p))
    images = [p for p in files if _suffix(p) in IMAGE_EXTENSIONS and _suffix(p) != ".dcm"
              and not _excluded(p.name, DEFAULT_EXCLUDE)]
    if images:
        dims = _probe_dims(src, images, [""] * len(images))
        return PredictionInputs(source=src, layout="flat_folder", ids=[p.name for p in images], dims=dims,
                                paths=images)
    if files:  # DICOM files: one series
        from medimg.io import read

        image = read(src, series=series)
        return PredictionInputs(source=src, layout="dicom_series", ids=[src.name], dims=2 if image.is_2d else 3,
                                images=[image], paths=[src])
    raise ImageReadError("unknown input layout: the folder is empty", path=src,
                         expected="image files, class folders, or DICOM files", found="nothing readable",
                         fix="point at the images to classify")


# ---- predictions --------------------------------------------------------------------------------------------------
def map_to_input(array: np.ndarray, input_shape: Sequence[int], *, resize: str = "resize") -> np.ndarray:
    """Map an array on the network's input grid (``plan.input_size``) back onto the sample's own grid.

    The inverse of the spatial step of :func:`~medimg.plans.classify_plan.preprocess_sample`: ``"resize"``
    resizes linearly; ``"crop_pad"`` puts the centred crop back (zeros outside it) and cuts the padding away.

    Args:
        array: (Y, X) or (Z, Y, X) map on the input grid.
        input_shape: the sample's spatial shape, same number of axes.
        resize: the plan's ``resize`` policy.

    Returns:
        float32 map of shape ``input_shape``.

    Example:
        >>> map_to_input(np.ones((4, 4)), (8, 6)).shape
        (8, 6)
        >>> float(map_to_input(np.ones((4, 4)), (2, 6), resize="crop_pad").sum())  # padding cut, crop put back
        8.0
    """
    a = np.asarray(array, np.float32)
    shape = tuple(int(s) for s in input_shape)
    if a.ndim != len(shape):
        raise InvalidParameterError("map and input have different numbers of axes", parameter="input_shape",
                                    expected=f"{a.ndim} sizes", found=shape, fix="give the sample's spatial shape")
    if a.shape == shape:
        return a.copy()
    if resize == "resize":
        from skimage.transform import resize as sk_resize

        return sk_resize(a, shape, order=1, mode="edge", anti_aliasing=False, preserve_range=True).astype(np.float32)
    out = np.zeros(shape, np.float32)
    src, dst = [], []
    for have, want in zip(shape, a.shape):  # forward: sample (have) -> input grid (want)
        if have >= want:
            start = (have - want) // 2
            dst.append(slice(start, start + want))
            src.append(slice(None))
        else:
            start = (want - have) // 2
            dst.append(slice(None))
            src.append(slice(start, start + have))
    out[tuple(dst)] = a[tuple(src)]
    return out


@dataclass
class ClassPrediction:
    """What the model says about one sample.

    Attributes:
        id: the sample id.
        class_names: the model's classes.
        task: "binary", "multiclass" or "multilabel".
        probabilities: (K,) calibrated probabilities (each fold's temperature, then the mean over folds);
            softmax (sums to 1) or one sigmoid per label (multi-label).
        pred: the predicted class name; multi-label: the list of labels with probability >= 0.5.
        entropy: predictive entropy (nats) of the mean of the uncertainty samples; multi-label: mean over labels.
        mutual_information: mutual information (nats) between prediction and model (epistemic part); multi-label:
            mean over labels.
        uncertainty_method: "ensemble", "mc_dropout" or "tta"; n_samples: the samples it drew.
        saliency: the explanation map on the network's input grid (``plan.input_size``: (Y, X) or (Z, Y, X)),
            Grad-CAM in [0, 1], occlusion a probability drop; None with ``explain="none"``.
        explain_method, explained_class: how the map was made and for which class.
        input_shape: the sample's spatial shape as given ((Y, X) or (Z, Y, X)); see :meth:`saliency_on_input`.
        resize: the plan's resize policy (used to map the saliency back).
        display: channel 0 of the preprocessed input (same grid as ``saliency``), for figures without the image.
        label: the known true label of the sample (class name, or list for multi-label), else None.
        details: per-label uncertainty (multi-label) and other extras, JSON-ready.
    """

    id: str
    class_names: tuple[str, ...]
    task: str
    probabilities: np.ndarray
    pred: str | list[str]
    entropy: float
    mutual_information: float
    uncertainty_method: str
    n_samples: int
    saliency: np.ndarray | None = None
    explain_method: str = "none"
    explained_class: str | None = None
    input_shape: tuple[int, ...] = ()
    resize: str = "resize"
    display: np.ndarray | None = None
    label: Any = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def confidence(self) -> float:
        """Probability of the predicted class (multi-label: the largest label probability)."""
        return float(np.max(self.probabilities))

    def saliency_on_input(self) -> np.ndarray:
        """The saliency map on the sample's own grid (``input_shape``), e.g. for an overlay on the original.

        Raises:
            InvalidParameterError: the prediction has no map (``explain="none"``).
        """
        if self.saliency is None:
            raise InvalidParameterError("prediction has no saliency map", parameter="explain", found="none",
                                        fix="predict with explain='gradcam' (or 'gradcam++', 'occlusion')")
        return map_to_input(self.saliency, self.input_shape, resize=self.resize)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no arrays other than the probabilities)."""
        out = {
            "id": self.id,
            "probabilities": {c: float(p) for c, p in zip(self.class_names, self.probabilities)},
            "pred": self.pred,
            "confidence": self.confidence,
            "entropy": float(self.entropy),
            "mutual_information": float(self.mutual_information),
            "uncertainty": {"method": self.uncertainty_method, "n_samples": int(self.n_samples)},
            "explain": {"method": self.explain_method, "class": self.explained_class},
            "input_shape": list(self.input_shape),
        }
        if self.label is not None:
            out["label"] = self.label
        out.update(self.details)
        return out


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
            labels = _label_names(samples)  # a ClassificationDataset
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


def _prepare(sample: Any, where: str, sid: str, plan: Any) -> tuple[np.ndarray, tuple[int, ...]]:
    """(preprocessed (C, *input_size), the sample's spatial shape); errors name the sample."""
    from medimg.plans.classify_plan import preprocess_sample

    dims = int(plan.dims)
    if isinstance(sample, Image):
        if (dims == 2) != sample.is_2d:
            raise InvalidParameterError(
                "wrong dimensionality for the model", path=where, parameter="input", expected=f"a {dims}D image",
                found=f"a {'2D' if sample.is_2d else '3D'} image of shape (Z, Y, X) {sample.spatial_shape}",
                fix="use a model trained on data of this dimensionality")
        arr = np.asarray(sample.voxels)
        arr = arr[:, 0] if dims == 2 else arr
    else:
        arr = np.asarray(sample)
        if arr.ndim not in (dims, dims + 1):
            raise InvalidParameterError(
                "wrong dimensionality for the model", path=where, parameter="input",
                expected=f"({'Y, X' if dims == 2 else 'Z, Y, X'}) or (C, {'Y, X' if dims == 2 else 'Z, Y, X'})",
                found=f"shape {arr.shape}", fix="use a model trained on data of this dimensionality")
        if arr.ndim == dims:
            arr = arr[None]
    try:
        x = preprocess_sample(arr, plan)
    except MedimgError as exc:
        raise InvalidParameterError(f"sample '{sid}': {exc.what}", path=where, parameter=exc.parameter,
                                    expected=exc.expected, found=exc.found, fix=exc.fix) from exc
    return x, tuple(int(s) for s in arr.shape[1:])


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

    Each sample is preprocessed as in training (:func:`~medimg.plans.classify_plan.preprocess_sample`). Per batch:
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
        model: from :func:`load_classifier`.
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
        >>> preds = predict_samples(load_classifier("runs/busi"), open_prediction_inputs("us.png"))  # doctest: +SKIP
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
            prepared.append(_prepare(sample, where, ids[i], plan))
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


# ---- writing ----------------------------------------------------------------------------------------------------
def safe_file_stem(sample_id: str) -> str:
    """A file-name stem for a sample id: image extension dropped, runs of characters other than letters, digits,
    ``.``, ``_`` and ``-`` replaced by ``_``, at most 120 characters.

    Example:
        >>> safe_file_stem("benign/benign (1).png"), safe_file_stem("val_3"), safe_file_stem("../x.nii.gz")
        ('benign_benign_1', 'val_3', 'x')
    """
    from medimg.tasks.classify.data import IMAGE_EXTENSIONS

    name = str(sample_id)
    low = name.lower()
    for ext in sorted(IMAGE_EXTENSIONS, key=len, reverse=True):
        if low.endswith(ext):
            name = name[: -len(ext)]
            break
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")
    stem = re.sub(r"\.{2,}", ".", stem)
    return stem[:120] or "sample"


def _original(images: Any, index: int, pred: ClassPrediction) -> Image | np.ndarray | None:
    if images is None:
        return None
    if hasattr(images, "load_image"):
        return images.load_image(pred.id)
    if isinstance(images, Mapping):
        return images.get(pred.id)
    return images[index]


def _as_display(original: Image | np.ndarray | None, pred: ClassPrediction) -> tuple[np.ndarray, np.ndarray,
                                                                                      Image | None]:
    """(intensities, saliency) on one grid for figures, and the Image whose geometry the NIfTI map takes."""
    assert pred.saliency is not None
    dims = pred.saliency.ndim
    if original is None:
        return pred.display if pred.display is not None else np.zeros_like(pred.saliency), pred.saliency, None
    if isinstance(original, Image):
        vox = np.asarray(original.voxels, np.float32)
        arr = vox[:, 0] if dims == 2 else vox
        image: Image | None = original
    else:
        arr = np.asarray(original, np.float32)
        arr = arr[None] if arr.ndim == dims else arr
        image = None
    if tuple(arr.shape[1:]) != tuple(pred.input_shape):
        raise InvalidParameterError(
            "image does not match the prediction", parameter="images", expected=f"spatial shape {pred.input_shape} "
            f"of sample '{pred.id}'", found=tuple(arr.shape[1:]), fix="pass the images the predictions were made on")
    channels = arr[:3] if arr.shape[0] >= 3 else arr[:1]
    return channels.mean(axis=0), pred.saliency_on_input(), image


def write_explanation(pred: ClassPrediction, original: Any, folder: Path, stem: str) -> dict[str, str]:
    """Write the explanation of one prediction: ``folder/<stem>.png`` (2D: overlay on the image; 3D: montage of
    the most salient slices) and ``folder/<stem>.nii.gz`` (the map, on the grid and geometry of ``original`` when
    it is an Image, else on the network's input grid). ``original``: the sample as given (Image or array), or
    None. Returns the two paths relative to ``folder``'s parent, as ``{"png": ..., "nifti": ...}``.
    """
    from medimg.explain.figures import saliency_montage_png, saliency_overlay_png
    from medimg.io import write
    from medimg.report.classification import decision_text

    shown, sal, image = _as_display(original, pred)
    title = f"{decision_text(pred.pred)} (p={pred.confidence:.2f}); {pred.explain_method}: {pred.explained_class}"
    png = folder / f"{stem}.png"
    if sal.ndim == 2:
        saliency_overlay_png(shown, sal, png, title=title[:80])
    else:
        saliency_montage_png(shown, sal, png, n_slices=min(6, sal.shape[0]), title=title[:80])
    vox = sal[None, None] if sal.ndim == 2 else sal[None]
    meta = {"saliency_method": pred.explain_method, "explained_class": pred.explained_class, "sample_id": pred.id}
    if image is not None:
        sal_img = image.derive(vox.astype(np.float32), operation="classification_saliency", kind=Kind.INTENSITY,
                               metadata=meta, params={"method": pred.explain_method,
                                                      "class": pred.explained_class})
    else:
        sal_img = Image.from_array(vox.astype(np.float32), metadata=meta)
    nii = folder / f"{stem}.nii.gz"
    write(sal_img, nii)
    return {"png": f"{folder.name}/{png.name}", "nifti": f"{folder.name}/{nii.name}"}


def _fmt_label(value: Any) -> str:
    if value is None:
        return ""
    return ";".join(value) if isinstance(value, list) else str(value)


def prediction_metrics(preds: Sequence[ClassPrediction]) -> dict[str, Any] | None:
    """Metrics of predictions whose true labels are known, or None when some sample has no label (or one the model
    does not know).

    The calibrated ``probabilities`` are scored: AUC (macro and per class), accuracy, balanced accuracy, confusion
    matrix, per-class sensitivity/specificity, ECE, Brier score and log loss (as :func:`validation_metrics`
    computes them), and the AUROC of the entropy and of the mutual information for telling the errors from the
    correct decisions (None when all decisions are right or all wrong).

    Example:
        >>> p = [ClassPrediction(id=str(i), class_names=("a", "b"), task="binary", probabilities=np.array(q),
        ...                      pred="ab"[int(q[1] > 0.5)], entropy=e, mutual_information=0.0,
        ...                      uncertainty_method="tta", n_samples=4, label=lab)
        ...      for i, (q, e, lab) in enumerate([([0.9, 0.1], 0.3, "a"), ([0.2, 0.8], 0.5, "b"),
        ...                                       ([0.6, 0.4], 0.7, "b")])]
        >>> m = prediction_metrics(p)
        >>> m["n"], round(m["accuracy"], 3), m["auc_macro"], m["uncertainty_auroc_entropy"]
        (3, 0.667, 1.0, 1.0)
    """
    from medimg.explain.uncertainty import uncertainty_auroc
    from medimg.tasks.classify.trainer import validation_metrics

    if not preds or any(p.label is None for p in preds):
        return None
    names = [str(n) for n in preds[0].class_names]
    task = preds[0].task
    probs = np.clip(np.stack([np.asarray(p.probabilities, np.float64) for p in preds]), 1e-12, 1 - 1e-12)
    if task == "multilabel":
        if any(str(lab) not in names for p in preds for lab in p.label):
            return None
        y = np.array([[int(n in [str(v) for v in p.label]) for n in names] for p in preds])
        logits = np.log(probs / (1 - probs))
        correct = (probs >= 0.5).astype(int) == y
        correct = correct.all(axis=1)
    else:
        if any(str(p.label) not in names for p in preds):
            return None
        y = np.array([names.index(str(p.label)) for p in preds])
        logits = np.log(probs)
        correct = probs.argmax(axis=1) == y
    m = validation_metrics(y, logits, task=task, class_names=names)
    out: dict[str, Any] = {"n": len(preds), "probabilities": "calibrated (as reported per sample)"}
    for key, value in m.items():
        if key.endswith("_after") or key == "uncertainty_auroc":
            continue
        out[key[: -len("_before")] if key.endswith("_before") else key] = value
    for what in ("entropy", "mutual_information"):
        score = [getattr(p, what) for p in preds]
        out[f"uncertainty_auroc_{what}"] = (
            float(uncertainty_auroc(score, correct)) if 0 < int(correct.sum()) < len(correct) else None)
    return out


def write_predictions(preds: Sequence[ClassPrediction], out_dir: str | os.PathLike[str], *, images: Any = None,
                      inputs: Sequence[str | os.PathLike[str]] = (),
                      metadata: Mapping[str, Any] | None = None) -> Path:
    """Write predictions to a new folder, atomically (a temporary folder renamed into place when complete).

    Files: ``predictions.csv`` with columns ``id``, ``prob_<class>`` per class, ``pred`` (multi-label: the
    positive labels joined by ``;``), ``entropy``, ``mutual_information`` (nats), and ``label`` when some sample
    has a known label; ``predictions.json`` with the same plus the methods, per-label uncertainty and the
    explanation files; ``metrics.json`` when every sample has a known label (:func:`prediction_metrics`); for each
    sample with a saliency map ``explain/<stem>.png`` (2D: overlay on the image; 3D:
    montage of the 6 most salient slices) and ``explain/<stem>.nii.gz`` (the map; on the image's grid and
    geometry when ``images`` are given, else on the network's input grid with 1 mm spacing). Stems come from
    :func:`safe_file_stem`, made unique with ``_2``, ``_3`` ...

    Args:
        preds: from :func:`predict_samples`.
        out_dir: the output folder; must not exist or be empty.
        images: the originals, for overlays on the input grid: None (overlay on the preprocessed input),
            something with ``load_image(id)`` (:class:`PredictionInputs`, a dataset), a mapping id -> Image/array,
            or a sequence aligned with ``preds``.
        inputs: input paths that must not be overwritten.
        metadata: extra JSON-ready entries for ``predictions.json`` (model, folds ...).

    Returns:
        ``out_dir`` as a Path.

    Raises:
        ImageWriteError: ``out_dir`` exists with content, or lies inside an input folder.
        InvalidParameterError: ``images`` do not match the predictions.

    Example:
        >>> write_predictions(preds, "out", images=inputs)   # doctest: +SKIP
        PosixPath('out')
    """
    from medimg.io.files import atomic_output_dir

    out = Path(out_dir)
    with atomic_output_dir(out, inputs=[i for i in inputs if i is not None]) as tmp:
        explain_dir = tmp / "explain"
        used: set[str] = set()
        records = []
        for n, pred in enumerate(preds):
            record = pred.to_dict()
            if pred.saliency is not None:
                stem = base = safe_file_stem(pred.id)
                k = 2
                while stem.lower() in used:
                    stem, k = f"{base}_{k}", k + 1
                used.add(stem.lower())
                explain_dir.mkdir(exist_ok=True)
                record["explain"].update(write_explanation(pred, _original(images, n, pred), explain_dir, stem))
            records.append(record)
        class_names = list(preds[0].class_names) if preds else []
        with_label = any(p.label is not None for p in preds)
        buffer = io.StringIO()
        w = safe_writer(buffer, lineterminator="\n")
        w.writerow(["id", *[f"prob_{c}" for c in class_names], "pred", "entropy", "mutual_information"]
                   + (["label"] if with_label else []))
        for p in preds:
            w.writerow([p.id, *[f"{v:.6f}" for v in p.probabilities], _fmt_label(p.pred), f"{p.entropy:.6f}",
                        f"{p.mutual_information:.6f}"] + ([_fmt_label(p.label)] if with_label else []))
        (tmp / "predictions.csv").write_text(buffer.getvalue(), encoding="utf-8")
        summary = {
            "task": preds[0].task if preds else None, "class_names": class_names, "n": len(preds),
            "uncertainty": {"method": preds[0].uncertainty_method, "n_samples": preds[0].n_samples} if preds else {},
            "explain": preds[0].explain_method if preds else "none",
            "entropy_units": "nats", **dict(metadata or {}), "predictions": records,
        }
        (tmp / "predictions.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        metrics = prediction_metrics(preds)
        if metrics is not None:
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    logger.info("wrote %d predictions to %s", len(preds), out)
    return out
