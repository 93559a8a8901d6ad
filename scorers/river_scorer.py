"""Online scoring and learning with a River model.

Rows become dicts keyed by ``feature_names``; a non-finite value (NaN, inf) is left out
of its row's dict, River's way of saying "missing" (a linear model then gives it no
weight, and the scaler does not update on it).

``learn`` is prequential: each example is first scored, the score updates the running
metrics (ROC AUC, log loss), and only then does the model learn from it — so
``metrics()`` measures the model on examples it had not yet seen.

**Artefacts are pickles.** :meth:`RiverScorer.from_bytes` unpickles, which can run
arbitrary code: call it only on bytes whose digest and signature were verified, as
:meth:`models.registry.ModelRegistry.load_scorer` does. Never on bytes from a topic,
a request or an unverified file.

>>> import numpy as np
>>> scorer = RiverScorer(("x",), name="demo", version="1")
>>> float(scorer.score(np.array([[1.0]]))[0])
0.5
>>> scorer.learn(np.array([[1.0], [-1.0]] * 50), np.array([1, 0] * 50))
>>> bool(scorer.score(np.array([[1.0]]))[0] > 0.5 > scorer.score(np.array([[-1.0]]))[0])
True
>>> scorer.metrics()["n_learned"]
100.0
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np
from river import linear_model, metrics, optim, preprocessing

from scorers.base import Scores, check_labels, check_matrix, model_id
from scorers.errors import FeatureMismatchError, ScorerError

__all__ = ["RiverScorer", "default_river_model"]

_FORMAT = 1
_metrics: Any = metrics  # River's metrics are untyped: keep mypy --strict quiet about them


def default_river_model(learning_rate: float = 0.05) -> Any:
    """Standard scaling then logistic regression by SGD, weights starting at zero.

    It holds no randomness (River's linear models take no seed; a zero initialiser
    and in-order updates make it deterministic)."""
    return preprocessing.StandardScaler() | linear_model.LogisticRegression(
        optimizer=optim.SGD(learning_rate)
    )


class RiverScorer:
    """A River binary classifier behind the :class:`~scorers.base.Scorer` protocol.

    ``model`` is any River classifier with ``predict_proba_one``/``learn_one`` (a
    pipeline included); by default :func:`default_river_model`. Not thread-safe while
    learning: one trainer learns (in order), workers only score loaded copies.
    """

    kind = "river"

    def __init__(
        self,
        feature_names: Sequence[str],
        model: Any = None,
        *,
        name: str = "river",
        version: str = "0",
        auc_thresholds: int = 20,
    ) -> None:
        self.name = name
        self.version = version
        self.feature_names = tuple(feature_names)
        self.model = model if model is not None else default_river_model()
        self._auc: Any = _metrics.ROCAUC(n_thresholds=auc_thresholds)
        self._logloss: Any = _metrics.LogLoss()
        self._n_learned = 0

    @property
    def model_id(self) -> str:
        return model_id(self.name, self.version)

    def score(self, X: Any) -> Scores:
        matrix = check_matrix(X, self.feature_names)
        out = np.empty(matrix.shape[0], dtype=np.float64)
        for i, x in enumerate(self._rows(matrix)):
            out[i] = self._proba(x)
        return out

    def learn(self, X: Any, y: Any) -> None:
        """Learn the rows in order, updating the prequential metrics before each."""
        matrix = check_matrix(X, self.feature_names)
        labels = check_labels(y, matrix.shape[0]).tolist()
        for x, label in zip(self._rows(matrix), labels, strict=True):
            p = self._proba(x)
            self._auc.update(label, p)
            self._logloss.update(label, p)
            self.model.learn_one(x, label)
            self._n_learned += 1

    def metrics(self) -> dict[str, float]:
        """Prequential ROC AUC (approximate, River's thresholded estimate), log loss,
        and the number of examples learned; all three survive :meth:`to_bytes`."""
        return {
            "roc_auc": float(self._auc.get()),
            "log_loss": float(self._logloss.get()),
            "n_learned": float(self._n_learned),
        }

    def to_bytes(self) -> bytes:
        """A pickle of the model and its running metrics (see the module's warning)."""
        state = {
            "format": _FORMAT,
            "feature_names": list(self.feature_names),
            "model": self.model,
            "auc": self._auc,
            "logloss": self._logloss,
            "n_learned": self._n_learned,
        }
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def from_bytes(
        cls, data: bytes, *, name: str, version: str, feature_names: Sequence[str]
    ) -> RiverScorer:
        """Rebuild from :meth:`to_bytes`. **Unpickles**: verified bytes only."""
        try:
            state = pickle.loads(data)  # noqa: S301 - verified by the registry first
        except Exception as exc:
            raise ScorerError(f"{model_id(name, version)}: not a River artefact: {exc}") from exc
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ScorerError(f"{model_id(name, version)}: unknown River artefact format")
        if tuple(state["feature_names"]) != tuple(feature_names):
            raise FeatureMismatchError(
                f"{model_id(name, version)}: artefact features {state['feature_names']} "
                f"differ from {list(feature_names)}"
            )
        scorer = cls(feature_names, state["model"], name=name, version=version)
        scorer._auc = state["auc"]
        scorer._logloss = state["logloss"]
        scorer._n_learned = int(state["n_learned"])
        return scorer

    def __repr__(self) -> str:
        return f"RiverScorer({self.model_id!r}, features={len(self.feature_names)})"

    def _rows(self, matrix: np.ndarray[Any, Any]) -> list[dict[str, float]]:
        names = self.feature_names
        return [
            {k: v for k, v in zip(names, row, strict=True) if math.isfinite(v)}
            for row in matrix.astype(np.float64).tolist()
        ]

    def _proba(self, x: dict[str, float]) -> float:
        p = float(self.model.predict_proba_one(x).get(True, 0.0))
        return min(max(p, 0.0), 1.0)
