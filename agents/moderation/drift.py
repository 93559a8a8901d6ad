"""What the moderation worker's drift monitor watches, from a micro-batch's decisions.

One row per upload the classifier judged (not those the loader refused): the
classifier's probability of each policy category (its ``policy_categories``: not the
neutral ones), and 1 if the published decision is REVIEW else 0, so the monitor follows
the REVIEW share, the reviewers' load (a drifted classifier or stale thresholds show
there first). Signals are named after the columns (``nudity``, ``violence``, ...,
``review_share``); see :class:`agents.learning.drift_events.ModelDrift`.

>>> from types import SimpleNamespace as NS
>>> cols = drift_features(("nudity", "violence"))
>>> cols
{'nudity': 0, 'violence': 1, 'review_share': 2}
>>> decided = [NS(position=0, decision={"decision": "REVIEW"}),
...            NS(position=1, decision={"decision": "REJECT"}),
...            NS(position=2, decision={"decision": "APPROVE"})]
>>> scored = {0: NS(scores={"nudity": 0.5, "violence": 0.1}),
...           2: NS(scores={"nudity": 0.01})}
>>> drift_matrix(decided, scored, cols).tolist()
[[0.5, 0.1, 1.0], [0.01, 0.0, 0.0]]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["REVIEW_SHARE", "drift_features", "drift_matrix"]

REVIEW_SHARE = "review_share"


def drift_features(categories: Iterable[str]) -> dict[str, int]:
    """The matrix's columns: each category, then :data:`REVIEW_SHARE`."""
    names = [c for c in categories if c != REVIEW_SHARE]
    return {**{c: i for i, c in enumerate(names)}, REVIEW_SHARE: len(names)}


def drift_matrix(decided: Sequence[Any], scored: Mapping[int, Any],
                 features: Mapping[str, int]) -> np.ndarray:
    """Rows for the decisions (:class:`~agents.moderation.decide.Decided`) of the
    uploads in ``scored`` (position -> :class:`~agents.moderation.features.ScoredImage`)."""
    rows = []
    for d in decided:
        image = scored.get(d.position)
        if image is None:
            continue
        row = [0.0] * len(features)
        for name, column in features.items():
            row[column] = (1.0 if d.decision["decision"] == "REVIEW" else 0.0) \
                if name == REVIEW_SHARE else float(image.scores.get(name, 0.0))
        rows.append(row)
    return np.array(rows, dtype=np.float64).reshape(-1, len(features))
