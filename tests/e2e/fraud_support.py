"""Shared steps of the fraud end-to-end tests."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from replay.generator import TrafficGenerator
from schemas import load_schema
from streams.codec import AvroCodec
from streams.embedded import free_port
from streams.metrics import StreamMetrics
from streams.publisher import Codecs, Publisher
from streams.settings import Settings
from streams.topics import TopicCatalog
from streams.worker import schema_source
from tests.conftest import subprocess_env
from tests.helpers import read_topic, start_process, wait_for


def start_fraud_worker(stack_env: dict[str, str], data_dir: Path, models_dir: Path,
                       **extra: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**subprocess_env(stack_env), "TECHSHOP_WEB_PORT": str(port),
           "TECHSHOP_DATA_DIR": str(data_dir), "TECHSHOP_MODEL_DIR": str(models_dir), **extra}
    proc = start_process(["-m", "streams.cli", "worker", "--pipelines", "fraud"], env,
                         data_dir.parent / f"{data_dir.name}-{port}.log")
    return proc, port


def wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float = 90) -> None:
    wait_for(port, "/ready", lambda status, _: status == 200, timeout, proc=proc)


def live_transactions(n: int, seed: int = 21) -> list[Any]:
    now = int(time.time() * 1000)
    gen = TrafficGenerator(seed=seed, start_ts_ms=now - 120_000,
                           rates={"transactions": 200.0}, n_cards=60_000, n_users=30_000)
    return gen.take(n, {"transactions"})


def publisher(settings: Settings) -> Publisher:
    return Publisher(settings.kafka_client_config(),
                     Codecs(schema_source(settings), TopicCatalog(settings.topic_prefix)),
                     StreamMetrics.create(CollectorRegistry()))


def produce(settings: Settings, events: Sequence[Any], topic: str = "transactions") -> None:
    pub = publisher(settings)
    for event in events:
        pub.publish(topic, event.value, key=event.key)
    pub.flush_sync()


def read_decisions(settings: Settings, until: int, timeout: float = 90.0
                   ) -> list[dict[str, Any]]:
    catalog = TopicCatalog(settings.topic_prefix)
    codec = AvroCodec(schema_source(settings), catalog.subject("fraud-decisions"),
                      load_schema("fraud_decision"))
    messages = read_topic(settings, catalog.physical("fraud-decisions"),
                          until=lambda m: len(m) >= until, timeout=timeout)
    return [codec.decode(m.value()) for m in messages]


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total
