"""Which fraud models a worker scores with, loaded from the registry and swapped
atomically when ``model-updates`` announces a new version or a routing change.

The family's routing (:class:`models.routing.Routing`, stored signed in the registry)
names the champion and the challenger; before any promotion they are the newest
``fraud_gbdt`` and the newest ``fraud_river``. Every load goes through
:class:`models.registry.ModelRegistry`, which checks every file's digest and the
manifest's signature before anything is deserialised; a version that fails the check is
refused (once: it is remembered) and the worker keeps what it had (or the rules).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from agents.fraud.decide import RULES_THRESHOLDS, FraudModels, Thresholds
from agents.fraud.features import FEATURE_NAMES
from models.registry import ModelRegistry
from models.routing import Routing, RoutingStore
from scorers.errors import ScorerError
from scorers.rules import RulesScorer

__all__ = ["CHAMPION", "CHALLENGER", "FAMILY", "FraudModelHolder", "default_routing",
           "rules_scorer"]

log = logging.getLogger(__name__)

#: Registry names: the gradient-boosted champion (ONNX) and the online challenger (River).
CHAMPION = "fraud_gbdt"
CHALLENGER = "fraud_river"
#: The routing family of the fraud models.
FAMILY = "fraud"


def default_routing() -> Routing:
    """Before any promotion: the newest champion and the newest online challenger."""
    return Routing(FAMILY, champion=f"{CHAMPION}@latest", challenger=f"{CHALLENGER}@latest")


def rules_scorer() -> RulesScorer:
    return RulesScorer(FEATURE_NAMES, name="rules", version="1")


class FraudModelHolder:
    """Holds the current :class:`FraudModels`; replaced as a whole, never mutated."""

    def __init__(self, registry: ModelRegistry, *, budget_ms: float = 50.0,
                 on_change: Callable[[FraudModels], None] | None = None) -> None:
        self.registry = registry
        self.store = RoutingStore(registry)
        self.budget_ms = budget_ms
        self.on_change = on_change
        self.models = FraudModels(rules=rules_scorer(), budget_ms=budget_ms,
                                  champion_error="not loaded yet")
        self.routing = default_routing()
        self.refused: set[tuple[str, str]] = set()
        self.checked = False

    def load_latest(self) -> FraudModels:
        """Load the champion and challenger the routing names (at start)."""
        self.reload()
        self.checked = True
        return self.models

    def on_update(self, update: dict[str, Any]) -> None:
        """Apply a ``model-updates`` record: a new version of a fraud model or a routing
        change; the registry (signed routing, signed versions) is the source of truth."""
        name = str(update.get("model", ""))
        if name.startswith("fraud") or update.get("role") == "routing":
            self.reload()

    def reload(self) -> FraudModels:
        """Re-read the routing and load what changed; failures keep what was in use."""
        try:
            routing = self.store.get(FAMILY, default_routing())
        except (ScorerError, OSError) as exc:
            log.error("fraud routing refused, keeping the last good one: %s", exc)
            routing = self.routing
        models = self.models
        champion = self._resolve(routing.champion)
        if champion is None:
            if models.champion is None:
                models = replace(models, champion_error=f"no {routing.champion} model in the "
                                 "registry")
        elif models.champion is None or models.champion.model_id != "@".join(champion):
            models = self._with_champion(models, *champion)
        challenger = self._resolve(routing.challenger)
        if challenger is None:
            models = replace(models, challenger=None)
        elif models.challenger is None or models.challenger.model_id != "@".join(challenger):
            models = self._with_challenger(models, *challenger)
        canary = routing.canary_percent if routing.mode == "canary" else 0.0
        models = replace(models, canary_percent=canary, family=FAMILY)
        self.routing = routing
        self._set(models)
        return models

    def _resolve(self, ref: str | None) -> tuple[str, str] | None:
        try:
            return self.store.resolve(ref)
        except (ScorerError, OSError) as exc:
            log.error("fraud routing names %s: %s", ref, exc)
            return None

    def _load(self, name: str, version: str) -> tuple[Any, Thresholds] | None:
        if (name, version) in self.refused:
            return None
        try:
            manifest = self.registry.manifest(name, version)
            scorer = self.registry.load_scorer(name, manifest.version)
        except (ScorerError, OSError, KeyError, ValueError) as exc:
            log.error("%s@%s refused (what is in use stays): %s", name, version, exc)
            self.refused.add((name, version))
            self._last_error = f"{type(exc).__name__}: {exc}"
            return None
        return scorer, Thresholds.from_dict(manifest.thresholds or {}, RULES_THRESHOLDS)

    def _with_champion(self, models: FraudModels, name: str, version: str) -> FraudModels:
        loaded = self._load(name, version)
        if loaded is None:
            if models.champion is None:
                error = getattr(self, "_last_error", f"{name}@{version} refused earlier")
                return replace(models, champion_error=error)
            return models
        scorer, thresholds = loaded
        log.info("champion now %s (review >= %.3f, decline >= %.3f)", scorer.model_id,
                 thresholds.review, thresholds.decline)
        return replace(models, champion=scorer, champion_thresholds=thresholds,
                       champion_error=None)

    def _with_challenger(self, models: FraudModels, name: str, version: str) -> FraudModels:
        loaded = self._load(name, version)
        if loaded is None:
            return models
        scorer, thresholds = loaded
        log.info("challenger now %s", scorer.model_id)
        return replace(models, challenger=scorer, challenger_thresholds=thresholds)

    def _set(self, models: FraudModels) -> None:
        changed = models is not self.models
        self.models = models
        if changed and self.on_change is not None:
            self.on_change(models)
