"""Which fraud models a worker scores with, loaded from the registry and swapped
atomically when ``model-updates`` announces a new version.

Every load goes through :class:`models.registry.ModelRegistry`, which checks the
artefact's digest and the manifest's signature before anything is deserialised; a
version that fails the check is refused and the worker keeps what it had (or the rules).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from agents.fraud.decide import RULES_THRESHOLDS, FraudModels, Thresholds
from agents.fraud.features import FEATURE_NAMES
from models.registry import ModelRegistry
from scorers.errors import ScorerError
from scorers.rules import RulesScorer

__all__ = ["CHAMPION", "CHALLENGER", "FraudModelHolder", "rules_scorer"]

log = logging.getLogger(__name__)

#: Registry names: the gradient-boosted champion (ONNX) and the online challenger (River).
CHAMPION = "fraud_gbdt"
CHALLENGER = "fraud_river"


def rules_scorer() -> RulesScorer:
    return RulesScorer(FEATURE_NAMES, name="rules", version="1")


class FraudModelHolder:
    """Holds the current :class:`FraudModels`; replaced as a whole, never mutated."""

    def __init__(self, registry: ModelRegistry, *, budget_ms: float = 50.0,
                 on_change: Callable[[FraudModels], None] | None = None) -> None:
        self.registry = registry
        self.budget_ms = budget_ms
        self.on_change = on_change
        self.models = FraudModels(rules=rules_scorer(), budget_ms=budget_ms,
                                  champion_error="not loaded yet")
        self.checked = False

    def load_latest(self) -> FraudModels:
        """Load the newest champion and challenger the registry holds (if any)."""
        names = set(self.registry.names())
        models = self.models
        if CHAMPION in names:
            models = self._with_champion(models, "latest")
        else:
            models = replace(models, champion=None,
                             champion_error=f"no {CHAMPION} model in the registry")
        if CHALLENGER in names:
            models = self._with_challenger(models, "latest")
        self._set(models)
        self.checked = True
        return self.models

    def on_update(self, update: dict[str, Any]) -> None:
        """Apply a ``model-updates`` record (a new version of one of our models)."""
        name, version = update.get("model"), str(update.get("version"))
        current = {CHAMPION: self.models.champion, CHALLENGER: self.models.challenger}
        if name not in current:
            return
        scorer = current[name]
        if scorer is not None and scorer.version == version:
            return
        if name == CHAMPION:
            self._set(self._with_champion(self.models, version))
        else:
            self._set(self._with_challenger(self.models, version))

    def _with_champion(self, models: FraudModels, version: str) -> FraudModels:
        try:
            manifest = self.registry.manifest(CHAMPION, version)
            scorer = self.registry.load_scorer(CHAMPION, manifest.version)
        except (ScorerError, OSError, KeyError, ValueError) as exc:
            log.error("champion %s@%s refused: %s", CHAMPION, version, exc)
            if models.champion is None:
                return replace(models, champion_error=f"{type(exc).__name__}: {exc}")
            return models
        thresholds = Thresholds.from_dict(manifest.thresholds or {}, RULES_THRESHOLDS)
        log.info("champion now %s (review >= %.3f, decline >= %.3f)", scorer.model_id,
                 thresholds.review, thresholds.decline)
        return replace(models, champion=scorer, champion_thresholds=thresholds,
                       champion_error=None)

    def _with_challenger(self, models: FraudModels, version: str) -> FraudModels:
        try:
            scorer = self.registry.load_scorer(CHALLENGER, version)
        except (ScorerError, OSError, KeyError, ValueError) as exc:
            log.error("challenger %s@%s refused: %s", CHALLENGER, version, exc)
            return models
        log.info("challenger now %s", scorer.model_id)
        return replace(models, challenger=scorer)

    def _set(self, models: FraudModels) -> None:
        self.models = models
        if self.on_change is not None:
            self.on_change(models)
