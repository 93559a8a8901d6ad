"""Drift detection for any pipeline: River detectors plus a population-stability check.

Signals (each with a state ``0`` stable, ``1`` warning, ``2`` drift):

- ``score`` (renamed, or left out, with ``score=``) and each key feature: ADWIN (River)
  on the stream of values, and the PSI (population stability index) of the latest
  ``window`` values against the training reference (:func:`reference_histograms`,
  stored with the model version as ``reference.json``; without one, the first
  ``window`` live values are the reference);
- error rates, fed with labelled outcomes (:meth:`DriftMonitor.observe_outcomes`): the
  miss rate on positives (ADWIN) and the false-alarm rate on negatives (Page-Hinkley),
  the signals a pattern shift shows first when the model does not see the new pattern
  (left out with ``error_rates=False``).

PSI below 0.1 is stable, 0.1-0.25 a warning, above 0.25 drift (the usual reading).
A detector that fires sets its signal to drift for the next ``window`` observations.
:meth:`DriftMonitor.observe` returns a :class:`DriftSignal` whenever a signal's state
changes, which the caller turns into a ``model-events`` record and a gauge.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> ref = reference_histograms({"score": rng.uniform(size=5000)})
>>> round(psi(ref["score"], rng.uniform(size=5000)), 3) < 0.1
True
>>> psi(ref["score"], rng.uniform(0.5, 1.0, size=5000)) > 0.25
True
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from river import drift

__all__ = ["DriftMonitor", "DriftSignal", "PSI_DRIFT", "PSI_WARNING", "psi",
           "reference_histograms", "reference_json"]

PSI_WARNING = 0.1
PSI_DRIFT = 0.25
STATES = {0: "stable", 1: "warning", 2: "drift"}
_EPS = 1e-4


def reference_histograms(columns: Mapping[str, Any], bins: int = 10) -> dict[str, Any]:
    """Quantile-binned histograms of each column: ``{name: {"edges", "fractions"}}``.
    Ties collapse bins (a 0/1 feature gets two), so every bin holds data."""
    out: dict[str, Any] = {}
    for name, values in columns.items():
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        v = v[np.isfinite(v)]
        if v.size == 0:
            continue
        edges = np.unique(np.quantile(v, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
        counts = np.bincount(np.searchsorted(edges, v, side="left"), minlength=edges.size + 1)
        out[name] = {"edges": edges.tolist(), "fractions": (counts / v.size).tolist()}
    return out


def reference_json(columns: Mapping[str, Any], bins: int = 10) -> bytes:
    """:func:`reference_histograms` as the bytes of a registry ``reference.json``."""
    return json.dumps(reference_histograms(columns, bins), sort_keys=True).encode()


def psi(reference: Mapping[str, Any], values: Any) -> float:
    """Population stability index of ``values`` against a reference histogram."""
    edges = np.asarray(reference["edges"], dtype=np.float64)
    expected = np.asarray(reference["fractions"], dtype=np.float64)
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0
    counts = np.bincount(np.searchsorted(edges, v, side="left"), minlength=expected.size)
    actual = np.maximum(counts[:expected.size] / v.size, _EPS)
    expected = np.maximum(expected, _EPS)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


@dataclass(frozen=True)
class DriftSignal:
    """A signal whose state changed: what, which detector, the new state, and the value
    that decided it (the PSI, or the detector's estimate)."""

    signal: str
    detector: str
    state: int
    value: float
    detail: str

    @property
    def state_name(self) -> str:
        return STATES[self.state]


class _Signal:
    def __init__(self, name: str, detector: Any, window: int,
                 reference: Mapping[str, Any] | None, use_psi: bool = True) -> None:
        self.name, self.detector, self.window = name, detector, window
        self.reference = reference
        self.use_psi = use_psi
        self.recent: deque[float] = deque(maxlen=window)
        self.seen = 0
        self.fired_at: int | None = None
        self.psi = 0.0
        self.state = 0
        self.detector_value = 0.0

    def update(self, values: Iterable[float]) -> None:
        for x in values:
            self.seen += 1
            self.recent.append(x)
            self.detector.update(x)
            if self.detector.drift_detected:
                self.fired_at = self.seen
                self.detector_value = float(getattr(self.detector, "estimation", x))
        if not self.use_psi:
            return
        if self.reference is None and self.seen >= self.window:
            self.reference = reference_histograms({"v": list(self.recent)})["v"]
        elif self.reference is not None and len(self.recent) >= self.window // 2:
            self.psi = psi(self.reference, list(self.recent))

    def current(self) -> tuple[int, str, float]:
        fired = self.fired_at is not None and self.seen - self.fired_at < self.window
        psi_state = 2 if self.psi > PSI_DRIFT else 1 if self.psi > PSI_WARNING else 0
        if fired:
            return 2, type(self.detector).__name__, self.detector_value
        if not self.use_psi:
            return 0, type(self.detector).__name__, self.detector_value
        return psi_state, "PSI", self.psi


class DriftMonitor:
    """Detectors over one model's inputs, outputs and errors (see the module docstring).

    ``features`` maps key feature names to their column in the matrices given to
    :meth:`observe`; ``reference`` holds :func:`reference_histograms` of ``score`` and
    those features on the training data (missing ones are learnt from live data).
    ``score`` names the score signal (``None``: features only); ``error_rates=False``
    leaves out the error-rate signals (a monitor of live traffic without labels).
    """

    def __init__(self, features: Mapping[str, int] | None = None,
                 reference: Mapping[str, Any] | None = None, *, window: int = 2_000,
                 adwin_delta: float = 0.001, ph_threshold: float = 25.0,
                 score: str | None = "score", error_rates: bool = True) -> None:
        reference = reference or {}
        self.features = dict(features or {})
        self.window = window
        self.score = score
        self._live = (*(() if score is None else (score,)), *self.features)
        self.signals: dict[str, _Signal] = {
            name: _Signal(name, drift.ADWIN(delta=adwin_delta), window, reference.get(name))
            for name in self._live
        }
        self._error_signals: tuple[str, ...] = ()
        if not error_rates:
            return
        # Error rates have no meaningful histogram: only their detectors speak.
        self.signals["miss_rate"] = _Signal("miss_rate", drift.ADWIN(delta=adwin_delta),
                                            window, None, use_psi=False)
        self.signals["false_alarm_rate"] = _Signal(
            "false_alarm_rate", drift.PageHinkley(threshold=ph_threshold, min_instances=200),
            window, None, use_psi=False)
        self._error_signals = ("miss_rate", "false_alarm_rate")

    def observe(self, scores: Sequence[float] | np.ndarray | None, X: np.ndarray | None = None
                ) -> list[DriftSignal]:
        """Feed a batch of scores (and a feature matrix: its rows need not be the
        scores'); returns state changes."""
        if self.score is not None and scores is not None:
            self.signals[self.score].update(
                float(s) for s in np.asarray(scores).reshape(-1))
        if X is not None and X.size:
            for name, column in self.features.items():
                self.signals[name].update(X[:, column].astype(np.float64).tolist())
        return self._changes(self._live)

    def observe_outcomes(self, flagged: Sequence[bool], labels: Sequence[bool]
                         ) -> list[DriftSignal]:
        """Feed labelled outcomes: whether the model flagged each event, and the truth
        (nothing to report for a monitor built with ``error_rates=False``)."""
        if not self._error_signals:
            return []
        misses = [0.0 if f else 1.0 for f, y in zip(flagged, labels, strict=True) if y]
        alarms = [1.0 if f else 0.0 for f, y in zip(flagged, labels, strict=True) if not y]
        self.signals["miss_rate"].update(misses)
        self.signals["false_alarm_rate"].update(alarms)
        return self._changes(self._error_signals)

    @property
    def state(self) -> int:
        """The worst state over every signal."""
        return max((s.state for s in self.signals.values()), default=0)

    def states(self) -> dict[str, int]:
        return {name: s.state for name, s in self.signals.items()}

    def _changes(self, names: Iterable[str]) -> list[DriftSignal]:
        out = []
        for name in names:
            sig = self.signals[name]
            state, detector, value = sig.current()
            if state != sig.state:
                sig.state = state
                value = value if math.isfinite(value) else 0.0
                out.append(DriftSignal(name, detector, state, value,
                                       f"{name}: {STATES[state]} ({detector} {value:.4f})"))
        return out
