"""Prediction with a trained model folder: preprocessing from its plan, sliding window, fold ensemble, optional
mirror TTA, probabilities resampled back onto the input's exact grid, label values restored, postprocessing."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medimg.core.enums import Kind
from medimg.core.errors import ImageReadError, InvalidParameterError
from medimg.core.image import Image

logger = logging.getLogger(__name__)

__all__ = ["SegmentationModel", "load_model", "predict_image", "Prediction"]


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


def load_model(path: str | os.PathLike[str], *, folds: list[str] | None = None) -> SegmentationModel:
    """Load ``plan.json`` and the weights of every ``fold_*/model.pt`` (or the listed folds)."""
    from medimg.models import NetworkSpec, build_network
    from medimg.plans import Plan

    root = Path(path)
    if not (root / "plan.json").is_file():
        raise ImageReadError("not a model folder", path=root, expected="a folder with plan.json and fold_*/model.pt",
                             found="no plan.json", fix="give a folder written by `medimg train segment` or a model "
                             "name from `medimg models`")
    plan = Plan.load(root / "plan.json")
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
        state = torch.load(weights, map_location="cpu", weights_only=True)
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        net.eval()
        nets.append(net)
    post = json.loads((root / "postprocess.json").read_text()) if (root / "postprocess.json").is_file() else {}
    return SegmentationModel(path=root, plan=plan, networks=nets, folds=names, postprocess=post, name=root.name)


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
) -> Prediction:
    """Segment one image with every fold of ``model`` (averaged probabilities).

    Args:
        tta: mirror test-time augmentation over all spatial axes.
        overlap: sliding-window overlap (0..1).
        probabilities, uncertainty: also return class probabilities / predictive entropy on the input grid.
        largest_component: keep only the largest connected component per class; None follows the model
            folder's ``postprocess.json`` (decided by cross-validation), off if absent.
    """
    from medimg.infer.postprocess import entropy, keep_largest_component
    from medimg.infer.sliding import ensemble_probabilities, sliding_window_predict
    from medimg.plans.cache import preprocess_image
    from medimg.preprocess.spatial import resample_to

    _check_input(model, image)
    plan = model.plan
    prepared, grid = preprocess_image(image, plan)  # (C, *spatial) float32 on the plan's grid, and that grid
    mirror = tuple(range(plan.dims)) if tta else ()
    outs = []
    for net in model.networks:
        outs.append(sliding_window_predict(net, torch.from_numpy(prepared), patch_size=tuple(plan.patch_size),
                                           n_classes=plan.n_classes, overlap=overlap, batch_size=plan.batch_size,
                                           mirror_axes=mirror, autocast_bf16=True))
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
        "model": model.name, "folds": list(model.folds), "class_names": list(plan.class_names)},
        params={"model": model.name, "folds": model.folds, "tta": tta, "overlap": overlap,
                "largest_component_classes": lcc})
    result = Prediction(labels=label_img)
    if probabilities:
        result.probabilities = image.derive(on_input, operation="segment_probabilities", kind=Kind.PROBABILITY,
                                            metadata={})
    if uncertainty:
        result.uncertainty = image.derive(entropy(on_input)[None].astype(np.float32),
                                          operation="segment_entropy", kind=Kind.INTENSITY, metadata={})
    return result
