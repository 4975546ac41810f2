"""The task registry: every deep-learning task registers itself once; model folders are opened by their plan.

A task is a package ``medimg.tasks.<name>`` with the same files in each (plan, data, preprocess, losses, trainer,
predictor, writer, evaluate). Its ``__init__`` registers a :class:`TaskSpec` naming, as ``"module:attribute"``
strings (so that listing tasks imports nothing heavy):

* ``plan``: the plan class (a :class:`medimg.plans.base.PlanBase`); its ``TASK_VALUES`` are the values of the
  plan's ``task`` field that mean this task;
* ``train``: ``train(data, out, options: TrainOptions, *, callbacks=()) -> metrics dict``;
* ``load``: ``load(folder, **options) -> model`` (a model folder or a shipped name already resolved to a folder);
* ``predict``: ``predict(model, inputs, **options) -> Result`` (in memory, nothing written), or None when the
  task's models are run by another command (``pointer`` says which, in one line).

:func:`open_model` reads a folder's ``plan.json`` ``task`` field (never guesses) and hands it to the task.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from medimg.core.errors import InvalidParameterError

__all__ = ["TaskSpec", "register_task", "get_task", "task_names", "task_of_plan", "task_of_folder", "open_model",
           "TASK_PACKAGES"]

#: The task packages medimg ships, in the order ``medimg train`` lists them. Importing one registers its task.
TASK_PACKAGES = ("medimg.tasks.segment", "medimg.tasks.classify", "medimg.tasks.register")

_REGISTRY: dict[str, TaskSpec] = {}


def _resolve(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class TaskSpec:
    """What the registry knows of a task (callables as ``"module:attribute"``, resolved on first use)."""

    name: str
    summary: str
    plan: str
    train: str
    load: str
    predict: str | None = None
    pointer: str | None = None
    #: Options of :class:`medimg.train.run.TrainOptions` this task uses beyond the common ones.
    options: tuple[str, ...] = ()
    #: Plan keys that identify this task's plans written before the ``task`` field meant the task.
    legacy_keys: tuple[str, ...] = ()
    aliases: tuple[str, ...] = field(default=())

    def plan_class(self) -> Any:
        return _resolve(self.plan)

    def trainer(self) -> Callable[..., dict[str, Any]]:
        return _resolve(self.train)

    def loader(self) -> Callable[..., Any]:
        return _resolve(self.load)

    def predictor(self) -> Callable[..., Any]:
        """The in-memory prediction function.

        Raises:
            InvalidParameterError: the task's models are not run by ``predict`` (the pointer says what runs them).
        """
        if self.predict is None:
            raise InvalidParameterError(f"a {self.name} model is not run by predict", parameter="MODEL",
                                        expected="a model whose task predicts single inputs",
                                        found=f"a {self.name} model", fix=self.pointer or "see `medimg --help`")
        return _resolve(self.predict)


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add a task (its package's ``__init__`` calls this once). A second task of the same name is refused."""
    old = _REGISTRY.get(spec.name)
    if old is not None and old != spec:
        raise ValueError(f"task {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _load_all() -> None:
    for package in TASK_PACKAGES:
        importlib.import_module(package)


def task_names() -> list[str]:
    """The registered task names, in :data:`TASK_PACKAGES` order."""
    _load_all()
    return list(_REGISTRY)


def get_task(name: str) -> TaskSpec:
    """The task called ``name`` (or one of its aliases).

    Raises:
        InvalidParameterError: no such task (the line lists the known ones).
    """
    _load_all()
    for spec in _REGISTRY.values():
        if name == spec.name or name in spec.aliases:
            return spec
    raise InvalidParameterError("unknown task", parameter="task", expected=" | ".join(_REGISTRY), found=repr(name),
                                fix="pick one of the listed tasks")


def task_of_plan(data: dict[str, Any], *, path: str | os.PathLike[str] = "plan.json") -> TaskSpec:
    """The task a plan (parsed plan.json) belongs to, by its ``task`` field; old plans without one by their keys.

    Raises:
        InvalidParameterError: a task this medimg does not know (one line; a newer medimg may know it).
    """
    _load_all()
    value = data.get("task")
    for spec in _REGISTRY.values():
        if isinstance(value, str) and value in spec.plan_class().TASK_VALUES:
            return spec
    if value is None:
        for spec in _REGISTRY.values():
            if spec.legacy_keys and all(k in data for k in spec.legacy_keys):
                return spec
    known = [v for s in _REGISTRY.values() for v in s.plan_class().TASK_VALUES]
    raise InvalidParameterError("unknown model task", path=Path(path), parameter="plan.json task",
                                expected=" | ".join(known), found=repr(value),
                                fix="give a model folder written by `medimg train` (a newer medimg may know this "
                                "task: upgrade medimg)")


def task_of_folder(folder: str | os.PathLike[str]) -> str:
    """The task name of a model folder, read from its plan.json's ``task`` field (the one model-folder reader).

    Raises:
        ImageReadError: no or unreadable plan.json. InvalidParameterError: a task this medimg does not know.
    """
    from medimg.plans.model_folder import read_plan_dict

    root = Path(folder)
    return task_of_plan(read_plan_dict(root), path=root / "plan.json").name


def open_model(model: str | os.PathLike[str], **options: Any) -> tuple[TaskSpec, Any]:
    """Open a model folder or shipped name by its plan's task; returns the task and the loaded model.

    Raises:
        ImageReadError: not a model folder. InvalidParameterError: an unknown task, or bad ``options``.
    """
    from medimg.zoo import resolve_model

    folder = resolve_model(model)
    spec = get_task(task_of_folder(folder))
    return spec, spec.loader()(folder, **options)
