"""Champion/challenger live: one fraud worker, a second champion version as challenger.
Shadow (the champion decides, the challenger is scored), canary (the challenger decides
for the cards whose stable hash falls in the share), promote and rollback — each
driven by ``techshop models …`` (which announces on ``model-updates``), each picked
up by the running worker within seconds, and each visible in the decisions' ``model``
and ``variant`` fields."""

from __future__ import annotations

import shutil
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from models.registry import open_registry
from models.routing import Routing, RoutingStore, bucket
from streams.cli import main
from streams.settings import Settings
from tests.e2e.fraud_support import (
    live_transactions,
    metric_value,
    produce,
    read_decisions,
    start_fraud_worker,
    wait_ready,
)
from tests.helpers import stop_process

pytestmark = pytest.mark.e2e
SWAP_WITHIN_S = 10.0


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def _wait_metrics(port: int, ok: Callable[[str], bool], what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < 30:
        if ok(_metrics(port)):
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"the worker did not pick up {what} within 30 s")


def test_shadow_canary_promote_and_rollback_are_visible_in_decisions(
        settings: Settings, stack_env: dict[str, str], tmp_path: Path,
        fraud_models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = tmp_path / "models"
    shutil.copytree(fraud_models_dir, models)
    registry = open_registry(models)
    first, artefact = registry.load("fraud_gbdt", "1")
    registry.publish("fraud_gbdt", "onnx", artefact, feature_names=first.feature_names,
                     thresholds=first.thresholds, lineage={"copy_of": "1"})
    RoutingStore(registry).update("fraud", lambda r: Routing(
        "fraud", "fraud_gbdt@1", "fraud_gbdt@2"), "test setup")
    for key, value in {**stack_env, "TECHSHOP_MODEL_DIR": str(models),
                       "TECHSHOP_DATA_DIR": str(tmp_path / "cli")}.items():
        monkeypatch.setenv(key, value)
    worker, port = start_fraud_worker(stack_env, tmp_path / "w", models)
    decided: dict[str, dict[str, Any]] = {}

    def stage(n: int, seed: int) -> list[dict[str, Any]]:
        events = live_transactions(n, seed=seed)
        produce(settings, events)
        ids = {e.value["txn_id"] for e in events}
        for d in read_decisions(settings, until=len(decided) + n):
            decided.setdefault(d["txn_id"], d)
        fresh = [decided[i] for i in ids if i in decided]
        assert len(fresh) == n
        return fresh

    def in_use(role: str, model: str) -> Callable[[str], bool]:
        return lambda text: metric_value(text, "techshop_fraud_model_info", role=role,
                                         model=model) == 1.0

    try:
        wait_ready(worker, port)
        # shadow: the champion decides every card; the challenger is scored alongside
        shadow = stage(100, seed=31)
        assert {(d["model"], d["variant"]) for d in shadow} == {("fraud_gbdt@1", "champion")}
        assert metric_value(_metrics(port), "techshop_fraud_shadow_scored_total",
                            model="fraud_gbdt@2") >= 100

        # canary: the challenger decides for the cards hashed into the 50 %
        assert main(["models", "canary", "fraud", "50"]) == 0
        took = _wait_metrics(port, in_use("canary", "fraud_gbdt@2"), "the canary")
        print(f"\ncanary picked up in {took:.2f} s")
        assert took < SWAP_WITHIN_S
        canary = stage(200, seed=32)
        for d in canary:
            expected = bucket(d["card_id"], "fraud") < 50
            assert (d["model"], d["variant"]) == (("fraud_gbdt@2", "canary") if expected
                                                  else ("fraud_gbdt@1", "champion"))
        assert 0.3 < sum(d["variant"] == "canary" for d in canary) / len(canary) < 0.7

        # promote: the challenger decides everything
        assert main(["models", "promote", "fraud"]) == 0
        took = _wait_metrics(port, in_use("champion", "fraud_gbdt@2"), "the promotion")
        print(f"promotion picked up in {took:.2f} s")
        assert took < SWAP_WITHIN_S
        promoted = stage(100, seed=33)
        assert {(d["model"], d["variant"]) for d in promoted} == {("fraud_gbdt@2",
                                                                   "champion")}

        # rollback: the previous champion is back, the demoted one is the challenger
        assert main(["models", "rollback", "fraud"]) == 0
        took = _wait_metrics(port, in_use("champion", "fraud_gbdt@1"), "the rollback")
        print(f"rollback picked up in {took:.2f} s")
        assert took < SWAP_WITHIN_S
        rolled = stage(100, seed=34)
        assert {(d["model"], d["variant"]) for d in rolled} == {("fraud_gbdt@1", "champion")}
        text = _metrics(port)
        assert metric_value(text, "techshop_fraud_model_info", role="challenger",
                            model="fraud_gbdt@2") == 1.0
        assert metric_value(text, "techshop_model_refused_total") == 0

        # a tampered challenger is refused (and counted); what was in use stays
        registry.publish("fraud_gbdt", "onnx", artefact, feature_names=first.feature_names,
                         thresholds=first.thresholds)
        assert main(["models", "challenge", "fraud", "fraud_gbdt@3", "--offline"]) == 0
        tampered = models / "fraud_gbdt" / "3" / "artifact.bin"
        tampered.write_bytes(tampered.read_bytes()[:-10] + b"\x00" * 10)
        assert main(["models", "shadow", "fraud"]) == 0  # announces: workers reload
        _wait_metrics(port, lambda t: metric_value(t, "techshop_model_refused_total",
                                                   model="fraud_gbdt", reason="digest") == 1,
                      "the refusal")
        after = stage(50, seed=35)
        assert {d["model"] for d in after} == {"fraud_gbdt@1"}
        assert in_use("challenger", "fraud_gbdt@2")(_metrics(port))
    finally:
        stop_process(worker)
