"""The fraud backtest's report: a JSON-ready dict, and its HTML sections."""

from __future__ import annotations

from typing import Any

import numpy as np

from replay.backtest import metrics as m
from replay.backtest.fraud import Consistency, FraudRun, Labels, Truth
from replay.report.page import esc, fig, fmt_ts, pct, section, table
from replay.report.svg import PALETTE, Series, histogram_chart, line_chart

__all__ = ["fraud_report", "render_fraud"]


def fraud_report(run: FraudRun, truth: Truth, labels: Labels, *, data: dict[str, Any],
                 consistency: Consistency | None = None, costs: m.Costs | None = None
                 ) -> dict[str, Any]:
    """Everything the page shows, as plain JSON values."""
    costs = costs or m.Costs()
    y = truth.y
    amounts = np.asarray(run.amounts_usd, dtype=float)
    models = []
    for v in run.variants:
        scores = np.asarray(run.scores[v.label], dtype=float)
        decisions = run.decisions[v.label]
        conf = m.confusion(decisions, y)
        entry = {
            "label": v.label, "model": v.model_id,
            "thresholds": {"review": v.thresholds.review, "decline": v.thresholds.decline,
                           "from": v.thresholds_from},
            "outcomes": {o: conf["fraud"][o] + conf["legit"][o] for o in m.OUTCOMES},
            "confusion": conf, **m.rates(conf),
            "cost": m.cost(decisions, y, amounts, costs),
            "curve": m.threshold_curve(scores, y),
            "cost_curve": m.cost_curve(scores, y, amounts, costs, v.thresholds.decline),
            "pr": m.pr_curve(scores, y), "histogram": m.histograms(scores, y),
        }
        if v is run.primary:
            entry["decided_by"] = dict(run.decided_by)
        models.append(entry)
    ts = run.ts
    return {
        "pipeline": "fraud", "version": 1,
        "data": {**data, "decided": run.n, "late": len(run.late), "repeats": run.repeats,
                 "event_ts": [min(ts), max(ts)] if ts else None,
                 "frauds": int(y.sum()), "legit": int((~y).sum())},
        "labels": {"read": labels.read, "chargebacks": labels.chargebacks,
                   "last_ts": labels.last_ts, "window_ms": truth.window_ms,
                   "matched": truth.labelled, "after_window": truth.after_window,
                   "open_window": truth.open_window,
                   "chargeback_delay_ms": m.describe(truth.delays_ms)},
        "costs": costs.to_dict(),
        "speed": {"decide_seconds": run.seconds, "decide_cpu_seconds": run.cpu_seconds,
                  "decide_calls": run.calls,
                  "txn_per_s": run.n / run.seconds if run.seconds else None},
        "models": models,
        "consistency": consistency.to_dict() if consistency is not None else None,
    }


def _summary_rows(models: list[dict[str, Any]]) -> list[tuple[str, str, list[str]]]:
    rows: list[tuple[str, str, list[str]]] = [
        ("model", "model", [x["model"] for x in models]),
        ("thresholds", "thresholds", [f'{x["thresholds"]["review"]:.4g} / '
                                      f'{x["thresholds"]["decline"]:.4g} '
                                      f'({x["thresholds"]["from"]})' for x in models]),
    ]
    for key, name in (("recall", "recall (flagged)"), ("fpr", "false-positive rate"),
                      ("precision", "precision"), ("decline_recall", "recall (declined)"),
                      ("decline_fpr", "FPR (declined)")):
        rows.append((key, name, [pct(x[key]) for x in models]))
    for o in m.OUTCOMES:
        rows.append((f"outcome.{o}", o, [f'{x["outcomes"][o]:,}' for x in models]))
    rows.append(("cost.total", "cost (USD)", [f'{x["cost"]["total"]:,.0f}' for x in models]))
    return rows


