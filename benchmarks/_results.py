"""Shared by the benchmark scripts whose result file holds one section per sub-command."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any


def write_section(path: Path, name: str, section: dict[str, Any], machine: dict[str, Any]) -> None:
    """Set ``section`` (plus the machine and the time of measurement) as entry ``name`` of the JSON file ``path``,
    keeping the other sections."""
    data = json.loads(path.read_text()) if path.exists() else {}
    section["machine"] = {"python": platform.python_version(), **machine}
    section["measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    data[name] = section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    print(f"wrote section '{name}' of {path}")
