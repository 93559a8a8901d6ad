"""Moderation decisions, verdict memory and threshold recalibration (pure functions)."""

from __future__ import annotations

import doctest
import importlib
import io
import random
from typing import Any

import numpy as np
import pytest
from PIL import Image

from agents.moderation.decide import (
    CategoryThresholds,
    MemoryHit,
    audited,
    decide,
    judge,
    thresholds_from_flat,
    to_flat,
)
from agents.moderation.features import ScoredImage, dhash, hamming
from agents.moderation.feedback import (
    band_keys,
    best_match,
    recalibrate,
    remember,
    training_example,
)
from replay.generator.images import render

T = {"nudity": CategoryThresholds(0.3, 0.8), "text_contact_info": CategoryThresholds(0.3, 0.75)}


def _upload(i: int) -> dict[str, Any]:
    return {"upload_id": f"u{i}", "seller_id": "s", "ts": 1_700_000_000_000 + i}


def _scored(**scores: float) -> ScoredImage:
    return ScoredImage({"nudity": 0.0, "text_contact_info": 0.0, **scores},
                       {"skin_frac": 0.1}, [], [], 0xABC)


def test_judge_bands_and_the_strongest_outcome_wins() -> None:
    assert judge({"nudity": 0.29, "text_contact_info": 0.1}, T) == ("APPROVE", [])
    assert judge({"nudity": 0.3}, T)[0] == "REVIEW"
    assert judge({"nudity": 0.5, "text_contact_info": 0.9}, T) == (
        "REJECT", ["text_contact_info:0.90>=0.75"])
    assert judge({"unknown_category": 0.5}, T)[0] == "REVIEW"  # default thresholds


def test_thresholds_round_trip_through_the_manifest_form() -> None:
    flat = to_flat(T)
    assert flat["nudity.approve"] == 0.3 and flat["text_contact_info.reject"] == 0.75
    assert thresholds_from_flat(flat) == T


def test_audit_sample_is_stable_and_about_the_rate() -> None:
    ids = [f"upload-{i}" for i in range(20_000)]
    chosen = [u for u in ids if audited(u, 0.02)]
    assert 0.015 < len(chosen) / len(ids) < 0.025
    assert chosen == [u for u in ids if audited(u, 0.02)]
    assert not any(audited(u, 0.0) for u in ids[:100])


def test_decide_covers_failures_scores_memory_and_audits() -> None:
    uploads = [_upload(i) for i in range(5)]
    scored = {1: _scored(), 2: _scored(nudity=0.5), 3: _scored(text_contact_info=0.95),
              4: _scored(nudity=0.5)}
    out = decide(uploads, {0: "image.truncated"}, scored, T, "moderation_classifier@3", 99,
                 memory={4: MemoryHit("APPROVE", "u-old", 2)}, audit_rate=1.0)
    by = {d.decision["upload_id"]: d for d in out}
    assert by["u0"].decision["decision"] == "REJECT"
    assert by["u0"].decision["reasons"] == ["image.truncated"]
    assert by["u0"].decision["model"] == "image_loader@1" and by["u0"].decision["scores"] == {}
    assert by["u1"].decision["decision"] == "APPROVE" and by["u1"].to_review  # audited
    assert "audit.sample" in by["u1"].decision["reasons"]
    assert by["u2"].decision["decision"] == "REVIEW" and by["u2"].to_review
    assert by["u3"].decision["decision"] == "REJECT" and not by["u3"].to_review
    assert by["u4"].decision["decision"] == "APPROVE"  # a reviewer approved its twin
    assert by["u4"].decision["reasons"][0] == "review.similar:u-old"
    assert all(d.decision["decided_at"] == 99 for d in out)
    assert by["u2"].decision["ts"] == uploads[2]["ts"]
    assert by["u2"].decision["model"] == "moderation_classifier@3"


def test_memory_never_turns_a_model_reject_into_approve() -> None:
    out = decide([_upload(0)], {}, {0: _scored(nudity=0.99)}, T, "m@1", 0,
                 memory={0: MemoryHit("APPROVE", "old", 0)})
    assert out[0].decision["decision"] == "REJECT"


def _jpeg(img: Image.Image, quality: int, size: tuple[int, int] | None = None
          ) -> np.ndarray:
    if size:
        img = img.resize(size)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def test_dhash_finds_re_encoded_twins_not_other_products() -> None:
    rng, np_rng = random.Random(1), np.random.default_rng(1)
    images = [render("benign", rng, np_rng, 300, 260)[0] for _ in range(30)]
    a = dhash(_jpeg(images[0], 90))
    assert hamming(a, dhash(_jpeg(images[0], 60, (240, 208)))) <= 12
    others = [hamming(a, dhash(_jpeg(im, 90))) for im in images[1:]]
    assert min(others) > 12, sorted(others)[:5]


