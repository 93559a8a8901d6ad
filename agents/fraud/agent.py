"""The fraud pipeline's Faust adapter: transactions -> fraud-decisions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agents.fraud.decide import FraudState, decide
from streams.intake import Admitted

if TYPE_CHECKING:
    from streams.app import TechShopApp

__all__ = ["register"]


def register(app: TechShopApp) -> None:
    from streams.app import now_ms

    state = FraudState()

    async def on_batch(batch: list[Admitted]) -> None:
        decisions = decide([item.event for item in batch], state, now_ms=now_ms())
        for decision in decisions:
            app.publisher.publish("fraud-decisions", decision)

    app.input_agent("transactions", on_batch, name="fraud-decide")
