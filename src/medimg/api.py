"""The one library interface every front end calls: the command line, the REST service, the DICOM node.

Four calls, each returning data in memory (nothing is written until the caller asks)::

    from medimg.api import train, predict, analyze, register, TrainOptions

    metrics = train("segment", "../shared/data/hippocampus", "runs/hippo", TrainOptions(fold=0, minutes=10))
    result = predict("runs/hippo", "case.nii.gz")        # or a shipped name: predict("hippocampus", image)
    result.to_dict()                                      # JSON for an API
    result.write("out/case_seg.nii.gz")                   # the files `medimg predict` writes
    analysis = analyze("ct.nii.gz")                       # the main job: pipeline choice, masks, measurements
    analysis.write("out/ct_analysis")
    pair = register(fixed, moving, method="affine")       # classical or learned (method="learned", model=...)

``train`` dispatches on the task name through the task registry (:mod:`medimg.tasks.registry`); ``predict`` opens
a model folder (or shipped name) by its plan's ``task`` field and runs that task's predictor. Every result is a
:class:`medimg.tasks.result.Result`: ``to_dict()``, ``write(out)``, ``summary_lines()``.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from medimg.train.run import TrainOptions

__all__ = ["train", "predict", "analyze", "register", "open_model", "tasks", "TrainOptions"]


def tasks() -> list[str]:
    """The names of the registered deep-learning tasks ("segment", "classify", "register", ...)."""
    from medimg.tasks.registry import task_names

    return task_names()


def train(task: str, data: str | os.PathLike[str], out: str | os.PathLike[str],
          options: TrainOptions | None = None, *, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train one fold of a ``task`` model on ``data`` into the model folder ``out``; returns the fold's metrics.

    Raises:
        InvalidParameterError: an unknown task, or an option the task does not use (one line naming it).
    """
    from medimg.tasks.registry import get_task

    spec = get_task(task)
    options = (options or TrainOptions()).check_applies(spec.name, spec.options)
    return spec.trainer()(data, out, options, callbacks=callbacks)


def open_model(model: str | os.PathLike[str], **options: Any) -> Any:
    """Load a model folder or shipped model name by its plan's task (``folds=`` selects folds where supported)."""
    from medimg.tasks.registry import open_model as _open

    return _open(model, **options)[1]


def predict(model: Any, inputs: Any, **options: Any) -> Any:
    """Run a model on inputs; returns the task's Result (in memory; ``write(out)`` writes the files).

    Args:
        model: a model folder, a shipped model name, or a model returned by :func:`open_model`.
        inputs: what the task takes: an Image, an image file or DICOM series folder, a folder of cases/images,
            and for classification also a CSV or a MedMNIST .npz.
        options: the task predictor's options (segmentation: tta, overlap, postprocess, probabilities,
            uncertainty, precision; classification: split, uncertainty, samples, explain, seed, precision).

    Raises:
        InvalidParameterError: a model whose task is not run by predict (registration: the line says to use
            :func:`register`), or bad options.
    """
    from medimg.tasks.registry import get_task
    from medimg.tasks.registry import open_model as _open

    if isinstance(model, (str, os.PathLike)):
        folds = options.pop("folds", None)
        spec, loaded = _open(model, **({"folds": folds} if folds is not None else {}))
    else:
        spec, loaded = get_task(type(model.plan).TASK), model
    return spec.predictor()(loaded, inputs, **options)


def analyze(image: Any, **options: Any) -> Any:
    """The main job on an Image, an image file / DICOM series, or a folder of cases; returns an Analysis.

    Options: pipeline, classifier, classifier_uncertainty, classifier_explain, pixel_spacing, precision, source
    (:func:`medimg.pipelines.analysis.analyze`).
    """
    from medimg.pipelines.analysis import analyze as _analyze

    return _analyze(image, **options)


def register(fixed: Any, moving: Any, options: Any = None, *, labels: Any = None, fixed_labels: Any = None,
             fixed_mask: Any = None, moving_mask: Any = None, landmarks: Any = None, **settings: Any) -> Any:
    """Register ``moving`` onto ``fixed`` (Images or image paths); returns a RegisterResult in memory (transform,
    warped image and labels, displacement field, metrics); ``write(out)`` writes the folder ``medimg register`` writes.

    Args:
        options: a :class:`medimg.tasks.register.pairs.RegisterOptions`, or give its fields as keywords
            (``method="affine"``, ``method="learned", model="hippocampus_registration"``, ``metric``, ``levels`` ...).
        labels, fixed_labels: the moving and fixed label maps (Images or paths): warped labels and Dice per label.
        fixed_mask, moving_mask: metric masks. landmarks: (fixed points, moving points), (N, 2|3) arrays in mm: TRE.
    """
    from medimg.core.image import Image
    from medimg.io import read
    from medimg.tasks.register.pairs import RegisterOptions, register_images

    if options is None:
        options = RegisterOptions(**settings)
    elif settings:
        raise TypeError("give either options or keyword settings, not both")

    def image(value: Any, kind: str | None = None) -> Any:
        if value is None or isinstance(value, Image):
            return value
        return read(value, kind=kind) if kind else read(value)

    return register_images(image(fixed), image(moving), options, labels=image(labels, "label"),
                           fixed_labels=image(fixed_labels, "label"), fixed_mask=image(fixed_mask, "label"),
                           moving_mask=image(moving_mask, "label"), landmarks=landmarks)