def test_verdict_memory_remembers_and_matches() -> None:
    buckets: dict[str, Any] = {}
    buckets.update(remember(buckets, 0xF0F0, "REJECT", "u1", 1))
    assert set(buckets) == set(band_keys(0xF0F0))
    hit = best_match(0xF0F1, buckets)
    assert hit == MemoryHit("REJECT", "u1", 1)
    assert best_match(0xF0F1, buckets, exclude="u1") is None
    far = (1 << 255) - 1
    assert best_match(far, buckets) is None
    buckets.update(remember(buckets, 0xF0F0, "APPROVE", "u1", 2))  # a re-review replaces
    assert best_match(0xF0F0, buckets) == MemoryHit("APPROVE", "u1", 0)


def _example(upload_id: str, decision: str, verdict: str, **scores: float) -> dict[str, Any]:
    provenance = {"upload_id": upload_id, "decision": decision, "model": "m@1", "ts": 5,
                  "seller_id": "s", "scores": {"nudity": 0.0, "text_contact_info": 0.0,
                                               **scores}, "features": {"skin_frac": 0.2}}
    return training_example(provenance, verdict, 10)


def test_training_example_carries_scores_features_and_label() -> None:
    ex = _example("u1", "REVIEW", "REJECT", nudity=0.6)
    assert ex["model"] == "moderation" and ex["label"] == 1.0 and ex["score"] == 0.6
    assert ex["features"]["score.nudity"] == 0.6 and ex["features"]["skin_frac"] == 0.2
    assert ex["features"]["decided_review"] == 1.0 and ex["event_ts"] == 5 and ex["ts"] == 10


def test_rejecting_verdicts_lower_the_reject_threshold_so_the_next_similar_upload_is_rejected(
) -> None:
    current = {"text_contact_info": CategoryThresholds(0.3, 0.75)}
    next_upload = {"text_contact_info": 0.62}
    assert judge(next_upload, current)[0] == "REVIEW"
    verdicts = [_example(f"u{i}", "REVIEW", "REJECT", text_contact_info=0.58 + i / 100)
                for i in range(6)]
    new = recalibrate(verdicts, [], current, capacity=0.1, min_precision=0.95)
    assert new["text_contact_info"].reject <= 0.6
    assert judge(next_upload, new)[0] == "REJECT"


def test_approving_verdicts_raise_an_imprecise_reject_threshold() -> None:
    current = {"nudity": CategoryThresholds(0.3, 0.8)}
    verdicts = [_example(f"u{i}", "REJECT", "APPROVE", nudity=0.85) for i in range(5)]
    verdicts += [_example(f"v{i}", "REJECT", "REJECT", nudity=0.97) for i in range(5)]
    new = recalibrate(verdicts, [], current, capacity=0.1, min_precision=0.95)
    assert 0.85 < new["nudity"].reject <= 0.97
    assert judge({"nudity": 0.85}, new)[0] == "REVIEW"


def test_a_confident_miss_lowers_approve_within_the_review_capacity() -> None:
    current = {"nudity": CategoryThresholds(0.3, 0.8)}
    miss = [_example("u1", "APPROVE", "REJECT", nudity=0.2)]
    quiet = [{"nudity": 0.01}] * 1000
    assert recalibrate(miss, quiet, current, capacity=0.1,
                       min_precision=0.95)["nudity"].approve == 0.19
    # Traffic that would flood the review queue keeps approve high enough.
    busy = [{"nudity": 0.25}] * 300 + [{"nudity": 0.01}] * 700
    t = recalibrate(miss, busy, current, capacity=0.1, min_precision=0.95)["nudity"]
    band = sum(t.approve <= r["nudity"] < t.reject for r in busy) / len(busy)
    assert band <= 0.1 and t.approve > 0.25


def test_recalibration_without_evidence_changes_nothing() -> None:
    current = {"nudity": CategoryThresholds(0.3, 0.8)}
    assert recalibrate([], [], current, capacity=0.1, min_precision=0.95) == current


@pytest.mark.parametrize("name", ["agents.moderation.loading", "agents.moderation.decide",
                                  "agents.moderation.feedback", "scorers.image_text",
                                  "scorers.image_features"])
def test_module_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
