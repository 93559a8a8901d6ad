"""Live drift in every pipeline: the shared ModelDrift (gauge + model-events) and what
the recommendations and moderation workers feed it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from agents.fraud.features import FEATURE_NAMES
from agents.learning.drift_events import ModelDrift, registry_reference
from agents.moderation.drift import REVIEW_SHARE, drift_features, drift_matrix
from agents.moderation.metrics import ModerationMetrics
from agents.recommend import drift as rec_drift
from agents.recommend.candidates import CatalogIndex
from agents.recommend.decide import RecConfig, decide
from agents.recommend.metrics import RecommendMetrics
from models.drift import DriftMonitor, reference_json
from models.registry import ModelRegistry
from scorers.rules import RulesScorer


def _gauge(metric: Any, signal: str) -> float:
    return float(metric.labels(signal)._value.get())


def test_a_features_only_monitor_has_no_score_or_error_signals() -> None:
    rng = np.random.default_rng(5)
    monitor = DriftMonitor({"a": 0, "b": 1}, window=500, score=None, error_rates=False)
    assert set(monitor.signals) == {"a", "b"}
    changes = []
    for _ in range(6):
        changes += monitor.observe(None, rng.normal(size=(250, 2)))
    assert changes == [] and monitor.observe_outcomes([True], [True]) == []
    for _ in range(6):
        changes += monitor.observe(None, np.column_stack([rng.normal(size=250),
                                                          rng.normal(2.0, 1.0, size=250)]))
    assert [(c.signal, c.state) for c in changes] == [("b", 2)]
    assert DriftMonitor(score=None, error_rates=False).state == 0  # no signal at all


def test_recommend_drift_events_are_keyed_by_the_ranker_name_and_set_the_gauge() -> None:
    rng = np.random.default_rng(6)
    metrics = RecommendMetrics.create(CollectorRegistry())
    events: list[dict[str, Any]] = []
    live = ModelDrift(metrics.drift_state, events.append, features=rec_drift.FEATURES,
                      score=rec_drift.SCORE, window=1_000)

    def batch(cold_share: float, version: int) -> None:
        rows = np.column_stack([rng.random(250) < cold_share, np.full(250, 0.1)])
        live.observe(f"recommend_ranker@{version}".split("@")[0], rng.beta(5, 2, size=250),
                     rows.astype(np.float64), 1_000)

    for v in range(8):  # new versions of the same ranker: one monitor, one reference
        batch(0.05, v)
    assert events == []
    for v in range(8, 16):
        batch(0.6, v)
    assert [(e["model"], e["kind"]) for e in events] == [("recommend_ranker", "drift")]
    assert "cold_share" in events[0]["detail"]
    assert _gauge(metrics.drift_state, "cold_share") == 2
    live.observe("recommend_heuristic", [0.5], np.zeros((1, 2)), 2_000)  # another model
    assert _gauge(metrics.drift_state, "cold_share") == 0 and live.model == "recommend_heuristic"


def test_recommend_drift_inputs_from_a_real_batch() -> None:
    catalog = CatalogIndex({"item_id": f"i{n}", "title": f"Mug {n}", "category": "home",
                            "price": 10.0 + n, "ts": 0} for n in range(40))
    users: dict[str, Any] = {}
    events = [{"event_id": f"e{n}", "user_id": f"u{n % 3}", "session_id": "s",
               "item_id": f"i{n}", "event_type": "click", "ts": 1_000 * n} for n in range(9)]
    result = decide(events, users, {}, {}, catalog, None, now_ms=0,
                    config=RecConfig(variants=("ranker",)))
    watched = rec_drift.drift_inputs(result.recommendations, result.cold, result.explored)
    assert len(watched.matrix) == len(result.recommendations) == 9
    assert watched.matrix[:, 0].sum() == 3  # the three users' first clicks: cold start
    assert watched.model == "recommend_heuristic" and len(watched.top_scores) == 6
    assert ((watched.matrix[:, 1] > 0) & (watched.matrix[:, 1] <= 1)).all()  # bandit slot


def test_moderation_drift_follows_the_classifier_and_its_categories(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    registry = ModelRegistry(tmp_path, b"moderation-drift-test-key-0123456")
    reference = {"nudity": rng.beta(1, 20, size=5_000), "violence": rng.beta(1, 20, size=5_000),
                 REVIEW_SHARE: rng.random(5_000) < 0.05}
    manifest = registry.publish_scorer(RulesScorer(FEATURE_NAMES), name="moderation_classifier",
                                       files={"reference.json": reference_json(reference)})
    model_id = f"moderation_classifier@{manifest.version}"
    metrics = ModerationMetrics.create(CollectorRegistry())
    events: list[dict[str, Any]] = []
    live = ModelDrift(metrics.drift_state, events.append, features=drift_features(()),
                      score=None, reference=registry_reference(registry), window=1_000)
    metrics.drift_state.labels("old_category").set(1)
    columns = drift_features(("nudity", "violence"))

    def batch(nudity: tuple[float, float], review: float) -> None:
        decided = [SimpleNamespace(position=i, decision={
            "decision": "REVIEW" if rng.random() < review else "APPROVE"}) for i in range(250)]
        scored = {i: SimpleNamespace(scores={"nudity": rng.beta(*nudity),
                                             "violence": rng.beta(1, 20)}) for i in range(250)}
        live.observe(model_id, None, drift_matrix(decided, scored, columns), 5,
                     features=columns)

    batch((1, 20), 0.05)
    assert live.monitor.signals["nudity"].reference is not None  # the stored one
    samples = {s.labels["signal"] for m in metrics.drift_state.collect() for s in m.samples}
    assert samples == {"nudity", "violence", REVIEW_SHARE}  # stale labels cleared
    for _ in range(5):
        batch((1, 20), 0.05)
    assert events == []
    for _ in range(6):
        batch((1, 3), 0.4)
    kinds = {(e["model"], e["kind"], e["detail"].split(":")[0]) for e in events}
    assert kinds == {(model_id, "drift", "nudity"), (model_id, "drift", REVIEW_SHARE)}
    assert _gauge(metrics.drift_state, REVIEW_SHARE) == 2
    assert registry_reference(registry)("moderation_classifier@shipped") is None
    assert registry_reference(registry)("recommend_ranker") is None
