"""The one base of every task's plan: JSON round trip, schema version, dotted overrides, one way to refuse.

A plan is the validated record of every choice a training run makes; it is saved as ``plan.json`` next to the
weights so that a model folder describes itself. Each task's plan (``tasks/<name>/plan.py``) is a frozen dataclass
that derives from :class:`PlanBase` and sets three class attributes:

* ``TASK``: the task name the registry knows (``"segment"``, ``"classify"``, ``"register"``, ...);
* ``SCHEMA_VERSION``: the newest plan file version this medimg writes and reads;
* ``TASK_VALUES``: the values its ``task`` field may hold (classification records the kind of problem there:
  binary, multiclass, multilabel).

The base gives every plan the same ``to_json``/``from_json``/``save``/``load``, the same schema and unknown-field
checks (:meth:`PlanBase.check_fields`) and the same dotted overrides (``plan.replace(**{"network.base_channels":
32})``, the command line's ``--set network.base_channels=32``). Errors go through
:func:`medimg.core.errors.bad_value`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from medimg.core.errors import ImageReadError, InvalidParameterError, bad_value
from medimg.core.image import to_jsonable

__all__ = ["PlanBase", "JsonFileMixin", "apply_dotted"]

T = TypeVar("T", bound="PlanBase")


def apply_dotted(data: dict[str, Any], overrides: dict[str, Any], *, names: set[str],
                 nested: dict[str, set[str]] | None = None) -> dict[str, Any]:
    """``data`` with ``overrides`` applied; keys are field names or ``field.key`` for a nested mapping.

    Args:
        data: the plan as :meth:`PlanBase.to_dict` data (changed in place and returned).
        overrides: field (or dotted key) -> value.
        names: the plan's field names.
        nested: field -> the keys it may hold (``None``: any key already present in ``data[field]``).

    Raises:
        InvalidParameterError: an unknown field or nested key (one line naming it and listing the valid ones).
    """
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if head not in names:
            raise bad_value(key, "unknown plan field", "one of " + ", ".join(sorted(names)), repr(key),
                            "check the spelling; nested keys look like 'augmentation.flip'")
        if not rest:
            data[head] = to_jsonable(value)
            continue
        target = data.get(head)
        allowed = (nested or {}).get(head)
        if allowed is None:
            allowed = set(target) if isinstance(target, dict) else set()
        if not isinstance(target, dict) or rest not in allowed:
            raise bad_value(key, "unknown nested plan field", f"{head}.<{' | '.join(sorted(allowed))}>",
                            repr(key), f"use a key of {head}" if allowed else f"{head} has no nested fields")
        target[rest] = to_jsonable(value)
    return data


class PlanBase:
    """Base of the task plans (frozen dataclasses with ``to_dict`` / ``from_dict``)."""

    #: Registry name of the task this plan belongs to.
    TASK: ClassVar[str] = ""
    #: Newest plan file version this medimg writes and reads.
    SCHEMA_VERSION: ClassVar[int] = 1
    #: Values of the plan's ``task`` field that mean this task.
    TASK_VALUES: ClassVar[tuple[str, ...]] = ()
    #: Nested mappings and the keys they may hold, for dotted overrides (None: the keys present).
    NESTED: ClassVar[dict[str, set[str] | None]] = {}

    # ---- the parts each plan provides ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - provided by the dataclass
        raise NotImplementedError

    @classmethod
    def from_dict(cls: type[T], data: Any) -> T:  # pragma: no cover - provided by the dataclass
        raise NotImplementedError

    # ---- shared checks --------------------------------------------------------------------------------------
    @classmethod
    def check_fields(cls, data: Any, *, required: tuple[str, ...] | None = None) -> dict[str, Any]:
        """Refuse what is not this task's plan, before any value is looked at; returns ``data``.

        Checked in this order: a JSON object; an integer ``schema_version`` no newer than :attr:`SCHEMA_VERSION`;
        a ``task`` value of :attr:`TASK_VALUES` (when present); no unknown fields; no missing required fields
        (the dataclass fields without a default, or ``required``).
        """
        what = f"{cls.TASK} plan" if cls.TASK else "plan"
        if not isinstance(data, dict):
            raise bad_value("plan", f"a {what} must be a JSON object", "an object", type(data).__name__,
                            "give the content of a plan.json")
        version = data.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise bad_value("schema_version", "plan has no schema version", "an integer", repr(version),
                            f"this is not a medimg {what} file")
        if version > cls.SCHEMA_VERSION:
            raise bad_value("schema_version", "plan written by a newer medimg", f"schema <= {cls.SCHEMA_VERSION}",
                            version, "upgrade medimg to read this plan")
        task = data.get("task")
        if task is not None and cls.TASK_VALUES and task not in cls.TASK_VALUES:
            raise bad_value("task", f"not a {what}", " | ".join(cls.TASK_VALUES), repr(task),
                            "open the model folder with medimg.tasks.open_model (it reads the task field)")
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise bad_value("plan", f"unknown {what} fields", ", ".join(sorted(names)), unknown,
                            "remove them, or upgrade medimg")
        if required is None:
            required = tuple(f.name for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                             if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        missing = [k for k in required if k not in data]
        if missing:
            raise bad_value("plan", f"{what} fields are missing", ", ".join(required), missing,
                            "train the model again (the plan is written by `medimg train`)")
        return data

    def replace(self: T, **overrides: Any) -> T:
        """A new, validated plan with fields replaced; nested keys use dots (``"network.base_channels"``).

        Raises:
            InvalidParameterError: unknown field, or a value the plan rejects.
        """
        names = {f.name for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        data = apply_dotted(self.to_dict(), dict(overrides), names=names, nested=dict(self.NESTED))
        return type(self).from_dict(self.after_replace(data, overrides))

    def after_replace(self, data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
        """Hook: keep derived fields in step after :meth:`replace` (e.g. network channels). Default: nothing."""
        return data

    # ---- JSON text and files ----------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls: type[T], text: str) -> T:
        """Parse a plan; the schema version is checked first."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise InvalidParameterError("plan is not valid JSON", parameter="text", expected="a JSON object",
                                        found=str(exc), fix="repair the file") from exc
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the plan as JSON (atomically: a reader never sees half a file)."""
        from medimg.io.files import atomic_output

        out = Path(path)
        with atomic_output(out) as tmp:
            tmp.write_text(self.to_json(), encoding="utf-8")
        return out

    @classmethod
    def load(cls: type[T], path: str | os.PathLike[str]) -> T:
        """Read a plan written by :meth:`save`.

        Raises:
            ImageReadError: the file cannot be read. InvalidParameterError: it is not a valid plan.
        """
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ImageReadError("cannot read plan file", path=p, found=str(exc),
                                 fix="check the path (plans are saved as plan.json)") from exc
        return cls.from_json(text)


#: The former name of :class:`PlanBase` (plans/_json.py).
JsonFileMixin = PlanBase
