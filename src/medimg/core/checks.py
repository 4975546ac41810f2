"""Validation helpers shared by operations: per-axis parameters given as one number or (x, y, z)."""

from __future__ import annotations

from typing import Any

import numpy as np

from medimg.core.errors import InvalidParameterError

__all__ = ["per_axis_xyz"]


def per_axis_xyz(value: Any, name: str, *, allow_zero: bool = False, integer: bool = False) -> tuple[float, ...]:
    """A scalar or an (x, y, z) triple as three numbers (x first), validated; errors name ``name``.

    Two values (x, y) get z = 0 when ``allow_zero`` else z = y (2D images).

    >>> per_axis_xyz(2.0, "radius_mm")
    (2.0, 2.0, 2.0)
    """
    try:
        arr = np.asarray(value, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(
            "not a number or a list of numbers", parameter=name, expected="a number or (x, y, z)",
            found=repr(value), fix=f"give {name} as one number or three numbers, x first",
        ) from exc
    if arr.size == 1:
        arr = np.repeat(arr, 3)
    elif arr.size == 2:
        arr = np.append(arr, 0.0 if allow_zero else arr[-1])
    if arr.size != 3 or not np.all(np.isfinite(arr)):
        raise InvalidParameterError(
            "wrong number of values", parameter=name, expected="1 or 3 finite values (x, y, z)",
            found=repr(value), fix=f"give {name} as one number or three numbers, x first",
        )
    bad = arr < 0 if allow_zero else arr <= 0
    if np.any(bad) or (integer and not np.all(arr == np.round(arr))):
        raise InvalidParameterError(
            "invalid value", parameter=name,
            expected=("non-negative" if allow_zero else "positive") + (" integers" if integer else " numbers"),
            found=tuple(arr), fix=f"give {name} with {'values >= 0' if allow_zero else 'values > 0'}",
        )
    return tuple(float(v) for v in arr)
