"""The live dashboard and ``/metrics`` of a real fraud worker under traffic.

One worker (trained models, the session's embedded stack, its own topic prefix) with
synthetic transactions flowing for the whole module and three undecodable records (dead
letters). ``/dashboard`` is loaded in headless Chromium (Debian's ``chromium``; ``make
test`` installs it when it can): the figures it renders are read back from the DOM
(``data-figure``/``data-value``) and compared with ``/metrics`` scraped just before and
just after. ``TECHSHOP_UPDATE_SCREENSHOT=1`` lets traffic run 2.5 minutes first (the
charts fill) and writes the screenshot to
docs/dashboard.png.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from replay.live import LiveTraffic
from streams.settings import Settings
from streams.stack import StackInfo
from streams.worker import schema_source
from tests.e2e.fraud_support import start_fraud_worker, wait_ready
from tests.helpers import (
    chromium,
    create_prefix,
    headless_chromium,
    http_get,
    prefix_env,
    stop_process,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOCS_SCREENSHOT = ROOT / "docs" / "dashboard.png"
BAD_RECORDS = 3
UPDATE_SCREENSHOT = os.environ.get("TECHSHOP_UPDATE_SCREENSHOT") == "1"
Series = dict[str, list[tuple[dict[str, str], float]]]


@dataclass
class Live:
    settings: Settings
    port: int
    proc: subprocess.Popen[bytes]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def metrics(self) -> Series:
        with urllib.request.urlopen(self.url("/metrics"), timeout=5) as response:
            text = response.read().decode()
        out: Series = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out.setdefault(sample.name, []).append((sample.labels, sample.value))
        return out


def total(series: Series, name: str, **labels: str) -> float:
    return sum(v for ls, v in series.get(name, [])
               if all(ls.get(k) == want for k, want in labels.items()))


@pytest.fixture(scope="module")
def live(stack: StackInfo, fraud_models_dir: Path,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("dashboard")
    env = prefix_env(stack, tmp / "data")
    settings, catalog = create_prefix(env)
    models = tmp / "models"
    shutil.copytree(fraud_models_dir, models)  # the trainer adds versions
    proc, port = start_fraud_worker(env, tmp / "data", models)
    traffic = LiveTraffic(settings, schema_source(settings), rates={"transactions": 60.0},
                          seed=5)
    try:
        wait_ready(proc, port)
        producer = Producer(settings.kafka_client_config())
        for i in range(BAD_RECORDS):
            producer.produce(catalog.physical("transactions"), b"not avro", key=f"bad-{i}")
        producer.flush(10)
        traffic.start()
        worker = Live(settings, port, proc)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            now = worker.metrics()
            if (total(now, "techshop_fraud_decisions_total") >= 300 and total(
                    now, "techshop_dead_letters_total", topic="transactions") >= BAD_RECORDS):
                break
            assert proc.poll() is None, "the worker exited"
            time.sleep(0.5)
        else:
            raise AssertionError("the worker did not decide 300 transactions in 90 s")
        # A few dashboard samples under traffic (non-zero rates); for the README's
        # screenshot, long enough to fill the charts.
        time.sleep(150 if UPDATE_SCREENSHOT else 6)
        yield worker
    finally:
        traffic.stop()
        stop_process(proc)


def test_metrics_endpoint_is_prometheus_text_with_faust_and_our_series(live: Live) -> None:
    with urllib.request.urlopen(live.url("/metrics"), timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("techshop_faust_messages_received", "techshop_faust_total_events",
                 "techshop_faust_table_operations", "techshop_faust_consumer_commit_latency",
                 "techshop_faust_topic_partition_end_offset", "techshop_events_in",
                 "techshop_dead_letters", "techshop_fraud_decisions",
                 "techshop_fraud_decision_latency_seconds", "techshop_fraud_model_info"):
        assert name in families, name
        assert any(s.value > 0 for s in families[name].samples), f"{name} is all zero"
    assert families["techshop_fraud_decision_latency_seconds"].type == "histogram"


def test_json_endpoints_behind_the_dashboard(live: Live) -> None:
    status, snap = http_get(live.port, "/dashboard/api/snapshot")
    assert status == 200
    assert snap["worker"]["ready"] is True
    pipelines = {p["name"]: p for p in snap["pipelines"]}
    assert {"fraud", "recommend", "moderation"} <= set(pipelines)
    fraud = pipelines["fraud"]
    assert fraud["present"] and not pipelines["moderation"]["present"]
    assert fraud["rates"]["events_in_per_s"] > 0 and fraud["rates"]["decisions_per_s"] > 0
    assert fraud["totals"]["dead_letters"] == BAD_RECORDS
    assert sum(fraud["outcomes"].values()) == fraud["totals"]["decisions"]
    assert any(m["role"] == "champion" for m in fraud["models"])
    # the fraud worker runs drift detectors (issue 7): a state read from its gauge
    assert fraud["drift"]["state"] in {"stable", "warning", "drift"}
    assert fraud["drift"]["value"] is not None
    assert fraud["lag"]["partitions"], "the worker owns the input's partitions"
    status, history = http_get(live.port, "/dashboard/api/history")
    assert status == 200 and history["t_ms"]
    assert len(history["pipelines"]["fraud"]["decisions_per_s"]) == len(history["t_ms"])


class Figures(HTMLParser):
    """``data-figure`` -> ``data-value``, ``data-pipeline`` -> ``data-present``."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, str] = {}
        self.sections: dict[str, str] = {}
        self.body: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "body":
            self.body = a
        if a.get("data-figure"):
            self.figures[a["data-figure"] or ""] = a.get("data-value") or ""
        if a.get("data-pipeline"):
            self.sections[a["data-pipeline"] or ""] = a.get("data-present") or ""


