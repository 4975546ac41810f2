"""One training run in a model folder: the steps every task's trainer shares, and the one options type.

A task's trainer (``tasks/<name>/trainer.py``) keeps only what is its own (data, network, loss, batches,
validation metrics). Everything around it goes through :class:`TrainingRun`, in this order::

    run = TrainingRun("segment", out, options, inputs=[data])     # checks only: nothing written yet
    plan = run.plan(SegmentPlan, make=lambda: plan_segmentation(...))   # plan.json: reused by later folds
    fold = run.fold(make_splits=lambda: make_splits(cases, ...), cases=cases)   # splits.json, fold_k/
    state = run.resume_state(model, optimizer)                  # fold_k/checkpoint.pt with --resume
    ...  train_loop(...)
    run.save_weights(model)                                     # fold_k/model.pt, atomically
    run.write_metrics(metrics)                                  # fold_k/metrics.json, atomically

:class:`TrainOptions` is the one options type of ``medimg.train(task, data, out, options)``: the fields every task
understands, and task-specific ones that a task refuses in one line when it does not use them
(:meth:`TrainOptions.check_applies`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

import numpy as np

from medimg.core.errors import InvalidParameterError, bad_value
from medimg.train.outputs import check_fold_not_trained, check_model_folder_outside_inputs, fold_name

__all__ = ["TrainOptions", "COMMON_OPTIONS", "TrainingRun", "Fold", "derived_seeds", "read_splits"]

P = TypeVar("P")


@dataclass(frozen=True)
class TrainOptions:
    """Options of one training run, for every task (everything else lives in the plan).

    Every task understands :data:`COMMON_OPTIONS`; the rest belong to some tasks only (see each task's
    ``OPTIONS``), and a task given one it does not use refuses it in one line.

    Attributes:
        fold: a fold number, or "all" to train on every case.
        n_folds: cross-validation folds (None: the task's default, 5).
        minutes: wall-clock budget of the fold (None: the plan's).
        iterations: iteration budget; the first budget reached stops training.
        seed: the one seed of the run (written into the plan and metrics).
        overrides: plan field (dotted for nested keys) -> value, e.g. ``(("network.base_channels", 24),)``.
        resume: continue the fold from its ``checkpoint.pt``.
        threads: torch threads (None: leave as is).
        precision: "auto" | "fp32" | "bf16" (:func:`medimg.train.precision.resolve_precision`).
        splits: a splits.json to take the folds from (another model's), instead of making new ones.
        group_by: regex whose first group names the patient of a case id: one patient, one fold.
        validate_every_minutes, max_val_cases, cache_dir, foreground_only: segmentation.
        split, val_data, val_split, deterministic, max_data_gb, init_from: classification.
    """

    fold: int | str = 0
    n_folds: int | None = None
    minutes: float | None = None
    iterations: int | None = None
    seed: int = 0
    overrides: tuple[tuple[str, Any], ...] = ()
    resume: bool = False
    threads: int | None = None
    precision: str = "auto"
    splits: str | None = None
    group_by: str | None = None
    # segmentation
    validate_every_minutes: float | None = None
    max_val_cases: int | None = None
    cache_dir: str | None = None
    foreground_only: bool = False
    # classification
    split: str | tuple[str, ...] | None = None
    val_data: str | os.PathLike[str] | None = None
    val_split: str | tuple[str, ...] | None = None
    deterministic: bool = False
    max_data_gb: float = 4.0
    init_from: str | os.PathLike[str] | None = None

    def check_applies(self, task: str, used: Iterable[str]) -> TrainOptions:
        """Refuse a task-specific option the task ``task`` does not use (set to a non-default value).

        Raises:
            InvalidParameterError: one line naming the option (as its command-line flag).
        """
        allowed = set(COMMON_OPTIONS) | set(used)
        for f in dataclasses.fields(self):
            if f.name in allowed:
                continue
            if getattr(self, f.name) != f.default:
                flag = "--" + f.name.replace("_", "-")
                raise bad_value(flag, f"option does not apply to {task} training", f"no {flag} for `{task}`",
                                repr(getattr(self, f.name)), f"leave {flag} out")
        return self

    @property
    def n_folds_or_default(self) -> int:
        return 5 if self.n_folds is None else int(self.n_folds)


#: Options every task understands.
COMMON_OPTIONS = ("fold", "n_folds", "minutes", "iterations", "seed", "overrides", "resume", "threads", "precision")


def derived_seeds(seed: int, fold_index: int, names: Sequence[str] = ("init", "sampler", "augment")
                  ) -> dict[str, int]:
    """One independent seed per random component of a fold, all drawn from the run's one seed.

    >>> derived_seeds(0, 1) == derived_seeds(0, 1) and derived_seeds(0, 1) != derived_seeds(0, 2)
    True
    """
    children = np.random.SeedSequence([int(seed), int(fold_index)]).spawn(len(names))
    return {name: int(c.generate_state(1, np.uint32)[0]) for name, c in zip(names, children)}


def read_splits(path: str | os.PathLike[str], cases: Sequence[str], *, parameter: str = "--splits"
                ) -> list[dict[str, list[str]]]:
    """The folds of a splits.json (``{"folds": [{"train": [...], "val": [...]}, ...]}``), checked against ``cases``.

    Raises:
        InvalidParameterError: unreadable, not a splits file, or naming cases the dataset does not have.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise InvalidParameterError("cannot read the splits file", path=p, parameter=parameter,
                                    expected="a splits.json written by medimg (folds of train/val case ids)",
                                    found=str(exc)[:120], fix="give the splits.json of another model folder") from exc
    folds = data.get("folds") if isinstance(data, dict) else data
    if not isinstance(folds, list) or not all(
            isinstance(f, dict) and isinstance(f.get("train"), list) and isinstance(f.get("val"), list)
            for f in folds):
        raise InvalidParameterError("not a splits file", path=p, parameter=parameter,
                                    expected="{'folds': [{'train': [...], 'val': [...]}, ...]}",
                                    found=type(folds).__name__, fix="give the splits.json of another model folder")
    unknown = sorted({str(c) for f in folds for c in f["train"] + f["val"]} - {str(c) for c in cases})
    if unknown:
        raise InvalidParameterError(f"{len(unknown)} case(s) of the splits file are not in the dataset", path=p,
                                    parameter=parameter, expected="case ids of this dataset",
                                    found=", ".join(unknown[:3]), fix="give the splits of a model of this dataset")
    return [{"train": [str(c) for c in f["train"]], "val": [str(c) for c in f["val"]]} for f in folds]


@dataclass(frozen=True)
class Fold:
    """The fold a run trains: its name (``fold_0``, ``fold_all``), index (-1 for all), folder and case ids."""

    name: str
    index: int
    folder: Path
    train: list[str]
    val: list[str]


class TrainingRun:
    """The model-folder side of one training run (see the module docstring for the order of the calls).

    Constructing it only checks: the model folder is not an input, the fold is not already trained (unless
    ``options.resume``, whose checkpoint is read once here), the thread count; nothing is written until
    :meth:`plan`.
    """

    def __init__(self, task: str, out: str | os.PathLike[str], options: TrainOptions,
                 *, inputs: Iterable[str | os.PathLike[str] | None] = ()) -> None:
        import torch

        self.task = task
        self.out = Path(out)
        self.options = options
        fold = options.fold
        if fold != "all" and (isinstance(fold, bool) or not isinstance(fold, (int, np.integer))):
            raise bad_value("--fold", "bad fold", "a fold number or 'all'", repr(options.fold),
                            "e.g. --fold 0, or --fold all")
        check_model_folder_outside_inputs(self.out, list(inputs))
        check_fold_not_trained(self.out, options.fold, resume=options.resume)
        if options.threads:
            torch.set_num_threads(int(options.threads))
        self.fold_name = fold_name(options.fold)
        self.fold_index = -1 if options.fold == "all" else int(options.fold)

    # ---- plan -----------------------------------------------------------------------------------------------
    @property
    def plan_path(self) -> Path:
        return self.out / "plan.json"

    def existing_plan(self, plan_class: type[P]) -> P | None:
        """The folder's plan (shared by all folds of a model), None for a new folder.

        Raises:
            InvalidParameterError: the folder holds another task's model.
        """
        if not self.plan_path.exists():
            return None
        from medimg.plans.model_folder import read_plan_dict

        data = read_plan_dict(self.out)
        values = getattr(plan_class, "TASK_VALUES", ())
        if data.get("task") is not None and data.get("task") not in values:
            raise InvalidParameterError("the model folder holds another kind of model", path=self.plan_path,
                                        parameter="-o", expected=f"a new folder, or one written by `medimg train "
                                        f"{self.task}`", found=f"a plan of task {data.get('task')!r}",
                                        fix="choose a new model folder")
        return plan_class.from_dict(data)  # type: ignore[attr-defined]

    def plan(self, plan_class: type[P], make: Callable[[], P], *,
             adjust: Callable[[P], P] | None = None) -> P:
        """The run's plan: the folder's (with ``options.overrides`` applied) or ``make()`` for a new folder;
        ``adjust`` then applies the run's own changes (budget, seed). Saved as plan.json."""
        plan = self.existing_plan(plan_class)
        if plan is None:
            plan = make()
        elif self.options.overrides:
            plan = plan.replace(**dict(self.options.overrides))  # type: ignore[attr-defined]
        if adjust is not None:
            plan = adjust(plan)
        self.out.mkdir(parents=True, exist_ok=True)
        plan.save(self.plan_path)  # type: ignore[attr-defined]
        return plan

    # ---- folds ----------------------------------------------------------------------------------------------
    def fold(self, cases: Sequence[str], make_splits: Callable[[], list[dict[str, list[str]]]], *,
             record: dict[str, Any] | None = None,
             check: Callable[[list[dict[str, list[str]]]], None] | None = None, write: bool = True) -> Fold:
        """The fold to train, from ``options.splits``, the folder's splits.json, or ``make_splits()`` (saved with
        ``record`` beside the folds); creates the fold folder.

        With ``write=False`` nothing is written yet (a trainer that checks more before writing its model folder):
        :meth:`write_fold` then writes the new splits.json and creates the fold folder.

        Raises:
            InvalidParameterError: a fold number outside the splits, or splits that do not fit the dataset.
        """
        self._pending_splits: dict[str, Any] | None = None
        if self.options.fold == "all":
            folder = self.out / self.fold_name
            if write:
                self.write_fold()
            return Fold(self.fold_name, -1, folder, [str(c) for c in cases], [])
        path = self.out / "splits.json"
        new: dict[str, Any] | None = None
        if self.options.splits:
            folds = read_splits(self.options.splits, cases)
            new = {"source": str(self.options.splits), "folds": folds}
        elif path.is_file():
            folds = read_splits(path, cases, parameter="splits.json")
        else:
            folds = make_splits()
            new = {**(record or {}), "folds": folds}
        if check is not None:
            check(folds)
        k = self.fold_index
        if not 0 <= k < len(folds):
            raise bad_value("--fold", "fold out of range", f"0..{len(folds) - 1}", k, "pick an existing fold or 'all'")
        self._pending_splits = new
        if write:
            self.write_fold()
        return Fold(self.fold_name, k, self.out / self.fold_name, list(folds[k]["train"]), list(folds[k]["val"]))

    def write_fold(self) -> Path:
        """Write what :meth:`fold` chose: a new splits.json (when the folds were made or given) and the fold folder."""
        from medimg.io.files import write_json_atomic

        new = getattr(self, "_pending_splits", None)
        if new is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.out / "splits.json", new)
            self._pending_splits = None
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder

    # ---- weights, checkpoint, metrics ---------------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        return self.out / self.fold_name

    def resume_state(self, model: Any, optimizer: Any) -> Any:
        """The loop state to continue from (``options.resume`` and a checkpoint), else None."""
        from medimg.train.callbacks import load_checkpoint

        ckpt = self.folder / "checkpoint.pt"
        return load_checkpoint(ckpt, model, optimizer) if self.options.resume and ckpt.exists() else None

    def save_weights(self, model: Any, *, half: bool = True, extra: dict[str, Any] | None = None) -> Path:
        """The fold's ``model.pt`` (float16 tensors unless ``half=False``; ``extra`` entries beside the weights when
        given, as ``{"model": weights, **extra}``), written atomically."""
        import torch

        from medimg.io.files import atomic_output

        state = {k: v.to(torch.float16) if half and v.is_floating_point() else v
                 for k, v in model.state_dict().items()}
        payload: Any = {"model": state, **extra} if extra else state
        path = self.folder / "model.pt"
        with atomic_output(path) as tmp:
            torch.save(payload, tmp)
        return path

    def write_metrics(self, metrics: dict[str, Any]) -> Path:
        """The fold's ``metrics.json`` (atomically)."""
        from medimg.io.files import write_json_atomic

        path = self.folder / "metrics.json"
        write_json_atomic(path, metrics)
        return path
