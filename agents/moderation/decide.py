"""Decisions from per-category probabilities: pure, batch-shaped.

Per category, a score below ``approve`` is fine, at or above ``reject`` rejects, and in
between asks a human: an upload is REJECT if any category rejects, else REVIEW if any
category is in its review band, else APPROVE. Thresholds live with the classifier's
registry version (manifest ``thresholds``: ``<category>.approve`` / ``<category>.reject``).

A reviewer's earlier verdict on a near-duplicate image overrides the models: REJECT
stays REJECT; APPROVE turns a REVIEW (never a model REJECT) into APPROVE.

A deterministic share (``audit_rate``, by a hash of the upload id) of APPROVE decisions
also goes to the review queue (reason ``audit.sample``), so that confident errors are
found too. An upload that could not be judged (too large, truncated, not an image, a
decompression bomb, a format outside the allowlist) is REJECT with that reason.

>>> t = {"nudity": CategoryThresholds(0.3, 0.8)}
>>> judge({"nudity": 0.1}, t), judge({"nudity": 0.5}, t)[0], judge({"nudity": 0.9}, t)[0]
(('APPROVE', []), 'REVIEW', 'REJECT')
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.moderation.features import ScoredImage

__all__ = ["DEFAULT_THRESHOLDS", "LOADER_MODEL", "CategoryThresholds", "Decided",
           "MemoryHit", "audited", "decide", "judge", "thresholds_from_flat", "to_flat"]

LOADER_MODEL = "image_loader@1"


@dataclass(frozen=True)
class CategoryThresholds:
    approve: float
    reject: float


DEFAULT_THRESHOLDS = CategoryThresholds(0.3, 0.8)


def thresholds_from_flat(flat: Mapping[str, float]) -> dict[str, CategoryThresholds]:
    """``{"nudity.approve": .3, "nudity.reject": .8}`` → ``{"nudity": (.3, .8)}``."""
    out: dict[str, CategoryThresholds] = {}
    for category in {k.rsplit(".", 1)[0] for k in flat if "." in k}:
        approve = float(flat.get(f"{category}.approve", DEFAULT_THRESHOLDS.approve))
        reject = float(flat.get(f"{category}.reject", DEFAULT_THRESHOLDS.reject))
        out[category] = CategoryThresholds(min(approve, reject), reject)
    return out


def to_flat(thresholds: Mapping[str, CategoryThresholds]) -> dict[str, float]:
    out: dict[str, float] = {}
    for category, t in sorted(thresholds.items()):
        out[f"{category}.approve"] = round(t.approve, 4)
        out[f"{category}.reject"] = round(t.reject, 4)
    return out


def judge(scores: Mapping[str, float], thresholds: Mapping[str, CategoryThresholds]
          ) -> tuple[str, list[str]]:
    """The decision for one upload's scores, and the categories that made it."""
    rejects, reviews = [], []
    for category, score in sorted(scores.items()):
        t = thresholds.get(category, DEFAULT_THRESHOLDS)
        if score >= t.reject:
            rejects.append(f"{category}:{score:.2f}>={t.reject:.2f}")
        elif score >= t.approve:
            reviews.append(f"{category}:{score:.2f}>={t.approve:.2f}")
    if rejects:
        return "REJECT", rejects
    if reviews:
        return "REVIEW", reviews
    return "APPROVE", []


def audited(upload_id: str, rate: float) -> bool:
    """True for a stable ``rate`` share of upload ids (the same id, the same answer)."""
    if rate <= 0:
        return False
    digest = hashlib.blake2b(upload_id.encode(), digest_size=8, person=b"audit").digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


@dataclass(frozen=True)
class MemoryHit:
    """A reviewer's verdict on a near-duplicate of this upload."""

    verdict: str
    upload_id: str
    distance: int


@dataclass
class Decided:
    """One decision: the ``moderation-decisions`` record, whether it also goes to the
    review queue, and what the feedback join needs later."""

    position: int
    decision: dict[str, Any]
    to_review: bool
    provenance: dict[str, Any] = field(default_factory=dict)


def decide(uploads: Sequence[Mapping[str, Any]], failures: Mapping[int, str],
           scored: Mapping[int, ScoredImage], thresholds: Mapping[str, CategoryThresholds],
           model: str, now_ms: int, *, memory: Mapping[int, MemoryHit] | None = None,
           audit_rate: float = 0.0) -> list[Decided]:
    """Decide every position of ``uploads`` found in ``failures`` (a REJECT reason) or
    ``scored``; others (dead letters, repeats) are the caller's."""
    memory = memory or {}
    out = []
    for i, upload in enumerate(uploads):
        provenance: dict[str, Any] = {}
        if i in failures:
            decision, reasons, scores, by = "REJECT", [failures[i]], {}, LOADER_MODEL
        elif i in scored:
            s = scored[i]
            scores, by = dict(s.scores), model
            decision, reasons = judge(scores, thresholds)
            reasons += s.reasons
            hit = memory.get(i)
            if hit is not None and (hit.verdict == "REJECT" or decision == "REVIEW"):
                decision = hit.verdict
                reasons.insert(0, f"review.similar:{hit.upload_id}")
            provenance = {"features": s.features, "phash": format(s.phash, "x"),
                          "text": s.text}
        else:
            continue
        audit = decision == "APPROVE" and audited(upload["upload_id"], audit_rate)
        if audit:
            reasons.append("audit.sample")
        record = {"upload_id": upload["upload_id"], "decision": decision,
                  "scores": {k: round(float(v), 6) for k, v in scores.items()},
                  "model": by, "ts": upload["ts"], "decided_at": now_ms, "reasons": reasons}
        out.append(Decided(i, record, decision == "REVIEW" or audit, provenance))
    return out
