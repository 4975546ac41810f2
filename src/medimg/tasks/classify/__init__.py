"""Deep-learning image classification: datasets on disk (class folders, CSV, MedMNIST) and their verification,
training with calibration (:mod:`~medimg.tasks.classify.trainer`), and prediction with calibrated probabilities,
uncertainty and explanation maps (:mod:`~medimg.tasks.classify.predict`).

The classification plan (:class:`medimg.plans.classify_plan.ClassifyPlan`, :func:`plan_classification`,
:func:`preprocess_sample`) lives with the other plans in :mod:`medimg.plans.classify_plan`.

Typical use::

    from medimg.plans.classify_plan import plan_classification, preprocess_sample

    ds = open_classification_dataset("../shared/data/breast_ultrasound_busi")
    verify_classification_dataset(ds).raise_if_bad()
    plan = plan_classification(ds, minutes=30)
    x = preprocess_sample(ds.load(0), plan)

    metrics = train_classification("adrenal.npz", "runs/adrenal", ClassifyTrainOptions(split="train", fold=0))
    model = load_classifier("runs/adrenal")
    inputs = open_prediction_inputs("adrenal.npz", split="val")
    write_predictions(predict_samples(model, inputs), "runs/adrenal_val", images=inputs)
"""

from medimg.tasks.classify.data import (
    DEFAULT_EXCLUDE,
    IMAGE_EXTENSIONS,
    SPLIT_NAMES,
    TASKS,
    ClassificationDataset,
    ClassificationVerifyReport,
    SampleHeader,
    open_classification_dataset,
    verify_classification_dataset,
)
from medimg.tasks.classify.predict import (
    EXPLAIN_METHODS,
    UNCERTAINTY_METHODS,
    ClassificationModel,
    ClassPrediction,
    PredictionInputs,
    is_classification_model,
    load_classifier,
    map_to_input,
    network_logits,
    open_prediction_inputs,
    predict_samples,
    prediction_metrics,
    safe_file_stem,
    write_predictions,
)
from medimg.tasks.classify.trainer import (
    ClassifyTrainOptions,
    classification_loss,
    make_classification_splits,
    train_classification,
    validation_metrics,
)

__all__ = [
    "DEFAULT_EXCLUDE",
    "IMAGE_EXTENSIONS",
    "SPLIT_NAMES",
    "TASKS",
    "ClassificationDataset",
    "ClassificationVerifyReport",
    "SampleHeader",
    "open_classification_dataset",
    "verify_classification_dataset",
    "ClassifyTrainOptions",
    "train_classification",
    "make_classification_splits",
    "classification_loss",
    "validation_metrics",
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
]
