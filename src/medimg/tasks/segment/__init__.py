"""Deep-learning segmentation (nnU-Net style): plan, data, preprocessing, losses, patch sampling, training,
prediction, writing and validation, one file each.

    from medimg.tasks.segment.trainer import train
    from medimg.tasks.segment.predictor import load, predict

    metrics = train("../shared/data/hippocampus", "model")      # plan.json, splits.json, fold_0/...
    result = predict(load("model"), "case.nii.gz")               # in memory
    result.write("case_seg.nii.gz")                               # the files `medimg predict` writes

Importing the package only registers the task (:mod:`medimg.tasks.registry`); nothing heavy is imported.
"""

from medimg.tasks.registry import TaskSpec, register_task

#: The :class:`~medimg.train.run.TrainOptions` fields segmentation uses beyond the common ones.
OPTIONS = ("splits", "group_by", "validate_every_minutes", "max_val_cases", "cache_dir", "foreground_only")

SPEC = register_task(TaskSpec(
    name="segment",
    summary="segmentation of images into labelled structures (nnU-Net style U-Net, sliding window)",
    plan="medimg.tasks.segment.plan:SegmentPlan",
    train="medimg.tasks.segment.trainer:train",
    load="medimg.tasks.segment.predictor:load",
    predict="medimg.tasks.segment.predictor:predict",
    options=OPTIONS,
    legacy_keys=("patch_size",),
))
