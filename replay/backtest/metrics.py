"""Quality figures of a fraud backtest, pure numpy: what the report shows.

``flagged`` means REVIEW or DECLINE (someone or something stops the payment).

>>> import numpy as np
>>> scores = np.array([0.1, 0.4, 0.6, 0.9]); y = np.array([False, False, True, True])
>>> c = threshold_curve(scores, y, [0.0, 0.5, 1.0])
>>> c["recall"], c["fpr"], c["precision"]
([1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.5, 1.0, 1.0])
>>> confusion(["APPROVE", "REVIEW", "DECLINE", "APPROVE"], y)["fraud"]
{'APPROVE': 1, 'REVIEW': 0, 'DECLINE': 1}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["OUTCOMES", "Costs", "threshold_curve", "pr_curve", "histograms", "confusion",
           "rates", "cost", "cost_curve", "describe", "DEFAULT_GRID"]

OUTCOMES = ("APPROVE", "REVIEW", "DECLINE")
#: Thresholds of the recall / FPR / precision curves (0.00 .. 1.00, step 0.01).
DEFAULT_GRID: tuple[float, ...] = tuple(round(i / 100, 2) for i in range(101))


@dataclass(frozen=True)
class Costs:
    """What an outcome costs, in USD: a missed fraud costs its amount (chargeback) plus
    ``chargeback_fee``; each REVIEW costs ``review`` (an analyst's time); a legitimate
    payment declined costs ``false_decline`` (a lost sale and an unhappy customer)."""

    chargeback_fee: float = 15.0
    review: float = 2.0
    false_decline: float = 25.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def threshold_curve(scores: np.ndarray, y: np.ndarray, grid: Sequence[float] = DEFAULT_GRID
                    ) -> dict[str, list[float]]:
    """Recall, false-positive rate, precision and share flagged if everything scoring
    ``>= t`` were flagged, for each ``t`` of ``grid`` (precision 1.0 when none is)."""
    order = np.sort(scores)
    pos = np.sort(scores[y])
    neg = np.sort(scores[~y])
    t = np.asarray(grid, dtype=float)
    tp = len(pos) - np.searchsorted(pos, t, side="left")
    fp = len(neg) - np.searchsorted(neg, t, side="left")
    flagged = len(order) - np.searchsorted(order, t, side="left")
    recall = tp / max(len(pos), 1)
    fpr = fp / max(len(neg), 1)
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
    return {"threshold": [float(v) for v in t], "recall": _r(recall), "fpr": _r(fpr),
            "precision": _r(precision), "flagged": [int(v) for v in flagged]}


def pr_curve(scores: np.ndarray, y: np.ndarray, max_points: int = 200
             ) -> dict[str, list[float]]:
    """Precision against recall over every distinct score (thinned to ``max_points``)."""
    if not len(scores) or not y.any():
        return {"recall": [], "precision": [], "threshold": []}
    order = np.argsort(-scores, kind="stable")
    s, yy = scores[order], y[order]
    tp = np.cumsum(yy)
    fp = np.cumsum(~yy)
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last row of each distinct score
    recall = tp[last] / yy.sum()
    precision = tp[last] / (tp[last] + fp[last])
    keep = np.unique(np.linspace(0, len(last) - 1, min(max_points, len(last))).astype(int))
    return {"recall": _r(recall[keep]), "precision": _r(precision[keep]),
            "threshold": _r(s[last][keep])}


def histograms(scores: np.ndarray, y: np.ndarray, bins: int = 40) -> dict[str, list[float]]:
    """Counts of scores in ``bins`` equal bins over [0, 1], fraud and legitimate apart."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    fraud, _ = np.histogram(np.clip(scores[y], 0, 1), edges)
    legit, _ = np.histogram(np.clip(scores[~y], 0, 1), edges)
    return {"edges": _r(edges), "fraud": [int(v) for v in fraud],
            "legit": [int(v) for v in legit]}


def confusion(decisions: Sequence[str], y: np.ndarray) -> dict[str, dict[str, int]]:
    """Counts of each decision among fraudulent and legitimate transactions."""
    out = {"fraud": dict.fromkeys(OUTCOMES, 0), "legit": dict.fromkeys(OUTCOMES, 0)}
    for decision, fraud in zip(decisions, y.tolist(), strict=True):
        out["fraud" if fraud else "legit"][decision] += 1
    return out


def rates(conf: dict[str, dict[str, int]]) -> dict[str, float]:
    """Recall, false-positive rate and precision of flagging (REVIEW or DECLINE)."""
    tp = conf["fraud"]["REVIEW"] + conf["fraud"]["DECLINE"]
    fn = conf["fraud"]["APPROVE"]
    fp = conf["legit"]["REVIEW"] + conf["legit"]["DECLINE"]
    tn = conf["legit"]["APPROVE"]
    return {"recall": tp / (tp + fn) if tp + fn else 0.0,
            "fpr": fp / (fp + tn) if fp + tn else 0.0,
            "precision": tp / (tp + fp) if tp + fp else 1.0,
            "decline_recall": conf["fraud"]["DECLINE"] / (tp + fn) if tp + fn else 0.0,
            "decline_fpr": conf["legit"]["DECLINE"] / (fp + tn) if fp + tn else 0.0}


def cost(decisions: Sequence[str], y: np.ndarray, amounts_usd: np.ndarray, costs: Costs
         ) -> dict[str, float]:
    """The cost of the decisions (see :class:`Costs`), by component and in total."""
    d = np.asarray(decisions)
    missed = y & (d == "APPROVE")
    parts = {
        "missed_fraud": float(amounts_usd[missed].sum() + costs.chargeback_fee * missed.sum()),
        "reviews": float(costs.review * (d == "REVIEW").sum()),
        "false_declines": float(costs.false_decline * ((~y) & (d == "DECLINE")).sum()),
    }
    parts["total"] = sum(parts.values())
    return parts


def cost_curve(scores: np.ndarray, y: np.ndarray, amounts_usd: np.ndarray, costs: Costs,
               decline: float, grid: Sequence[float] = DEFAULT_GRID) -> list[float]:
    """Total cost if REVIEW started at each threshold of ``grid`` (DECLINE kept)."""
    out = []
    for t in grid:
        declined = scores >= max(decline, t)
        reviewed = (scores >= t) & ~declined
        missed = y & (scores < t)
        out.append(round(float(amounts_usd[missed].sum() + costs.chargeback_fee * missed.sum()
                               + costs.review * reviewed.sum()
                               + costs.false_decline * (declined & ~y).sum()), 2))
    return out


def _r(values: Any) -> list[float]:
    return [round(float(v), 6) for v in values]


def describe(values: Sequence[float]) -> dict[str, Any]:
    """Count and quantiles of a list (e.g. label delays in ms)."""
    if not values:
        return {"n": 0}
    a = np.asarray(values, dtype=float)
    return {"n": int(len(a)), "min": float(a.min()), "p50": float(np.percentile(a, 50)),
            "p90": float(np.percentile(a, 90)), "max": float(a.max())}
