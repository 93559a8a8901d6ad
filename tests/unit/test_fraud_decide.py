"""decide(): idempotence, late events, and the rules fallback when the champion is
missing, failing or slow."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from agents.fraud.decide import CircuitBreaker, FraudModels, FraudState, Thresholds, decide
from agents.fraud.features import FEATURE_NAMES
from agents.fraud.models import rules_scorer

T0 = 1_765_000_000_000


def txn(i: int, ts: int = T0, card: str = "c1", amount: float = 20.0) -> dict[str, Any]:
    return {"txn_id": f"t{i}", "card_id": card, "user_id": "u1", "merchant_id": f"m{i % 3}",
            "merchant_category": "grocery", "amount": amount, "currency": "EUR",
            "country": "FR", "device_id": "d1", "ip": "10.0.0.1", "ts": ts + i * 1000}


class FixedScorer:
    name, version, kind = "fixed", "7", "test"
    feature_names = FEATURE_NAMES

    def __init__(self, value: float = 0.9, fail: bool = False, delay: float = 0.0,
                 clock: list[float] | None = None) -> None:
        self.value, self.fail, self.delay, self.clock = value, fail, delay, clock

    @property
    def model_id(self) -> str:
        return f"{self.name}@{self.version}"

    def score(self, X: Any) -> Any:
        if self.fail:
            raise RuntimeError("model file is broken")
        if self.clock is not None:
            self.clock[0] += self.delay
        return np.full(len(X), self.value)

    def learn(self, X: Any, y: Any) -> None:
        return None

    def to_bytes(self) -> bytes:
        return b""


def models(scorer: Any, budget_ms: float = 50.0) -> FraudModels:
    return FraudModels(rules=rules_scorer(), champion=scorer,
                       champion_thresholds=Thresholds(0.5, 0.8), budget_ms=budget_ms)


def test_champion_decides_with_its_thresholds_and_provenance() -> None:
    result = decide([txn(1)], FraudState(), models(FixedScorer(0.9)), now_ms=T0 + 5)
    (item,) = result.decided
    assert item.decision["decision"] == "DECLINE"
    assert item.decision["model"] == "fixed@7"
    assert item.decision["variant"] == "champion"
    assert result.fallback_reason is None
    prov = item.provenance
    assert len(prov["features"]) == len(FEATURE_NAMES)
    assert prov["thresholds"] == [0.5, 0.8]
    assert prov["windows"]


def test_a_failing_champion_falls_back_to_the_rules() -> None:
    result = decide([txn(1), txn(2)], FraudState(), models(FixedScorer(fail=True)),
                    now_ms=T0)
    assert {d.decision["model"] for d in result.decided} == {"rules@1"}
    assert result.fallback_reason is not None and "failed" in result.fallback_reason


def test_a_missing_champion_falls_back_to_the_rules() -> None:
    result = decide([txn(1)], FraudState(), FraudModels.rules_only("file missing"),
                    now_ms=T0)
    assert result.decided[0].decision["model"] == "rules@1"
    assert "file missing" in (result.fallback_reason or "")


def test_a_slow_champion_falls_back_and_trips_the_breaker() -> None:
    clock = [0.0]
    slow = FixedScorer(delay=0.2, clock=clock)
    m = models(slow, budget_ms=50)
    m.breaker = CircuitBreaker(trip_after=2, cool_off_s=30)
    for i in range(2):
        result = decide([txn(i)], FraudState(), m, now_ms=T0, clock=lambda: clock[0])
        assert "over budget" in (result.fallback_reason or "")
    result = decide([txn(9)], FraudState(), m, now_ms=T0, clock=lambda: clock[0])
    assert "paused" in (result.fallback_reason or "")
    clock[0] += 31
    slow.delay = 0.0
    result = decide([txn(10)], FraudState(), m, now_ms=T0, clock=lambda: clock[0])
    assert result.fallback_reason is None


def test_redelivered_and_repeated_transactions_are_not_decided_again() -> None:
    state = FraudState()
    first = decide([txn(1), txn(1)], state, models(FixedScorer(0.1)), now_ms=T0)
    assert [d.position for d in first.decided] == [0] and first.repeats == [1]
    again = decide([txn(1)], state, models(FixedScorer(0.1)), now_ms=T0,
                   already={"t1": True})
    assert again.decided == [] and again.repeats == [0]


@pytest.mark.parametrize("lateness_ms,late", [(30_000, False), (120_000, True)])
def test_late_events_beyond_grace_are_reported(lateness_ms: int, late: bool) -> None:
    state = FraudState()
    decide([txn(100)], state, models(FixedScorer(0.1)), now_ms=T0)
    newest = txn(100)["ts"]
    old = dict(txn(5), ts=newest - lateness_ms)
    result = decide([old], state, models(FixedScorer(0.1)), now_ms=T0, grace_ms=60_000)
    assert (result.late == [0]) is late
    assert (len(result.decided) == 0) is late
