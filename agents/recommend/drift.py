"""What the recommendations worker's drift monitor watches, from a batch's result.

Signals (see :class:`agents.learning.drift_events.ModelDrift`):

- ``top_score``: the ranker's score of the first item of each top-K it decided (not the
  cold-start trending lists, nor the popularity control): a ranker that stops telling
  items apart, or traffic it was not trained on, moves it;
- ``cold_share``: per response of the ``ranker`` variant, 1 if served as a cold-start
  user (no history) else 0: the monitor follows the share of new users;
- ``explore_share``: per response of the ``ranker`` variant, the fraction of its items
  that came from exploration (the bandit's slots, ``explore`` candidates).

The monitor is keyed by the ranker's model *name* (``recommend_ranker``, or
``recommend_heuristic`` before any ranker): the online trainer publishes a new version
every few thousand examples, and each would otherwise restart the reference.

>>> rows = drift_inputs(
...     [(0, {"model": "recommend_ranker@4", "items": [{"score": 0.9}, {"score": 0.2}]}),
...      (1, {"model": "trending@1", "items": [{"score": 0.6}]}),
...      (2, {"model": "popularity@1", "items": [{"score": 0.1}]})],
...     cold=[1], explored={0: 1, 1: 0})
>>> rows.model, rows.top_scores, rows.matrix.tolist()
('recommend_ranker', [0.9], [[0.0, 0.5], [1.0, 0.0]])
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.recommend.decide import COLD_MODEL, POPULARITY_MODEL

__all__ = ["FEATURES", "SCORE", "DriftInputs", "drift_inputs"]

SCORE = "top_score"
#: The matrix's columns.
FEATURES = {"cold_share": 0, "explore_share": 1}
#: Records not decided by the ranker (their scores are trending shares).
_NOT_RANKED = (COLD_MODEL.split("@")[0], POPULARITY_MODEL.split("@")[0])


@dataclass(frozen=True)
class DriftInputs:
    """``model``: the ranker's name (``None``: it decided nothing in the batch);
    ``top_scores``: one per top-K it decided; ``matrix``: one row per ``ranker``-variant
    response, columns :data:`FEATURES`."""

    model: str | None
    top_scores: list[float]
    matrix: np.ndarray


def drift_inputs(recommendations: Sequence[tuple[int, Mapping[str, Any]]],
                 cold: Collection[int], explored: Mapping[int, int]) -> DriftInputs:
    """The monitor's inputs from a :class:`~agents.recommend.decide.RecBatchResult`'s
    ``recommendations``, ``cold`` and ``explored``."""
    cold = set(cold)
    model: str | None = None
    scores: list[float] = []
    rows: list[tuple[float, float]] = []
    for pos, record in recommendations:
        name = str(record["model"]).split("@")[0]
        items = record["items"]
        if pos in explored:
            rows.append((1.0 if pos in cold else 0.0,
                         explored[pos] / len(items) if items else 0.0))
        if name in _NOT_RANKED or not items:
            continue
        if model is not None and name != model:  # the ranker failed mid-batch: keep one
            continue
        model = name
        scores.append(float(items[0]["score"]))
    matrix = np.array(rows, dtype=np.float64).reshape(-1, len(FEATURES))
    return DriftInputs(model, scores, matrix)
