"""Reviewer verdicts back into the pipeline: pure parts.

* :func:`training_example`: a ``moderation-reviews`` verdict joined with what the models
  said at decision time (category scores, the classifier's features) → the
  ``training-examples`` record (family ``moderation``; label 1 = REJECT). Those records
  feed :func:`recalibrate` (thresholds, online) and ``python -m models.moderation
  --examples`` (retraining the classifier offline).
* Verdict memory: each verdict is remembered by the image's 256-bit difference hash,
  split into bands (:func:`band_keys`) so that a near-duplicate is found with one MGET
  of its own bands; :func:`best_match` picks the closest remembered verdict.
* :func:`recalibrate`: new per-category thresholds from verdicts and a sample of recent
  traffic. ``reject`` is the lowest score whose reviewed precision (share of REJECT
  verdicts at or above it) holds ``min_precision`` with ``min_support`` examples;
  ``approve`` is lowered below a confident miss (an APPROVE decision a reviewer
  rejected, found by audit) but never so far that the review band takes more than the
  category's share of ``capacity`` (a fraction of all uploads) of recent traffic.

>>> keys = band_keys(0xFFFF)
>>> len(keys), keys[0]
(8, 'b0:0000ffff')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from agents.moderation.decide import CategoryThresholds, MemoryHit
from agents.moderation.features import HASH_BITS, hamming

__all__ = ["BANDS", "MODEL_FAMILY", "band_keys", "best_match", "recalibrate",
           "remember", "training_example"]

MODEL_FAMILY = "moderation"
BANDS = 8
_BAND_BITS = HASH_BITS // BANDS
MAX_DISTANCE = 12  # of 256 bits: re-encodes and resizes stay well under it
BUCKET_CAP = 64
_GRID = np.round(np.arange(0.05, 0.991, 0.01), 2)


def training_example(provenance: Mapping[str, Any], verdict: str, label_ts: int
                     ) -> dict[str, Any]:
    """The ``training-examples`` record of a decided upload and its reviewer verdict."""
    features = {f"score.{k}": float(v) for k, v in provenance["scores"].items()}
    features.update({k: float(v) for k, v in provenance.get("features", {}).items()})
    features["decided_review"] = 1.0 if provenance["decision"] == "REVIEW" else 0.0
    features["decided_approve"] = 1.0 if provenance["decision"] == "APPROVE" else 0.0
    top = max(provenance["scores"].values(), default=0.0)
    return {"example_id": provenance["upload_id"], "model": MODEL_FAMILY,
            "entity_id": provenance.get("seller_id", ""), "features": features,
            "label": 1.0 if verdict == "REJECT" else 0.0, "score": float(top),
            "decided_by": provenance["model"], "event_ts": int(provenance["ts"]),
            "ts": int(label_ts)}


# -- verdict memory ------------------------------------------------------------------

def band_keys(phash: int) -> list[str]:
    """The Redis keys of a hash's bands (``b<i>:<hex>``)."""
    mask = (1 << _BAND_BITS) - 1
    width = _BAND_BITS // 4
    return [f"b{i}:{(phash >> (i * _BAND_BITS)) & mask:0{width}x}" for i in range(BANDS)]


def remember(buckets: Mapping[str, Mapping[str, Any]], phash: int, verdict: str,
             upload_id: str, ts: int) -> dict[str, dict[str, Any]]:
    """The updated bucket values to store after a verdict (newest first, capped)."""
    entry = [format(phash, "x"), verdict, upload_id, ts]
    out = {}
    for key in band_keys(phash):
        old = [e for e in (buckets.get(key) or {}).get("entries", []) if e[2] != upload_id]
        out[key] = {"entries": [entry, *old][:BUCKET_CAP]}
    return out


def best_match(phash: int, buckets: Mapping[str, Mapping[str, Any]], exclude: str = "",
               max_distance: int = MAX_DISTANCE) -> MemoryHit | None:
    """The closest remembered verdict within ``max_distance`` bits (the newest wins a
    tie), or ``None``."""
    best: MemoryHit | None = None
    for key in band_keys(phash):
        for hex_hash, verdict, upload_id, _ts in (buckets.get(key) or {}).get("entries", []):
            if upload_id == exclude:
                continue
            d = hamming(phash, int(hex_hash, 16))
            if d <= max_distance and (best is None or d < best.distance):
                best = MemoryHit(verdict, upload_id, d)
    return best


# -- thresholds ----------------------------------------------------------------------

def recalibrate(examples: Sequence[Mapping[str, Any]],
                recent: Iterable[Mapping[str, float]],
                current: Mapping[str, CategoryThresholds], *, capacity: float,
                min_precision: float, min_support: int = 5
                ) -> dict[str, CategoryThresholds]:
    """New thresholds (see the module docstring). ``examples`` are training-example
    records; ``recent`` the category scores of a sample of recent uploads."""
    recent_list = list(recent)
    categories = sorted(current)
    share = capacity / max(1, len(categories))
    out = dict(current)
    for c in categories:
        t = current[c]
        scores = np.array([ex["features"].get(f"score.{c}", 0.0) for ex in examples])
        rejected = np.array([ex["label"] >= 0.5 for ex in examples], dtype=bool)
        reject = t.reject
        if len(scores):
            reject = _reject_threshold(scores, rejected, t, min_precision, min_support)
        approve = t.approve
        misses = [ex["features"].get(f"score.{c}", 0.0) for ex in examples
                  if ex["label"] >= 0.5 and ex["features"].get("decided_approve", 0.0) >= 0.5
                  and _top(ex) == c]
        if misses:
            approve = min(approve, max(0.02, min(misses) - 0.01))
        if recent_list:
            traffic = np.array([r.get(c, 0.0) for r in recent_list])
            floor = _capacity_floor(traffic, reject, share)
            approve = max(approve, floor)
        approve = min(approve, reject - 0.05)
        out[c] = CategoryThresholds(round(max(0.01, approve), 4), round(reject, 4))
    return out


def _top(example: Mapping[str, Any]) -> str:
    scores = {k[6:]: v for k, v in example["features"].items() if k.startswith("score.")}
    return max(scores, key=lambda k: scores[k]) if scores else ""


def _reject_threshold(scores: np.ndarray, rejected: np.ndarray, t: CategoryThresholds,
                      min_precision: float, min_support: int) -> float:
    for cut in _GRID:
        if cut < t.approve + 0.05:
            continue
        above = scores >= cut
        if above.sum() >= min_support and rejected[above].mean() >= min_precision:
            return float(cut)
    # No cut with enough support and precision: where the current one stands.
    above = scores >= t.reject
    if above.sum() >= min_support and rejected[above].mean() < min_precision:
        approved = scores[above & ~rejected]
        return float(min(0.99, approved.max() + 0.01))
    return t.reject


def _capacity_floor(traffic: np.ndarray, reject: float, share: float) -> float:
    """The lowest approve threshold whose review band holds at most ``share`` of
    ``traffic``."""
    for cut in _GRID:
        if cut >= reject:
            return float(reject - 0.05)
        if float(((traffic >= cut) & (traffic < reject)).mean()) <= share:
            return float(cut)
    return float(reject - 0.05)
