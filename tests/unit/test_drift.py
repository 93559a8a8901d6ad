"""Drift detectors and PSI, prequential windows by label age, and label maturity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from agents.fraud.features import FEATURE_NAMES
from agents.fraud.lifecycle import KEY_FEATURES, LiveDrift
from agents.fraud.metrics import FraudMetrics
from agents.fraud.models import CHAMPION, FraudModelHolder
from models.drift import DriftMonitor, psi, reference_histograms, reference_json
from models.prequential import MaturityGate, PrequentialWindow, recall_at_fpr
from models.registry import ModelRegistry
from scorers.rules import RulesScorer


def test_psi_is_small_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(1)
    ref = reference_histograms({"x": rng.normal(size=20_000), "flag": rng.random(20_000) < 0.1})
    assert psi(ref["x"], rng.normal(size=5_000)) < 0.02
    assert 0.1 < psi(ref["x"], rng.normal(0.5, 1.0, size=5_000)) < 0.5
    assert psi(ref["x"], rng.normal(2.0, 1.0, size=5_000)) > 0.25
    assert len(ref["flag"]["fractions"]) == 2  # ties collapse the bins of a 0/1 feature
    assert psi(ref["flag"], rng.random(5_000) < 0.3) > 0.1
    assert psi(ref["x"], []) == 0.0


def test_a_monitor_stays_quiet_on_stable_data_and_reports_a_shift_once() -> None:
    rng = np.random.default_rng(2)
    train = rng.beta(1, 20, size=10_000)
    X = rng.normal(size=(10_000, 3))
    monitor = DriftMonitor({"f": 1}, reference_histograms({"score": train, "f": X[:, 1]}),
                           window=1_000)
    changes = []
    for _ in range(10):
        changes += monitor.observe(rng.beta(1, 20, size=500), rng.normal(size=(500, 3)))
    assert changes == [] and monitor.state == 0
    for _ in range(6):
        changes += monitor.observe(rng.beta(1, 20, size=500),
                                   rng.normal(1.5, 1.0, size=(500, 3)))
    assert [(c.signal, c.state) for c in changes] == [("f", 2)]
    assert monitor.states()["f"] == 2 and monitor.state == 2


def test_error_rate_detectors_fire_when_misses_rise() -> None:
    rng = np.random.default_rng(3)
    monitor = DriftMonitor(window=500)
    changes = []
    for rate in [0.05] * 20 + [0.5] * 10:
        labels = (rng.random(400) < 0.1).tolist()
        flagged = [y and rng.random() > rate for y in labels]
        changes += monitor.observe_outcomes(flagged, labels)
    assert [c.signal for c in changes if c.state == 2] == ["miss_rate"]
    fired = next(c for c in changes if c.state == 2)
    assert fired.detector == "ADWIN" and fired.value > 0.08  # the miss rate it now sees


def test_recall_at_fpr_and_windows_by_label_age() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    s = np.array([0.9, 0.8, 0.2, 0.85, 0.3, 0.25, 0.1, 0.1, 0.05, 0.05, 0.0, 0.0])
    assert recall_at_fpr(s, y, 0.0) == pytest.approx(1 / 3)
    assert recall_at_fpr(s, y, 0.12) == pytest.approx(2 / 3)
    assert np.isnan(recall_at_fpr(s, np.zeros(12), 0.1))
    w = PrequentialWindow(size=8, fpr_target=0.2)
    w.update(s.tolist(), y.tolist(), [1_000] * 6 + [2 * 86_400_000] * 6)
    m = w.metrics()
    assert m["n"] == 8 and w.total == 12  # the window keeps the last 8
    assert set(m["by_age"]) == {"lt_1h", "lt_7d"}
    flat = w.flat_metrics("p_")
    assert flat["p_n"] == 8 and "p_lt_7d_n" in flat


def test_the_gate_holds_negatives_until_mature_and_passes_positives() -> None:
    gate = MaturityGate({"fraud": 1_000}, max_waiting=3)

    def ex(label: float, event_ts: int, ts: int) -> dict[str, object]:
        return {"model": "fraud", "label": label, "event_ts": event_ts, "ts": ts}

    assert gate.admit([ex(1, 0, 10)]) == [ex(1, 0, 10)]
    assert gate.admit([ex(0, 0, 10), ex(0, 500, 600)]) == []
    assert gate.admit([ex(0, 900, 1_200)]) == [ex(0, 0, 10)]  # watermark 1200
    assert gate.admit([ex(0, 950, 1_600)]) == [ex(0, 500, 600)]
    assert gate.admit([{**ex(0, 0, 5), "model": "other"}]) == [
        {**ex(0, 0, 5), "model": "other"}]  # no window: final on arrival
    out = gate.admit([ex(0, 1_500, 1_600), ex(0, 1_501, 1_600)])  # 4 waiting > 3
    assert out == [ex(0, 900, 1_200)] and gate.released_early == 1


@pytest.mark.parametrize("name", ["models.routing", "models.drift", "models.prequential",
                                  "models.train", "replay.generator.fraud",
                                  "agents.learning.drift_events", "agents.recommend.drift",
                                  "agents.moderation.drift"])
def test_lifecycle_doctests(name: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_live_drift_uses_the_champions_stored_reference(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    X = rng.normal(size=(5_000, len(FEATURE_NAMES))).astype(np.float32)
    scores = rng.beta(1, 30, size=5_000)
    columns = {"score": scores, **{f: X[:, FEATURE_NAMES.index(f)] for f in KEY_FEATURES}}
    registry = ModelRegistry(tmp_path, b"live-drift-test-key-0123456789ab")
    registry.publish_scorer(RulesScorer(FEATURE_NAMES), name=CHAMPION,
                            files={"reference.json": reference_json(columns)})
    holder = FraudModelHolder(registry)
    holder.load_latest()
    metrics = FraudMetrics.create(CollectorRegistry())
    events: list[dict[str, Any]] = []
    live = LiveDrift(holder, metrics, events.append, window=1_000)
    for _ in range(4):
        live.observe(rng.beta(1, 30, size=500), rng.normal(size=(500, len(FEATURE_NAMES))), 1)
    assert events == [] and live.monitor.signals["score"].reference is not None
    for _ in range(4):
        live.observe(rng.beta(1, 3, size=500), rng.normal(size=(500, len(FEATURE_NAMES))), 2)
    assert [(e["kind"], e["model"]) for e in events] == [("drift", "fraud_gbdt@1")]
    assert "score" in events[0]["detail"]
    assert metrics.drift_state.labels("score")._value.get() == 2
