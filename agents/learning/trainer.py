"""Online trainers: one per model family, fed in order from ``training-examples``.

``training-examples`` has one partition and exactly one agent reads it (this module
registers it once per app); each example goes to the trainer of its ``model`` family
(``fraud``, ``recommend``, ...). A trainer continues from the registry's latest version
of its model, learns each example in order, and every N examples or T seconds publishes
a new version to the registry and announces it on ``model-updates``.

Optional parts (all off unless given): a :class:`~models.prequential.MaturityGate`
(learn only from matured labels), a :class:`~models.prequential.PrequentialWindow`
(each example is scored before it is learnt: test-then-train metrics, by label age,
recorded in every published manifest), ``routing_family`` (a published version
becomes the family's challenger when the challenger is this model) and ``observers``
(called with each batch of matured examples, e.g. the champion/challenger evaluator).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from models.prequential import MaturityGate, PrequentialWindow
from models.registry import ModelRegistry

if TYPE_CHECKING:
    from streams.app import TechShopApp
    from streams.intake import Admitted

__all__ = ["OnlineTrainer", "register_trainer", "announce_update"]

log = logging.getLogger(__name__)


def announce_update(app: TechShopApp, registry: ModelRegistry, manifest: Any, role: str,
                    ts: int) -> None:
    """Publish the ``model-updates`` record of a registry version."""
    folder = registry.root / manifest.name / manifest.version
    app.publisher.publish("model-updates", {
        "model": manifest.name, "version": manifest.version, "kind": manifest.kind,
        "uri": folder.as_uri(), "sha256": manifest.sha256, "signature": manifest.signature,
        "role": role, "metrics": {k: float(v) for k, v in manifest.metrics.items()
                                  if isinstance(v, int | float)},
        "ts": ts,
    })


class OnlineTrainer:
    """Learns ``model_name`` from examples of one family and publishes new versions."""

    def __init__(self, app: TechShopApp, registry: ModelRegistry, model_name: str,
                 feature_names: Sequence[str], make_initial: Callable[[], Any], *,
                 gate: MaturityGate | None = None,
                 prequential: PrequentialWindow | None = None,
                 routing_family: str | None = None,
                 observers: Sequence[Callable[[list[dict[str, Any]]], None]] = ()) -> None:
        self.app, self.registry = app, registry
        self.model_name = model_name
        self.feature_names = tuple(feature_names)
        self.make_initial = make_initial
        self.scorer: Any = None
        self.parent: str | None = None
        self.since_publish = 0
        self.last_publish = time.monotonic()
        self.gate, self.prequential = gate, prequential
        self.routing_family = routing_family
        self.observers = list(observers)
        self.learnt = 0
        self.data_range: list[int] | None = None

    def _ensure(self) -> Any:
        if self.scorer is None:
            if self.model_name in self.registry.names():
                self.scorer = self.registry.load_scorer(self.model_name)
                self.parent = self.scorer.version
            else:
                self.scorer = self.make_initial()
        return self.scorer

    def learn(self, examples: list[dict[str, Any]]) -> None:
        if self.gate is not None:
            examples = self.gate.admit(examples)
        if not examples:
            return
        for observe in self.observers:
            try:
                observe(examples)
            except Exception:  # an observer never stops learning
                log.exception("a training observer failed")
        X = np.array([[ex["features"].get(n, 0.0) for n in self.feature_names]
                      for ex in examples], dtype=np.float32)
        y = np.array([ex["label"] >= 0.5 for ex in examples])
        scorer = self._ensure()
        if self.prequential is not None:  # test, then train
            self.prequential.update(scorer.score(X).tolist(), y.tolist(),
                                    [ex["ts"] - ex["event_ts"] for ex in examples])
        scorer.learn(X, y)
        self.since_publish += len(examples)
        self.learnt += len(examples)
        lo, hi = min(ex["event_ts"] for ex in examples), max(ex["event_ts"] for ex in examples)
        self.data_range = [lo, hi] if self.data_range is None else [
            min(self.data_range[0], lo), max(self.data_range[1], hi)]

    def maybe_publish(self, ts: int) -> None:
        s = self.app.settings
        due = self.since_publish >= s.trainer_every_examples or (
            self.since_publish > 0 and time.monotonic() - self.last_publish >= s.trainer_every_s)
        if not due:
            return
        scorer = self._ensure()
        metrics = dict(scorer.metrics())
        if self.prequential is not None:
            metrics.update(self.prequential.flat_metrics("prequential_"))
        manifest = self.registry.publish_scorer(
            scorer, name=self.model_name, metrics=metrics, parent_version=self.parent,
            lineage={"trainer": "online", "data_range": self.data_range,
                     "examples_learnt": self.learnt})
        self.parent = manifest.version
        self.since_publish, self.last_publish = 0, time.monotonic()
        if self.routing_family is not None:
            self._follow_challenger(manifest.version)
        announce_update(self.app, self.registry, manifest, "challenger", ts)
        log.info("published %s (%s)", manifest.model_id, manifest.metrics)


    def _follow_challenger(self, version: str) -> None:
        """Move the family's challenger alias to the new version, if it names this model
        (an offline-trained challenger is left alone)."""
        from models.routing import RoutingStore, parse_ref

        store = RoutingStore(self.registry)
        try:
            if not store.path(self.routing_family or "").exists():
                return  # no stored routing: the default follows @latest
            current = store.get(self.routing_family or "")
            if current.challenger is None or parse_ref(current.challenger)[0] \
                    != self.model_name:
                return
            store.set_challenger(self.routing_family or "", f"{self.model_name}@{version}",
                                 action="trained")
        except Exception:
            log.exception("could not move the %s challenger to %s@%s", self.routing_family,
                          self.model_name, version)


def register_trainer(app: TechShopApp, family: str, trainer: OnlineTrainer) -> None:
    """Route ``training-examples`` of ``family`` to ``trainer`` (one agent per app)."""
    trainers: dict[str, OnlineTrainer] | None = getattr(app, "_trainers", None)
    if trainers is None:
        trainers = {}
        app._trainers = trainers  # type: ignore[attr-defined]
        from streams.app import now_ms

        async def on_examples(batch: list[Admitted]) -> None:
            by_family: dict[str, list[dict[str, Any]]] = {}
            for item in batch:
                by_family.setdefault(item.event["model"], []).append(item.event)
            for name, examples in by_family.items():
                target = trainers.get(name)
                if target is not None:
                    target.learn(examples)
            ts = now_ms()
            for target in trainers.values():
                target.maybe_publish(ts)

        app.input_agent("training-examples", on_examples, name="online-trainer")
    trainers[family] = trainer