def _chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return headless_chromium(browser, profile, "--window-size=1400,1000",
                             "--virtual-time-budget=4000", *args)


def test_dashboard_renders_in_headless_chromium(live: Live, tmp_path: Path) -> None:
    browser = chromium()
    before = live.metrics()
    dom = _chromium(browser, tmp_path / "profile", "--dump-dom", live.url("/dashboard"))
    after = live.metrics()
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = Figures()
    page.feed(dom.stdout)
    assert int(page.body.get("data-rendered") or 0) >= 1, "the page never rendered"
    assert "data-error" not in page.body, page.body
    assert page.sections == {"fraud": "true", "recommend": "false", "moderation": "false"}
    f = page.figures

    def between(key: str, name: str, **labels: str) -> float:
        value = float(f[key])
        low, high = total(before, name, **labels), total(after, name, **labels)
        assert low <= value <= high, f"{key}={value}, /metrics went {low} -> {high}"
        return value

    decisions = between("fraud.decisions_total", "techshop_fraud_decisions_total")
    assert decisions >= 300
    assert between("fraud.events_in_total", "techshop_events_in_total",
                   topic="transactions") >= decisions
    outcomes = {k.split(".")[-1]: float(v) for k, v in f.items()
                if k.startswith("fraud.outcome.")}
    assert sum(outcomes.values()) == decisions
    for outcome in outcomes:
        between(f"fraud.outcome.{outcome}", "techshop_fraud_decisions_total", outcome=outcome)
    between("fraud.latency_count", "techshop_fraud_decision_latency_seconds_count")
    assert float(f["fraud.dead_letters_total"]) == BAD_RECORDS == total(
        after, "techshop_dead_letters_total", topic="transactions")
    between("worker.events_total", "techshop_faust_total_events_total")
    assert float(f["fraud.events_in_per_s"]) > 0 and float(f["fraud.decisions_per_s"]) > 0
    for key in ("fraud.latency_p50_s", "fraud.latency_p99_s",
                "fraud.latency_since_start_p99_s"):
        assert 0 < float(f[key]) <= 10, key
    assert float(f["fraud.slo_s"]) == 0.3
    champion = [ls["model"] for ls, v in after["techshop_fraud_model_info"]
                if ls["role"] == "champion" and v == 1]
    assert [f["fraud.model.champion"]] == champion
    assert f["fraud.drift_state"] in {"stable", "warning", "drift"}
    assert float(f["fraud.lag_total"]) >= 0
    assert f["worker.ready"] == "1"

    shot = tmp_path / "dashboard.png"
    result = _chromium(browser, tmp_path / "profile", f"--screenshot={shot}",
                       live.url("/dashboard"))
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 30_000
    if UPDATE_SCREENSHOT:
        shutil.copyfile(shot, DOCS_SCREENSHOT)


def test_web_monitor_listens_on_loopback_only_and_hides_tables(live: Live) -> None:
    for path in ("/table/", "/router/"):
        try:
            with urllib.request.urlopen(live.url(path), timeout=5) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        assert status == 404, path
    if not sys.platform.startswith("linux"):
        pytest.skip("127.0.0.2 reaches the loopback interface on Linux only")
    with socket.socket() as probe:  # bound to 0.0.0.0, this would connect
        probe.settimeout(2)
        assert probe.connect_ex(("127.0.0.2", live.port)) != 0, "listening beyond 127.0.0.1"
