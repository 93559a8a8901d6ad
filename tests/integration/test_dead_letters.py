"""Undecodable and invalid events on `transactions` land on `dead-letters` with distinct
reasons and their original bytes, and the worker keeps deciding."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from schemas import load_schema
from streams.codec import AvroCodec
from streams.embedded import free_port
from streams.settings import Settings
from streams.topics import TopicCatalog
from streams.worker import schema_source
from tests.conftest import subprocess_env
from tests.helpers import read_topic, start_process, stop_process, wait_for

pytestmark = pytest.mark.integration


def _valid_txn(txn_id: str, amount: float = 25.0) -> dict[str, object]:
    return {"txn_id": txn_id, "card_id": "card-1", "user_id": "u1", "merchant_id": "m1",
            "merchant_category": "grocery", "amount": amount, "currency": "EUR",
            "country": "FR", "device_id": "d1", "ip": "10.0.0.1",
            "ts": int(time.time() * 1000)}


def test_bad_events_are_dead_lettered_and_the_worker_keeps_going(
        settings: Settings, stack_env: dict[str, str], tmp_path: Path) -> None:
    catalog = TopicCatalog(settings.topic_prefix)
    codec = AvroCodec(schema_source(settings), catalog.subject("transactions"),
                      load_schema("transaction"))
    good = codec.encode(_valid_txn("before"))
    bad_inputs = {
        "decode.bad_magic": b"\x07" + os.urandom(40),
        "decode.unknown_schema": b"\x00" + struct.pack(">I", 987_654) + good[5:],
        "decode.truncated": good[:-6],
        "validate.amount": codec.encode(_valid_txn("negative", amount=-5.0)),
    }
    port = free_port()
    worker = start_process(["-m", "streams.cli", "worker", "--pipelines", "fraud"],
                           {**subprocess_env(stack_env), "TECHSHOP_WEB_PORT": str(port)},
                           tmp_path / "worker.log")
    try:
        wait_for(port, "/ready", lambda status, _: status == 200, 90, proc=worker)
        producer = Producer(settings.kafka_client_config())
        topic = catalog.physical("transactions")
        producer.produce(topic, good, b"card-1")
        for reason, value in bad_inputs.items():
            producer.produce(topic, value, reason.encode())
        producer.produce(topic, codec.encode(_valid_txn("after")), b"card-1")
        assert producer.flush(10) == 0

        dead = read_topic(settings, catalog.physical("dead-letters"),
                          until=lambda m: len(m) >= len(bad_inputs))
        decisions = read_topic(settings, catalog.physical("fraud-decisions"),
                               until=lambda m: len(m) >= 2)
    finally:
        stop_process(worker)

    dl_codec = AvroCodec(schema_source(settings), catalog.subject("dead-letters"),
                         load_schema("dead_letter"))
    letters = {dl_codec.decode(m.value())["reason"]: (m, dl_codec.decode(m.value()))
               for m in dead}
    assert set(letters) == set(bad_inputs)
    for reason, value in bad_inputs.items():
        message, record = letters[reason]
        assert record["value"] == value, reason  # the original bytes, untouched
        assert record["key"] == reason.encode() == message.key()
        assert record["source_topic"] == topic
        assert record["detail"]
        assert record["offset"] >= 0 and 0 <= record["partition"] < settings.partitions

    dec_codec = AvroCodec(schema_source(settings), catalog.subject("fraud-decisions"),
                          load_schema("fraud_decision"))
    decided = sorted(dec_codec.decode(m.value())["txn_id"] for m in decisions)
    assert decided == ["after", "before"]
