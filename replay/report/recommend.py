"""The recommendations backtest's report: JSON-ready dict and HTML sections."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from replay.backtest.recommend import RecRun
from replay.report.page import esc, fig, fmt_ts, section, table
from replay.report.svg import Series, bar_chart, line_chart

__all__ = ["recommend_report", "render_recommend"]

POPULARITY = "popularity baseline"


def recommend_report(runs: Sequence[RecRun], *, n_catalog: int, data: dict[str, Any]
                     ) -> dict[str, Any]:
    """One entry per model, and the popularity baseline (measured in the first run)."""
    k = runs[0].k if runs else 10
    models = []
    for run in runs:
        assert run.model is not None
        r = run.rates(run.model)
        models.append({"label": run.label, "model": ", ".join(sorted(run.models)) or "-",
                       "evaluated": run.evaluated, "hit_rate": r["hit_rate_at"][-1],
                       "ndcg": r["ndcg_at"][-1], **r,
                       "coverage": len(run.model.shown) / max(n_catalog, 1),
                       "items_shown": len(run.model.shown), "published": run.published,
                       "throttled": run.throttled, "repeats": run.repeats,
                       "events_per_s": data.get("accepted", 0) / run.seconds
                       if run.seconds else None})
    baseline = None
    if runs:
        run = runs[0]
        assert run.popularity is not None
        r = run.rates(run.popularity)
        baseline = {"label": POPULARITY, "model": "decayed popularity",
                    "evaluated": run.evaluated, "hit_rate": r["hit_rate_at"][-1],
                    "ndcg": r["ndcg_at"][-1], **r,
                    "coverage": len(run.popularity.shown) / max(n_catalog, 1),
                    "items_shown": len(run.popularity.shown)}
    for x in models:
        x["lift_hit_rate"] = (x["hit_rate"] / baseline["hit_rate"]
                              if baseline and baseline["hit_rate"] else None)
    return {"pipeline": "recommend", "version": 1, "k": k, "catalog_items": n_catalog,
            "data": data, "models": models, "baseline": baseline}


def render_recommend(report: dict[str, Any]) -> str:
    k, d = report["k"], report["data"]
    cols = [*report["models"], *([report["baseline"]] if report["baseline"] else [])]
    labels = [x["label"] for x in cols]
    rng = d.get("event_ts") or [None, None]
    head = (f"<p>{esc(d.get('source', ''))}: {fig('recommend.events', d['accepted'])} "
            f"clickstream events, event time {fmt_ts(rng[0])} → {fmt_ts(rng[1])}; catalog "
            f"{report['catalog_items']:,} items from {esc(d.get('catalog_source', ''))}; dead "
            f"letters {sum(d.get('dead_letters', {}).values()):,}.</p>")
    spec = [("hit_rate", f"hit-rate@{k}", lambda v: f"{v:.4f}"),
            ("ndcg", f"NDCG@{k}", lambda v: f"{v:.4f}"),
            ("coverage", "catalog coverage", lambda v: f"{100 * v:.1f} %"),
            ("evaluated", "actions evaluated", lambda v: f"{v:,}"),
            ("lift_hit_rate", "lift over popularity", lambda v: f"{v:.2f}x")]
    rows = []
    for key, name, show in spec:
        cells = "".join(
            f'<td data-figure="recommend.{esc(x["label"])}.{key}">'
            f'{esc(show(x[key])) if x.get(key) is not None else "-"}</td>' for x in cols)
        rows.append(f"<tr><th>{esc(name)}</th>{cells}</tr>")
    ks = list(range(1, k + 1))
    plots = [
        line_chart("hit_rate_at_k", "hit-rate@k", [Series(x["label"], ks, x["hit_rate_at"])
                                                  for x in cols], "k", "hit-rate", y_range=(
                   0, max([max(x["hit_rate_at"] or [0]) for x in cols] + [0.01])),
                   legend="bottom"),
        line_chart("ndcg_at_k", "NDCG@k", [Series(x["label"], ks, x["ndcg_at"]) for x in cols],
                   "k", "NDCG", y_range=(0, max([max(x["ndcg_at"] or [0]) for x in cols]
                                                + [0.01])), legend="bottom"),
        bar_chart("coverage", "catalog coverage", labels,
                  [Series("coverage", [], [x["coverage"] for x in cols])], "share of items",
                  y_max=1.0),
    ]
    return (section("Data", head) + section("Side by side", table(["", *labels], rows))
            + section("Plots", f'<div class="grid">{"".join(plots)}</div>'))
