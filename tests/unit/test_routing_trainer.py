"""The online trainer's lifecycle parts: only matured labels are learnt, test-then-train
metrics and the lineage go into each published version, the family's challenger alias
follows the new version, and the version is announced on ``model-updates``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from agents.fraud.features import FEATURE_NAMES
from agents.fraud.models import CHALLENGER, FAMILY, default_routing
from agents.learning.trainer import OnlineTrainer
from models.prequential import MaturityGate, PrequentialWindow
from models.registry import ModelRegistry
from models.routing import RoutingStore
from scorers.river_scorer import RiverScorer
from streams.settings import Settings

KEY = b"trainer-test-key-0123456789abcdef"


class MemoryPublisher:
    """An in-memory :class:`streams.publisher.EventPublisher`."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any] | None]] = []

    def publish(self, logical_topic: str, value: dict[str, Any] | None,
                key: str | bytes | None = None) -> None:
        self.sent.append((logical_topic, value))

    async def flush(self, timeout: float = 30.0) -> None:
        return None

    def flush_sync(self, timeout: float = 30.0) -> None:
        return None

    def close(self) -> None:
        return None


def test_matured_examples_train_and_the_new_version_becomes_the_challenger(
        tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models", KEY)
    registry.publish_scorer(RiverScorer(FEATURE_NAMES, name=CHALLENGER, version="0"))
    store = RoutingStore(registry)
    store.set_challenger(FAMILY, f"{CHALLENGER}@1", default_routing())
    app = SimpleNamespace(settings=Settings(trainer_every_examples=50),
                          publisher=MemoryPublisher())
    trainer = OnlineTrainer(app, registry, CHALLENGER, FEATURE_NAMES,  # type: ignore[arg-type]
                            lambda: RiverScorer(FEATURE_NAMES, name=CHALLENGER, version="0"),
                            gate=MaturityGate({"fraud": 10_000}),
                            prequential=PrequentialWindow(1_000, 0.05),
                            routing_family=FAMILY)
    rng = np.random.default_rng(0)

    def example(i: int, label: float, age: int) -> dict[str, Any]:
        features = {n: float(rng.normal()) for n in FEATURE_NAMES}
        features["amount_usd"] = 5.0 * label + float(rng.normal())
        return {"model": "fraud", "label": label, "features": features,
                "event_ts": 1_000_000 + i, "ts": 1_000_000 + i + age}

    young = [example(i, 0.0, 10) for i in range(40)]
    trainer.learn(young + [example(100 + i, 1.0, 10) for i in range(5)])
    assert trainer.learnt == 5 and len(trainer.gate.waiting) == 40  # type: ignore[union-attr]
    later = [example(20_000 + i, float(i % 10 == 0), 10) for i in range(60)]
    trainer.learn(later)  # the watermark passed the young negatives: they mature
    assert trainer.learnt == 5 + 40 + 6
    trainer.maybe_publish(ts=1)
    manifest = registry.manifest(CHALLENGER, "2")
    assert manifest.parent_version == "1"
    assert manifest.lineage["data_range"] == [1_000_000, 1_020_050]  # last positive
    assert manifest.lineage["examples_learnt"] == 51
    assert manifest.metrics["prequential_n"] == 51
    assert "prequential_lt_1h_n" in manifest.metrics
    assert store.get(FAMILY).challenger == f"{CHALLENGER}@2"
    assert store.get(FAMILY).history[-1]["action"] == "trained"
    ((topic, record),) = app.publisher.sent
    assert topic == "model-updates" and record is not None
    assert (record["model"], record["version"], record["role"]) == (CHALLENGER, "2",
                                                                    "challenger")
