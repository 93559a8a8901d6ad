"""Fraud in process: featurise history, bootstrap the models, backtest decisions.

Everything here drives the same pure functions the Faust agents call
(:func:`agents.fraud.features.compute_features`, :func:`agents.fraud.decide.decide`)
with in-memory state, so online and offline cannot drift apart. Ground truth comes
from the synthetic generator.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.fraud.decide import FraudModels, FraudState, Thresholds, decide
from agents.fraud.features import (
    FEATURE_NAMES,
    CardState,
    EntityWindow,
    compute_features,
    update_entities,
)
from agents.fraud.lifecycle import KEY_FEATURES
from agents.fraud.models import CHALLENGER, CHAMPION, rules_scorer
from models.drift import reference_json
from models.gbdt import choose_thresholds, evaluate, train_gbdt
from models.registry import Manifest, ModelRegistry
from replay.generator import TrafficGenerator

__all__ = ["world_size", "BootstrapReport", "BacktestReport", "labelled_transactions", "featurise",
           "bootstrap_fraud_models", "backtest_fraud", "load_models"]

Progress = Callable[[str], None]
HISTORY_START_MS = 1_760_000_000_000  # a fixed past: labels of history are all "in"


def world_size(txn_rate: float) -> tuple[int, int]:
    """Cards and users for a transaction rate such that a card pays every ~5 minutes on
    average, whatever the rate: velocity features then mean the same in training, in a
    demo and in a backtest."""
    cards = max(5_000, int(txn_rate * 300))
    return cards, max(2_000, cards // 2)


def labelled_transactions(seed: int, n: int, *, rate: float = 200.0,
                          start_ts_ms: int = HISTORY_START_MS
                          ) -> tuple[list[dict[str, Any]], np.ndarray, list[str | None]]:
    """``n`` synthetic transactions with ground truth (is fraud, pattern)."""
    cards, users = world_size(rate)
    gen = TrafficGenerator(seed=seed, start_ts_ms=start_ts_ms, rates={"transactions": rate},
                           n_cards=cards, n_users=users)
    txns = [e.value for e in gen.take(n, {"transactions"})]
    y = np.array([gen.is_fraud(t["txn_id"]) for t in txns], dtype=bool)
    patterns = [gen.fraud_pattern(t["txn_id"]) for t in txns]
    return txns, y, patterns


def featurise(txns: Sequence[dict[str, Any]], *, batch_size: int = 500) -> np.ndarray:
    """The feature matrix of ``txns`` in order, state carried across batches exactly as
    the live agents carry it (cards, then merchant/device windows after each batch)."""
    cards: dict[str, CardState] = {}
    merchants: dict[str, EntityWindow] = {}
    devices: dict[str, EntityWindow] = {}
    rows = np.zeros((len(txns), len(FEATURE_NAMES)), dtype=np.float32)
    for start in range(0, len(txns), batch_size):
        chunk = txns[start:start + batch_size]
        batch = compute_features(chunk, cards, merchants, devices)
        rows[[start + i for i in batch.index]] = batch.matrix
        update_entities(chunk, merchants, devices)
    return rows


@dataclass
class BootstrapReport:
    champion: Manifest
    challenger: Manifest
    validation: dict[str, float]
    seconds: float


def bootstrap_fraud_models(registry: ModelRegistry, *, seed: int = 1, n: int = 150_000,
                           progress: Progress = lambda _: None) -> BootstrapReport:
    """Train the champion (LightGBM → ONNX) and warm the River challenger on synthetic
    history; thresholds are chosen on the last 20 % (in time) for recall ≥ 95 % at
    FPR ≤ 1 %; both are published to ``registry``."""
    started = time.monotonic()
    progress(f"generating {n:,} labelled transactions (seed {seed})")
    txns, y, _ = labelled_transactions(seed, n)
    progress(f"featurising ({int(y.sum()):,} fraudulent)")
    X = featurise(txns)
    cut = int(len(txns) * 0.8)
    progress("training the gradient-boosted champion and exporting it to ONNX")
    trained = train_gbdt(X[:cut], y[:cut], FEATURE_NAMES, seed=seed,
                         valid=(X[cut:], y[cut:]))
    valid_scores = trained.scorer().score(X[cut:])
    # Flagging spends half the FPR budget (held-out traffic drifts from validation);
    # DECLINE only where legitimate declines are ten times rarer still.
    thresholds = choose_thresholds(valid_scores, y[cut:], target_recall=0.995, max_fpr=0.005)
    validation = evaluate(valid_scores, y[cut:], thresholds)
    champion = registry.publish(
        CHAMPION, "onnx", trained.onnx_bytes, feature_names=FEATURE_NAMES,
        thresholds={"review": thresholds.review, "decline": thresholds.decline},
        metrics={**trained.metrics, **{f"valid_{k}": v for k, v in validation.items()}},
        params={"seed": seed, "n_history": n, **trained.params},
        # the drift reference: what live scores and key features are compared with (PSI)
        files={"reference.json": reference_json({
            "score": valid_scores,
            **{f: X[cut:, FEATURE_NAMES.index(f)] for f in KEY_FEATURES}})},
        lineage={"trainer": "bootstrap", "source": f"synthetic seed {seed}",
                 "data_range": [int(txns[0]["ts"]), int(txns[-1]["ts"])], "n_examples": n,
                 "n_train": cut})
    progress(f"champion {champion.model_id}: validation {_fmt(validation)}")
    progress("warming the River challenger on the same history")
    from scorers.river_scorer import RiverScorer

    river = RiverScorer(FEATURE_NAMES, name=CHALLENGER, version="0")
    river.learn(X[:cut], y[:cut])
    challenger = registry.publish_scorer(river, metrics=river.metrics())
    progress(f"challenger {challenger.model_id}: {_fmt(river.metrics())}")
    return BootstrapReport(champion, challenger, validation, time.monotonic() - started)


@dataclass
class BacktestReport:
    n: int
    frauds: int
    recall: float
    fpr: float
    flagged: int
    outcomes: Counter[str] = field(default_factory=Counter)
    recall_by_pattern: dict[str, float] = field(default_factory=dict)
    models: Counter[str] = field(default_factory=Counter)
    decide_seconds: float = 0.0

    def summary(self) -> str:
        per = ", ".join(f"{k} {v:.3f}" for k, v in sorted(self.recall_by_pattern.items()))
        return (f"{self.n:,} transactions, {self.frauds:,} fraudulent: recall {self.recall:.4f}, "
                f"false-positive rate {self.fpr:.4f} (REVIEW+DECLINE flagged); by pattern: "
                f"{per}; {self.n / max(self.decide_seconds, 1e-9):,.0f} txn/s in decide()")


def backtest_fraud(txns: Sequence[dict[str, Any]], y: np.ndarray,
                   patterns: Sequence[str | None], models: FraudModels, *,
                   batch_size: int = 500) -> BacktestReport:
    """Run ``decide`` over ``txns`` in batches; flagged = REVIEW or DECLINE."""
    state = FraudState(cards={}, merchants={}, devices={})
    merchants: dict[str, EntityWindow] = {}
    devices: dict[str, EntityWindow] = {}
    state.merchants, state.devices = merchants, devices
    verdicts: dict[str, str] = {}
    report = BacktestReport(n=len(txns), frauds=int(y.sum()), recall=0.0, fpr=0.0, flagged=0)
    for start in range(0, len(txns), batch_size):
        chunk = txns[start:start + batch_size]
        t0 = time.perf_counter()
        result = decide(chunk, state, models, now_ms=chunk[-1]["ts"])
        report.decide_seconds += time.perf_counter() - t0
        for item in result.decided:
            verdicts[item.decision["txn_id"]] = item.decision["decision"]
            report.models[item.decision["model"]] += 1
        update_entities(chunk, merchants, devices)
    flagged = np.array([verdicts.get(t["txn_id"], "APPROVE") != "APPROVE" for t in txns])
    report.outcomes = Counter(verdicts.values())
    report.flagged = int(flagged.sum())
    report.recall = float(flagged[y].mean()) if y.any() else 0.0
    report.fpr = float(flagged[~y].mean()) if (~y).any() else 0.0
    by_pattern: dict[str, list[bool]] = {}
    for hit, fraud, pattern in zip(flagged, y, patterns, strict=True):
        if fraud and pattern:
            by_pattern.setdefault(pattern, []).append(bool(hit))
    report.recall_by_pattern = {p: float(np.mean(v)) for p, v in by_pattern.items()}
    return report


def load_models(registry: ModelRegistry, budget_ms: float = 1e9) -> FraudModels:
    """The registry's latest champion and challenger, as the workers load them."""
    manifest = registry.manifest(CHAMPION)
    return FraudModels(
        rules=rules_scorer(), champion=registry.load_scorer(CHAMPION),
        champion_thresholds=Thresholds(manifest.thresholds["review"],
                                       manifest.thresholds["decline"]),
        challenger=registry.load_scorer(CHALLENGER) if CHALLENGER in registry.names()
        else None, budget_ms=budget_ms)


def _fmt(metrics: dict[str, Any] | Iterable[tuple[str, Any]]) -> str:
    items = metrics.items() if isinstance(metrics, dict) else metrics
    return ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in items)
