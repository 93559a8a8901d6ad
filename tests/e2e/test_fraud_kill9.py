"""Two fraud workers, one killed with SIGKILL mid-stream and restarted: no transaction
loses its decision; duplicates (at-least-once on a broker without transactions) are
counted and reported."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from streams.settings import Settings
from tests.e2e.fraud_support import (
    live_transactions,
    publisher,
    read_decisions,
    start_fraud_worker,
    wait_ready,
)
from tests.helpers import stop_process

pytestmark = pytest.mark.e2e

N = 3000
RATE = 150.0


def test_kill_9_loses_nothing(settings: Settings, stack_env: dict[str, str], tmp_path: Path,
                              fraud_models_dir: Path,
                              record_property: pytest.RecordProperty) -> None:
    models = tmp_path / "models"
    shutil.copytree(fraud_models_dir, models)
    a, port_a = start_fraud_worker(stack_env, tmp_path / "a", models)
    b, port_b = start_fraud_worker(stack_env, tmp_path / "b", models)
    restarted = None
    try:
        wait_ready(a, port_a)
        wait_ready(b, port_b)
        events = live_transactions(N, seed=23)
        sent = threading.Event()

        def offer() -> None:
            pub = publisher(settings)
            started = time.monotonic()
            for i, event in enumerate(events):
                pub.publish("transactions", event.value, key=event.key)
                delay = started + i / RATE - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            pub.flush_sync()
            sent.set()

        producer = threading.Thread(target=offer)
        producer.start()
        time.sleep(6)
        a.send_signal(signal.SIGKILL)
        a.wait(10)
        time.sleep(2)
        restarted, port_r = start_fraud_worker(stack_env, tmp_path / "a", models)
        producer.join(60)
        assert sent.is_set()
        decisions = read_decisions(settings, until=N, timeout=150)
        # let stragglers (duplicates from the redelivery) arrive before counting
        time.sleep(3)
        decisions = read_decisions(settings, until=len(decisions) + 10**9, timeout=3)
    finally:
        for proc in (a, b, restarted):
            if proc is not None:
                stop_process(proc)
    per_txn = Counter(d["txn_id"] for d in decisions)
    expected = {e.value["txn_id"] for e in events}
    losses = len(expected - set(per_txn))
    duplicates = sum(n - 1 for n in per_txn.values())
    print(f"kill -9: {N} transactions, {losses} lost, {duplicates} duplicate decisions")
    record_property("kill9_losses", losses)
    record_property("kill9_duplicates", duplicates)
    assert losses == 0
    assert set(per_txn) == expected
