"""Landmark files: the one reader of point lists (LPS mm) in CSV, used by ``medimg register --fixed-landmarks`` and
``medimg evaluate --task registration``.

A landmark file holds one point per row, in one of two layouts:

* a header row naming the columns ``x``, ``y`` and optionally ``z`` (case-insensitive; other columns are ignored),
  optionally with a ``case`` column naming the case (image pair) each point belongs to;
* no header and 2 or 3 numbers per row (x, y[, z]), the same count on every row.

Blank lines and lines starting with ``#`` are skipped; a UTF-8 byte-order mark is allowed. Every refusal is one
:class:`~medimg.core.errors.InvalidParameterError` naming the option (``parameter``), the file and the line.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

import numpy as np

from medimg.core.errors import ImageReadError, InvalidParameterError
from medimg.io.files import check_input

__all__ = ["Landmarks", "read_landmarks"]


@dataclass(frozen=True, eq=False)
class Landmarks:
    """The points of a landmark file.

    Attributes:
        points: (N, D) float array, D = 2 or 3 (x, y[, z] in LPS mm), in file order.
        cases: the case id of each row when the file has a ``case`` column, else None.
    """

    points: np.ndarray
    cases: tuple[str, ...] | None = None

    @property
    def dim(self) -> int:
        """Coordinates per point (2 or 3)."""
        return int(self.points.shape[1])

    def by_case(self) -> dict[str, np.ndarray]:
        """case id -> (n, D) points of that case, in file order (cases in order of first appearance); a file
        without a ``case`` column is one case named ``""``."""
        if self.cases is None:
            return {"": self.points}
        order: dict[str, list[int]] = {}
        for i, c in enumerate(self.cases):
            order.setdefault(c, []).append(i)
        return {c: self.points[idx] for c, idx in order.items()}


def _read_text(path: str | os.PathLike[str]) -> str:
    p = check_input(path, allow_dir=False)
    try:
        return p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImageReadError("cannot read the landmark file", path=p, expected="a UTF-8 CSV text file",
                             found=f"{type(exc).__name__}: {exc}", fix="save it as UTF-8 CSV") from exc


def _numbers(cells: list[str]) -> list[float] | None:
    try:
        return [float(c) for c in cells]
    except ValueError:
        return None


def read_landmarks(path: str | os.PathLike[str], *, parameter: str, require_case: bool = False) -> Landmarks:
    """Read a landmark CSV (see the module description for the layouts).

    Args:
        path: the CSV file.
        parameter: the option or argument that named the file (e.g. ``"--fixed-landmarks"``), put in errors.
        require_case: the file must have a header with a ``case`` column (and a case id on every row).

    Returns:
        :class:`Landmarks` (``points`` (N, 2 or 3), ``cases`` per row or None).

    Raises:
        ImageReadError: the file is missing, a folder, or not UTF-8 text.
        InvalidParameterError (naming ``parameter`` and the file): no rows, a non-numeric or non-finite cell, a
            row with another number of columns, a header without x and y columns (or without ``case`` when
            ``require_case``), an empty case id.

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "lm.csv"
    >>> _ = f.write_text("case,x,y,z\\na,1,2,3\\na,4,5,6\\nb,0,0,0\\n")
    >>> lm = read_landmarks(f, parameter="gt")
    >>> lm.dim, {c: p.shape for c, p in lm.by_case().items()}
    (3, {'a': (2, 3), 'b': (1, 3)})
    """
    text = _read_text(path)
    fmt = ("a header case,x,y,z and one landmark per row (LPS mm)" if require_case else
           "a header x,y,z and one landmark per row, or 3 numbers per row without header (LPS mm)")

    def bad(what: str, found: object, fix: str) -> InvalidParameterError:
        return InvalidParameterError(what, path=path, parameter=parameter, expected=fmt, found=found, fix=fix)

    rows = [(n, [c.strip() for c in r]) for n, r in enumerate(csv.reader(text.splitlines()), 1)
            if r and any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    if not rows:
        raise bad("the landmark file has no rows", "an empty file", "write one landmark per row")

    columns: list[int] | None = None
    case_column: int | None = None
    _first_line, first = rows[0]
    if _numbers(first) is None:  # a header
        names = [c.lower() for c in first]
        if "x" not in names or "y" not in names:
            raise bad("the landmark header has no x and y columns", f"header {','.join(first)}",
                      "name the coordinate columns x,y,z")
        columns = [names.index(a) for a in ("x", "y", "z") if a in names]
        case_column = names.index("case") if "case" in names else None
        rows = rows[1:]
        if not rows:
            raise bad("the landmark file has no rows", "only a header", "add one landmark per row")
    if require_case and case_column is None:
        raise bad("the landmark file has no case column", f"header {','.join(first)}" if columns else "no header",
                  "add a header row case,x,y,z and the case id of every landmark")
    width = None
    points: list[list[float]] = []
    cases: list[str] = []
    for line, cells in rows:
        if columns is not None:
            needed = max(columns + ([case_column] if case_column is not None else []))
            if len(cells) <= needed:
                raise bad(f"line {line}: too few columns", f"{len(cells)} column(s)",
                          f"give a value for every header column on line {line}")
            if case_column is not None:
                if not cells[case_column]:
                    raise bad(f"line {line}: empty case id", "''", "give every row a case id")
                cases.append(cells[case_column])
            cells = [cells[i] for i in columns]
        elif len(cells) not in (2, 3) or (width is not None and len(cells) != width):
            raise bad(f"line {line}: {len(cells)} columns", f"{len(cells)} column(s): {','.join(cells)[:60]}",
                      f"give x,y,z on line {line} (or add a header x,y,z)")
        width = len(cells)
        vals = _numbers(cells)
        if vals is None or not all(np.isfinite(vals)):
            raise bad(f"line {line}: a coordinate is not a number", repr(",".join(cells)[:60]),
                      f"correct line {line} (numbers in mm, '.' as decimal point)")
        points.append(vals)
    return Landmarks(points=np.asarray(points, dtype=float), cases=tuple(cases) if case_column is not None else None)
