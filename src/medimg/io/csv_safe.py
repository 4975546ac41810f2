"""CSV text that is safe to open in a spreadsheet: one writer for every CSV file medimg writes.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is run as a formula by Excel,
LibreOffice and Google Sheets ("CSV injection"). File names, case ids and error messages end up in our tables, so
such cells are escaped as OWASP recommends: a single quote in front (``=cmd|...`` -> ``'=cmd|...``). Cells that
are valid numbers (``-3.5``, ``+1e-3``, ``-inf``) stay numbers, and numbers (int/float) are never touched.

Use :func:`rows_to_text` (a whole table as text, for ``atomic_output``) or :class:`SafeDictWriter` /
:func:`safe_writer` in place of ``csv.DictWriter`` / ``csv.writer``.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["escape_cell", "SafeDictWriter", "safe_writer", "rows_to_text", "FORMULA_PREFIXES"]

#: first characters that make a spreadsheet read a cell as a formula (OWASP, "CSV Injection")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def escape_cell(value: Any) -> Any:
    """``value`` as a CSV cell: None -> "", a string that a spreadsheet would run as a formula -> quoted.

    >>> escape_cell("=HYPERLINK(\\"http://x\\")")
    '\\'=HYPERLINK("http://x")'
    >>> escape_cell("-3.5"), escape_cell(-3.5), escape_cell("@SUM(A1)"), escape_cell("case_001")
    ('-3.5', -3.5, "'@SUM(A1)", 'case_001')
    """
    if value is None:
        return ""
    if not isinstance(value, str):
        return value
    if value.startswith(FORMULA_PREFIXES) and not _is_number(value):
        return "'" + value
    return value


class SafeDictWriter(csv.DictWriter):
    """``csv.DictWriter`` whose cells (and header) go through :func:`escape_cell`."""

    def writeheader(self) -> Any:
        return self.writer.writerow([escape_cell(f) for f in self.fieldnames])

    def writerow(self, rowdict: Mapping[str, Any]) -> Any:
        return super().writerow({k: escape_cell(v) for k, v in rowdict.items()})

    def writerows(self, rowdicts: Iterable[Mapping[str, Any]]) -> None:
        for row in rowdicts:
            self.writerow(row)


class _SafeWriter:
    def __init__(self, fileobj: Any, **kwargs: Any) -> None:
        self._writer = csv.writer(fileobj, **kwargs)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([escape_cell(v) for v in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def safe_writer(fileobj: Any, **kwargs: Any) -> _SafeWriter:
    """``csv.writer`` whose cells go through :func:`escape_cell` (``writerow``/``writerows``)."""
    return _SafeWriter(fileobj, **kwargs)


def rows_to_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], *, extrasaction: str = "ignore") -> str:
    """A CSV table as text: a header line ``columns``, one line per row (missing cells and None empty)."""
    buf = io.StringIO()
    writer = SafeDictWriter(buf, fieldnames=list(columns), lineterminator="\n", restval="",
                            extrasaction=extrasaction)  # type: ignore[arg-type]
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
