"""The HTML page around a report's sections: one self-contained file (inline CSS and
SVG, no script, no network), so it can be mailed, archived or opened offline."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

__all__ = ["esc", "fig", "fmt_ts", "pct", "section", "table", "page"]

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;
color:#1b1f24;background:#fff;max-width:1500px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid
#d0d7de;padding-bottom:4px}h3{font-size:14px;margin:6px 0}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #d0d7de;padding:3px 8px;
text-align:right}th{background:#f6f8fa;text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:14px}.meta{color:#57606a}
svg.plot{background:#fff;border:1px solid #d0d7de;border-radius:4px}
svg .axis{stroke:#57606a}svg .grid{stroke:#eaeef2}svg text{font-size:11px;fill:#1b1f24}
svg .title{font-size:13px;font-weight:600}tr.difference td{background:#fff5f5}
"""


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def fig(key: str, value: Any, text: str | None = None) -> str:
    """A figure a test can read back: ``<span data-figure=KEY data-value=VALUE>``."""
    shown = text if text is not None else (f"{value:,}" if isinstance(value, int) else
                                           str(value))
    return f'<span data-figure="{esc(key)}" data-value="{esc(value)}">{esc(shown)}</span>'


def fmt_ts(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f} %"


def section(title: str, body: str) -> str:
    return f"<section><h2>{esc(title)}</h2>{body}</section>"


def table(header: list[str], rows: list[str]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def page(title: str, subtitle: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}'
            f"</title><style>{CSS}</style></head><body><h1>{esc(title)}</h1>"
            f'<p class="meta">{subtitle}</p>{body}</body></html>')
