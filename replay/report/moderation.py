"""The moderation backtest's HTML sections (the dict comes from
:func:`replay.backtest.moderation.moderation_job`)."""

from __future__ import annotations

from typing import Any

from replay.report.page import esc, fig, fmt_ts, pct, section, table
from replay.report.svg import Series, bar_chart

__all__ = ["render_moderation"]

OUTCOMES = ("APPROVE", "REVIEW", "REJECT")


def render_moderation(report: dict[str, Any]) -> str:
    d, models = report["data"], report["models"]
    labels = [x["label"] for x in models]
    rng = d.get("event_ts") or [None, None]
    head = (f"<p>{esc(d['source'])}: {fig('moderation.uploads', d['uploads'])} uploads "
            f"decided, event time {fmt_ts(rng[0])} → {fmt_ts(rng[1])}, scored by "
            f"{esc(', '.join(d['scored_by']))}; {d['verdicts']:,} reviewer verdicts from "
            f"{esc(d.get('reviews_source') or '-')}; audit rate "
            f"{pct(report['audit_rate'])}. Every version re-decides from the published "
            f"category scores.</p>")
    spec: list[tuple[str, str, Any]] = [
        ("model", "model", str),
        ("same_artefact", "same artefact as the scores",
         lambda v: "-" if v is None else ("yes" if v else "NO (thresholds only)")),
        ("agreement", "agreement with reviewers", pct),
        ("review_volume", "review volume (REVIEW + audits)", lambda v: f"{v:,}"),
        ("review_share", "share sent to review", pct),
        ("reviewed", "uploads with a verdict", lambda v: f"{v:,}"),
        ("deferred", "… deferred (REVIEW)", lambda v: f"{v:,}"),
        ("wrong_approve", "… approved, reviewer rejected", lambda v: f"{v:,}"),
        ("wrong_reject", "… rejected, reviewer approved", lambda v: f"{v:,}"),
    ]
    rows = []
    for key, name, show in spec:
        cells = "".join(f'<td data-figure="moderation.{esc(x["label"])}.{key}">'
                        f'{esc(show(x.get(key)))}</td>' for x in models)
        rows.append(f"<tr><th>{esc(name)}</th>{cells}</tr>")
    for o in OUTCOMES:
        cells = "".join(f'<td data-figure="moderation.{esc(x["label"])}.outcome.{o}">'
                        f'{x["outcomes"][o]:,}</td>' for x in models)
        rows.append(f"<tr><th>{o}</th>{cells}</tr>")
    plots = (bar_chart("outcomes", "decisions", labels,
                       [Series(o, [], [x["outcomes"][o] for x in models]) for o in OUTCOMES],
                       "uploads")
             + bar_chart("agreement", "agreement with reviewers / share reviewed", labels,
                         [Series("agreement", [], [x["agreement"] for x in models]),
                          Series("sent to review", [], [x["review_share"] for x in models])],
                         "share", y_max=1.0))
    parts = [section("Data", head), section("Side by side", table(["", *labels], rows)),
             section("Plots", f'<div class="grid">{plots}</div>')]
    c = report.get("consistency")
    if c:
        text = (f"<p>Each upload re-decided with the thresholds of the version that decided "
                f"it: {fig('consistency.compared', c['compared'])} compared, "
                f"{fig('consistency.differing', c['differing'])} different, "
                f"{c['unknown_version']:,} by a version this registry lacks.</p>")
        diff_rows = [f'<tr class="difference"><td>{esc(x["upload_id"])}</td>'
                     f'<td>{esc(x["model"])}</td><td>{esc(x["backtest"])}</td>'
                     f'<td>{esc(x["published"])}</td></tr>' for x in c["differences"][:200]]
        parts.append(section("Consistency with the published decisions", text + (
            table(["upload_id", "model", "backtest", "published"], diff_rows)
            if diff_rows else "")))
    return "".join(parts)
