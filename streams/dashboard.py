"""The live dashboard on the Faust web monitor: ``/dashboard`` and the JSON behind it.

Every figure is read from the worker's own Prometheus registry (Faust's sensor and
ours), so the page and ``/metrics`` never disagree. What a pipeline shows is
described by a :class:`PipelinePanel` in :data:`PANELS`; a pipeline whose metrics
are not registered in this worker is reported as absent.

``GET /dashboard/api/snapshot``
    Totals, rates, latency percentiles, outcomes, models, drift, dead letters and
    consumer lag of every pipeline, plus the worker's runtime figures.
``GET /dashboard/api/history``
    Per-second series of the last :data:`HISTORY_S` seconds (sampled by a timer).
"""

from __future__ import annotations

import importlib.resources
import math
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from faust import web
from prometheus_client import CollectorRegistry

from streams import faust_transport
from streams.web import readiness

if TYPE_CHECKING:
    from streams.app import TechShopApp

__all__ = ["PipelinePanel", "PANELS", "install_dashboard", "histogram_quantile",
           "read_registry", "snapshot"]

FAUST = "techshop_faust"
HISTORY_S = 300
RATE_WINDOW_S = 10.0
LATENCY_WINDOW_S = 60.0
DRIFT_STATES = {0: "stable", 1: "warning", 2: "drift"}


@dataclass(frozen=True)
class PipelinePanel:
    """What the dashboard shows of one pipeline, by metric name."""

    name: str
    input_topic: str
    decision_topics: tuple[str, ...]
    latency_metric: str  #: a histogram in seconds (without ``_bucket``)
    slo_s: float
    decisions_metric: str  #: a counter (with ``_total``)
    model_info_metric: str  #: a gauge, 1 for each model in use (labels name it)
    outcome_label: str = "outcome"
    variant_label: str | None = "variant"

    @property
    def drift_metric(self) -> str:
        """A gauge ``0`` stable, ``1`` warning, ``2`` drift (max over its series)."""
        return f"techshop_{self.name}_drift_state"


PANELS: tuple[PipelinePanel, ...] = (
    PipelinePanel("fraud", "transactions", ("fraud-decisions",),
                  "techshop_fraud_decision_latency_seconds", 0.3,
                  "techshop_fraud_decisions_total", "techshop_fraud_model_info"),
    # A top-K publication is the decision; its label says which ranker served it.
    PipelinePanel("recommend", "clickstream", ("recommendations",),
                  "techshop_recommend_latency_seconds", 0.1,
                  "techshop_recommend_published_total", "techshop_recommend_model_info",
                  outcome_label="variant", variant_label=None),
    PipelinePanel("moderation", "image-uploads", ("moderation-decisions", "review-queue"),
                  "techshop_moderation_decision_latency_seconds", 5.0,
                  "techshop_moderation_decisions_total", "techshop_moderation_model_info"),
)

Samples = dict[str, list[tuple[dict[str, str], float]]]


