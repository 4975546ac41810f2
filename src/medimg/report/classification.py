"""The classification part of a report: one :class:`~medimg.tasks.classify.predict.ClassPrediction` of a loaded
:class:`~medimg.tasks.classify.predict.ClassificationModel` as a JSON record and as a report section (calibrated
class probabilities, the decision, predictive entropy and mutual information, temperatures, explanation figure)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from medimg.report.html import ReportSection

if TYPE_CHECKING:
    from medimg.tasks.classify.predict import ClassificationModel, ClassPrediction

__all__ = ["classification_record", "classification_section", "decision_text"]


def decision_text(value: Any) -> str:
    """A decision or label as text: a class name, or the positive labels of a multi-label model joined by '+'.

    Example:
        >>> decision_text("benign"), decision_text(["effusion", "mass"]), decision_text([])
        ('benign', 'effusion+mass', 'none')
    """
    return value if isinstance(value, str) else "+".join(value) or "none"


def classification_record(pred: ClassPrediction, model: ClassificationModel, *,
                          files: Mapping[str, str] | None = None) -> dict[str, Any]:
    """JSON-ready record: ``pred.to_dict()`` plus the model (folder, name, folds, temperatures) and the
    explanation files (``files``: e.g. {"png": "explain/x.png", "nifti": "explain/x.nii.gz"}, merged into
    ``record["explain"]``). Entropy and mutual information are in nats (``entropy_units``).

    Example:
        >>> from types import SimpleNamespace
        >>> from medimg.tasks.classify.predict import ClassPrediction
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


def classification_section(pred: ClassPrediction, model: ClassificationModel, *, figure: np.ndarray | None = None,
                           files: Mapping[str, str] | None = None, title: str = "Classification") -> ReportSection:
    """The report section of one prediction: model, calibrated probability table, decision, uncertainty, figure.

    Args:
        pred: the prediction (from :func:`~medimg.tasks.classify.predict.predict_samples`).
        model: the model that made it.
        figure: (H, W, 3) uint8 explanation figure (2D overlay or 3D montage), or None.
        files: output files of the explanation, shown in the section ({"png": ..., "nifti": ...}).
        title: the section heading.

    Returns:
        a :class:`~medimg.report.html.ReportSection` with items, one record per class and the figure.

    Example:
        >>> from types import SimpleNamespace
        >>> from medimg.tasks.classify.predict import ClassPrediction
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
