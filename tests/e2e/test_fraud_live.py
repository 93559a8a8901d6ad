"""The fraud pipeline live on the embedded stack: the ONNX champion decides; a broken
model file makes the rules decide (and says so); labels become training examples, the
online trainer publishes a new challenger, and the worker swaps to it."""

from __future__ import annotations

import shutil
import time
import urllib.request
from pathlib import Path

import pytest

from schemas import load_schema
from streams.codec import AvroCodec
from streams.settings import Settings
from streams.topics import TopicCatalog
from streams.worker import schema_source
from tests.e2e.fraud_support import (
    live_transactions,
    metric_value,
    produce,
    publisher,
    read_decisions,
    start_fraud_worker,
    wait_ready,
)
from tests.helpers import read_topic, stop_process, wait_for

pytestmark = pytest.mark.e2e


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def test_champion_decides_and_learning_loop_swaps_the_challenger(
        settings: Settings, stack_env: dict[str, str], tmp_path: Path,
        fraud_models_dir: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(fraud_models_dir, models)
    worker, port = start_fraud_worker(stack_env, tmp_path / "w", models,
                                      TECHSHOP_TRAINER_EVERY_EXAMPLES="40",
                                      TECHSHOP_TRAINER_EVERY_S="3")
    try:
        wait_ready(worker, port)
        events = live_transactions(300)
        produce(settings, events)
        decisions = read_decisions(settings, until=300)
        assert {d["model"] for d in decisions} == {"fraud_gbdt@1"}
        assert len({d["txn_id"] for d in decisions}) == 300

        # chargebacks and confirmations for the first 60: labels -> training examples
        pub = publisher(settings)
        for event in events[:60]:
            pub.publish("fraud-labels", {"txn_id": event.value["txn_id"], "is_fraud": False,
                                         "ts": event.value["ts"] + 1000,
                                         "card_id": event.value["card_id"]},
                        key=event.value["card_id"])
        pub.flush_sync()
        catalog = TopicCatalog(settings.topic_prefix)
        examples = read_topic(settings, catalog.physical("training-examples"),
                              until=lambda m: len(m) >= 60, timeout=60)
        codec = AvroCodec(schema_source(settings), catalog.subject("training-examples"),
                          load_schema("training_example"))
        example = codec.decode(examples[0].value())
        assert example["model"] == "fraud" and example["label"] == 0.0
        assert example["decided_by"] == "fraud_gbdt@1"
        assert len(example["features"]) > 20

        # the trainer publishes fraud_river@2 (and more) and the worker swaps, no restart
        def newer_challenger(*_: object) -> bool:
            text = _metrics(port)
            return (metric_value(text, "techshop_fraud_model_info", role="challenger") == 1.0
                    and metric_value(text, "techshop_fraud_model_info", role="challenger",
                                     model="fraud_river@1") == 0.0)

        wait_for(port, "/ready", newer_challenger, 60, proc=worker)
        assert (models / "fraud_river" / "2" / "manifest.json").exists()
    finally:
        stop_process(worker)


def test_a_broken_model_file_means_rules_decide_and_it_shows(
        settings: Settings, stack_env: dict[str, str], tmp_path: Path,
        fraud_models_dir: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(fraud_models_dir, models)
    artefact = models / "fraud_gbdt" / "1" / "artifact.bin"
    artefact.write_bytes(artefact.read_bytes()[:-100] + b"\x00" * 100)  # tampered
    worker, port = start_fraud_worker(stack_env, tmp_path / "w", models)
    try:
        wait_ready(worker, port)
        produce(settings, live_transactions(100, seed=22))
        decisions = read_decisions(settings, until=100)
        assert {d["model"] for d in decisions} == {"rules@1"}
        assert {d["variant"] for d in decisions} == {"fallback"}
        time.sleep(0.5)
        text = _metrics(port)
        assert metric_value(text, "techshop_fraud_fallback_total") >= 1
        assert metric_value(text, "techshop_fraud_decisions_total", variant="fallback") == 100
    finally:
        stop_process(worker)
