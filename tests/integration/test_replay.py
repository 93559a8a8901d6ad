"""`techshop replay`, `export` and `backtest` against the session's embedded stack."""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from replay.generator import TrafficGenerator
from replay.live import DEMO_FRAUD_CONFIG
from replay.sources import read_topic
from streams.cli import main
from streams.publisher import Codecs
from streams.settings import Settings
from streams.topics import TopicCatalog
from streams.worker import schema_source

pytestmark = pytest.mark.integration

N = 400


@pytest.fixture
def produced(settings: Settings) -> dict[str, list[Any]]:
    """Transactions and their labels on the test's prefix, record timestamp = event ts."""
    start = int(time.time() * 1000) - 3_600_000
    gen = TrafficGenerator(seed=8, start_ts_ms=start, rates={"transactions": 50.0},
                           fraud=DEMO_FRAUD_CONFIG, fraud_rate=0.05, n_cards=300, n_users=200)
    events, txns, last = [], 0, None
    for e in gen:  # N transactions, then their labels (delays up to 2 minutes)
        if e.topic == "transactions" and txns < N:
            txns += 1
            last = e.ts
            events.append(e)
        elif e.topic == "fraud-labels":
            events.append(e)
        if last is not None and e.ts > last + DEMO_FRAUD_CONFIG.label_delay_max_ms:
            break
    catalog = TopicCatalog(settings.topic_prefix)
    codecs = Codecs(schema_source(settings), catalog)
    producer = Producer(settings.kafka_client_config())
    out: dict[str, list[Any]] = defaultdict(list)
    for e in events:
        producer.produce(catalog.physical(e.topic), codecs[e.topic].encode(e.value),
                         e.key.encode(), timestamp=e.ts)
        out[e.topic].append(e)
    producer.flush(30)
    return out


def _records(settings: Settings, physical: str, **kw: Any) -> dict[int, list[tuple]]:
    per: dict[int, list[tuple]] = defaultdict(list)
    for batch in read_topic(settings, physical, **kw):
        for m in batch:
            per[m.partition].append((m.key, m.value, m.timestamp_ms))
    return dict(per)


def _as(monkeypatch: pytest.MonkeyPatch, prefix: str) -> Settings:
    monkeypatch.setenv("TECHSHOP_TOPIC_PREFIX", prefix)
    return Settings()


