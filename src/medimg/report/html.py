"""One self-contained HTML report: inputs, method, parameters, figures (embedded PNG), measurements, versions.

No external resources (scripts, fonts, images) are referenced, so the file can be archived or mailed as is.
"""

from __future__ import annotations

import base64
import html
import io
import platform
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["ReportSection", "render_html", "png_bytes", "RESEARCH_NOTICE"]

RESEARCH_NOTICE = (
    "For research use only. Not a medical device; not for diagnosis or treatment decisions. "
    "Results must be reviewed by a qualified person."
)

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.notice{background:#fff4e5;border:1px solid #f0b35b;padding:.6rem 1rem;border-radius:4px;margin:1rem 0}
.warning{background:#fdecea;border:2px solid #d93025;color:#8a1c12;padding:.6rem 1rem;border-radius:4px;margin:1rem 0}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0} td,th{border:1px solid #ccc;padding:.25rem .5rem}
th{background:#f3f3f3;text-align:left} td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{display:inline-block;margin:.5rem;vertical-align:top} figcaption{font-size:.8rem;color:#555}
img{max-width:100%;border:1px solid #ccc} code{background:#f5f5f5;padding:0 .2rem}
.small{font-size:.8rem;color:#666} p{white-space:pre-line}
"""


@dataclass
class ReportSection:
    """A titled block of the report: free text, key/value pairs, a table of records and/or figures."""

    title: str
    text: str = ""
    items: Mapping[str, Any] = field(default_factory=dict)
    records: Sequence[Mapping[str, Any]] = ()
    figures: Mapping[str, np.ndarray] = field(default_factory=dict)  # caption -> (H, W[, 3]) uint8


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG encoding of a (H, W) or (H, W, 3) uint8 array."""
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if not np.isfinite(value):
            return html.escape(str(value))
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.4e}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    return html.escape(str(value))


def _table(records: Sequence[Mapping[str, Any]]) -> str:
    keys: list[str] = []
    for r in records:
        keys.extend(k for k in r if k not in keys)
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    rows = []
    for r in records:
        cells = []
        for k in keys:
            v = r.get(k, "")
            cls = ' class="num"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
            cells.append(f"<td{cls}>{_fmt(v)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def render_html(title: str, sections: Sequence[ReportSection], *, software: Mapping[str, str] | None = None,
                warnings: Sequence[str] = ()) -> str:
    """The report as one HTML string (figures embedded as base64 PNG).

    ``warnings`` (e.g. an input outside what the pipeline was validated on) are shown in a red box under the
    heading, before every section.
    """
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='small'>Generated {time.strftime('%Y-%m-%d %H:%M:%S')}</p>",
        f"<div class='notice'><b>Research use only.</b> {html.escape(RESEARCH_NOTICE)}</div>",
    ]
    for text in warnings:
        parts.append(f"<div class='warning'><b>Warning:</b> {html.escape(text)}</div>")
    for sec in sections:
        parts.append(f"<h2>{html.escape(sec.title)}</h2>")
        if sec.text:
            parts.append(f"<p>{html.escape(sec.text)}</p>")
        if sec.items:
            parts.append(_table([{"field": k, "value": v} for k, v in sec.items.items()]))
        if sec.records:
            parts.append(_table(sec.records))
        for caption, arr in sec.figures.items():
            data = base64.b64encode(png_bytes(arr)).decode("ascii")
            parts.append(f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    soft = dict(software or {})
    soft.setdefault("python", platform.python_version())
    parts.append("<h2>Software</h2>")
    parts.append(_table([{"package": k, "version": v} for k, v in soft.items()]))
    parts.append("</body></html>")
    return "\n".join(parts)
