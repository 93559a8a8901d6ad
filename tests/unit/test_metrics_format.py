"""``/metrics`` is valid Prometheus text with Faust's series and ours, and the dashboard
reads the same registry (no broker: the app is built but not started).

The live endpoint of a running worker is checked in tests/integration/test_dashboard.py.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agents.fraud.metrics import FraudMetrics
from agents.moderation.metrics import ModerationMetrics
from agents.recommend.metrics import RecommendMetrics
from streams.app import TechShopApp
from streams.dashboard import (
    PANELS,
    History,
    histogram_quantile,
    read_registry,
    series,
    snapshot,
)
from streams.settings import Settings

FAUST = "techshop_faust_"


class NoSchemas:
    """Codecs are built on first use; these tests never encode."""

    def register(self, subject: str, schema_str: str) -> int:
        raise AssertionError("not used")

    def schema_by_id(self, schema_id: int) -> str:
        raise AssertionError("not used")

    def latest(self, subject: str) -> tuple[int, str]:
        raise AssertionError("not used")


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TechShopApp:
    for name in [n for n in os.environ if n.upper().startswith("TECHSHOP_")]:
        monkeypatch.delenv(name)
    settings = Settings(data_dir=tmp_path, broker_compat="tansu")
    return TechShopApp(settings, NoSchemas())


def _traffic(app: TechShopApp) -> FraudMetrics:
    """What a worker records for 5 transactions: Faust's hooks, then ours."""
    monitor: Any = app.faust.monitor
    physical = app.catalog.physical("transactions")
    tp = TP(physical, 0)
    for offset in range(5):
        monitor.on_message_in(tp, offset, SimpleNamespace(time_in=None))
    monitor.track_tp_end_offset(tp, 9)
    monitor.on_tp_commit({tp: 5})
    monitor.on_table_set(SimpleNamespace(name="fraud-cards"), "c-1", {})
    monitor.on_commit_completed(None, monitor.time() - 0.004)
    app.metrics.events_in.labels("transactions").inc(5)
    app.metrics.dead_letters.labels("transactions", "decode_error").inc()
    fraud = FraudMetrics.create(app.registry)
    fraud.decisions.labels("APPROVE", "champion").inc(3)
    fraud.decisions.labels("DECLINE", "champion").inc(1)
    for latency in (0.02, 0.04, 0.08, 0.25):
        fraud.latency.observe(latency)
    fraud.model_info.labels("champion", "fraud_gbdt@3").set(1)
    fraud.model_info.labels("rules", "rules@1").set(1)
    return fraud