@dataclass(frozen=True)
class Reading:
    """The registry at one moment: samples by name, and the metric families present."""

    at: float  #: time.time()
    samples: Samples
    families: frozenset[str]

    def get(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        return [(ls, v) for ls, v in self.samples.get(name, [])
                if all(ls.get(k) == want for k, want in labels.items())]

    def total(self, name: str, **labels: str) -> float:
        return sum(v for _, v in self.get(name, **labels))

    def by(self, name: str, label: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for ls, v in self.samples.get(name, []):
            out[ls.get(label, "")] = out.get(ls.get(label, ""), 0.0) + v
        return out

    def buckets(self, histogram: str) -> list[tuple[float, float]]:
        """Cumulative (upper bound, count) pairs summed over the histogram's series."""
        return sorted((float(le), v) for le, v in self.by(histogram + "_bucket", "le").items())


def read_registry(registry: CollectorRegistry) -> Reading:
    samples: Samples = {}
    families = set()
    for family in registry.collect():
        families.add(family.name)
        for s in family.samples:
            samples.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return Reading(time.time(), samples, frozenset(families))


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of cumulative buckets, interpolated as Prometheus does.

    >>> histogram_quantile(0.5, [(0.1, 10), (0.2, 30), (math.inf, 30)])
    0.125
    >>> histogram_quantile(0.99, [(0.1, 0), (math.inf, 0)]) is None
    True
    """
    pairs = sorted(buckets)
    if not pairs or pairs[-1][1] <= 0:
        return None
    rank = q * pairs[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in pairs:
        if count >= rank:
            if math.isinf(upper):
                return lower  # as Prometheus: the highest finite bound
            if count == below:
                return upper
            return round(lower + (upper - lower) * (rank - below) / (count - below), 6)
        lower, below = upper, count
    return lower


def _delta(now: list[tuple[float, float]], then: list[tuple[float, float]] | None
           ) -> list[tuple[float, float]]:
    before = dict(then or [])
    return [(le, count - before.get(le, 0.0)) for le, count in now]


def _percentiles(buckets: list[tuple[float, float]]) -> dict[str, float | None]:
    return {"p50_s": histogram_quantile(0.5, buckets),
            "p99_s": histogram_quantile(0.99, buckets),
            "count": buckets[-1][1] if buckets else 0.0}


# -- one pipeline -------------------------------------------------------------------
def _present(panel: PipelinePanel, r: Reading) -> bool:
    return (panel.latency_metric in r.families
            or panel.decisions_metric.removesuffix("_total") in r.families)


def _totals(panel: PipelinePanel, r: Reading) -> dict[str, float]:
    return {"events_in": r.total("techshop_events_in_total", topic=panel.input_topic),
            "decisions": r.total(panel.decisions_metric),
            "dead_letters": r.total("techshop_dead_letters_total", topic=panel.input_topic)}


def _drift(panel: PipelinePanel, r: Reading) -> dict[str, Any]:
    if panel.drift_metric not in r.families:
        return {"state": "no detector", "value": None, "labels": {}}
    series = r.get(panel.drift_metric)
    if not series:
        return {"state": "no data", "value": None, "labels": {}}
    labels, value = max(series, key=lambda s: s[1])
    return {"state": DRIFT_STATES.get(int(value), "drift"), "value": value, "labels": labels}


def _lag(app: TechShopApp, panel: PipelinePanel, r: Reading) -> dict[str, Any]:
    """End offset minus committed offset for this worker's partitions of the input.

    From Faust's sensor (``…_topic_partition_end_offset`` is the high watermark of the
    last fetch) or, for a partition it has no figures for yet, the consumer.
    """
    physical = app.catalog.physical(panel.input_topic)
    end = {int(ls["partition"]): v
           for ls, v in r.get(f"{FAUST}_topic_partition_end_offset", topic=physical)}
    done = {int(ls["partition"]): v
            for ls, v in r.get(f"{FAUST}_topic_partition_offset_commited", topic=physical)}
    consumer: Any = app.faust.consumer
    try:
        assigned = sorted(tp for tp in consumer.assignment() if tp.topic == physical)
    except Exception:
        assigned = []
    partitions = []
    for tp in assigned:
        high, committed, source = end.get(tp.partition), done.get(tp.partition), "sensor"
        if high is None or committed is None:
            source = "consumer"
            try:
                high = high if high is not None else consumer.highwater(tp)
                stored = consumer._committed_offset.get(tp)
                committed = committed if committed is not None else stored
            except Exception:
                high = None
        if high is None or committed is None:
            partitions.append({"partition": tp.partition, "lag": None, "source": source})
            continue
        partitions.append({"partition": tp.partition, "end": high, "committed": committed,
                           "lag": max(0.0, float(high) - float(committed)), "source": source})
    known = [p["lag"] for p in partitions if p["lag"] is not None]
    return {"total": sum(known) if known else None, "partitions": partitions,
            "topic": physical}


def _pipeline(app: TechShopApp, panel: PipelinePanel, r: Reading, window: Reading | None,
              latency_base: Reading | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "name": panel.name, "present": _present(panel, r), "input_topic": panel.input_topic,
        "decision_topics": list(panel.decision_topics), "slo_s": panel.slo_s,
        "outcome_label": panel.outcome_label,
        "metrics": {"latency": panel.latency_metric, "decisions": panel.decisions_metric,
                    "model_info": panel.model_info_metric, "drift": panel.drift_metric},
    }
    if not info["present"]:
        return info
    totals = _totals(panel, r)
    rates: dict[str, float | None] = {"events_in_per_s": None, "decisions_per_s": None}
    if window is not None and r.at > window.at:
        before = _totals(panel, window)
        rates = {"events_in_per_s": (totals["events_in"] - before["events_in"])
                 / (r.at - window.at),
                 "decisions_per_s": (totals["decisions"] - before["decisions"])
                 / (r.at - window.at)}
    buckets = r.buckets(panel.latency_metric)
    recent = _delta(buckets, latency_base.buckets(panel.latency_metric)
                    if latency_base is not None else None)
    latency = {**_percentiles(recent), "window_s": LATENCY_WINDOW_S,
               "since_start": _percentiles(buckets)}
    models = [ls for ls, v in r.get(panel.model_info_metric) if v > 0]
    info.update(
        totals=totals, rates=rates, latency=latency,
        outcomes=r.by(panel.decisions_metric, panel.outcome_label),
        variants=r.by(panel.decisions_metric, panel.variant_label)
        if panel.variant_label else {},
        models=sorted(models, key=lambda ls: sorted(ls.items())),
        drift=_drift(panel, r),
        dead_letters=_reasons(r, panel.input_topic),
        lag=_lag(app, panel, r),
    )
    return info


def _reasons(r: Reading, topic: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for ls, v in r.get("techshop_dead_letters_total", topic=topic):
        out[ls["reason"]] = out.get(ls["reason"], 0.0) + v
    return out


# -- the worker ----------------------------------------------------------------------
def _runtime(app: TechShopApp, r: Reading, window: Reading | None) -> dict[str, Any]:
    events = r.total(f"{FAUST}_total_events_total")
    rate = None
    if window is not None and r.at > window.at:
        rate = (events - window.total(f"{FAUST}_total_events_total")) / (r.at - window.at)
    commit = r.buckets(f"{FAUST}_consumer_commit_latency")
    tables: dict[str, dict[str, float]] = {}
    for ls, v in r.get(f"{FAUST}_table_operations_total"):
        tables.setdefault(ls["table"].removeprefix("table."), {})[ls["operation"]] = v
    checks = readiness(app)
    dead: dict[str, dict[str, float]] = {}
    for ls, v in r.get("techshop_dead_letters_total"):
        dead.setdefault(ls["topic"], {})[ls["reason"]] = v
    return {
        "app": app.faust.conf.id, "ready": all(checks.values()), "checks": checks,
        "broker": "tansu" if faust_transport.TransportOptions.exact_end_offsets else "kafka",
        "events_total": events, "events_per_s": rate,
        "messages_received_total": r.total(f"{FAUST}_messages_received_total"),
        "commit_latency_ms": {"p50": histogram_quantile(0.5, commit),
                              "p99": histogram_quantile(0.99, commit),
                              "count": commit[-1][1] if commit else 0.0},
        "rebalancing": r.total(f"{FAUST}_total_rebalances") > 0,
        "send_errors": r.total("techshop_publish_errors_total"),
        "tables": tables, "dead_letters": dead,
        "dead_letters_total": r.total("techshop_dead_letters_total"),
    }


class History:
    """Readings kept for :data:`HISTORY_S` seconds (one per timer tick)."""

    def __init__(self, keep_s: int = HISTORY_S) -> None:
        self.readings: deque[Reading] = deque(maxlen=keep_s + 1)

    def add(self, reading: Reading) -> None:
        self.readings.append(reading)

    def before(self, at: float, seconds: float) -> Reading | None:
        """The newest reading at least ``seconds`` before ``at`` (else the oldest)."""
        older = [reading for reading in self.readings if reading.at < at]
        enough = [reading for reading in older if reading.at <= at - seconds]
        return enough[-1] if enough else (older[0] if older else None)


def snapshot(app: TechShopApp, history: History, panels: Iterable[PipelinePanel] = PANELS
             ) -> dict[str, Any]:
    """Every figure of the dashboard now (the body of ``/dashboard/api/snapshot``)."""
    r = read_registry(app.registry)
    window = history.before(r.at, RATE_WINDOW_S)
    latency_base = history.before(r.at, LATENCY_WINDOW_S)
    return {
        "generated_at_ms": int(r.at * 1000),
        "worker": _runtime(app, r, window),
        "pipelines": [_pipeline(app, p, r, window, latency_base) for p in panels],
        "notes": {"lag": LAG_NOTE},
    }


def series(history: History, panels: Iterable[PipelinePanel] = PANELS, step: int = 5
           ) -> dict[str, Any]:
    """Per-second rates and latency percentiles over ``step``-reading windows."""
    readings = list(history.readings)
    out: dict[str, Any] = {"step_s": step, "t_ms": [], "pipelines": {}}
    points = range(step, len(readings))
    out["t_ms"] = [int(readings[i].at * 1000) for i in points]
    for panel in panels:
        if not readings or not _present(panel, readings[-1]):
            continue
        ins, outs, p50, p99 = [], [], [], []
        for i in points:
            now, then = readings[i], readings[i - step]
            a, b, dt = _totals(panel, now), _totals(panel, then), now.at - then.at
            ins.append((a["events_in"] - b["events_in"]) / dt)
            outs.append((a["decisions"] - b["decisions"]) / dt)
            quant = _percentiles(_delta(now.buckets(panel.latency_metric),
                                        then.buckets(panel.latency_metric)))
            p50.append(quant["p50_s"])
            p99.append(quant["p99_s"])
        out["pipelines"][panel.name] = {"events_in_per_s": ins, "decisions_per_s": outs,
                                        "p50_s": p50, "p99_s": p99, "slo_s": panel.slo_s}
    return out


LAG_NOTE = (
    "Lag = end offset - committed offset, for the partitions assigned to this worker. "
    "The end is the high watermark of the last fetch (Faust's sensor); Faust commits "
    "every few seconds, so a busy partition shows rate x commit interval. The embedded "
    "broker (Tansu) under-reports ListOffsets ends (the last batch's base offset + 1), "
    "so no figure here comes from ListOffsets."
)


def _json(view: web.View, body: Mapping[str, Any]) -> web.Response:
    return view.bytes(orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS),
                      content_type="application/json",
                      headers={"Cache-Control": "no-store"})


def install_dashboard(app: TechShopApp, panels: tuple[PipelinePanel, ...] = PANELS,
                      tick_s: float = 1.0) -> History:
    """Register ``/dashboard`` and its JSON endpoints, and the timer that samples."""
    fa = app.faust
    history = History()
    page = (importlib.resources.files("streams") / "web" / "dashboard.html").read_text("utf-8")

    @fa.timer(tick_s, name="techshop-dashboard-sample")
    async def sample() -> None:
        history.add(read_registry(app.registry))

    @fa.page("/dashboard")
    async def dashboard(self: web.View, request: web.Request) -> web.Response:
        return self.html(page, headers={"Cache-Control": "no-store"})

    @fa.page("/dashboard/api/snapshot")
    async def snapshot_json(self: web.View, request: web.Request) -> web.Response:
        return _json(self, snapshot(app, history, panels))

    @fa.page("/dashboard/api/history")
    async def history_json(self: web.View, request: web.Request) -> web.Response:
        return _json(self, series(history, panels))

    return history
