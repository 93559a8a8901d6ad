"""The fraud backtest engine: the live decide() in process, variants side by side,
labels with their delays, and the comparison with published decisions (no broker)."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest

import replay.backtest.fraud as fraud_mod
import replay.backtest.metrics as metrics_mod
from agents.fraud.decide import FraudModels, FraudState, Thresholds, decide
from agents.fraud.features import FEATURE_NAMES, update_entities
from models.registry import ModelRegistry, signing_key_from
from replay.backtest.fraud import (
    ModelSpec,
    Variant,
    collect_labels,
    compare_published,
    ground_truth,
    load_variants,
    parse_model_spec,
    parse_thresholds,
    run_fraud,
)
from replay.fraud_backtest import featurise, labelled_transactions
from streams.errors import ConfigError

DAY = 86_400_000
RULES = Variant("rules@1", "rules@1", None, Thresholds(0.5, 0.8), "rules default")
LOW = Variant("rules 0.3/0.8", "rules@1", None, Thresholds(0.3, 0.8), "argument")


@pytest.fixture(scope="module")
def history() -> tuple[list[dict], np.ndarray]:
    txns, y, _ = labelled_transactions(5, 6000, start_ts_ms=1_765_000_000_000)
    return txns, y


def test_doctests_of_the_engine_and_metrics() -> None:
    for module in (fraud_mod, metrics_mod):
        failed, tried = doctest.testmod(module)
        assert tried and not failed, module.__name__


def test_decisions_do_not_depend_on_the_batch_size(history: tuple[list[dict], np.ndarray]
                                                   ) -> None:
    """Batches are cut where a merchant or device repeats: every transaction sees every
    earlier one of its entities, whatever the batch size (= one at a time)."""
    txns = history[0][:2500]
    one = run_fraud(txns, [RULES], batch_size=1)
    for size in (7, 500, 5000):
        run = run_fraud(txns, [RULES], batch_size=size)
        assert run.txn_ids == one.txn_ids
        assert run.scores == one.scores and run.decisions == one.decisions
    assert one.n == len(txns) and one.decided_by == {"rules@1": len(txns)}


def test_the_same_decide_one_at_a_time_with_entities_updated_after_each(
        history: tuple[list[dict], np.ndarray]) -> None:
    txns = history[0][:800]
    state = FraudState(cards={}, merchants={}, devices={})
    merchants: dict = {}
    devices: dict = {}
    state.merchants, state.devices = merchants, devices
    models = FraudModels(rules=fraud_mod.rules_scorer(), champion=None, champion_error="x")
    expected = []
    for txn in txns:
        result = decide([txn], state, models, now_ms=txn["ts"])
        expected += [(d.decision["txn_id"], d.decision["decision"], d.decision["score"])
                     for d in result.decided]
        update_entities([txn], merchants, devices)
    run = run_fraud(txns, [RULES], batch_size=300)
    assert list(zip(run.txn_ids, run.decisions["rules@1"], run.scores["rules@1"],
                    strict=True)) == expected


def test_a_side_variant_decides_as_it_would_alone(history: tuple[list[dict], np.ndarray]
                                                  ) -> None:
    txns = history[0]
    both = run_fraud(txns, [RULES, LOW])
    alone = run_fraud(txns, [LOW])
    assert both.decisions[LOW.label] == alone.decisions[LOW.label]
    assert both.scores[LOW.label] == alone.scores[LOW.label]
    flagged = [sum(d != "APPROVE" for d in both.decisions[v.label]) for v in (RULES, LOW)]
    assert flagged[1] > flagged[0]


def test_repeats_and_late_events_are_not_decided(history: tuple[list[dict], np.ndarray]
                                                 ) -> None:
    txns = list(history[0][:300])
    late = dict(txns[-1], txn_id="late-1", ts=txns[-1]["ts"] - 10 * 60_000)
    run = run_fraud([*txns, txns[10], late], [RULES])
    assert run.n == 300 and run.repeats == 1 and run.late == ["late-1"]


def test_registry_models_their_thresholds_and_a_sweep(tmp_path: Path,
                                                      history: tuple[list[dict], np.ndarray]
                                                      ) -> None:
    from scorers.river_scorer import RiverScorer

    txns, y = history
    registry = ModelRegistry(tmp_path, signing_key_from(tmp_path / "signing.key"))
    river = RiverScorer(FEATURE_NAMES, name="fraud_river", version="0")
    river.learn(featurise(txns[:3000]), y[:3000])
    registry.publish_scorer(river)
    variants = load_variants(registry, [parse_model_spec("fraud_river@1"),
                                        parse_model_spec("rules")],
                             [parse_thresholds("0.1,0.9")])
    assert [v.label for v in variants] == ["fraud_river@1", "rules@1", "fraud_river@1 0.1/0.9"]
    assert variants[0].thresholds_from == "rules default"
    run = run_fraud(txns[3000:], variants)
    assert run.decided_by == {"fraud_river@1": run.n}
    assert run.scores["fraud_river@1"] == run.scores["fraud_river@1 0.1/0.9"]
    with pytest.raises(ConfigError, match="fraud_gbdt@7"):
        load_variants(registry, [ModelSpec("fraud_gbdt", "7")])
    with pytest.raises(ConfigError, match="twice"):
        load_variants(registry, [ModelSpec("rules"), ModelSpec("rules", "1")])


@pytest.mark.parametrize("text", ["0.9,0.2", "x", "0.1", "0.1,1.5"])
def test_bad_thresholds_are_one_readable_error(text: str) -> None:
    with pytest.raises(ConfigError, match="thresholds"):
        parse_thresholds(text)


def test_labels_count_within_the_window_with_their_delays() -> None:
    run = fraud_mod.FraudRun([RULES], txn_ids=["a", "b", "c", "d", "e"],
                             ts=[0, 0, 0, 0, 9 * DAY])
    labels = collect_labels([
        {"txn_id": "a", "is_fraud": True, "ts": 2 * DAY},       # chargeback in the window
        {"txn_id": "b", "is_fraud": True, "ts": 3 * DAY},       # a chargeback, but ...
        {"txn_id": "b", "is_fraud": False, "ts": DAY},          # first confirmed: legit
        {"txn_id": "c", "is_fraud": True, "ts": 8 * DAY},       # after the 7-day window
        {"txn_id": "zz", "is_fraud": True, "ts": DAY},          # not in the run
    ])
    truth = ground_truth(run, labels, 7 * DAY)
    assert truth.y.tolist() == [True, False, False, False, False]
    assert truth.delays_ms == [2 * DAY] and truth.labelled == 2
    assert truth.after_window == 1
    assert truth.open_window == 1  # "e": no label yet and its window is still open
    assert labels.chargebacks == 4 and labels.read == 5 and len(labels.by_txn) == 4


def test_published_decisions_are_compared_one_by_one(history: tuple[list[dict], np.ndarray]
                                                     ) -> None:
    run = run_fraud(history[0][:200], [RULES])
    published = [{"txn_id": t, "decision": d, "score": s, "model": "rules@1"}
                 for t, d, s in zip(run.txn_ids, run.decisions["rules@1"],
                                    run.scores["rules@1"], strict=True)]
    same = compare_published(run, published)
    assert (same.compared, same.matched, same.differences) == (200, 200, [])
    published[5] = {**published[5], "decision": "DECLINE", "score": 0.99}
    published[9] = {**published[9], "model": "fraud_gbdt@4"}
    published[11] = {**published[11], "score": published[11]["score"] + 0.001}
    diff = compare_published(run, published[:150] + published[5:6])
    assert diff.compared == 150 and diff.not_published == 50 and diff.matched == 147
    assert [d["txn_id"] for d in diff.differences] == [run.txn_ids[5], run.txn_ids[9]]
    assert diff.differences[0]["published"]["decision"] == "DECLINE"
    assert [d["txn_id"] for d in diff.score_only] == [run.txn_ids[11]]
    assert diff.to_dict()["differing"] == 2 and diff.to_dict()["score_only"] == 1


def test_routing_decides_as_the_worker_would_canary_included(
        tmp_path: Path, history: tuple[list[dict], np.ndarray]) -> None:
    """``routing``: the registry's champion/challenger routing, loaded as a worker loads
    it; in canary mode the challenger decides for its share of cards (decide() does)."""
    from models.routing import Routing, RoutingStore, bucket
    from scorers.river_scorer import RiverScorer

    txns, y = history
    registry = ModelRegistry(tmp_path, signing_key_from(tmp_path / "signing.key"))
    X = featurise(txns[:3000])
    for seed, rows in ((1, slice(0, 1500)), (2, slice(1500, 3000))):
        river = RiverScorer(FEATURE_NAMES, name="fraud_river", version=str(seed))
        river.learn(X[rows], y[:3000][rows])
        registry.publish_scorer(river)
    store = RoutingStore(registry)
    store.update("fraud", lambda r: Routing("fraud", champion="fraud_river@1",
                                            challenger="fraud_river@2"), "test",
                 Routing("fraud", champion="fraud_river@1"))
    store.canary("fraud", 40.0)
    variants = load_variants(registry, [parse_model_spec("routing"),
                                        parse_model_spec("fraud_river@1")])
    assert variants[0].label == "routing fraud_river@1 + fraud_river@2 canary 40%"
    run = run_fraud(txns[3000:], variants)
    canary = [bucket(c, "fraud") < 40.0 for c in run.card_ids]
    assert [m == "fraud_river@2" for m in run.models] == canary
    assert 0.25 < sum(canary) / run.n < 0.55
    same = [a == b for a, b, c in zip(run.scores[variants[0].label],
                                      run.scores["fraud_river@1"], canary, strict=True)
            if not c]
    assert all(same)  # the champion's cards: the champion's scores
    with pytest.raises(ConfigError, match="first"):
        load_variants(registry, [ModelSpec("rules"), ModelSpec("routing")])


def test_a_stream_of_transactions_decides_as_a_list(history: tuple[list[dict], np.ndarray]
                                                    ) -> None:
    from replay.backtest.fraud import run_fraud_stream

    txns = history[0][:1500]
    listed = run_fraud(txns, [RULES], positions=[(0, i) for i in range(len(txns))])
    streamed = run_fraud_stream(((t, (0, i)) for i, t in enumerate(txns)), [RULES],
                                batch_size=250)
    assert streamed.txn_ids == listed.txn_ids and streamed.scores == listed.scores
    assert streamed.positions == listed.positions == [(0, i) for i in range(len(txns))]
