"""The one protocol every scorer meets, and the checks they share.

A scorer maps a float32 feature matrix ``X`` of shape ``(n, F)``, whose columns are
``feature_names`` in that order, to ``n`` float64 probabilities of the positive class
(fraud, unsafe, click...) in ``[0, 1]``. Scores are batch-shaped so that a worker scores a
whole poll of events in one call; row ``i`` of a batch scores exactly as it would alone.

>>> import numpy as np
>>> X = check_matrix([[1, 2], [3, 4]], ("a", "b"))
>>> X.dtype, X.shape
(dtype('float32'), (2, 2))
>>> check_matrix(np.zeros((1, 3)), ("a", "b"))
Traceback (most recent call last):
...
scorers.errors.FeatureMismatchError: expected 2 feature columns (a, b), got shape (1, 3)
>>> model_id("fraud_gbdt", "3")
'fraud_gbdt@3'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from scorers.errors import FeatureMismatchError

__all__ = ["FloatMatrix", "Scores", "Scorer", "check_labels", "check_matrix", "model_id"]

FloatMatrix = npt.NDArray[np.float32]
Scores = npt.NDArray[np.float64]


@runtime_checkable
class Scorer(Protocol):
    """What the pipelines, the router and the registry rely on.

    - ``name``/``version`` identify the model (``model_id`` is ``"name@version"``), and
      ``kind`` is the registry's loader key (``"onnx"``, ``"river"``, ``"rules"``...).
    - ``score(X)`` never mutates the scorer; it is safe to call from several threads.
    - ``learn(X, y)`` updates in row order where the scorer learns online, and is a
      no-op for static scorers.
    - ``to_bytes()`` is the artefact the registry stores; each implementation has a
      ``from_bytes(data, *, name, version, feature_names)`` classmethod that rebuilds
      it, and the rebuilt scorer gives identical scores.
    """

    name: str
    version: str
    kind: str
    feature_names: tuple[str, ...]

    @property
    def model_id(self) -> str: ...

    def score(self, X: Any) -> Scores: ...

    def learn(self, X: Any, y: Any) -> None: ...

    def to_bytes(self) -> bytes: ...


def model_id(name: str, version: str) -> str:
    """The id a decision records: ``"name@version"``."""
    return f"{name}@{version}"


def check_matrix(X: Any, feature_names: Sequence[str]) -> FloatMatrix:
    """``X`` as a C-contiguous float32 matrix of ``len(feature_names)`` columns, or
    :class:`FeatureMismatchError`. An empty batch of shape ``(0, F)`` is valid."""
    arr = np.ascontiguousarray(X, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != len(feature_names):
        raise FeatureMismatchError(
            f"expected {len(feature_names)} feature columns ({', '.join(feature_names)}), "
            f"got shape {arr.shape}"
        )
    return arr


def check_labels(y: Any, n: int) -> npt.NDArray[np.bool_]:
    """Labels as a boolean vector of length ``n`` (anything truthy is positive)."""
    arr = np.asarray(y).reshape(-1)
    if arr.shape[0] != n:
        raise FeatureMismatchError(f"expected {n} labels, got {arr.shape[0]}")
    return arr.astype(bool)
