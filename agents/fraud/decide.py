"""Fraud decisions, pure and batch-shaped: transactions + state -> decisions.

This is the foundation's slice: a transparent rules score over the transaction and the
card's recent activity. Model scoring (ONNX, River) plugs in behind the same function.

>>> state = FraudState()
>>> txn = {"txn_id": "t1", "card_id": "c1", "amount": 12.5, "country": "FR",
...        "device_id": "d1", "ts": 1_700_000_000_000}
>>> [d["decision"] for d in decide([txn], state, now_ms=1_700_000_000_010)]
['APPROVE']
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FraudState", "Thresholds", "decide", "RULES_MODEL"]

RULES_MODEL = "rules@1"
_WINDOW_MS = 60_000


@dataclass(frozen=True, slots=True)
class Thresholds:
    review: float = 0.5
    decline: float = 0.8


@dataclass
class CardActivity:
    recent: deque[tuple[int, float]] = field(default_factory=deque)
    countries: set[str] = field(default_factory=set)
    devices: set[str] = field(default_factory=set)


@dataclass
class FraudState:
    """What the decision needs to remember: per-card activity and decided txn ids."""

    cards: dict[str, CardActivity] = field(default_factory=dict)
    decided: dict[str, dict[str, Any]] = field(default_factory=dict)


def _rules(txn: dict[str, Any], card: CardActivity) -> tuple[float, list[str]]:
    score, hits = 0.02, []
    ts = txn["ts"]
    while card.recent and card.recent[0][0] < ts - _WINDOW_MS:
        card.recent.popleft()
    if len(card.recent) >= 5:
        score += 0.45
        hits.append("rule:velocity_1m")
    if txn["amount"] >= 1000:
        score += 0.35
        hits.append("rule:high_amount")
    new_country = bool(card.countries) and txn["country"] not in card.countries
    new_device = bool(card.devices) and txn["device_id"] not in card.devices
    if new_country and new_device:
        score += 0.4
        hits.append("rule:new_device_new_country")
    return min(score, 0.99), hits


def decide(txns: list[dict[str, Any]], state: FraudState, *, now_ms: int,
           thresholds: Thresholds = Thresholds()) -> list[dict[str, Any]]:
    """One decision per transaction, in input order; a txn_id decided before gets the
    same decision again (idempotent), which callers use to avoid republishing."""
    out = []
    for txn in txns:
        previous = state.decided.get(txn["txn_id"])
        if previous is not None:
            out.append(previous)
            continue
        card = state.cards.setdefault(txn["card_id"], CardActivity())
        score, hits = _rules(txn, card)
        card.recent.append((txn["ts"], txn["amount"]))
        card.countries.add(txn["country"])
        card.devices.add(txn["device_id"])
        outcome = ("DECLINE" if score >= thresholds.decline
                   else "REVIEW" if score >= thresholds.review else "APPROVE")
        decision = {"txn_id": txn["txn_id"], "decision": outcome, "score": score,
                    "model": RULES_MODEL, "ts": txn["ts"], "decided_at": now_ms,
                    "reasons": hits, "card_id": txn["card_id"], "variant": "champion"}
        state.decided[txn["txn_id"]] = decision
        out.append(decision)
    return out
