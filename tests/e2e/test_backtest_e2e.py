"""Online/offline consistency: a live fraud worker and a backtest of the same events.

One worker (trained models, the session's stack, its own prefix) decides synthetic
transactions sent in waves: within a wave no merchant or device repeats, and the next
wave goes only once the worker has published the wave's decisions and its entity agent
has stored the merchant and device windows in Redis. The worker then sees exactly the
state the backtest keeps (every earlier transaction of a card, merchant and device), so
every decision must be equal. Labels follow; the live labels agent turns them into
training examples. The range is replayed into a second prefix (``techshop replay``)
and backtested there with two models side by side (``techshop backtest fraud``): the
champion's decisions equal the published ones one by one, its figures equal what the
worker counted (/metrics) and what its published decisions and the labels give, and the
HTML report renders in headless Chromium with its plots.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from replay.backtest.fraud import _conflict_free
from replay.generator import TrafficGenerator
from replay.live import DEMO_FRAUD_CONFIG
from streams.cli import main
from streams.settings import Settings
from streams.stack import StackInfo
from streams.topics import TopicCatalog
from streams.worker import schema_source
from tests.e2e.fraud_support import metric_value, produce, start_fraud_worker, wait_ready
from tests.helpers import chromium, create_prefix, headless_chromium, prefix_env, stop_process

pytestmark = pytest.mark.e2e

N = 400


@dataclass
class Live:
    settings: Settings
    env: dict[str, str]
    models: Path
    txns: list[Any]
    labels: list[Any]
    decisions: list[dict[str, Any]]
    metrics: str
    waves: int


class _Decisions:
    """Reads fraud-decisions from the beginning, incrementally."""

    def __init__(self, settings: Settings) -> None:
        from streams.publisher import Codecs

        catalog = TopicCatalog(settings.topic_prefix)
        self.codec = Codecs(schema_source(settings), catalog)["fraud-decisions"]
        physical = catalog.physical("fraud-decisions")
        self.consumer = Consumer({**settings.kafka_client_config(), "group.id": "e2e-bt",
                                  "enable.auto.commit": False, "fetch.wait.max.ms": 10})
        meta = self.consumer.list_topics(physical, timeout=10).topics[physical]
        self.consumer.assign([TopicPartition(physical, p, OFFSET_BEGINNING)
                              for p in meta.partitions])
        self.seen: list[dict[str, Any]] = []

    def until(self, n: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.seen) < n:
            assert time.monotonic() < deadline, f"{len(self.seen)} of {n} decisions"
            for msg in self.consumer.consume(500, 0.05):
                if msg.error() is None:
                    self.seen.append(self.codec.decode(msg.value()))


def _entities_stored(r: redis.Redis, prefix: str, wave: list[dict[str, Any]],
                     timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    want = {f"{prefix}fraud:entity:{kind}:{t[field]}": t["ts"] for t in wave
            for kind, field in (("m", "merchant_id"), ("d", "device_id"))}
    while want:
        assert time.monotonic() < deadline, f"entity windows not stored: {list(want)[:3]}"
        keys = list(want)
        for key, raw in zip(keys, r.mget(keys), strict=True):
            if raw and orjson.loads(raw).get("newest", -1) >= want[key]:
                del want[key]
        if want:
            time.sleep(0.02)


def _traffic() -> tuple[list[Any], list[Any]]:
    gen = TrafficGenerator(seed=21, start_ts_ms=int(time.time() * 1000) - 600_000,
                           rates={"transactions": 200.0}, fraud=DEMO_FRAUD_CONFIG,
                           fraud_rate=0.08, n_cards=5000, n_users=2500, n_merchants=300)
    txns: list[Any] = []
    labels: list[Any] = []
    for e in gen:
        if e.topic == "transactions" and len(txns) < N:
            txns.append(e)
        elif e.topic == "fraud-labels":
            labels.append(e)
        if len(txns) == N and e.ts > txns[-1].ts + DEMO_FRAUD_CONFIG.label_delay_max_ms:
            break
    ids = {e.value["txn_id"] for e in txns}
    return txns, [e for e in labels if e.value["txn_id"] in ids]


@pytest.fixture(scope="module")
def live(stack: StackInfo, fraud_models_dir: Path,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("backtest")
    # no new challenger version during the test: the backtest names the versions
    env = prefix_env(stack, tmp / "data", TECHSHOP_TRAINER_EVERY_EXAMPLES="1000000",
                     TECHSHOP_TRAINER_EVERY_S="3600")
    settings, _ = create_prefix(env)
    models = tmp / "models"
    shutil.copytree(fraud_models_dir, models)
    proc, port = start_fraud_worker(env, tmp / "data", models)
    txns, labels = _traffic()
    try:
        wait_ready(proc, port)
        started = time.monotonic()
        reader = _Decisions(settings)
        r = redis.Redis.from_url(settings.serving_redis_url)
        done, waves = 0, list(_conflict_free([e.value for e in txns]))
        for wave in waves:
            produce(settings, txns[done:done + len(wave)])
            done += len(wave)
            reader.until(done)
            _entities_stored(r, settings.topic_prefix, wave)
        produce(settings, labels, topic="fraud-labels")
        deadline = time.monotonic() + 30
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
            if metric_value(text, "techshop_fraud_training_examples_total") >= len(labels):
                break
            assert time.monotonic() < deadline, "labels did not become training examples"
            time.sleep(0.3)
        reader.consumer.close()
        print(f"{len(waves)} waves and the labels in {time.monotonic() - started:.1f} s")
        yield Live(settings, env, models, txns, labels, reader.seen, text, len(waves))
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def report(live: Live, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """The range replayed into a second prefix and backtested there, two models."""
    out = tmp_path_factory.mktemp("report")
    target = f"r{uuid.uuid4().hex[:8]}."
    with pytest.MonkeyPatch.context() as mp:
        for key, value in live.env.items():
            mp.setenv(key, value)
        assert main(["replay", "transactions", "fraud-labels", "fraud-decisions",
                     "--to-prefix", target, "--quiet"]) == 0
        mp.setenv("TECHSHOP_TOPIC_PREFIX", target)
        assert main(["backtest", "fraud", "--model", "fraud_gbdt@1", "--model",
                     "fraud_river@1", "--model-dir", str(live.models), "--quiet",
                     "--out", str(out)]) == 0
    return json.loads((out / "report.json").read_text()), out / "report.html"


def test_backtest_decisions_equal_the_published_ones(live: Live,
                                                     report: tuple[dict[str, Any], Path]
                                                     ) -> None:
    data, _ = report
    assert len(live.decisions) == N and live.waves > 5
    assert {d["model"] for d in live.decisions} == {"fraud_gbdt@1"}
    c = data["consistency"]
    assert c["differences"] == [], c["differences"][:5]
    assert c["score_only"] == 0, c["score_only_sample"][:5]
    assert (c["compared"], c["matched"], c["not_published"]) == (N, N, 0)


def test_two_models_side_by_side_with_the_figures_the_live_pipeline_measured(
        live: Live, report: tuple[dict[str, Any], Path]) -> None:
    data, _ = report
    champion, challenger = data["models"]
    assert (champion["label"], challenger["label"]) == ("fraud_gbdt@1", "fraud_river@1")
    assert data["data"]["decided"] == N and data["data"]["event_ts"] == [
        min(e.ts for e in live.txns), max(e.ts for e in live.txns)]
    # what the worker counted
    for outcome, n in champion["outcomes"].items():
        assert n == metric_value(live.metrics, "techshop_fraud_decisions_total",
                                 outcome=outcome), outcome
    assert data["labels"]["matched"] == len(live.labels) == metric_value(
        live.metrics, "techshop_fraud_training_examples_total")
    assert data["data"]["frauds"] == metric_value(
        live.metrics, "techshop_fraud_training_examples_total", label="fraud") > 0
    # what its published decisions and the labels give
    fraud = {e.value["txn_id"] for e in live.labels if e.value["is_fraud"]}
    live_conf = {"fraud": dict.fromkeys(("APPROVE", "REVIEW", "DECLINE"), 0),
                 "legit": dict.fromkeys(("APPROVE", "REVIEW", "DECLINE"), 0)}
    for d in live.decisions:
        live_conf["fraud" if d["txn_id"] in fraud else "legit"][d["decision"]] += 1
    assert champion["confusion"] == live_conf
    assert sum(challenger["outcomes"].values()) == N
    assert challenger["curve"]["recall"] != champion["curve"]["recall"]


def test_a_different_threshold_lists_the_events_it_decides_differently(
        live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in live.env.items():
        monkeypatch.setenv(key, value)
    assert main(["backtest", "fraud", "--model", "fraud_gbdt@1:0.0005,0.9", "--model-dir",
                 str(live.models), "--quiet", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "report.json").read_text())
    published = {d["txn_id"]: d["decision"] for d in live.decisions}
    c = data["consistency"]
    assert c["compared"] == N and c["differing"] == N - c["matched"] > 0
    for diff in c["differences"]:
        assert diff["backtest"]["decision"] != published[diff["txn_id"]]
        assert diff["published"]["decision"] == published[diff["txn_id"]]
        assert diff["backtest"]["model"] == diff["published"]["model"] == "fraud_gbdt@1"
    html = (tmp_path / "report.html").read_text()
    assert html.count('class="difference"') == min(c["differing"], 200)
    assert all(d["txn_id"] in html for d in c["differences"][:200])


class _Plots(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.plots: dict[str, int] = {}
        self._current: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "svg" and a.get("data-plot"):
            self._current = a["data-plot"] or ""
            self.plots[self._current] = 0
        elif tag == "path" and a.get("class") == "series" and self._current:
            self.plots[self._current] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._current = None


def test_the_html_report_renders_in_headless_chromium(report: tuple[dict[str, Any], Path],
                                                      tmp_path: Path) -> None:
    browser = chromium()
    _, html = report
    size = "--window-size=1400,2600"
    dom = headless_chromium(browser, tmp_path / "profile", size, "--dump-dom", html.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = _Plots()
    page.feed(dom.stdout)
    for label in ("fraud_gbdt@1", "fraud_river@1"):
        assert page.plots[f"thresholds:{label}"] == 3
        assert page.plots[f"histogram:{label}"] == 2
    assert page.plots["pr"] == 2 and page.plots["cost"] == 2
    shot = tmp_path / "report.png"
    result = headless_chromium(browser, tmp_path / "profile", size, f"--screenshot={shot}",
                               html.as_uri())
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    if os.environ.get("TECHSHOP_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, Path(__file__).resolve().parents[2] / "docs" / "backtest.png")
