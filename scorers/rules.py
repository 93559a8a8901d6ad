"""Transparent fraud rules over named features: a score in [0, 1] and its reasons.

The rules read *logical inputs*; ``columns`` maps each to a feature name of the matrix
(``None`` switches an input off, and the rules that need it with it). The defaults are
the column names of ``agents.fraud.features.FEATURE_NAMES`` (not imported: ``scorers``
may not depend on ``agents``):

==================  ======================  =================================================
logical input       default feature name    meaning
==================  ======================  =================================================
``count_1m``        ``count_1m``            the card's transactions in the last minute
``merchants_1h``    ``merchants_1h``        distinct merchants of the card in the last hour
``amount``          ``amount_usd``          this transaction's amount
``median_amount``   ``median_amount_usd``   the card's usual (median) amount; NaN or 0 = none
``new_device``      ``device_is_new``       1 if the card never used this device before
``new_country``     ``country_is_new``      1 if the card never paid from this country before
``foreign_country`` ``is_foreign``          1 if the country is not the card's home country
==================  ======================  =================================================

The rules, their default thresholds and weights (each weight is the probability of fraud
the rule alone stands for):

======================  =============================================================  ======
rule                    fires when (default threshold)                                 weight
======================  =============================================================  ======
``velocity_1m``         ``count_1m >= 5``                                              0.45
``merchants_1h``        ``merchants_1h >= 4``                                          0.35
``amount_vs_profile``   ``amount / median_amount >= 5`` (only with a median > 0)       0.35
``high_amount``         ``amount >= 1000``                                             0.25
``new_device_country``  ``new_device`` and (``new_country`` or ``foreign_country``)    0.40
======================  =============================================================  ======

Fired rules combine as a noisy OR over a base rate ``b`` (default 0.02):
``score = 1 - (1 - b) * prod(1 - weight)``, so the score stays in [0, 1], only rises as
rules fire, and one rule alone gives about its weight. A NaN input fires nothing.

>>> import numpy as np
>>> names = ("count_1m", "amount_usd", "median_amount_usd", "device_is_new", "country_is_new")
>>> rules = RulesScorer(names, columns={"merchants_1h": None, "foreign_country": None})
>>> X = np.array([[1, 20, 25, 0, 0], [6, 900, 30, 1, 1]], dtype=np.float32)
>>> scores, reasons = rules.score_with_reasons(X)
>>> [round(float(s), 3) for s in scores]
[0.02, 0.79]
>>> reasons
[[], ['rule:velocity_1m', 'rule:amount_vs_profile', 'rule:new_device_country']]
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from scorers.base import FloatMatrix, Scores, check_labels, check_matrix, model_id
from scorers.errors import FeatureMismatchError, ScorerError

__all__ = [
    "DEFAULT_COLUMNS",
    "DEFAULT_RULES",
    "DEFAULT_THRESHOLDS",
    "DEFAULT_WEIGHTS",
    "RulesScorer",
]

DEFAULT_COLUMNS: Mapping[str, str | None] = {
    "count_1m": "count_1m",
    "merchants_1h": "merchants_1h",
    "amount": "amount_usd",
    "median_amount": "median_amount_usd",
    "new_device": "device_is_new",
    "new_country": "country_is_new",
    "foreign_country": "is_foreign",
}
DEFAULT_THRESHOLDS: Mapping[str, float] = {
    "count_1m": 5.0,
    "merchants_1h": 4.0,
    "amount_ratio": 5.0,
    "high_amount": 1000.0,
}
DEFAULT_WEIGHTS: Mapping[str, float] = {
    "velocity_1m": 0.45,
    "merchants_1h": 0.35,
    "amount_vs_profile": 0.35,
    "high_amount": 0.25,
    "new_device_country": 0.40,
}
#: Every rule, in the order reasons are listed, with the logical inputs it needs
#: (``new_device_country`` needs ``new_device`` and at least one of the country inputs).
DEFAULT_RULES: Mapping[str, tuple[str, ...]] = {
    "velocity_1m": ("count_1m",),
    "merchants_1h": ("merchants_1h",),
    "amount_vs_profile": ("amount", "median_amount"),
    "high_amount": ("amount",),
    "new_device_country": ("new_device",),
}
_FORMAT = 1
_Mask = npt.NDArray[np.bool_]


def _merged(
    name: str, defaults: Mapping[str, Any], given: Mapping[str, Any] | None
) -> dict[str, Any]:
    unknown = set(given or {}) - set(defaults)
    if unknown:
        raise ScorerError(f"unknown {name}: {sorted(unknown)} (known: {sorted(defaults)})")
    return {**defaults, **(given or {})}


class RulesScorer:
    """The rules above as a static :class:`~scorers.base.Scorer` (``kind = "rules"``).

    ``columns``, ``thresholds`` and ``weights`` override the defaults key by key; a
    mapped column missing from ``feature_names`` is an error (map it to ``None`` to
    switch it off). The configuration is the artefact: :meth:`to_bytes` is its JSON.
    """

    kind = "rules"

    def __init__(
        self,
        feature_names: Sequence[str],
        *,
        columns: Mapping[str, str | None] | None = None,
        thresholds: Mapping[str, float] | None = None,
        weights: Mapping[str, float] | None = None,
        base: float = 0.02,
        name: str = "rules",
        version: str = "1",
    ) -> None:
        self.name = name
        self.version = version
        self.feature_names = tuple(feature_names)
        self.columns: dict[str, str | None] = _merged("columns", DEFAULT_COLUMNS, columns)
        self.thresholds = {
            k: float(v) for k, v in _merged("thresholds", DEFAULT_THRESHOLDS, thresholds).items()
        }
        self.weights = {
            k: float(v) for k, v in _merged("weights", DEFAULT_WEIGHTS, weights).items()
        }
        self.base = float(base)
        if not 0.0 <= self.base < 1.0 or not all(0.0 <= w <= 1.0 for w in self.weights.values()):
            raise ScorerError("base must be in [0, 1) and every weight in [0, 1]")
        index = {f: i for i, f in enumerate(self.feature_names)}
        missing = {k: c for k, c in self.columns.items() if c is not None and c not in index}
        if missing:
            raise FeatureMismatchError(
                f"rules columns not among the features: {missing}; map them or set them None"
            )
        self._index = {k: index[c] for k, c in self.columns.items() if c is not None}
        self.active_rules = tuple(
            rule
            for rule, needs in DEFAULT_RULES.items()
            if all(n in self._index for n in needs)
            and (
                rule != "new_device_country"
                or "new_country" in self._index
                or "foreign_country" in self._index
            )
        )

    @property
    def model_id(self) -> str:
        return model_id(self.name, self.version)

    def score(self, X: Any) -> Scores:
        matrix = check_matrix(X, self.feature_names)
        return self._combine(self._fired(matrix), matrix.shape[0])

    def score_with_reasons(self, X: Any) -> tuple[Scores, list[list[str]]]:
        """Scores, and for each row the fired rules as ``"rule:<name>"`` in rule order."""
        matrix = check_matrix(X, self.feature_names)
        fired = self._fired(matrix)
        reasons: list[list[str]] = [[] for _ in range(matrix.shape[0])]
        for rule, mask in fired.items():
            for i in np.flatnonzero(mask).tolist():
                reasons[i].append(f"rule:{rule}")
        return self._combine(fired, matrix.shape[0]), reasons

    def learn(self, X: Any, y: Any) -> None:
        """Static: checks its arguments and learns nothing."""
        check_labels(y, check_matrix(X, self.feature_names).shape[0])

    def params(self) -> dict[str, Any]:
        """The configuration, as JSON-ready values (what :meth:`to_bytes` encodes)."""
        return {
            "format": _FORMAT,
            "columns": dict(self.columns),
            "thresholds": dict(self.thresholds),
            "weights": dict(self.weights),
            "base": self.base,
        }

    def to_bytes(self) -> bytes:
        return json.dumps(self.params(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], *, name: str, version: str, feature_names: Sequence[str]
    ) -> RulesScorer:
        if params.get("format") != _FORMAT:
            raise ScorerError(f"{model_id(name, version)}: unknown rules format")
        return cls(
            feature_names,
            columns=params["columns"],
            thresholds=params["thresholds"],
            weights=params["weights"],
            base=params["base"],
            name=name,
            version=version,
        )

    @classmethod
    def from_bytes(
        cls, data: bytes, *, name: str, version: str, feature_names: Sequence[str]
    ) -> RulesScorer:
        try:
            params = json.loads(data)
        except ValueError as exc:
            raise ScorerError(f"{model_id(name, version)}: not a rules artefact") from exc
        return cls.from_params(params, name=name, version=version, feature_names=feature_names)

    def __repr__(self) -> str:
        return f"RulesScorer({self.model_id!r}, rules={list(self.active_rules)})"

    def _col(self, X: FloatMatrix, key: str) -> npt.NDArray[np.float64]:
        return X[:, self._index[key]].astype(np.float64)

    def _fired(self, X: FloatMatrix) -> dict[str, _Mask]:
        t, col = self.thresholds, self._col
        fired: dict[str, _Mask] = {}
        with np.errstate(invalid="ignore", divide="ignore"):
            for rule in self.active_rules:
                if rule == "velocity_1m":
                    fired[rule] = col(X, "count_1m") >= t["count_1m"]
                elif rule == "merchants_1h":
                    fired[rule] = col(X, "merchants_1h") >= t["merchants_1h"]
                elif rule == "amount_vs_profile":
                    median = col(X, "median_amount")
                    ratio = np.where(median > 0, col(X, "amount") / median, np.nan)
                    fired[rule] = ratio >= t["amount_ratio"]
                elif rule == "high_amount":
                    fired[rule] = col(X, "amount") >= t["high_amount"]
                elif rule == "new_device_country":
                    elsewhere = np.zeros(X.shape[0], dtype=bool)
                    for key in ("new_country", "foreign_country"):
                        if key in self._index:
                            elsewhere |= col(X, key) >= 0.5
                    fired[rule] = (col(X, "new_device") >= 0.5) & elsewhere
        return fired

    def _combine(self, fired: Mapping[str, _Mask], n: int) -> Scores:
        keep = np.full(n, 1.0 - self.base)
        for rule, mask in fired.items():
            keep *= np.where(mask, 1.0 - self.weights[rule], 1.0)
        return np.clip(1.0 - keep, 0.0, 1.0)
