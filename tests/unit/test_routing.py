"""Champion/challenger routing: stable hashing, the signed routing store (promote,
canary, shadow, rollback), the promotion policy, canary decisions in ``decide`` and the
worker's model holder following the routing (a refused version leaves the old one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from agents.fraud.decide import FraudModels, FraudState, Thresholds, decide
from agents.fraud.features import FEATURE_NAMES
from agents.fraud.lifecycle import FraudEvaluator
from agents.fraud.metrics import FraudMetrics
from agents.fraud.models import (
    CHALLENGER,
    CHAMPION,
    FAMILY,
    FraudModelHolder,
    default_routing,
    rules_scorer,
)
from models.registry import ModelRegistry
from models.routing import PromotionPolicy, Routing, RoutingStore, bucket, parse_ref
from scorers import ModelIntegrityError, ModelNotFoundError, ScorerError
from scorers.rules import RulesScorer
from tests.unit.test_fraud_decide import FixedScorer, txn

KEY = b"routing-test-key-0123456789abcdef"


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    registry = ModelRegistry(tmp_path / "models", KEY)
    for name in (CHAMPION, CHAMPION, CHALLENGER):
        registry.publish_scorer(RulesScorer(FEATURE_NAMES), name=name,
                                thresholds={"review": 0.5, "decline": 0.8})
    return registry


def test_buckets_are_stable_uniform_and_salted() -> None:
    ids = [f"card-{i}" for i in range(20_000)]
    assert [bucket(i) for i in ids[:50]] == [bucket(i) for i in ids[:50]]
    shares = [sum(bucket(i) < p for i in ids) / len(ids) for p in (10, 50, 90)]
    assert shares == pytest.approx([0.10, 0.50, 0.90], abs=0.015)
    assert any(bucket(i) != bucket(i, "recommend") for i in ids[:10])
    r = Routing("fraud", "a@1", "b@1", mode="canary", canary_percent=25.0)
    mask = r.canary_mask(ids)
    assert 0.23 < sum(mask) / len(ids) < 0.27
    assert not any(Routing("fraud", "a@1", "b@1", mode="shadow").canary_mask(ids))
    assert not any(Routing("fraud", "a@1", None, mode="canary",
                           canary_percent=100).canary_mask(ids))
    assert parse_ref("fraud_gbdt@12") == ("fraud_gbdt", "12")
    with pytest.raises(ScorerError):
        parse_ref("fraud_gbdt")


def test_promote_canary_shadow_and_rollback(registry: ModelRegistry) -> None:
    store = RoutingStore(registry)
    default = default_routing()
    assert store.get(FAMILY, default) == default
    r = store.set_challenger(FAMILY, "fraud_gbdt@2", default)
    assert (r.champion, r.challenger) == ("fraud_gbdt@2", "fraud_gbdt@2")  # @latest pinned
    r = store.update(FAMILY, lambda x: Routing(FAMILY, "fraud_gbdt@1", "fraud_gbdt@2"), "set")
    r = store.canary(FAMILY, 20)
    assert (r.mode, r.canary_percent) == ("canary", 20.0)
    r = store.canary(FAMILY, 0)
    assert (r.mode, r.canary_percent) == ("shadow", 0.0)
    r = store.promote(FAMILY)
    assert (r.champion, r.challenger, r.mode) == ("fraud_gbdt@2", None, "shadow")
    with pytest.raises(ScorerError, match="no challenger"):
        store.promote(FAMILY)
    with pytest.raises(ScorerError, match="no challenger"):
        store.canary(FAMILY, 10)
    r = store.rollback(FAMILY)
    assert (r.champion, r.challenger) == ("fraud_gbdt@1", "fraud_gbdt@2")
    assert [h["action"] for h in r.history] == ["challenger", "set", "canary 20%", "shadow",
                                                "promote", "rollback"]
    assert store.get(FAMILY) == r and r.revision == 6
    with pytest.raises(ModelNotFoundError):
        store.set_challenger(FAMILY, "fraud_gbdt@9")
    with pytest.raises(ScorerError):
        store.canary(FAMILY, 101)


def test_rollback_needs_an_earlier_champion(registry: ModelRegistry) -> None:
    with pytest.raises(ScorerError, match="no earlier champion"):
        RoutingStore(registry).rollback(FAMILY, default_routing())


def test_a_tampered_routing_file_is_refused(registry: ModelRegistry) -> None:
    refused: list[tuple[str, str, str]] = []
    registry.on_refused = lambda *a: refused.append(a)
    store = RoutingStore(registry)
    store.set_challenger(FAMILY, "fraud_gbdt@1", default_routing())
    path = store.path(FAMILY)
    body = json.loads(path.read_text())
    body["champion"] = "fraud_river@1"
    path.write_text(json.dumps(body))
    with pytest.raises(ModelIntegrityError):
        store.get(FAMILY)
    assert refused == [("routing:fraud", "-", "signature")]


def test_the_policy_waits_for_evidence_then_promotes_a_better_challenger() -> None:
    policy = PromotionPolicy(min_examples=1000, min_positives=10, margin=0.02)
    champ = {"n": 5000, "positives": 50, "recall_at_fpr": 0.60}
    assert policy.verdict(champ, {**champ, "n": 500}, "recall_at_fpr")[0] == "wait"
    assert policy.verdict(champ, {**champ, "recall_at_fpr": 0.61}, "recall_at_fpr")[0] \
        == "hold"
    assert policy.verdict(champ, {**champ, "recall_at_fpr": 0.70}, "recall_at_fpr")[0] \
        == "promote"
    assert policy.verdict(champ, {**champ, "recall_at_fpr": float("nan")},
                          "recall_at_fpr")[0] in ("hold", "wait")


def test_canary_cards_are_decided_by_the_challenger_and_say_so() -> None:
    models = FraudModels(rules=rules_scorer(), champion=FixedScorer(0.1),
                         champion_thresholds=Thresholds(0.5, 0.8),
                         challenger=FixedScorer(0.9), canary_percent=30.0)
    models.challenger.version = "8"  # type: ignore[union-attr]
    txns = [txn(i, card=f"card-{i}") for i in range(400)]
    result = decide(txns, FraudState(), models, now_ms=txns[-1]["ts"])
    by_card = {d.decision["card_id"]: d.decision for d in result.decided}
    for card, decision in by_card.items():
        canary = bucket(card, "fraud") < 30.0
        assert decision["variant"] == ("canary" if canary else "champion")
        assert decision["model"] == ("fixed@8" if canary else "fixed@7")
        assert decision["decision"] == ("DECLINE" if canary else "APPROVE")
    assert 0.2 < sum(d["variant"] == "canary" for d in by_card.values()) / 400 < 0.4
    shadow = decide([txn(999, card="card-x")], FraudState(),
                    FraudModels(rules=rules_scorer(), champion=FixedScorer(0.1),
                                challenger=FixedScorer(0.9)), now_ms=0)
    (item,) = shadow.decided
    assert item.decision["variant"] == "champion"
    assert item.provenance["challenger"] == {"model": "fixed@7", "score": 0.9}


def test_the_holder_follows_the_routing_and_keeps_a_model_when_a_version_is_refused(
        registry: ModelRegistry) -> None:
    changes: list[FraudModels] = []
    holder = FraudModelHolder(registry, on_change=changes.append)
    models = holder.load_latest()
    assert models.champion is not None and models.champion.model_id == "fraud_gbdt@2"
    assert models.challenger is not None and models.challenger.model_id == "fraud_river@1"
    store = RoutingStore(registry)
    store.update(FAMILY, lambda r: Routing(FAMILY, "fraud_gbdt@1", "fraud_gbdt@2",
                                           mode="canary", canary_percent=10), "set")
    holder.on_update({"model": "fraud_gbdt", "version": "1", "role": "routing"})
    assert holder.models.champion is not None and holder.models.challenger is not None
    assert holder.models.champion.model_id == "fraud_gbdt@1"
    assert holder.models.challenger.model_id == "fraud_gbdt@2"
    assert holder.models.canary_percent == 10.0
    # a new, tampered version promoted: refused, the old champion stays in place
    registry.publish_scorer(RulesScorer(FEATURE_NAMES), name=CHAMPION)
    store.set_challenger(FAMILY, "fraud_gbdt@3")
    artefact = registry.root / CHAMPION / "3" / "artifact.bin"
    artefact.write_bytes(artefact.read_bytes() + b" ")
    store.update(FAMILY, lambda r: Routing(FAMILY, "fraud_gbdt@3", None), "forced")
    holder.on_update({"model": "fraud_gbdt", "version": "3"})
    assert holder.models.champion.model_id == "fraud_gbdt@1"
    assert ("fraud_gbdt", "3") in holder.refused
    holder.on_update({"model": "recommend_ranker", "version": "1"})  # not ours: ignored
    assert len(changes) >= 3


class ColumnScorer:
    """Scores with the first feature column (``amount_usd``)."""

    kind = "test"
    feature_names = FEATURE_NAMES

    def __init__(self, model_id: str, noise: float) -> None:
        self.model_id, self.noise = model_id, noise
        self.rng = np.random.default_rng(0)

    def score(self, X: Any) -> Any:
        return (1 - self.noise) * X[:, 0] + self.noise * self.rng.random(len(X))


def test_the_policy_promotes_a_challenger_that_is_ahead_and_workers_are_told(
        registry: ModelRegistry) -> None:
    RoutingStore(registry).update(FAMILY, lambda r: Routing(FAMILY, "fraud_gbdt@1",
                                                            "fraud_gbdt@2"), "set")
    holder = FraudModelHolder(registry)
    holder.load_latest()
    holder.models = FraudModels(rules=rules_scorer(),
                                champion=ColumnScorer("fraud_gbdt@1", noise=0.9),
                                challenger=ColumnScorer("fraud_gbdt@2", noise=0.0))
    events: list[dict[str, Any]] = []
    told: list[bool] = []
    evaluator = FraudEvaluator(holder, FraudMetrics.create(CollectorRegistry()),
                               events.append, policy=PromotionPolicy(500, 10, 0.05),
                               auto_promote=True, on_promoted=lambda: told.append(True))
    rng = np.random.default_rng(1)
    for i in range(4):
        labels = rng.random(200) < 0.05
        evaluator([{"model": "fraud", "label": float(y), "event_ts": i, "ts": i + 5,
                    "features": {"amount_usd": float(y)}} for y in labels])
    assert [e["kind"] for e in events if e["kind"] in ("policy", "promote")] == [
        "policy", "promote"]
    assert RoutingStore(registry).get(FAMILY).champion == "fraud_gbdt@2" and told == [True]
    summary = evaluator.summary()
    assert summary["challenger"]["recall_at_fpr"] == 1.0 and summary["champion"]["n"] == 800
