"""Deep-learning image classification: datasets on disk (class folders, CSV, MedMNIST) and their verification,
a rule-based plan, training with calibration, and prediction with calibrated probabilities, uncertainty and
explanation maps.

The files, as in every task package:

* :mod:`~medimg.tasks.classify.plan` (:class:`ClassifyPlan`) and :mod:`~medimg.tasks.classify.planner`
  (:func:`plan_classification`, the cost model);
* :mod:`~medimg.tasks.classify.data` (datasets, verification, folds), :mod:`~medimg.tasks.classify.data_sources`
  (file probing, the folder/CSV/MedMNIST readers), :mod:`~medimg.tasks.classify.inputs` (what ``predict`` reads);
* :mod:`~medimg.tasks.classify.preprocess` (:func:`preprocess_sample`, shared by training and prediction);
* :mod:`~medimg.tasks.classify.losses`, :mod:`~medimg.tasks.classify.trainer` (:func:`train`),
  :mod:`~medimg.tasks.classify.evaluate` (metrics);
* :mod:`~medimg.tasks.classify.predictor` (:func:`load`, :func:`predict`: in memory) and
  :mod:`~medimg.tasks.classify.writer` (:class:`ClassifyResult`: ``to_dict()`` and ``write(out)``).

Typical use::

    ds = open_classification_dataset("../shared/data/breast_ultrasound_busi")
    verify_classification_dataset(ds).raise_if_bad()
    plan = plan_classification(ds, minutes=30)
    x = preprocess_sample(ds.load(0), plan)

    metrics = train("adrenal.npz", "runs/adrenal", TrainOptions(split="train", fold=0))
    result = predict(load("runs/adrenal"), "adrenal.npz", split="val")   # nothing written
    result.write("runs/adrenal_val")                                      # the files of `medimg predict`

Importing the package registers the task (and imports neither torch nor the modules): the names below are loaded
on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from medimg.tasks.registry import TaskSpec, register_task

#: The options of :class:`~medimg.train.run.TrainOptions` classification uses beyond the common ones.
OPTIONS = ("split", "val_data", "val_split", "deterministic", "max_data_gb", "init_from", "group_by")

register_task(TaskSpec(
    name="classify",
    summary="image classification (binary, multi-class, multi-label) with calibrated probabilities",
    plan="medimg.tasks.classify.plan:ClassifyPlan",
    train="medimg.tasks.classify.trainer:train",
    load="medimg.tasks.classify.predictor:load",
    predict="medimg.tasks.classify.predictor:predict",
    options=OPTIONS,
    legacy_keys=("input_size",),
))

_EXPORTS = {
    "data": ("DEFAULT_EXCLUDE", "IMAGE_EXTENSIONS", "SPLIT_NAMES", "TASKS", "ClassificationDataset",
             "ClassificationVerifyReport", "SampleHeader", "open_classification_dataset",
             "verify_classification_dataset", "make_classification_splits"),
    "plan": ("ClassifyPlan",),
    "planner": ("plan_classification", "estimate_gflops", "estimate_memory_gb"),
    "preprocess": ("preprocess_sample", "map_to_input"),
    "losses": ("classification_loss",),
    "evaluate": ("validation_metrics", "prediction_metrics"),
    "trainer": ("train",),
    "inputs": ("PredictionInputs", "open_prediction_inputs"),
    "predictor": ("UNCERTAINTY_METHODS", "EXPLAIN_METHODS", "ClassificationModel", "load",
                  "predict", "predict_samples", "network_logits"),
    "writer": ("ClassPrediction", "ClassifyResult", "safe_file_stem", "write_predictions", "write_explanation"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["OPTIONS", *_MODULE_OF]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
