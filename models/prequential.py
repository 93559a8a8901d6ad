"""Prequential (test-then-train) metrics over a sliding window, and label maturity.

:class:`PrequentialWindow` keeps the last ``size`` (score, label, label age) triples a
model produced *before* it learnt from them, and reports, for a binary task, the ROC
AUC and the recall at a false-positive-rate target (fraud: recall at 1 % FPR), overall
and by label age (how long after the event its label came: chargebacks trickle in
over weeks, and a model judged only on early labels looks better than it is).

:class:`MaturityGate` holds back examples whose label may still change: a label that
says nothing happened (0) is final only once the event is older than its label type's
maturity window, in the trainer's event time (the newest label time seen); a positive
label is final when it arrives.

>>> w = PrequentialWindow(size=100, fpr_target=0.25)
>>> w.update([0.9, 0.8, 0.3, 0.2, 0.1, 0.05], [1, 1, 0, 0, 0, 0], [60_000] * 6)
>>> m = w.metrics()
>>> (m["n"], m["positives"], m["auc"], m["recall_at_fpr"])
(6, 2, 1.0, 1.0)
>>> g = MaturityGate({"fraud": 3_600_000})
>>> ex = {"model": "fraud", "label": 0.0, "event_ts": 0, "ts": 1_000}
>>> g.admit([ex]), g.admit([{**ex, "event_ts": 3_700_000, "ts": 3_700_000}])
([], [{'model': 'fraud', 'label': 0.0, 'event_ts': 0, 'ts': 1000}])
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from models.gbdt import roc_auc

__all__ = ["AGE_BUCKETS", "MaturityGate", "PrequentialWindow", "recall_at_fpr"]

#: Label-age buckets (upper bounds in ms) for metrics by label age.
AGE_BUCKETS: tuple[tuple[str, float], ...] = (
    ("lt_1h", 3_600_000), ("lt_1d", 86_400_000), ("lt_7d", 7 * 86_400_000),
    ("ge_7d", float("inf")),
)


def recall_at_fpr(scores: Any, labels: Any, fpr_target: float) -> float:
    """Recall of the lowest threshold whose false-positive rate is within the target."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    negatives = np.sort(s[~y])[::-1]
    allowed = int(np.floor(fpr_target * n_neg))  # negatives that may score above it
    threshold = negatives[allowed] if allowed < n_neg else -np.inf
    return float((s[y] > threshold).sum() / n_pos)


class PrequentialWindow:
    """The last ``size`` test-then-train outcomes of one model (see the module doc)."""

    def __init__(self, size: int = 20_000, fpr_target: float = 0.01) -> None:
        self.size, self.fpr_target = size, fpr_target
        self.scores: deque[float] = deque(maxlen=size)
        self.labels: deque[bool] = deque(maxlen=size)
        self.ages: deque[float] = deque(maxlen=size)
        self.total = 0

    def update(self, scores: Sequence[float], labels: Sequence[Any],
               ages_ms: Sequence[float]) -> None:
        for s, y, a in zip(scores, labels, ages_ms, strict=True):
            self.scores.append(float(s))
            self.labels.append(bool(y))
            self.ages.append(float(a))
        self.total += len(scores)

    def metrics(self) -> dict[str, Any]:
        """``n``, ``positives``, ``auc``, ``recall_at_fpr`` (NaN until both classes),
        and ``by_age``: the same per label-age bucket."""
        s, y, a = (np.array(self.scores), np.array(self.labels, dtype=bool),
                   np.array(self.ages))
        out = self._summary(s, y)
        by_age: dict[str, Any] = {}
        low = -np.inf
        for name, high in AGE_BUCKETS:
            mask = (a >= low) & (a < high)
            if mask.any():
                by_age[name] = self._summary(s[mask], y[mask])
            low = high
        out["by_age"] = by_age
        return out

    def flat_metrics(self, prefix: str = "") -> dict[str, float]:
        """The numbers of :meth:`metrics` as one flat mapping (for manifests, events)."""
        m = self.metrics()
        out = {f"{prefix}{k}": float(v) for k, v in m.items() if k != "by_age"}
        for bucket, values in m["by_age"].items():
            for k, v in values.items():
                out[f"{prefix}{bucket}_{k}"] = float(v)
        return out

    def _summary(self, s: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        n, pos = int(y.size), int(y.sum())
        both = 0 < pos < n
        return {"n": n, "positives": pos,
                "auc": roc_auc(s, y) if both else float("nan"),
                "recall_at_fpr": recall_at_fpr(s, y, self.fpr_target) if both
                else float("nan")}


class MaturityGate:
    """Examples in, matured examples out (see the module docstring).

    ``maturity_ms`` maps a label type (by default the example's ``model`` family) to
    its window; unknown types are final on arrival. At most ``max_waiting`` examples
    wait (the oldest are released first when it overflows, and counted in
    ``released_early``)."""

    def __init__(self, maturity_ms: Mapping[str, int], max_waiting: int = 200_000) -> None:
        self.maturity_ms = dict(maturity_ms)
        self.max_waiting = max_waiting
        self.watermark = 0
        self.waiting: list[tuple[int, int, dict[str, Any]]] = []
        self._seq = itertools.count()
        self.released_early = 0

    def label_type(self, example: Mapping[str, Any]) -> str:
        return str(example.get("label_type") or example["model"])

    def admit(self, examples: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The examples now mature: those given that are, and those waiting that the
        advanced watermark released (oldest event first)."""
        out: list[dict[str, Any]] = []
        for ex in examples:
            self.watermark = max(self.watermark, int(ex["ts"]))
        for ex in examples:
            window = self.maturity_ms.get(self.label_type(ex), 0)
            if ex["label"] >= 0.5 or window <= 0:
                out.append(ex)
            else:
                heapq.heappush(self.waiting, (int(ex["event_ts"]) + window, next(self._seq),
                                              ex))
        while self.waiting and (self.waiting[0][0] <= self.watermark
                                or len(self.waiting) > self.max_waiting):
            if self.waiting[0][0] > self.watermark:
                self.released_early += 1
            out.append(heapq.heappop(self.waiting)[2])
        return out
