"""What a classification prediction is, in memory and on disk: :class:`ClassPrediction` (one sample),
:class:`ClassifyResult` (what :func:`medimg.tasks.classify.predictor.predict` returns) and the files.

``ClassifyResult.write(out)`` writes what ``medimg predict CLASSIFIER IN OUT`` writes: ``predictions.csv`` (one
row per sample), ``predictions.json``, ``metrics.json`` when every sample's label is known and, per sample,
``explain/<id>.png`` (2D: overlay; 3D: montage of the most salient slices) and ``explain/<id>.nii.gz`` (the map on
the input's grid), into a temporary folder renamed into place at the end: never a half-written output folder.
:func:`classification_record` and :func:`classification_section` are the classification part of
``medimg analyze --classifier`` (a JSON record and a report section).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core.enums import Kind
from medimg.core.errors import InvalidParameterError
from medimg.core.image import Image
from medimg.io.csv_safe import safe_writer
from medimg.report.html import ReportSection
from medimg.tasks.classify.data_sources import IMAGE_EXTENSIONS
from medimg.tasks.classify.evaluate import prediction_metrics
from medimg.tasks.classify.preprocess import map_to_input
from medimg.tasks.result import Result

logger = logging.getLogger(__name__)

__all__ = ["ClassPrediction", "ClassifyResult", "safe_file_stem", "write_explanation", "write_predictions",
           "decision_text", "prediction_line", "classification_record", "classification_section"]


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



def safe_file_stem(sample_id: str) -> str:
    """A file-name stem for a sample id: image extension dropped, runs of characters other than letters, digits,
    ``.``, ``_`` and ``-`` replaced by ``_``, at most 120 characters.

    Example:
        >>> safe_file_stem("benign/benign (1).png"), safe_file_stem("val_3"), safe_file_stem("../x.nii.gz")
        ('benign_benign_1', 'val_3', 'x')
    """
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
    write_prediction_files(preds, out_dir, images=images, inputs=inputs, metadata=metadata)
    return Path(out_dir)


def write_prediction_files(preds: Sequence[ClassPrediction], out_dir: str | os.PathLike[str], *,
                           images: Any = None, inputs: Sequence[str | os.PathLike[str]] = (),
                           metadata: Mapping[str, Any] | None = None) -> list[Path]:
    """:func:`write_predictions`, returning the files written (under ``out_dir``, sorted)."""
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
        written = sorted(p.relative_to(tmp) for p in tmp.rglob("*") if p.is_file())
    logger.info("wrote %d predictions to %s", len(preds), out)
    return [out / p for p in written]


def decision_text(value: Any) -> str:
    """A decision or label as text: a class name, or the positive labels of a multi-label model joined by '+'.

    Example:
        >>> decision_text("benign"), decision_text(["effusion", "mass"]), decision_text([])
        ('benign', 'effusion+mass', 'none')
    """
    return value if isinstance(value, str) else "+".join(value) or "none"


def classification_record(pred: ClassPrediction, model: Any, *,
                          files: Mapping[str, str] | None = None) -> dict[str, Any]:
    """JSON-ready record: ``pred.to_dict()`` plus the model (folder, name, folds, temperatures) and the
    explanation files (``files``: e.g. {"png": "explain/x.png", "nifti": "explain/x.nii.gz"}, merged into
    ``record["explain"]``). Entropy and mutual information are in nats (``entropy_units``).

    Example:
        >>> from types import SimpleNamespace
        >>> pred = ClassPrediction(id="us.png", class_names=("benign", "malignant"), task="binary",
        ...                        probabilities=np.array([0.8, 0.2]), pred="benign", entropy=0.5,
        ...                        mutual_information=0.01, uncertainty_method="tta", n_samples=4)
        >>> model = SimpleNamespace(name="busi", path="runs/busi", folds=["fold_0"], temperatures=[1.3])
        >>> record = classification_record(pred, model, files={"png": "explain/us.png"})
        >>> record["probabilities"], record["model"], record["explain"]["png"]
        ({'benign': 0.8, 'malignant': 0.2}, 'runs/busi', 'explain/us.png')
    """
    record = pred.to_dict()
    record["explain"] = {**record["explain"], **dict(files or {})}
    record.update({
        "model": str(model.path), "model_name": model.name, "task": pred.task, "class_names": list(pred.class_names),
        "folds": list(model.folds), "temperatures": [float(t) for t in model.temperatures],
        "calibrated": True, "entropy_units": "nats",
    })
    return record


def classification_section(pred: ClassPrediction, model: Any, *, figure: np.ndarray | None = None,
                           files: Mapping[str, str] | None = None, title: str = "Classification") -> ReportSection:
    """The report section of one prediction: model, calibrated probability table, decision, uncertainty, figure.

    Args:
        pred: the prediction (from :func:`~medimg.tasks.classify.predictor.predict_samples`).
        model: the model that made it.
        figure: (H, W, 3) uint8 explanation figure (2D overlay or 3D montage), or None.
        files: output files of the explanation, shown in the section ({"png": ..., "nifti": ...}).
        title: the section heading.

    Returns:
        a :class:`~medimg.report.html.ReportSection` with items, one record per class and the figure.

    Example:
        >>> from types import SimpleNamespace
        >>> pred = ClassPrediction(id="us.png", class_names=("benign", "malignant"), task="binary",
        ...                        probabilities=np.array([0.8, 0.2]), pred="benign", entropy=0.5,
        ...                        mutual_information=0.01, uncertainty_method="tta", n_samples=4)
        >>> model = SimpleNamespace(name="busi", path="runs/busi", folds=["fold_0"], temperatures=[1.3])
        >>> section = classification_section(pred, model)
        >>> [r["predicted"] for r in section.records], section.items["temperature"]
        (['yes', ''], 'fold_0: 1.3')
    """
    multilabel = pred.task == "multilabel"
    chosen = set(pred.pred) if multilabel else {pred.pred}
    records = [{"class": name, "probability": float(p), "predicted": "yes" if name in chosen else ""}
               for name, p in zip(pred.class_names, np.asarray(pred.probabilities, np.float64))]
    items: dict[str, Any] = {
        "model": model.name,
        "model folder": str(model.path),
        "task": pred.task,
        "decision": decision_text(pred.pred),
        "probability of the decision" if not multilabel else "largest label probability": pred.confidence,
        "predictive entropy (nats)": float(pred.entropy),
        "mutual information (nats)": float(pred.mutual_information),
        "uncertainty method": f"{pred.uncertainty_method} ({pred.n_samples} samples)",
        "temperature": ", ".join(f"{f}: {t:.4g}" for f, t in zip(model.folds, model.temperatures)),
        "explanation": (f"{pred.explain_method} of class {pred.explained_class}" if pred.saliency is not None
                        else "none"),
    }
    if files:
        items["explanation files"] = ", ".join(files.values())
    how = ("one sigmoid per label (labels with probability >= 0.5 are predicted)" if multilabel
           else "softmax over the classes, summing to 1")
    text = (f"Probabilities are calibrated: each fold's logits are divided by the fold's temperature (fitted on its "
            f"validation samples), turned into probabilities ({how}) and averaged over "
            f"{len(model.folds)} fold{'s' if len(model.folds) != 1 else ''}. Predictive entropy is the total "
            "uncertainty, mutual information its model (epistemic) part; both in nats"
            f"{' and averaged over the labels' if multilabel else ''}. The explanation map shows where the network "
            "found evidence for the explained class; it is not a segmentation.")
    figures = {}
    if figure is not None:
        kind = "overlay" if len(pred.input_shape) == 2 else "most salient slices"
        figures[f"{pred.explain_method} explanation of class {pred.explained_class} ({kind})"] = figure
    return ReportSection(title, text=text, items=items, records=records, figures=figures)


def prediction_line(pred: ClassPrediction) -> str:
    """``decision (p = ...; entropy ..., mutual information ... nats, method)`` for one prediction."""
    return (f"{decision_text(pred.pred)} (p = {pred.confidence:.3f}; entropy {pred.entropy:.3f}, mutual information "
            f"{pred.mutual_information:.3f} nats, {pred.uncertainty_method})")


# ---- the result ---------------------------------------------------------------------------------------------------
@dataclass
class ClassifyResult(Result):
    """The predictions of a classification model for some inputs, in memory (nothing written while it is made).

    Attributes:
        predictions: one :class:`ClassPrediction` per sample, in input order.
        model: the :class:`~medimg.tasks.classify.predictor.ClassificationModel` that made them (its path, name,
            folds and temperatures are recorded).
        images: the originals, for the explanation overlays on the input grid (see :func:`write_predictions`).
        source: the input as given (a path), recorded as ``input`` in predictions.json; None for in-memory inputs.
        precision: the precision the networks ran in ("fp32" or "bf16").
    """

    predictions: list[ClassPrediction]
    model: Any
    images: Any = None
    source: str | None = None
    precision: str = "fp32"
    kind: str = field(default="classify", init=False)

    def metadata(self) -> dict[str, Any]:
        """The model and run entries of predictions.json."""
        return {"model": str(self.model.path), "folds": list(self.model.folds),
                "temperatures": list(self.model.temperatures), "input": self.source, "precision": self.precision}

    def metrics(self) -> dict[str, Any] | None:
        """:func:`~medimg.tasks.classify.evaluate.prediction_metrics` (None unless every label is known)."""
        return prediction_metrics(self.predictions)

    def to_dict(self) -> dict[str, Any]:
        """predictions.json's content (without explanation file names: nothing is written) and the metrics."""
        preds = self.predictions
        return {
            "task": preds[0].task if preds else None,
            "class_names": list(preds[0].class_names) if preds else [], "n": len(preds),
            "uncertainty": {"method": preds[0].uncertainty_method, "n_samples": preds[0].n_samples} if preds else {},
            "explain": preds[0].explain_method if preds else "none", "entropy_units": "nats", **self.metadata(),
            "predictions": [p.to_dict() for p in preds], "metrics": self.metrics(),
        }

    def write(self, out: str | os.PathLike[str], *, inputs: Sequence[str | os.PathLike[str]] = (),
              **options: Any) -> list[Path]:
        """Write the files of ``medimg predict`` into the new folder ``out`` (see the module docstring); ``inputs``:
        paths that must not be overwritten (the source is always one). Returns the files written.

        Raises:
            ImageWriteError: ``out`` exists with content, or lies inside an input folder.
        """
        if options:
            raise InvalidParameterError("unknown write option", parameter="write", expected="inputs=",
                                        found=sorted(options), fix="leave the options out")
        protected = [*([self.source] if self.source else []), *inputs]
        return write_prediction_files(self.predictions, out, images=self.images, inputs=protected,
                                      metadata=self.metadata())

    def summary_lines(self) -> list[str]:
        """One line per prediction (up to 20), else the count per class and the agreement with the known labels;
        then the metrics line when every label is known."""
        from collections import Counter

        preds = self.predictions
        lines = []
        if len(preds) <= 20:
            for p in preds:
                truth = "" if p.label is None else f"  [label {decision_text(p.label)}]"
                lines.append(f"{p.id}: {prediction_line(p)}{truth}")
        else:
            counts = Counter(decision_text(p.pred) for p in preds)
            lines.append(f"{len(preds)} samples classified: " + ", ".join(f"{c} {counts[c]}" for c in sorted(counts)))
            known = [p for p in preds if p.label is not None]
            if known:
                right = sum(decision_text(p.pred) == decision_text(p.label) for p in known)
                lines.append(f"agreement with the {len(known)} known labels: {right / len(known):.4f}")
        metrics = self.metrics()
        if metrics is not None:
            auc = "n/a" if metrics["auc_macro"] is None else f"{metrics['auc_macro']:.4f}"
            lines.append(f"known labels of all {metrics['n']} samples: AUC {auc}, accuracy {metrics['accuracy']:.4f}, "
                         f"balanced accuracy {metrics['balanced_accuracy']:.4f}, ECE {metrics['ece']:.4f} "
                         "(metrics.json)")
        return lines
