"""Fraud end to end on the embedded stack: synthetic transactions in, exactly one
decision per txn_id out, fields per CONTRACTS.md."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from replay.generator import TrafficGenerator
from schemas import load_schema
from streams.codec import AvroCodec
from streams.embedded import free_port
from streams.publisher import Codecs, Publisher
from streams.settings import Settings
from streams.topics import TopicCatalog
from streams.worker import schema_source
from tests.conftest import subprocess_env
from tests.helpers import read_topic, start_process, stop_process, wait_for

pytestmark = pytest.mark.e2e

N = 600


def test_every_transaction_gets_exactly_one_decision(settings: Settings,
                                                     stack_env: dict[str, str],
                                                     tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    from streams.metrics import StreamMetrics

    catalog = TopicCatalog(settings.topic_prefix)
    port = free_port()
    worker = start_process(["-m", "streams.cli", "worker", "--pipelines", "fraud"],
                           {**subprocess_env(stack_env), "TECHSHOP_WEB_PORT": str(port)},
                           tmp_path / "worker.log")
    try:
        wait_for(port, "/ready", lambda status, _: status == 200, 90, proc=worker)
        now = int(time.time() * 1000)
        generator = TrafficGenerator(seed=11, start_ts_ms=now - 600_000,
                                     rates={"transactions": 200.0})
        txns = generator.take(N, {"transactions"})
        publisher = Publisher(settings.kafka_client_config(),
                              Codecs(schema_source(settings), catalog),
                              StreamMetrics.create(CollectorRegistry()))
        for event in txns:
            publisher.publish("transactions", event.value, key=event.key)
        publisher.flush_sync()
        messages = read_topic(settings, catalog.physical("fraud-decisions"),
                              until=lambda m: len(m) >= N, timeout=60)
        time.sleep(1.0)  # anything extra (a duplicate) would arrive now
        messages += read_topic(settings, catalog.physical("fraud-decisions"),
                               until=lambda m: False, timeout=1.0)[len(messages):]
    finally:
        stop_process(worker)

    codec = AvroCodec(schema_source(settings), catalog.subject("fraud-decisions"),
                      load_schema("fraud_decision"))
    decisions = [codec.decode(m.value()) for m in messages]
    per_txn = Counter(d["txn_id"] for d in decisions)
    assert set(per_txn) == {e.value["txn_id"] for e in txns}
    assert max(per_txn.values()) == 1
    by_txn = {e.value["txn_id"]: e.value for e in txns}
    for message, decision in zip(messages, decisions, strict=True):
        txn = by_txn[decision["txn_id"]]
        assert decision["decision"] in ("APPROVE", "REVIEW", "DECLINE")
        assert 0.0 <= decision["score"] <= 1.0
        assert "@" in decision["model"]
        assert decision["ts"] == txn["ts"]
        assert decision["decided_at"] >= now - 1000
        assert message.key().decode() == txn["card_id"]