def render_fraud(report: dict[str, Any]) -> str:
    models = report["models"]
    d, lab = report["data"], report["labels"]
    labels = [x["label"] for x in models]
    head = [f"<p>{esc(d.get('source', ''))}: <b>{d['decided']:,}</b> transactions decided "
            f"({fig('fraud.decided', d['decided'])}), {d['frauds']:,} fraudulent by the labels; "
            f"event time {fmt_ts((d['event_ts'] or [None])[0])} → "
            f"{fmt_ts((d['event_ts'] or [None, None])[1])}; late {d['late']:,}, "
            f"repeats {d['repeats']:,}, dead letters {sum(d.get('dead_letters', {}).values()):,}"
            "</p>",
            f"<p>Labels: {lab['read']:,} read ({lab['chargebacks']:,} chargebacks), window "
            f"{lab['window_ms'] / 86_400_000:g} days, last label {fmt_ts(lab['last_ts'])}; "
            f"{lab['open_window']:,} transactions still inside their window (provisional "
            f"negatives), {lab['after_window']:,} labels after it. Chargeback delay "
            f"p50 {_dur(lab['chargeback_delay_ms'].get('p50'))}, p90 "
            f"{_dur(lab['chargeback_delay_ms'].get('p90'))}.</p>"]
    rows = []
    for key, name, values in _summary_rows(models):
        cells = [f'<td data-figure="fraud.{esc(lbl)}.{key}">{esc(v)}</td>'
                 for lbl, v in zip(labels, values, strict=True)]
        rows.append(f"<tr><th>{esc(name)}</th>{''.join(cells)}</tr>")
    summary = table(["", *labels], rows)
    confusions = "".join(_confusion(x) for x in models)
    curves = "".join(
        line_chart(f"thresholds:{x['label']}", f"{x['label']}: at each threshold",
                   [Series("recall", x["curve"]["threshold"], x["curve"]["recall"], PALETTE[0]),
                    Series("FPR", x["curve"]["threshold"], x["curve"]["fpr"], PALETTE[1]),
                    Series("precision", x["curve"]["threshold"], x["curve"]["precision"],
                           PALETTE[2]),
                    *_markers(x["thresholds"])],
                   "threshold (flag when score ≥ t)", "rate", x_range=(0, 1), y_range=(0, 1))
        for x in models)
    pr = line_chart("pr", "precision / recall",
                    [Series(x["label"], x["pr"]["recall"], x["pr"]["precision"])
                     for x in models], "recall", "precision", x_range=(0, 1), y_range=(0, 1),
                    legend="bottom")
    cost = line_chart("cost", "cost if REVIEW starts at t (USD)",
                      [Series(x["label"], x["curve"]["threshold"], x["cost_curve"])
                       for x in models], "review threshold", "USD", x_range=(0, 1))
    hists = "".join(
        histogram_chart(f"histogram:{x['label']}", f"{x['label']}: scores",
                        x["histogram"]["edges"],
                        [Series("legitimate", [], x["histogram"]["legit"], PALETTE[0]),
                         Series("fraud", [], x["histogram"]["fraud"], PALETTE[1])], "score")
        for x in models)
    parts = [section("Data", "".join(head)), section("Side by side", summary),
             section("Confusion matrices", f'<div class="grid">{confusions}</div>'),
             section("At each threshold", f'<div class="grid">{curves}</div>'),
             section("Precision-recall and cost", f'<div class="grid">{pr}{cost}</div>'),
             section("Score histograms", f'<div class="grid">{hists}</div>')]
    if report.get("consistency"):
        parts.append(section("Consistency with the published decisions",
                             _consistency(report["consistency"], labels[0])))
    return "".join(parts)


def _markers(t: dict[str, Any]) -> list[Series]:
    """The model's own thresholds, as dashed vertical lines (class ``marker``)."""
    return [Series(f"{name} {t[name]:.3g}", [t[name], t[name]], [0.0, 1.0], "#57606a", dash)
            for name, dash in (("review", "5 3"), ("decline", "2 3"))]


def _confusion(x: dict[str, Any]) -> str:
    c = x["confusion"]
    rows = [f"<tr><th>{who}</th>" + "".join(
        f'<td data-figure="fraud.{esc(x["label"])}.confusion.{who}.{o}">{c[who][o]:,}</td>'
        for o in m.OUTCOMES) + "</tr>" for who in ("fraud", "legit")]
    grid = table(["actual / decision", *m.OUTCOMES], rows)
    return f'<div><h3>{esc(x["label"])}</h3>{grid}</div>'


def _consistency(c: dict[str, Any], primary: str) -> str:
    text = (f"<p>{esc(primary)} against the published <code>fraud-decisions</code>: "
            f"{fig('consistency.compared', c['compared'])} compared, "
            f"{fig('consistency.matched', c['matched'])} identical, "
            f"{fig('consistency.differing', c['differing'])} with another decision or model"
            f", {fig('consistency.score_only', c.get('score_only', 0))} with the same decision"
            f" but another score (largest difference {c.get('max_score_delta', 0.0):.2g}); "
            f"{c['not_published']:,} decided here but not published, "
            f"{c['published_only']:,} published but refused here.</p>")
    if not c["differences"]:
        return text
    rows = []
    for diff in c["differences"][:200]:
        ours, theirs = diff["backtest"], diff["published"]
        ours_s = ours if isinstance(ours, str) else \
            f'{ours["decision"]} {ours["score"]:.6f} {ours["model"]}'
        rows.append(f'<tr class="difference"><td>{esc(diff["txn_id"])}</td>'
                    f'<td>{esc(str(diff.get("partition", "")))}:'
                    f'{esc(str(diff.get("offset", "")))}</td><td>{esc(ours_s)}</td>'
                    f'<td>{esc(theirs["decision"])} {theirs["score"]:.6f} '
                    f'{esc(theirs["model"])}</td></tr>')
    return text + table(["txn_id", "partition:offset", "backtest", "published"], rows)


def _dur(ms: float | None) -> str:
    if ms is None:
        return "-"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms >= size:
            return f"{ms / size:.1f} {unit}"
    return f"{ms:.0f} ms"
