"""Deep-learning image classification: datasets on disk (class folders, CSV, MedMNIST) and their verification.

The classification plan (:class:`medimg.plans.classify_plan.ClassifyPlan`, :func:`plan_classification`,
:func:`preprocess_sample`) lives with the other plans in :mod:`medimg.plans.classify_plan`.

Typical use::

    from medimg.plans.classify_plan import plan_classification, preprocess_sample

    ds = open_classification_dataset("../shared/data/breast_ultrasound_busi")
    verify_classification_dataset(ds).raise_if_bad()
    plan = plan_classification(ds, minutes=30)
    x = preprocess_sample(ds.load(0), plan)
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
]
