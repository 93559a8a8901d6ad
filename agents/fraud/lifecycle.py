"""The fraud models' lifecycle in a worker: drift on live decisions, champion vs
challenger on labelled examples, and the promotion policy.

* :class:`LiveDrift` (decision agent, every worker): the shared
  :class:`~agents.learning.drift_events.ModelDrift` (as recommendations and moderation
  use it) over the champion's scores and key features against the reference stored with
  the champion version (``reference.json``; learnt from the first live window otherwise).
* :class:`FraudEvaluator` (trainer agent, one worker): scores each matured example with
  the champion and the challenger in use (prequential: they never learnt from it),
  keeps their windows (recall at the FPR target, AUC, by label age), feeds the
  error-rate detectors (missed frauds, false alarms) and asks the
  :class:`~models.routing.PromotionPolicy` whether the challenger has earned the
  champion's place; with ``TECHSHOP_MODEL_AUTO_PROMOTE`` it promotes.

Both report state changes as ``model-events`` records through ``emit``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from agents.fraud.features import FEATURE_NAMES
from agents.fraud.metrics import FraudMetrics
from agents.fraud.models import FAMILY, FraudModelHolder, default_routing
from agents.learning.drift_events import ModelDrift, registry_reference, signal_event
from models.drift import DriftMonitor
from models.prequential import PrequentialWindow
from models.records import event_record
from models.routing import PromotionPolicy, RoutingStore
from scorers.errors import ScorerError

__all__ = ["KEY_FEATURES", "FraudEvaluator", "LiveDrift", "examples_matrix"]

log = logging.getLogger(__name__)
Emit = Callable[[dict[str, Any]], None]
#: Features watched for drift (and stored in the reference histograms).
KEY_FEATURES: tuple[str, ...] = ("log_amount_usd", "count_1h", "device_is_new",
                                 "is_foreign", "cat_gift_cards")
_COLUMNS = {name: FEATURE_NAMES.index(name) for name in KEY_FEATURES}


def examples_matrix(examples: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The feature matrix of ``training-examples`` records (decision-time features)."""
    return np.array([[ex["features"].get(n, 0.0) for n in FEATURE_NAMES] for ex in examples],
                    dtype=np.float32)


class LiveDrift:
    """Drift of the live score and feature distributions of the champion: the shared
    :class:`~agents.learning.drift_events.ModelDrift` fed with the champion's rows."""

    def __init__(self, holder: FraudModelHolder, metrics: FraudMetrics, emit: Emit, *,
                 window: int = 2_000, adwin_delta: float = 0.001) -> None:
        self.holder, self.metrics, self.emit = holder, metrics, emit
        # error_rates: the labels are the evaluator's, but the gauge shows them at 0 here
        self.drift = ModelDrift(metrics.drift_state, emit, features=_COLUMNS,
                                error_rates=True, reference=registry_reference(holder.registry),
                                window=window, adwin_delta=adwin_delta)

    @property
    def model(self) -> str | None:
        return self.drift.model

    @property
    def monitor(self) -> DriftMonitor:
        return self.drift.monitor

    def observe(self, scores: Any, matrix: Any, ts: int) -> None:
        champion = self.holder.models.champion
        if champion is None or scores is None or matrix is None:
            return
        self.drift.observe(champion.model_id, scores, matrix, ts)


class FraudEvaluator:
    """Champion vs challenger on matured examples (see the module docstring)."""

    def __init__(self, holder: FraudModelHolder, metrics: FraudMetrics, emit: Emit, *,
                 window: int = 20_000, fpr_target: float = 0.01,
                 policy: PromotionPolicy | None = None, auto_promote: bool = False,
                 on_promoted: Callable[[], None] | None = None,
                 drift_window: int = 2_000, adwin_delta: float = 0.001,
                 now: Callable[[], int] | None = None) -> None:
        self.holder, self.metrics, self.emit = holder, metrics, emit
        self.window, self.fpr_target = window, fpr_target
        self.policy = policy or PromotionPolicy()
        self.auto_promote, self.on_promoted = auto_promote, on_promoted
        self.drift_window, self.adwin_delta = drift_window, adwin_delta
        self.now = now
        self.ids: dict[str, str | None] = {"champion": None, "challenger": None}
        self.windows: dict[str, PrequentialWindow] = {}
        self.errors = DriftMonitor(window=drift_window, adwin_delta=adwin_delta)
        self.last_verdict = ("wait", "")

    def __call__(self, examples: list[dict[str, Any]]) -> None:
        models = self.holder.models
        X = examples_matrix(examples)
        y = [ex["label"] >= 0.5 for ex in examples]
        ages = [ex["ts"] - ex["event_ts"] for ex in examples]
        ts = max(ex["ts"] for ex in examples)
        for role, scorer in (("champion", models.champion), ("challenger", models.challenger)):
            model_id = None if scorer is None else scorer.model_id
            if model_id != self.ids[role]:  # a new model: a new window
                self.ids[role] = model_id
                self.windows[role] = PrequentialWindow(self.window, self.fpr_target)
                if role == "champion":
                    self.errors = DriftMonitor(window=self.drift_window,
                                               adwin_delta=self.adwin_delta)
            if scorer is None:
                continue
            try:
                scores = scorer.score(X)
            except Exception:
                log.exception("%s could not score training examples", model_id)
                continue
            self.windows[role].update(scores.tolist(), y, ages)
            for metric, value in self.windows[role].metrics().items():
                if metric != "by_age":
                    self.metrics.prequential.labels(role, metric).set(value)
            if role == "champion":
                flagged = (scores >= models.champion_thresholds.review).tolist()
                for signal in self.errors.observe_outcomes(flagged, y):
                    self.metrics.drift_state.labels(signal.signal).set(signal.state)
                    self.emit(signal_event(model_id or "", signal, ts))
                    log.warning("drift of %s: %s", model_id, signal.detail)
        self._policy(ts)

    def summary(self) -> dict[str, dict[str, Any]]:
        return {role: w.metrics() for role, w in self.windows.items()}

    def _policy(self, ts: int) -> None:
        if "champion" not in self.windows or self.ids["challenger"] is None:
            return
        verdict = self.policy.verdict(self.windows["champion"].metrics(),
                                      self.windows["challenger"].metrics(), "recall_at_fpr")
        changed = verdict[0] != self.last_verdict[0]
        self.last_verdict = verdict
        if verdict[0] != "promote" or not changed:
            return
        challenger = self.ids["challenger"] or ""
        self.emit(event_record(challenger, "policy", verdict[1], {}, ts))
        if not self.auto_promote:
            log.info("policy: %s (auto-promotion is off)", verdict[1])
            return
        try:
            routing = RoutingStore(self.holder.registry).promote(FAMILY, default_routing())
        except ScorerError as exc:
            log.error("policy promotion of %s failed: %s", challenger, exc)
            return
        self.emit(event_record(routing.champion or "", "promote", f"policy: {verdict[1]}",
                               {}, ts))
        if self.on_promoted is not None:
            self.on_promoted()
