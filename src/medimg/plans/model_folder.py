"""Reading a model folder before loading it: its plan.json as data, and whether its sizes fit in memory.

A model folder (``medimg train segment|classify|register``, or a shipped zoo model) says what it is in its
``plan.json``: the ``task`` field, which :func:`medimg.tasks.registry.task_of_folder` maps to the registered task
(the one model-folder reader). :func:`check_network_memory` refuses a plan whose patch/batch sizes could not fit in
this machine's memory before anything is allocated.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

from medimg.core.errors import ImageReadError, InvalidParameterError

__all__ = ["read_plan_dict", "machine_memory_bytes", "check_network_memory"]

def read_plan_dict(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed ``plan.json`` of a model folder (a JSON object).

    Raises:
        ImageReadError: no plan.json, unreadable, not JSON or not a JSON object.
    """
    root = Path(folder)
    plan = root / "plan.json"
    if not plan.is_file():
        raise ImageReadError("not a model folder", path=root, expected="a folder with plan.json and fold_*/model.pt",
                             found="no plan.json", fix="give a folder written by `medimg train ...` or a model name "
                             "from `medimg models`")
    from medimg.io.files import read_json_file

    data = read_json_file(plan, what="plan.json", fix="restore the file or train the model again")
    if not isinstance(data, dict):
        raise ImageReadError("unreadable plan.json", path=plan, expected="a JSON object",
                             found=type(data).__name__, fix="restore the file or train the model again")
    return data


def machine_memory_bytes() -> int:
    """The memory a network plan may need at most: the physical memory (``MEDIMG_MEMORY_GB`` overrides).

    Decoded files have their own, smaller budget (:func:`medimg.core.checks.memory_budget_bytes`).
    """
    env = os.environ.get("MEDIMG_MEMORY_GB")
    if env:
        try:
            return int(float(env) * 1024 ** 3)
        except ValueError:
            pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 64 * 1024 ** 3


def check_network_memory(*, batch: int, spatial: Sequence[int], channels: int, path: str | os.PathLike[str],
                         fields: str) -> int:
    """Refuse sizes whose smallest possible working set exceeds :func:`machine_memory_bytes`.

    The lower bound is one float32 feature map of ``channels`` channels at full resolution for the whole batch
    (the network's first layer writes it on every pass): ``4 * batch * prod(spatial) * channels`` bytes. A real run
    needs several times more, so anything refused here could never have run; returns the bound in bytes.

    Raises:
        InvalidParameterError: a non-positive size, or a bound above the budget (one line naming the fields).
    """
    try:
        sizes = [int(v) for v in (batch, channels, *spatial)]
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidParameterError("plan sizes are not whole numbers", path=Path(path), parameter=fields,
                                    found=f"batch {batch!r}, size {list(spatial)!r}", fix="train the model again"
                                    ) from exc
    if any(v < 1 for v in sizes):
        raise InvalidParameterError("plan sizes must be positive", path=Path(path), parameter=fields,
                                    found=f"batch {batch}, size {list(spatial)}, channels {channels}",
                                    fix="train the model again")
    need = 4 * math.prod(sizes)
    budget = machine_memory_bytes()
    if need > budget:
        raise InvalidParameterError(
            "plan needs more memory than this machine has", path=Path(path), parameter=fields,
            expected=f"at most {budget / 1024 ** 3:.0f} GB", found=f"at least {need / 1024 ** 3:.0f} GB (batch "
            f"{batch} x {'x'.join(map(str, spatial))} x {channels} channels)",
            fix="use smaller patch/batch sizes (e.g. --set batch_size=2), or a model trained with them")
    return need
