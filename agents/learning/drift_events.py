"""Live drift for any pipeline's worker: a :class:`~models.drift.DriftMonitor` per model
in use, its state changes turned into ``model-events`` records and a gauge.

:class:`ModelDrift` is what every pipeline's decision agent holds (fraud through
:class:`agents.fraud.lifecycle.LiveDrift`, recommendations and moderation directly). It
keeps one monitor for the model it was last fed; when the model changes (a new
champion, another ranker, a new classifier) the monitor starts again, with the
reference stored with that version (``reference.json``, see :func:`registry_reference`)
or, without one, the first live window. Each state change sets
``techshop_<pipeline>_drift_state{signal}`` (0 stable, 1 warning, 2 drift) and is
emitted as a ``model-events`` record of kind ``drift`` / ``drift_warning`` /
``drift_cleared`` (:func:`signal_event`), keyed by the model.

>>> from models.drift import DriftSignal
>>> e = signal_event("m@1", DriftSignal("score", "PSI", 1, 0.15, "score: warning"), 7)
>>> (e["model"], e["kind"], e["metrics"], e["ts"])
('m@1', 'drift_warning', {'state': 1.0, 'value': 0.15}, 7)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from models.drift import DriftMonitor, DriftSignal
from models.records import event_record
from scorers.errors import ScorerError

__all__ = ["KINDS", "ModelDrift", "Reference", "registry_reference", "signal_event"]

log = logging.getLogger(__name__)
Emit = Callable[[dict[str, Any]], None]
#: model id -> its stored reference histograms (or None: learn them from live data).
Reference = Callable[[str], Mapping[str, Any] | None]
#: ``model-events`` kind of each state.
KINDS = {2: "drift", 1: "drift_warning", 0: "drift_cleared"}


class _Settable(Protocol):
    def set(self, value: float) -> None: ...


class _Gauge(Protocol):  # a prometheus_client Gauge with one label (the signal)
    def labels(self, *values: str) -> _Settable: ...


def signal_event(model: str, signal: DriftSignal, ts: int) -> dict[str, Any]:
    """The ``model-events`` record of a signal's state change."""
    return event_record(model, KINDS[signal.state], signal.detail,
                        {"state": signal.state, "value": signal.value}, ts)


def registry_reference(registry: Any) -> Reference:
    """Reads ``reference.json`` of a ``name@version`` from the registry (its digest
    checked by ``read_file``); ``None`` when there is none or the id has no version."""
    def read(model_id: str) -> Mapping[str, Any] | None:
        name, sep, version = model_id.rpartition("@")
        if not sep or not name:
            return None
        try:
            return dict(json.loads(registry.read_file(name, version, "reference.json")))
        except (ScorerError, OSError, ValueError, TypeError):
            return None  # no stored reference: the first live window is the reference
    return read


class ModelDrift:
    """Live drift of one pipeline (see the module docstring).

    ``score`` and ``features`` are as in :class:`~models.drift.DriftMonitor`
    (``features`` maps signal names to columns of the matrices given to :meth:`observe`);
    ``error_rates`` adds the labelled-outcome signals (:meth:`report` their changes).
    """

    def __init__(self, gauge: _Gauge, emit: Emit, *, features: Mapping[str, int] | None = None,
                 score: str | None = "score", error_rates: bool = False,
                 reference: Reference | None = None, window: int = 2_000,
                 adwin_delta: float = 0.001) -> None:
        self.gauge, self.emit = gauge, emit
        self.features = dict(features or {})
        self.score, self.error_rates = score, error_rates
        self.reference = reference
        self.window, self.adwin_delta = window, adwin_delta
        self.model: str | None = None
        self.monitor = self._monitor(None)

    def _monitor(self, reference: Mapping[str, Any] | None) -> DriftMonitor:
        return DriftMonitor(self.features, reference, window=self.window,
                            adwin_delta=self.adwin_delta, score=self.score,
                            error_rates=self.error_rates)

    def observe(self, model: str, scores: Sequence[float] | np.ndarray | None,
                matrix: np.ndarray | None, ts: int, *,
                features: Mapping[str, int] | None = None) -> list[DriftSignal]:
        """Feed one batch of ``model``'s live output; reports and returns state changes.
        ``features``: the matrix's columns, when they depend on the model (a classifier's
        categories); a change starts a new monitor, as a new model does."""
        if features is not None and dict(features) != self.features:
            self.features, self.model = dict(features), None
            clear = getattr(self.gauge, "clear", None)
            if clear is not None:  # signals of the old columns are gone
                clear()
        if model != self.model:  # another model: a new reference
            self.model = model
            self.monitor = self._monitor(None if self.reference is None
                                         else self.reference(model))
            for name in self.monitor.signals:
                self.gauge.labels(name).set(0)
        signals = self.monitor.observe(scores, matrix)
        self.report(model, signals, ts)
        return signals

    def report(self, model: str, signals: Sequence[DriftSignal], ts: int) -> None:
        """Set the gauge and emit a ``model-events`` record for each state change."""
        for signal in signals:
            self.gauge.labels(signal.signal).set(signal.state)
            self.emit(signal_event(model, signal, ts))
            log.warning("drift of %s: %s", model, signal.detail)
