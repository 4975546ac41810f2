"""JSON text and file round trip shared by the plan dataclasses (``to_dict``/``from_dict`` are their own)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypeVar

from medimg.core.errors import ImageReadError, InvalidParameterError

T = TypeVar("T", bound="JsonFileMixin")


class JsonFileMixin:
    """Adds ``to_json``, ``from_json``, ``save`` and ``load`` to a dataclass with ``to_dict`` / ``from_dict``."""

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - provided by the dataclass
        raise NotImplementedError

    @classmethod
    def from_dict(cls: type[T], data: Any) -> T:  # pragma: no cover - provided by the dataclass
        raise NotImplementedError

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls: type[T], text: str) -> T:
        """Parse a plan; the schema version is checked first."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidParameterError("plan is not valid JSON", parameter="text", expected="a JSON object",
                                        found=str(exc), fix="repair the file") from exc
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the plan as JSON (through a temporary file renamed into place)."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, out)
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