def test_replay_copies_keys_partitions_order_and_timestamps(
        settings: Settings, produced: dict[str, list[Any]], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    src = settings.topic_prefix
    dst = f"r{uuid.uuid4().hex[:8]}."
    assert main(["replay", "transactions", "fraud-labels", "--to-prefix", dst, "--quiet"]) == 0
    assert f"{dst}transactions: {len(produced['transactions']):,} records" in \
        capsys.readouterr().out
    for topic in ("transactions", "fraud-labels"):
        original = _records(settings, f"{src}{topic}")
        copied = _records(settings, f"{dst}{topic}")
        assert copied == original and sum(map(len, copied.values())) == len(produced[topic])

    # a time range (record timestamps) and an offset range
    ts = sorted(e.ts for e in produced["transactions"])
    lo, hi = ts[50], ts[149]
    part = f"r{uuid.uuid4().hex[:8]}."
    assert main(["replay", "transactions", "--to-prefix", part, "--from", str(lo), "--to",
                 str(hi), "--quiet"]) == 0
    got = _records(settings, f"{part}transactions")
    assert sorted(t for rows in got.values() for _, _, t in rows) == ts[50:150]
    off = f"r{uuid.uuid4().hex[:8]}."
    assert main(["replay", "transactions", "--to-prefix", off, "--from", "@5", "--to", "@9",
                 "--quiet"]) == 0
    assert {p: len(rows) for p, rows in _records(settings, f"{off}transactions").items()} == \
        dict.fromkeys(range(settings.partitions), 5)

    # paced: 40 records spanning ~0.8 s of record time at twice real time take >= ~0.4 s
    paced = f"r{uuid.uuid4().hex[:8]}."
    span = ts[200:240]
    started = time.monotonic()
    assert main(["replay", "transactions", "--to-prefix", paced, "--from", str(span[0]),
                 "--to", str(span[-1]), "--speed", "2", "--quiet"]) == 0
    assert time.monotonic() - started >= (span[-1] - span[0]) / 2000 * 0.9
    assert sum(map(len, _records(settings, f"{paced}transactions").values())) == 40


def test_export_and_backtest_from_topic_and_files_agree(
        settings: Settings, produced: dict[str, list[Any]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    for topic, name in (("transactions", "txns.avro"), ("fraud-labels", "labels.jsonl")):
        assert main(["export", topic, "--out", str(tmp_path / name), "--quiet"]) == 0
    lines = (tmp_path / "labels.jsonl").read_text().splitlines()
    assert len(lines) == len(produced["fraud-labels"]) > 10
    assert {"topic", "partition", "offset", "key", "timestamp", "value"} == set(
        json.loads(lines[0]))
    common = ["--model", "rules", "--thresholds", "0.3,0.8", "--quiet", "--no-compare"]
    assert main(["backtest", "fraud", *common, "--out", str(tmp_path / "topic")]) == 0
    assert main(["backtest", "fraud", *common, "--file", str(tmp_path / "txns.avro"),
                 "--labels", str(tmp_path / "labels.jsonl"),
                 "--out", str(tmp_path / "file")]) == 0
    out = capsys.readouterr().out
    assert "recall" in out and "report:" in out
    a = json.loads((tmp_path / "topic" / "report.json").read_text())
    b = json.loads((tmp_path / "file" / "report.json").read_text())
    assert a["data"]["decided"] == b["data"]["decided"] == len(produced["transactions"])
    assert a["data"]["frauds"] == b["data"]["frauds"] > 0
    for x, y in zip(a["models"], b["models"], strict=True):
        assert x["confusion"] == y["confusion"] and x["curve"] == y["curve"]
    assert (tmp_path / "topic" / "report.html").stat().st_size > 10_000


@pytest.mark.parametrize("argv, message", [
    (["backtest", "fraud", "--model", "fraud_gbdt@99", "--quiet"], "fraud_gbdt@99"),
    (["backtest", "fraud", "--model", "rules", "--from", "soon", "--quiet"], "bad time"),
    (["replay", "transactions", "--to-prefix", "", "--quiet"], "target prefix"),
    (["export", "nosuch", "--out", "x.jsonl"], "unknown topic"),
])
def test_bad_arguments_are_one_line(settings: Settings, argv: list[str], message: str,
                                    capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    if argv[0] == "replay":
        _as(monkeypatch, "")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("techshop: error:") and message in err[0], err


def test_backtest_recommend_from_topics_and_files(settings: Settings, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    gen = TrafficGenerator(seed=4, start_ts_ms=int(time.time() * 1000) - 3_600_000,
                           rates={"clickstream": 20.0}, n_items=300, n_users=200)
    events = gen.take(300 + 1500, {"catalog", "clickstream"})  # the catalog comes first
    catalog = TopicCatalog(settings.topic_prefix)
    codecs = Codecs(schema_source(settings), catalog)
    producer = Producer(settings.kafka_client_config())
    for e in events:
        producer.produce(catalog.physical(e.topic), codecs[e.topic].encode(e.value),
                         e.key.encode(), timestamp=e.ts)
    producer.flush(30)
    clicks = sum(e.topic == "clickstream" for e in events)
    assert main(["backtest", "recommend", "--model", "heuristic", "--k", "5", "--quiet",
                 "--out", str(tmp_path / "topic")]) == 0
    for topic, name in (("clickstream", "clicks.jsonl"), ("catalog", "catalog.avro")):
        assert main(["export", topic, "--out", str(tmp_path / name), "--quiet"]) == 0
    assert main(["backtest", "recommend", "--model", "heuristic", "--k", "5", "--quiet",
                 "--file", str(tmp_path / "clicks.jsonl"), "--catalog",
                 str(tmp_path / "catalog.avro"), "--out", str(tmp_path / "file")]) == 0
    assert "hit-rate@5" in capsys.readouterr().out
    a = json.loads((tmp_path / "topic" / "report.json").read_text())
    b = json.loads((tmp_path / "file" / "report.json").read_text())
    assert a["data"]["accepted"] == b["data"]["accepted"] == clicks
    assert a["catalog_items"] == b["catalog_items"] == 300
    for x, y in zip([*a["models"], a["baseline"]], [*b["models"], b["baseline"]], strict=True):
        assert x["hit_rate_at"] == y["hit_rate_at"] and x["coverage"] == y["coverage"]
    assert a["models"][0]["evaluated"] > 50
    assert a["models"][0]["hit_rate"] > a["baseline"]["hit_rate"]
