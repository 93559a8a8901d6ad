"""Standard clients and the CLI interoperate through the embedded stack:
confluent-kafka's AvroSerializer -> `techshop consume`, and `techshop produce` ->
confluent-kafka's AvroDeserializer."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from schemas import schema_text
from streams.settings import Settings
from streams.topics import TopicCatalog
from tests.conftest import subprocess_env
from tests.helpers import read_topic

pytestmark = pytest.mark.integration


def _txn(i: int) -> dict[str, object]:
    return {"txn_id": f"t{i}", "card_id": f"c{i % 3}", "user_id": "u1", "merchant_id": "m1",
            "merchant_category": "grocery", "amount": 10.0 + i, "currency": "EUR",
            "country": "FR", "device_id": "d1", "ip": "10.0.0.1",
            "ts": int(time.time() * 1000) - 1000}


def _techshop(*args: str, env: dict[str, str], stdin: bytes | None = None,
              timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], env=env, input=stdin,
                          capture_output=True, timeout=timeout, check=False)


def test_avro_serializer_producer_to_techshop_consume(settings: Settings,
                                                      stack_env: dict[str, str]) -> None:
    topic = TopicCatalog(settings.topic_prefix).physical("transactions")
    registry = SchemaRegistryClient({"url": settings.registry_url})
    serializer = AvroSerializer(registry, schema_text("transaction"))
    producer = Producer(settings.kafka_client_config())
    sent = [_txn(i) for i in range(3)]
    for value in sent:
        producer.produce(topic, serializer(value, SerializationContext(topic,
                                                                       MessageField.VALUE)),
                         key=str(value["card_id"]))
    assert producer.flush(10) == 0
    result = _techshop("consume", "transactions", "--from-beginning", "--max", "3",
                       "--timeout", "20", env=subprocess_env(stack_env))
    assert result.returncode == 0, result.stderr.decode()
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert sorted(lines, key=lambda v: v["txn_id"]) == sent


def test_techshop_produce_to_avro_deserializer(settings: Settings, stack_env: dict[str, str],
                                               tmp_path: Path) -> None:
    sent = [_txn(i) for i in range(5)]
    jsonl = b"".join(orjson.dumps(v) + b"\n" for v in sent)
    result = _techshop("produce", "transactions", env=subprocess_env(stack_env), stdin=jsonl)
    assert result.returncode == 0, result.stderr.decode()
    assert b"produced 5 events" in result.stderr
    topic = TopicCatalog(settings.topic_prefix).physical("transactions")
    messages = read_topic(settings, topic, until=lambda m: len(m) >= 5, timeout=20)
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": settings.registry_url}))
    got = [deserializer(m.value(), SerializationContext(topic, MessageField.VALUE))
           for m in messages]
    assert sorted(g["txn_id"] for g in got) == [v["txn_id"] for v in sent]
    assert {m.key().decode() for m in messages} == {"c0", "c1", "c2"}  # the contract's key
    by_id = {g["txn_id"]: g for g in got}
    assert by_id["t4"]["amount"] == 14.0


def test_techshop_produce_reports_bad_lines_and_keeps_the_good(
        settings: Settings, stack_env: dict[str, str]) -> None:
    lines = orjson.dumps(_txn(1)) + b"\nnot json\n" + orjson.dumps({"txn_id": "x"}) + b"\n"
    result = _techshop("produce", "transactions", env=subprocess_env(stack_env), stdin=lines)
    assert result.returncode == 1
    err = result.stderr.decode()
    assert "line 2" in err and "line 3" in err
    assert "produced 1 events" in err
    assert "Traceback" not in err
