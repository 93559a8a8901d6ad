"""Fraud decisions, pure and batch-shaped: transactions + state + models -> decisions.

:func:`decide` is the one implementation the Faust agent and the backtest both call.
For a batch it computes the features (:mod:`agents.fraud.features`), scores them with
the champion model, falls back to the rules when the champion is missing, fails or is
over its time budget, scores the challenger in shadow, applies the thresholds stored
with the model, and returns each decision with its provenance (feature vector, window
values, rule hits, models, thresholds) so it can be explained when a chargeback
arrives weeks later.

Routing (:mod:`models.routing`): in ``canary`` the challenger decides for the cards
whose stable hash falls in ``FraudModels.canary_percent`` (variant ``canary``, its own
thresholds); otherwise it is scored in shadow. Every decision says which model decided
(``model``) and how (``variant``: ``champion``, ``canary`` or ``fallback``).

Idempotence: transactions whose ``txn_id`` is in ``already`` are not decided again;
their positions come back in ``repeats``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.fraud.features import (
    FEATURE_NAMES,
    GRACE_MS,
    CardState,
    EntityWindow,
    compute_features,
)
from models.routing import bucket
from scorers.base import Scorer
from scorers.rules import RulesScorer

__all__ = ["Thresholds", "FraudModels", "FraudState", "Decided", "BatchResult", "decide",
           "CircuitBreaker", "outcome"]


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Scores at or above ``review`` are flagged REVIEW; at or above ``decline``, DECLINE."""

    review: float
    decline: float

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], default: Thresholds) -> Thresholds:
        return cls(float(data.get("review", default.review)),
                   float(data.get("decline", default.decline)))


RULES_THRESHOLDS = Thresholds(review=0.5, decline=0.8)


def outcome(score: float, thresholds: Thresholds) -> str:
    """The decision for a score.

    >>> t = Thresholds(review=0.2, decline=0.7)
    >>> [outcome(s, t) for s in (0.1, 0.2, 0.69, 0.7)]
    ['APPROVE', 'REVIEW', 'REVIEW', 'DECLINE']
    """
    if score >= thresholds.decline:
        return "DECLINE"
    return "REVIEW" if score >= thresholds.review else "APPROVE"


@dataclass
class CircuitBreaker:
    """After ``trip_after`` consecutive failures or slow batches, skip the champion for
    ``cool_off_s`` so latency recovers; then try it again."""

    trip_after: int = 3
    cool_off_s: float = 30.0
    failures: int = 0
    open_until: float = 0.0

    def allows(self, now: float) -> bool:
        return now >= self.open_until

    def record(self, ok: bool, now: float) -> None:
        if ok:
            self.failures = 0
            return
        self.failures += 1
        if self.failures >= self.trip_after:
            self.open_until = now + self.cool_off_s
            self.failures = 0


@dataclass
class FraudModels:
    """The scorers in use. ``champion`` None means "not loaded": the rules decide."""

    rules: RulesScorer
    champion: Scorer | None = None
    champion_thresholds: Thresholds = RULES_THRESHOLDS
    challenger: Scorer | None = None
    budget_ms: float = 50.0
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    #: Why the champion is absent, when it is (e.g. the registry's integrity error).
    champion_error: str | None = None
    challenger_thresholds: Thresholds = RULES_THRESHOLDS
    #: Share of cards (0..100, by stable hash) the challenger decides for (canary).
    canary_percent: float = 0.0
    #: Salt of the stable hash (the routing family).
    family: str = "fraud"

    @classmethod
    def rules_only(cls, reason: str = "no model loaded") -> FraudModels:
        return cls(rules=RulesScorer(FEATURE_NAMES), champion_error=reason)


@dataclass
class FraudState:
    """What decisions remember: card state (read-write) and entity velocity (read-only
    snapshots maintained by the re-keyed entity agent)."""

    cards: MutableMapping[str, CardState] = field(default_factory=dict)
    merchants: Mapping[str, EntityWindow] = field(default_factory=dict)
    devices: Mapping[str, EntityWindow] = field(default_factory=dict)


@dataclass(slots=True)
class Decided:
    position: int
    decision: dict[str, Any]
    provenance: dict[str, Any]


@dataclass
class BatchResult:
    decided: list[Decided] = field(default_factory=list)
    late: list[int] = field(default_factory=list)
    repeats: list[int] = field(default_factory=list)
    #: None when the champion decided; else why the rules did.
    fallback_reason: str | None = None
    champion_ms: float = 0.0
    #: The feature matrix and final scores of the decided rows (for drift monitors).
    matrix: Any = None
    scores: Any = None


