"""Evaluation of every metric family from files: the tasks behind ``medimg evaluate --task``.

Segmentation lives in :mod:`medimg.metrics.evaluate`; the other families live in one module each
(``medimg.metrics.evaluate_<family>``), which only read inputs, call the metric functions of :mod:`medimg.metrics`
and tabulate their results; this module names the tasks (:data:`TASKS`) and re-exports their entry points:

* :func:`evaluate_instance_task`: instance label maps (two files, or two folders matched by case id):
  instance F1 at IoU thresholds, Data Science Bowl mean AP, AJI and instance counts per case.
* :func:`evaluate_classification_task`: a prediction CSV (``case`` and ``score`` or ``score_<class>``
  columns) against a reference CSV (``case,label``): AUC, accuracy, balanced accuracy, sensitivity and
  specificity at a threshold (binary), confusion matrix, ECE.
* :func:`evaluate_detection_task`: folders of per-image box files (Pascal VOC XML or JSON) matched by file
  stem: AP per class, mAP and FROC.
* :func:`evaluate_quality_task`: images against references: PSNR, SSIM and MSE per case.
* :func:`evaluate_registration_task`: landmark CSVs (``case,x,y,z`` in mm, same order per case, read by
  :func:`medimg.io.points.read_landmarks`): TRE per landmark and per case, and optionally Jacobian determinant
  statistics of a displacement field.

Each returns a :class:`~medimg.metrics.task_result.TaskResult` (a JSON-ready summary and CSV tables as text); it
writes nothing, the command line writes the files atomically. Per-case statistics (mean, std, median, seeded
bootstrap interval) come from :func:`medimg.metrics.evaluate.summarize`. Unreadable or malformed inputs raise
:class:`EvaluationInputError` (landmark files: :class:`~medimg.core.errors.InvalidParameterError`; images: the
reader's :class:`~medimg.core.errors.ImageReadError`), naming the file and the column or entry.
"""

from __future__ import annotations

from medimg.metrics.evaluate_classification import evaluate_classification_task
from medimg.metrics.evaluate_detection import evaluate_detection_task, match_box_files, read_box_file
from medimg.metrics.evaluate_instance import evaluate_instance_task
from medimg.metrics.evaluate_quality import evaluate_quality_task
from medimg.metrics.evaluate_registration import evaluate_registration_task
from medimg.metrics.task_result import EvaluationInputError, TaskResult, table_to_csv

__all__ = ["TASKS", "TaskResult", "EvaluationInputError", "evaluate_instance_task",
           "evaluate_classification_task", "evaluate_detection_task", "evaluate_quality_task",
           "evaluate_registration_task", "read_box_file", "match_box_files", "table_to_csv"]

#: Tasks of ``medimg evaluate --task`` (segmentation is :mod:`medimg.metrics.evaluate`).
TASKS = ("segmentation", "instance", "classification", "detection", "quality", "registration")
