"""Prediction with a trained segmentation model folder: preprocessing from its plan, sliding window, fold ensemble,
optional mirror TTA, probabilities resampled back onto the input's exact grid, label values restored,
postprocessing.

:func:`load` opens a model folder; :func:`predict` segments an image, an image file or DICOM series folder, or a
folder of cases, and returns a :class:`~medimg.tasks.segment.writer.SegmentResult` in memory (nothing is written;
``result.write(out)`` writes the files ``medimg predict`` writes). :func:`predict_image` segments one image.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medimg.core.enums import Kind
from medimg.core.errors import ImageReadError, InvalidParameterError
from medimg.core.image import Image

if TYPE_CHECKING:
    from medimg.tasks.segment.writer import SegmentResult

logger = logging.getLogger(__name__)

__all__ = ["SegmentationModel", "load", "load_model", "predict", "predict_image", "Prediction", "check_overlap",
           "pixel_size_warning", "RASTER_EXTENSIONS"]

#: Input file endings whose 2D label maps are written as PNG in a folder prediction (others: NIfTI).
RASTER_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


@dataclass
class SegmentationModel:
    """A loaded model folder: its plan, one network per trained fold, and postprocessing settings."""

    path: Path
    plan: Any
    networks: list[torch.nn.Module]
    folds: list[str]
    postprocess: dict[str, Any] = field(default_factory=dict)
    name: str = ""


@dataclass
class Prediction:
    labels: Image  # original label values, on the input grid
    probabilities: Image | None = None  # (K, Z, Y, X) float32 on the input grid
    uncertainty: Image | None = None  # predictive entropy (nats) on the input grid
    precision: str = "fp32"  # "bf16" when the network ran under bf16 autocast


def load(path: str | os.PathLike[str], *, folds: list[str] | None = None) -> SegmentationModel:
    """Load ``plan.json``, ``postprocess.json`` (if any) and the weights of every ``fold_*/model.pt`` (or the listed
    folds).

    Raises:
        ImageReadError: no plan, no trained fold, weights that are unreadable, not plain tensors (``model.pt`` is
            read with ``weights_only=True``) or do not fit the plan, a broken ``postprocess.json``.
        InvalidParameterError: not a segmentation plan, or a plan whose patch and batch sizes cannot fit in memory.
    """
    from medimg.models import NetworkSpec, build_network
    from medimg.plans.model_folder import check_network_memory
    from medimg.tasks.registry import task_of_folder
    from medimg.train.callbacks import load_weights

    root = Path(path)
    task = task_of_folder(root)
    if task != "segment":
        raise InvalidParameterError("not a segmentation model", path=root / "plan.json", parameter="model",
                                    expected="a model folder written by `medimg train segment`",
                                    found=f"a {task} model", fix=f"run it with the {task} command")
    from medimg.tasks.segment.plan import SegmentPlan

    plan = SegmentPlan.load(root / "plan.json")
    check_network_memory(batch=plan.batch_size, spatial=plan.patch_size,
                         channels=max(int(plan.network.get("base_channels", 1) or 1), plan.n_classes),
                         path=root / "plan.json", fields="patch_size, batch_size")
    post = _load_postprocess(root / "postprocess.json", plan.n_classes)
    names = folds or sorted(p.parent.name for p in root.glob("fold_*/model.pt"))
    if not names:
        raise ImageReadError("model folder has no trained fold", path=root, expected="fold_*/model.pt",
                             found="none", fix="train a fold first: medimg train segment DATASET -o MODEL_DIR")
    nets = []
    for name in names:
        weights = root / name / "model.pt"
        if not weights.is_file():
            raise ImageReadError("missing weights", path=weights, fix="train this fold or leave it out")
        net = build_network(NetworkSpec.from_dict(plan.network))
        state = load_weights(weights)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise ImageReadError("weights do not fit the plan", path=weights,
                                 expected="weights written by `medimg train segment` with this plan.json",
                                 found=" ".join(str(exc).split())[:160], fix="train the fold again") from exc
        net.eval()
        nets.append(net)
    return SegmentationModel(path=root, plan=plan, networks=nets, folds=names, postprocess=post, name=root.name)


#: The former name of :func:`load`.
load_model = load


def _load_postprocess(path: Path, n_classes: int) -> dict[str, Any]:
    """``postprocess.json`` ({"largest_component_classes": [class ids]}, written by `medimg train segment`), checked;
    {} when absent."""
    if not path.is_file():
        return {}
    from medimg.io.files import read_json_file

    data = read_json_file(path, what="postprocess.json",
                          fix="remove the file (prediction then skips postprocessing) or train again")
    classes = data.get("largest_component_classes") if isinstance(data, dict) else None
    if not isinstance(classes, list) or not all(
            isinstance(c, int) and not isinstance(c, bool) and 1 <= c < n_classes for c in classes):
        raise ImageReadError("invalid postprocess.json", path=path,
                             expected=f'{{"largest_component_classes": [class ids 1..{n_classes - 1}]}}',
                             found=repr(classes if isinstance(data, dict) else data)[:80],
                             fix="remove the file (prediction then skips postprocessing) or train again")
    return data


def _check_input(model: SegmentationModel, image: Image) -> None:
    plan = model.plan
    if image.n_channels != plan.in_channels:
        raise InvalidParameterError(
            "wrong number of channels", parameter="image", expected=f"{plan.in_channels} channel(s) "
            f"({', '.join(getattr(plan, 'channel_names', []) or [])})", found=f"{image.n_channels}",
            fix="give the same channels the model was trained on (nnU-Net layout: CASE_0000, CASE_0001, ...)",
        )
    if (plan.dims == 2) != image.is_2d:
        raise InvalidParameterError(
            "wrong dimensionality", parameter="image", expected=f"a {plan.dims}D image",
            found="2D" if image.is_2d else "3D", fix="use a model trained on data of this dimensionality",
        )
    if not np.all(np.isfinite(np.asarray(image.voxels, dtype=np.float32))):
        raise InvalidParameterError("image contains NaN or infinite values", parameter="image",
                                    fix="clean the image first (e.g. replace NaN by the background value)")


def predict_image(
    model: SegmentationModel,
    image: Image,
    *,
    tta: bool = False,
    overlap: float = 0.5,
    probabilities: bool = False,
    uncertainty: bool = False,
    largest_component: bool | None = None,
    precision: str = "auto",
) -> Prediction:
    """Segment one image with every fold of ``model`` (averaged probabilities).

    Args:
        tta: mirror test-time augmentation over all spatial axes.
        overlap: sliding-window overlap (0..1).
        probabilities, uncertainty: also return class probabilities / predictive entropy on the input grid.
        largest_component: keep only the largest connected component per class; None follows the model
            folder's ``postprocess.json`` (decided by cross-validation), off if absent.
        precision: "auto" (bf16 autocast where the CPU computes bf16 natively, else float32), "fp32" or "bf16"
            (:func:`medimg.train.precision.resolve_precision`); recorded in the label image's metadata.
    """
    from medimg.infer.postprocess import entropy, keep_largest_component
    from medimg.infer.sliding import ensemble_probabilities, sliding_window_predict
    from medimg.preprocess.spatial import resample_to
    from medimg.tasks.segment.preprocess import preprocess_image
    from medimg.train.precision import precision_name, resolve_precision

    used = precision_name(resolve_precision(precision, "cpu"))
    bf16 = used == "bf16"
    _check_input(model, image)
    plan = model.plan
    prepared, grid = preprocess_image(image, plan)  # (C, *spatial) float32 on the plan's grid, and that grid
    mirror = tuple(range(plan.dims)) if tta else ()
    outs = []
    for net in model.networks:
        outs.append(sliding_window_predict(net, torch.from_numpy(prepared), patch_size=tuple(plan.patch_size),
                                           n_classes=plan.n_classes, overlap=overlap, batch_size=plan.batch_size,
                                           mirror_axes=mirror, autocast_bf16=bf16))
    probs = ensemble_probabilities(outs) if len(outs) > 1 else outs[0]
    p = probs.numpy().astype(np.float32)
    if plan.dims == 2:
        p = p[:, None]  # (K, 1, Y, X)
    prob_img = Image(voxels=p, geometry=grid.geometry, kind=Kind.PROBABILITY)
    if not prob_img.geometry.is_close(image.geometry) or prob_img.spatial_shape != image.spatial_shape:
        prob_img = resample_to(prob_img, image, interpolation="linear")
    on_input = np.asarray(prob_img.voxels, dtype=np.float32)
    ids = on_input.argmax(axis=0)
    lcc = model.postprocess.get("largest_component_classes", []) if largest_component is None else (
        list(range(1, plan.n_classes)) if largest_component else [])
    if lcc:
        ids = keep_largest_component(ids, lcc)
    values = np.asarray(plan.label_values)
    labels = values[ids].astype(np.uint8 if values.max() < 256 else np.uint16)
    label_img = image.derive(labels[None], operation="segment_predict", kind=Kind.LABEL, metadata={
        "model": model.name, "folds": list(model.folds), "class_names": list(plan.class_names),
        "precision": used},
        params={"model": model.name, "folds": model.folds, "tta": tta, "overlap": overlap,
                "largest_component_classes": lcc, "precision": used})
    result = Prediction(labels=label_img, precision=used)
    if probabilities:
        result.probabilities = image.derive(on_input, operation="segment_probabilities", kind=Kind.PROBABILITY,
                                            metadata={})
    if uncertainty:
        result.uncertainty = image.derive(entropy(on_input)[None].astype(np.float32),
                                          operation="segment_entropy", kind=Kind.INTENSITY, metadata={})
    return result


def pixel_size_warning(image: Image, model: SegmentationModel, *, source: Any = None) -> str | None:
    """A warning when a 2D image without a pixel size (read at 1 mm per pixel) meets a model that works in mm at
    another pixel size, else None. ``source`` names the input in the message."""
    spacing = getattr(model.plan, "target_spacing", None)
    if not image.is_2d or image.metadata.get("spacing_source") != "default_1mm" or not spacing:
        return None
    if not any(abs(float(s) - 1.0) > 0.05 for s in list(spacing)[:2]):
        return None
    where = f" in {source}" if source is not None else ""
    return (f"no pixel spacing{where}: read at 1 mm per pixel, but model '{model.name}' works at "
            f"{float(spacing[0]):g} mm pixels; pass --spacing SX,SY (mm) for a meaningful result")


def check_overlap(overlap: float) -> float:
    """The sliding-window overlap, checked (0 <= overlap < 1).

    Raises:
        InvalidParameterError: out of range.
    """
    if not 0 <= overlap < 1:
        raise InvalidParameterError("overlap out of range", parameter="--overlap", expected="0 <= overlap < 1",
                                    found=overlap)
    return overlap


def predict(
    model: SegmentationModel,
    inputs: Image | str | os.PathLike[str],
    *,
    tta: bool = False,
    overlap: float = 0.5,
    postprocess: bool = True,
    probabilities: bool = False,
    uncertainty: bool = False,
    precision: str = "auto",
) -> SegmentResult:
    """Segment an image, an image file or DICOM series folder, or a folder of cases; nothing is written.

    Args:
        model: a model from :func:`load`.
        inputs: an :class:`~medimg.core.image.Image`; a path to an image file or a DICOM series folder; or a folder
            of cases (nnU-Net naming: ``CASE_0000.nii.gz``, ``CASE_0001.nii.gz``, ... are the channels of ``CASE``,
            :func:`medimg.io.cases.case_files`), segmented case by case.
        tta, overlap, precision: as in :func:`predict_image`.
        postprocess: follow the model folder's ``postprocess.json`` (largest connected component per class as
            decided by cross-validation); False: no postprocessing.
        probabilities, uncertainty: also keep the class probabilities / predictive entropy of each case.

    Returns:
        A :class:`~medimg.tasks.segment.writer.SegmentResult` (``write(out)`` writes a file for a single input, a
        folder of ``CASE.nii.gz`` for a folder of cases).

    Raises:
        ImageReadError: an input that cannot be read. InvalidParameterError: an input the model cannot take.
    """
    from medimg.io.cases import case_files, image_extension, read_case
    from medimg.tasks.segment.writer import SegmentCase, SegmentResult

    check_overlap(overlap)
    options = {"tta": tta, "overlap": overlap, "largest_component": None if postprocess else False,
               "probabilities": probabilities, "uncertainty": uncertainty, "precision": precision}
    source = None if isinstance(inputs, Image) else Path(inputs)
    folder = case_files(source) if source is not None and source.is_dir() else {}
    if not folder:
        if isinstance(inputs, Image):
            image = inputs
        else:
            from medimg.io import read

            image = read(source)
        pred = predict_image(model, image, **options)
        warning = pixel_size_warning(image, model, source=source)
        name = "image" if source is None else source.name
        cases = [SegmentCase(name, pred.labels, pred.probabilities, pred.uncertainty)]
        return SegmentResult(model_name=model.name, folds=list(model.folds), precision=pred.precision,
                             class_names=list(model.plan.class_names), label_values=list(model.plan.label_values),
                             cases=cases, batch=False, source=source, warnings=[warning] if warning else [])
    cases, used, warnings = [], "", []
    for case, files in sorted(folder.items()):
        image = read_case(files)
        pred = predict_image(model, image, **options)
        used = pred.precision
        warning = pixel_size_warning(image, model, source=files[0].name)
        if warning:
            warnings.append(warning)
        suffix = ".png" if pred.labels.is_2d and image_extension(files[0].name) in RASTER_EXTENSIONS else ".nii.gz"
        cases.append(SegmentCase(case, pred.labels, pred.probabilities, pred.uncertainty, suffix=suffix))
    return SegmentResult(model_name=model.name, folds=list(model.folds), precision=used,
                         class_names=list(model.plan.class_names), label_values=list(model.plan.label_values),
                         cases=cases, batch=True, source=source, warnings=warnings)