def decide(txns: Sequence[Mapping[str, Any]], state: FraudState, models: FraudModels, *,
           now_ms: int, already: Mapping[str, Any] | None = None, grace_ms: int = GRACE_MS,
           clock: Callable[[], float] = time.perf_counter) -> BatchResult:
    """Decide every transaction of the batch that was not decided before."""
    result = BatchResult()
    fresh: list[Mapping[str, Any]] = []
    positions: list[int] = []
    seen = set()
    for position, txn in enumerate(txns):
        txn_id = txn["txn_id"]
        if (already is not None and txn_id in already) or txn_id in seen:
            result.repeats.append(position)
            continue
        seen.add(txn_id)
        fresh.append(txn)
        positions.append(position)
    if not fresh:
        return result
    batch = compute_features(fresh, state.cards, state.merchants, state.devices,
                             grace_ms=grace_ms)
    result.late = [positions[i] for i in batch.late]
    if not batch.index:
        return result
    X = batch.matrix
    rule_scores, rule_hits = models.rules.score_with_reasons(X)
    scores, decided_by, thresholds, reason = _champion_scores(models, X, clock, result)
    if scores is None:
        scores, decided_by, thresholds = rule_scores, models.rules.model_id, RULES_THRESHOLDS
    result.fallback_reason = reason
    shadow = _shadow_scores(models.challenger, X)
    rows = X.tolist()
    final = np.asarray(scores, dtype=np.float64).copy()
    base_variant = "champion" if reason is None else "fallback"
    for row, i in enumerate(batch.index):
        txn = fresh[i]
        score, row_thresholds, row_model, variant = (float(scores[row]), thresholds,
                                                     decided_by, base_variant)
        if shadow is not None and models.canary_percent > 0 and \
                bucket(txn["card_id"], models.family) < models.canary_percent:
            score, row_thresholds, row_model, variant = (
                float(shadow[1][row]), models.challenger_thresholds, shadow[0], "canary")
            final[row] = score
        verdict = outcome(score, row_thresholds)
        reasons = list(rule_hits[row]) or _strongest(X[row])
        decision = {
            "txn_id": txn["txn_id"], "decision": verdict, "score": score,
            "model": row_model, "ts": txn["ts"], "decided_at": now_ms, "reasons": reasons,
            "card_id": txn["card_id"], "variant": variant,
        }
        provenance = {
            "txn_id": txn["txn_id"], "card_id": txn["card_id"], "ts": txn["ts"],
            "features": rows[row], "windows": batch.windows[row],
            "rule_hits": rule_hits[row], "rules_score": float(rule_scores[row]),
            "model": row_model, "score": score, "decision": verdict, "variant": variant,
            "thresholds": [row_thresholds.review, row_thresholds.decline], "fallback": reason,
            "challenger": None if shadow is None else
            {"model": shadow[0], "score": float(shadow[1][row])},
        }
        result.decided.append(Decided(positions[i], decision, provenance))
    result.matrix, result.scores = X, final
    return result


def _champion_scores(models: FraudModels, X: np.ndarray, clock: Callable[[], float],
                     result: BatchResult) -> tuple[Any, str, Thresholds, str | None]:
    champion = models.champion
    if champion is None:
        return None, "", RULES_THRESHOLDS, f"champion unavailable: {models.champion_error}"
    started = clock()
    if not models.breaker.allows(started):
        return None, "", RULES_THRESHOLDS, "champion paused after repeated failures"
    try:
        scores = champion.score(X)
    except Exception as exc:  # any model failure: the rules decide this batch
        models.breaker.record(False, clock())
        return None, "", RULES_THRESHOLDS, f"champion failed: {type(exc).__name__}: {exc}"
    elapsed_ms = (clock() - started) * 1000.0
    result.champion_ms = elapsed_ms
    if elapsed_ms > models.budget_ms:
        models.breaker.record(False, clock())
        return None, "", RULES_THRESHOLDS, (
            f"champion over budget: {elapsed_ms:.1f} ms > {models.budget_ms:.0f} ms")
    models.breaker.record(True, clock())
    return scores, champion.model_id, models.champion_thresholds, None


def _shadow_scores(challenger: Scorer | None, X: np.ndarray) -> tuple[str, Any] | None:
    if challenger is None:
        return None
    try:
        return challenger.model_id, challenger.score(X)
    except Exception:  # the challenger never affects a decision
        return None


def _strongest(row: np.ndarray, k: int = 2) -> list[str]:
    """Without rule hits: the features furthest from zero, as weak explanations."""
    order = np.argsort(-np.abs(row))[:k]
    return [f"feature:{FEATURE_NAMES[i]}" for i in order]
