"""The moderation backtest: published scores re-decided with each version's thresholds,
against reviewers' verdicts (no broker: export files)."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import pytest

import replay.backtest.moderation as mod
from agents.moderation.decide import (
    LOADER_MODEL,
    CategoryThresholds,
    audited,
    judge,
    to_flat,
)
from models.registry import ModelRegistry, signing_key_from
from replay.backtest.inputs import Where
from replay.backtest.moderation import ModerationJob, moderation_job, redecide
from replay.sources import FileEvent, write_export
from streams.settings import Settings

V1 = {"nudity": CategoryThresholds(0.3, 0.8), "violence": CategoryThresholds(0.4, 0.9)}
V2 = {"nudity": CategoryThresholds(0.5, 0.7), "violence": CategoryThresholds(0.4, 0.9)}


def test_doctests() -> None:
    failed, tried = doctest.testmod(mod)
    assert tried and not failed


def test_redecide_keeps_loader_rejections_and_near_duplicate_verdicts() -> None:
    loader = {"upload_id": "u1", "model": LOADER_MODEL, "decision": "REJECT", "scores": {},
              "reasons": ["image.truncated"]}
    assert redecide(loader, V1, 0.0) == ("REJECT", False)
    scores = {"nudity": 0.6, "violence": 0.1}
    plain = {"upload_id": "u2", "model": "moderation_classifier@1", "decision": "REVIEW",
             "scores": scores, "reasons": []}
    assert redecide(plain, V1, 0.0) == ("REVIEW", True)
    assert redecide(plain, V2, 0.0) == ("REVIEW", True)
    assert redecide({**plain, "scores": {"nudity": 0.75}}, V2, 0.0) == ("REJECT", False)
    approved = {**plain, "decision": "APPROVE", "reasons": ["review.similar:u0"]}
    assert redecide(approved, V1, 0.0) == ("APPROVE", False)  # the verdict overrides REVIEW
    assert redecide({**approved, "scores": {"nudity": 0.95}}, V1, 0.0)[0] == "REJECT"
    audited_id = next(f"a{i}" for i in range(1000) if audited(f"a{i}", 0.5))
    low = {**plain, "upload_id": audited_id, "scores": {"nudity": 0.1}}
    assert redecide(low, V1, 0.5) == ("APPROVE", True)


def test_versions_side_by_side_with_agreement_review_volume_and_consistency(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = tmp_path / "models"
    registry = ModelRegistry(models, signing_key_from(models / "signing.key"))
    for t in (V1, V2):
        registry.publish("moderation_classifier", "onnx", b"the same artefact",
                         feature_names=["image"], thresholds=to_flat(t))
    records, reviews = [], []
    for i in range(200):
        scores = {"nudity": (i * 37 % 100) / 100, "violence": (i * 11 % 50) / 100}
        decision, reasons = judge(scores, V1)
        uid = f"up-{i}"
        records.append({"upload_id": uid, "decision": decision, "scores": scores,
                        "model": "moderation_classifier@1", "ts": 1_765_000_000_000 + i,
                        "decided_at": 0, "reasons": reasons})
        if i % 3 == 0:  # reviewers judge a third: unsafe when nudity >= 0.6
            reviews.append({"upload_id": uid, "ts": 1_765_000_100_000 + i, "reviewer": "r1",
                            "decision": "REJECT" if scores["nudity"] >= 0.6 else "APPROVE"})
    records[7] = {**records[7], "decision": "REJECT"}  # not what v1's thresholds give
    write_export(tmp_path / "decisions.jsonl", "moderation-decisions",
                 (FileEvent(r) for r in records))
    write_export(tmp_path / "reviews.jsonl", "moderation-reviews",
                 (FileEvent(r) for r in reviews))
    monkeypatch.setenv("TECHSHOP_DATA_DIR", str(tmp_path / "data"))
    report = moderation_job(Settings(), ModerationJob(
        decisions=Where("moderation-decisions", file=tmp_path / "decisions.jsonl"),
        reviews=Where("moderation-reviews", file=tmp_path / "reviews.jsonl"),
        models=["moderation_classifier@1", "moderation_classifier@2"], audit_rate=0.0,
        model_dir=models))
    published, v1, v2 = report["models"]
    assert [m["label"] for m in report["models"]] == [
        "published", "moderation_classifier@1", "moderation_classifier@2"]
    assert v1["same_artefact"] and v2["same_artefact"]
    assert sum(v1["outcomes"].values()) == 200 and v1["reviewed"] == len(reviews)
    assert v2["review_volume"] < v1["review_volume"]  # a narrower review band
    assert v1["agree"] + v1["deferred"] + v1["wrong_approve"] + v1["wrong_reject"] == \
        v1["reviewed"]
    c = report["consistency"]
    assert (c["compared"], c["differing"]) == (200, 1)
    assert c["differences"][0] == {"upload_id": "up-7", "model": "moderation_classifier@1",
                                   "backtest": judge(records[7]["scores"], V1)[0],
                                   "published": "REJECT"}
    from replay.report import write_report

    _, html = write_report(report, tmp_path / "report")
    text = html.read_text()
    assert 'data-plot="outcomes"' in text and 'data-plot="agreement"' in text
    assert 'data-figure="moderation.moderation_classifier@2.agreement"' in text
    assert json.loads((tmp_path / "report" / "report.json").read_text())["pipeline"] == \
        "moderation"
