"""Backtest reports: JSON for machines, one self-contained HTML page for people.

:func:`write_report` writes ``report.json`` and ``report.html`` into a folder; the page
shows the data range, the model versions and every figure side by side per model, with
inline SVG plots (:mod:`replay.report.svg`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from replay.report.page import esc, fmt_ts, page

__all__ = ["write_report", "render"]


def render(report: dict[str, Any]) -> str:
    """The HTML page of a fraud, recommend or moderation report."""
    pipeline = report["pipeline"]
    if pipeline == "fraud":
        from replay.report.fraud import render_fraud as body
    elif pipeline == "recommend":
        from replay.report.recommend import render_recommend as body
    elif pipeline == "moderation":
        from replay.report.moderation import render_moderation as body
    else:
        raise ValueError(f"no page for a {pipeline!r} report")
    models = ", ".join(x["label"] for x in report["models"])
    d = report["data"]
    rng = d.get("event_ts") or [None, None]
    subtitle = (f"{esc(pipeline)} backtest · models {esc(models)} · data "
                f"{esc(d.get('source', ''))} · event time {esc(fmt_ts(rng[0]))} → "
                f"{esc(fmt_ts(rng[1]))} · generated {esc(report.get('generated_at', ''))}")
    return page(f"TechShop {pipeline} backtest", subtitle, body(report))


def write_report(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """``report.json`` and ``report.html`` in ``out_dir`` (created)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report.setdefault("generated_at", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
    json_path, html_path = out_dir / "report.json", out_dir / "report.html"
    json_path.write_text(json.dumps(report, indent=1, default=str) + "\n")
    html_path.write_text(render(report))
    return json_path, html_path
