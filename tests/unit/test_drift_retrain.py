"""The quality check of the model lifecycle, in process and on the real code paths: an
injected shift in the synthetic fraud pattern (``gift_card_drain``, which the champion
never saw) raises a drift event from the champion/challenger evaluator the trainer
runs, and a champion retrained offline from recorded training examples
(:func:`models.train.retrain`, what ``techshop train fraud`` runs) recovers recall on
the new pattern. ``pytest -s`` prints the before/after figures (docs/models.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from agents.fraud.features import FEATURE_NAMES
from agents.fraud.lifecycle import KEY_FEATURES, FraudEvaluator
from agents.fraud.metrics import FraudMetrics
from agents.fraud.models import CHAMPION, FAMILY, FraudModelHolder, default_routing
from models.gbdt import evaluate
from models.registry import ModelRegistry
from models.routing import RoutingStore
from models.train import retrain
from replay.fraud_backtest import bootstrap_fraud_models, featurise, world_size
from replay.generator import TrafficGenerator
from replay.generator.fraud import FraudConfig

KEY = b"drift-retrain-test-key-0123456789"
DAY_MS = 86_400_000
T0 = 1_762_000_000_000  # after the bootstrap history


def stream(seed: int, n: int, start: int, fraud: FraudConfig | None = None
           ) -> tuple[np.ndarray, np.ndarray, list[str | None], list[dict[str, Any]]]:
    """Featurised synthetic transactions: X, y, fraud patterns, the transactions."""
    cards, users = world_size(200.0)
    gen = TrafficGenerator(seed=seed, start_ts_ms=start, rates={"transactions": 200.0},
                           n_cards=cards, n_users=users, fraud=fraud)
    txns = [e.value for e in gen.take(n, {"transactions"})]
    y = np.array([gen.is_fraud(t["txn_id"]) for t in txns], dtype=bool)
    return featurise(txns), y, [gen.fraud_pattern(t["txn_id"]) for t in txns], txns


def examples(X: np.ndarray, y: np.ndarray, txns: list[dict[str, Any]]
             ) -> list[dict[str, Any]]:
    """``training-examples`` records as the label join writes them (label a day later)."""
    return [{"example_id": t["txn_id"], "model": "fraud", "entity_id": t["card_id"],
             "features": dict(zip(FEATURE_NAMES, map(float, row), strict=True)),
             "label": float(label), "score": 0.0, "decided_by": "", "event_ts": t["ts"],
             "ts": t["ts"] + DAY_MS} for row, label, t in zip(X, y, txns, strict=True)]


def recall_on(scores: np.ndarray, y: np.ndarray, patterns: list[str | None],
              thresholds: dict[str, float], pattern: str) -> float:
    mask = np.array([p == pattern for p in patterns])
    return float((scores[mask] >= thresholds["review"]).mean())


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_pattern_shift_raises_drift_and_the_retrained_challenger_recovers_recall(
        tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models", KEY)
    bootstrap_fraud_models(registry, seed=1, n=60_000)
    holder = FraudModelHolder(registry)
    holder.load_latest()
    champion = holder.models.champion
    assert champion is not None and champion.model_id == "fraud_gbdt@1"
    thresholds_before = registry.manifest(CHAMPION, "1").thresholds

    # Labelled examples reach the trainer's evaluator: a stable stretch, then the shift.
    events: list[dict[str, Any]] = []
    evaluator = FraudEvaluator(holder, FraudMetrics.create(CollectorRegistry()),
                               events.append, drift_window=2_000)
    Xb, yb, _, tb = stream(3, 20_000, T0)
    base = examples(Xb, yb, tb)
    for i in range(0, len(base), 500):
        evaluator(base[i:i + 500])
    assert not [e for e in events if e["kind"] == "drift"], events
    Xs, ys, ps, ts = stream(7, 64_000, tb[-1]["ts"] + 1, FraudConfig.shifted())
    shifted = examples(Xs, ys, ts)
    half = len(shifted) // 2
    fired_after = None
    for i in range(0, half, 500):
        evaluator(shifted[i:i + 500])
        if fired_after is None and any(e["kind"] == "drift" for e in events):
            fired_after = i + 500
    drift = [e for e in events if e["kind"] == "drift"]
    assert drift and drift[0]["model"] == "fraud_gbdt@1"
    assert "miss_rate" in drift[0]["detail"]

    # Offline retrain on everything recorded so far -> challenger, lineage and reference.
    report = retrain(registry, base + shifted[:half], FEATURE_NAMES, name=CHAMPION,
                     family=FAMILY, default_routing=default_routing(),
                     key_features=KEY_FEATURES, seed=1)
    new = report.manifest
    assert new.model_id == "fraud_gbdt@2" and report.routing.challenger == "fraud_gbdt@2"
    assert report.routing.champion == "fraud_gbdt@1"
    assert new.lineage["data_range"] == [tb[0]["ts"], ts[half - 1]["ts"]]
    assert new.lineage["champion_at_training"] == "fraud_gbdt@1"
    assert "reference.json" in new.files

    # Before / after on the later, unseen half of the shifted traffic.
    Xt, yt, pt = Xs[half:], ys[half:], ps[half:]
    before = champion.score(Xt)
    after = registry.load_scorer(CHAMPION, "2").score(Xt)
    eb, ea = evaluate(before, yt, thresholds_before), evaluate(after, yt, new.thresholds)
    drain_b = recall_on(before, yt, pt, thresholds_before, "gift_card_drain")
    drain_a = recall_on(after, yt, pt, new.thresholds, "gift_card_drain")
    print(f"\nshifted traffic ({len(yt):,} txns, {int(yt.sum())} frauds): recall "
          f"{eb['recall']:.3f} -> {ea['recall']:.3f}, FPR {eb['fpr']:.4f} -> "
          f"{ea['fpr']:.4f}, AUC {eb['auc']:.3f} -> {ea['auc']:.3f}; gift_card_drain "
          f"recall {drain_b:.3f} -> {drain_a:.3f}; drift event after {fired_after:,} "
          f"shifted examples ({drift[0]['detail']})")
    assert drain_b < 0.1 and drain_a > 0.5
    assert ea["recall"] > eb["recall"] + 0.2 and ea["fpr"] < 0.01

    # Promotion through the routing: the holder follows (what every worker does).
    RoutingStore(registry).promote(FAMILY, default_routing())
    assert holder.reload().champion is not None
    assert holder.models.champion is not None
    assert holder.models.champion.model_id == "fraud_gbdt@2"