def test_metrics_text_parses_and_has_faust_and_our_series(app: TechShopApp) -> None:
    _traffic(app)
    # The body of GET /metrics (faust.sensors.prometheus serves generate_latest(registry)).
    text = generate_latest(app.registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert len(families) == text.count("# TYPE "), "one family per TYPE line"

    faust = {n for n in families if n.startswith(FAUST)}
    ours = {n for n in families if n.startswith("techshop_") and n not in faust}
    for name in ("messages_received", "total_events", "table_operations",
                 "consumer_commit_latency", "topic_partition_end_offset",
                 "topic_partition_offset_commited", "total_rebalances"):
        assert FAUST + name in faust, name
    for name in ("techshop_events_in", "techshop_dead_letters", "techshop_events_out",
                 "techshop_fraud_decisions", "techshop_fraud_decision_latency_seconds",
                 "techshop_fraud_model_info"):
        assert name in ours, name
    # No hand-written duplicate of what Faust's sensor already gives.
    assert not {n.removeprefix(FAUST) for n in faust} & {n.removeprefix("techshop_")
                                                        for n in ours}

    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    physical = app.catalog.physical("transactions")
    assert samples[(FAUST + "messages_received_total", ())] == 5
    assert samples[(FAUST + "topic_partition_end_offset",
                    (("partition", "0"), ("topic", physical)))] == 9
    assert samples[("techshop_fraud_decisions_total",
                    (("outcome", "APPROVE"), ("variant", "champion")))] == 3
    assert families["techshop_fraud_decision_latency_seconds"].type == "histogram"


def test_dashboard_snapshot_agrees_with_the_registry(app: TechShopApp) -> None:
    _traffic(app)
    body = snapshot(app, History())
    by_name = {p["name"]: p for p in body["pipelines"]}
    assert [p.name for p in PANELS] == list(by_name)
    fraud = by_name["fraud"]
    assert fraud["present"] and not by_name["recommend"]["present"]
    assert fraud["totals"] == {"events_in": 5, "decisions": 4, "dead_letters": 1}
    assert fraud["outcomes"] == {"APPROVE": 3, "DECLINE": 1}
    assert fraud["variants"] == {"champion": 4}
    assert fraud["dead_letters"] == {"decode_error": 1}
    assert {(m["role"], m["model"]) for m in fraud["models"]} == {
        ("champion", "fraud_gbdt@3"), ("rules", "rules@1")}
    assert fraud["drift"]["state"] == "no data"  # the gauge, no signal observed yet
    latency = fraud["latency"]["since_start"]
    assert latency["count"] == 4
    assert 0.025 < latency["p50_s"] <= 0.1 and 0.2 < latency["p99_s"] <= 0.3
    assert body["worker"]["events_total"] == 0  # no stream ran: Faust counts events there
    assert body["worker"]["messages_received_total"] == 5
    assert body["worker"]["tables"] == {"fraud-cards": {"keys_updated": 1}}
    assert body["worker"]["dead_letters"] == {"transactions": {"decode_error": 1}}


def test_rates_and_history_come_from_earlier_readings(app: TechShopApp) -> None:
    fraud = _traffic(app)
    history = History()
    first = read_registry(app.registry)
    history.add(first)
    fraud.decisions.labels("APPROVE", "champion").inc(20)
    app.metrics.events_in.labels("transactions").inc(20)
    fraud.latency.observe(0.5)
    for second in range(1, 7):  # one reading a second, as the timer takes them
        reading = read_registry(app.registry)
        object.__setattr__(reading, "at", first.at + second)
        history.add(reading)
    assert history.before(first.at + 10, 10) is first
    assert history.before(first.at + 6, 2) is history.readings[4]
    out = series(history, step=5)
    assert list(out["pipelines"]) == ["fraud"]
    fraud_series = out["pipelines"]["fraud"]
    assert len(out["t_ms"]) == len(fraud_series["decisions_per_s"]) == 2
    assert fraud_series["decisions_per_s"] == pytest.approx([20 / 5, 0.0])
    assert fraud_series["events_in_per_s"] == pytest.approx([20 / 5, 0.0])
    assert fraud_series["p99_s"][0] == pytest.approx(0.3 + 0.2 * 0.99)  # bucket (0.3, 0.5]
    assert fraud_series["p99_s"][1] is None


def test_drift_state_is_read_from_the_pipeline_gauge(app: TechShopApp) -> None:
    drift = _traffic(app).drift_state
    drift.labels("score").set(0)
    assert snapshot(app, History())["pipelines"][0]["drift"]["state"] == "stable"
    drift.labels("log_amount_usd").set(2)
    state = snapshot(app, History())["pipelines"][0]["drift"]
    assert state["state"] == "drift" and state["labels"] == {"signal": "log_amount_usd"}


def test_every_pipeline_has_a_drift_state(app: TechShopApp) -> None:
    _traffic(app).drift_state.labels("score").set(0)
    recommend = RecommendMetrics.create(app.registry)
    recommend.published.labels("recommend_ranker").inc()
    recommend.drift_state.labels("cold_share").set(1)
    moderation = ModerationMetrics.create(app.registry)
    moderation.decisions.labels("APPROVE", "model").inc()
    moderation.drift_state.labels("review_share").set(2)
    states = {p["name"]: p["drift"]["state"] for p in snapshot(app, History())["pipelines"]}
    assert states == {"fraud": "stable", "recommend": "warning", "moderation": "drift"}


@pytest.mark.parametrize(("q", "buckets", "expected"), [
    (0.5, [(0.1, 10), (0.2, 30), (math.inf, 30)], 0.125),
    (0.99, [(0.1, 0), (0.2, 0), (math.inf, 0)], None),
    (0.99, [(0.1, 1), (0.2, 2), (math.inf, 10)], 0.2),  # in +Inf: the highest bound
    (0.5, [(0.1, 4), (0.2, 4), (math.inf, 8)], 0.1),
])
def test_histogram_quantile_interpolates_as_prometheus(
        q: float, buckets: list[tuple[float, float]], expected: float | None) -> None:
    assert histogram_quantile(q, buckets) == expected


def test_web_monitor_defaults_expose_no_table_data(app: TechShopApp) -> None:
    conf = app.faust.conf
    assert app.settings.web_host == "127.0.0.1"
    assert conf.web_bind == app.settings.web_host, "bound to TECHSHOP_WEB_HOST only"
    assert not conf.web_tables_enabled and not conf.web_router_enabled
    assert not conf.web_stats_enabled and not conf.web_graph_enabled
