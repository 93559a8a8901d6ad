"""Moderation end to end on the embedded stack: generated images in, exactly one
decision per upload out; bad files each get their reason (a REJECT with the reason, or
a dead letter) and the worker keeps going; a reviewer's verdict changes what the next
near-duplicate upload gets."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from replay.generator.images import render
from schemas import load_schema
from streams.codec import AvroCodec
from streams.settings import Settings
from streams.topics import TopicCatalog
from streams.worker import schema_source
from tests.e2e.fraud_support import metric_value, publisher
from tests.e2e.moderation_support import start_moderation_worker, wait_ready
from tests.helpers import read_topic, stop_process

pytestmark = pytest.mark.e2e


def _jpeg(img: Image.Image, path: Path, quality: int = 90) -> None:
    img.save(path, format="JPEG", quality=quality)


def _uploads(root: Path) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Uploads and what each should get: an outcome set or a reason."""
    rng, np_rng = random.Random(5), np.random.default_rng(5)
    now = int(time.time() * 1000)
    uploads, expect = [], {}

    def add(upload_id: str, uri: str, expected: str) -> None:
        uploads.append({"upload_id": upload_id, "product_id": f"p-{upload_id}",
                        "seller_id": "seller-1", "uri": uri, "ts": now})
        expect[upload_id] = expected

    for i, category in enumerate(["benign", "benign", "benign", "text_contact_info",
                                  "text_contact_info", "text_banned_words",
                                  "text_banned_words", "nudity", "violence"]):
        img, _ = render(category, rng, np_rng, 320, 280)
        path = root / f"{category}-{i}.jpg"
        _jpeg(img, path)
        add(f"{category}-{i}", path.as_uri(), "APPROVE" if category == "benign" else "FLAG")
    good = root / "benign-0.jpg"
    data = good.read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 2])
    add("truncated", (root / "truncated.jpg").as_uri(), "image.truncated")
    (root / "page.jpg").write_bytes(b"<html><body>404 Not Found</body></html>")
    add("not-image", (root / "page.jpg").as_uri(), "image.not_image")
    Image.new("L", (10_000, 10_000)).save(root / "bomb.png")  # 100 Mpx in ~100 KB
    add("bomb", (root / "bomb.png").as_uri(), "image.decompression_bomb")
    add("missing", (root / "nowhere.jpg").as_uri(), "dead:image.missing")
    add("passwd", "file:///etc/passwd", "dead:image.forbidden_uri")
    add("traversal", f"file://{root}/../../etc/passwd", "dead:image.forbidden_uri")
    return uploads, expect


def _metrics(port: int) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def _decode(settings: Settings, topic: str, schema: str, messages: list[Any]
            ) -> list[dict[str, Any]]:
    catalog = TopicCatalog(settings.topic_prefix)
    codec = AvroCodec(schema_source(settings), catalog.subject(topic), load_schema(schema))
    return [codec.decode(m.value()) for m in messages]


def _read(settings: Settings, topic: str, schema: str, n: int, timeout: float = 60
          ) -> list[dict[str, Any]]:
    physical = TopicCatalog(settings.topic_prefix).physical(topic)
    messages = read_topic(settings, physical, until=lambda m: len(m) >= n, timeout=timeout)
    return _decode(settings, topic, schema, messages)


def test_uploads_decided_once_bad_files_get_reasons_and_verdicts_count(
        settings: Settings, stack_env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "uploads"
    root.mkdir()
    uploads, expect = _uploads(root)
    worker, port = start_moderation_worker(stack_env, tmp_path, root)
    try:
        wait_ready(worker, port)
        pub = publisher(settings)
        # A verdict may arrive before its upload is decided: it waits, then joins.
        pub.publish("moderation-reviews", {"upload_id": "benign-1", "decision": "APPROVE",
                                           "reviewer": "bob", "ts": uploads[0]["ts"]},
                    key=b"benign-1")
        for upload in [*uploads, uploads[1]]:  # benign-1 twice: still one decision
            pub.publish("image-uploads", upload, key=upload["upload_id"].encode())
        pub.flush_sync()
        n_decided = sum(not e.startswith("dead:") for e in expect.values())
        decisions = _read(settings, "moderation-decisions", "moderation_decision", n_decided)
        dead = _read(settings, "dead-letters", "dead_letter", 3)
        by_id = {d["upload_id"]: d for d in decisions}

        # A reviewer rejects a benign-looking upload: its re-encoded twin is rejected.
        first = by_id["benign-0"]
        assert first["decision"] == "APPROVE"
        now = int(time.time() * 1000)
        pub.publish("moderation-reviews", {"upload_id": "benign-0", "decision": "REJECT",
                                           "reviewer": "alice", "ts": now},
                    key=b"benign-0")
        pub.flush_sync()
        examples = _read(settings, "training-examples", "training_example", 2)
        twin = root / "benign-0-again.jpg"
        _jpeg(Image.open(root / "benign-0.jpg").resize((300, 262)), twin, quality=75)
        pub.publish("image-uploads", {"upload_id": "benign-0-again", "product_id": "p-2",
                                      "seller_id": "seller-2", "uri": twin.as_uri(),
                                      "ts": now}, key=b"benign-0-again")
        pub.publish("image-uploads", uploads[2], key=b"benign-2")  # redelivered later
        pub.flush_sync()
        decisions = _read(settings, "moderation-decisions", "moderation_decision",
                          n_decided + 1)
        time.sleep(1.0)  # a duplicate would arrive now
        decisions = _read(settings, "moderation-decisions", "moderation_decision",
                          10_000, timeout=2.0)
        reviews = _read(settings, "review-queue", "moderation_decision", 10_000, timeout=2.0)
        metrics = _metrics(port)
    finally:
        stop_process(worker)

    per_upload = Counter(d["upload_id"] for d in decisions)
    assert max(per_upload.values()) == 1, per_upload
    assert set(per_upload) == {u for u, e in expect.items() if not e.startswith("dead:")} | {
        "benign-0-again"}
    by_id = {d["upload_id"]: d for d in decisions}
    for upload_id, expected in expect.items():
        if expected.startswith("dead:"):
            continue
        d = by_id[upload_id]
        assert "@" in d["model"] and d["decided_at"] >= d["ts"] - 1000
        if expected == "APPROVE":
            assert d["decision"] == "APPROVE", d
        elif expected == "FLAG":
            assert d["decision"] in ("REJECT", "REVIEW"), d
            category = upload_id.rsplit("-", 1)[0]
            assert d["scores"][category] >= 0.3, d
        else:
            assert d["decision"] == "REJECT" and d["reasons"] == [expected], d
    dead_reasons = Counter(d["reason"] for d in dead)
    assert dead_reasons == {"image.missing": 1, "image.forbidden_uri": 2}
    assert {d["key"].decode() for d in dead} == {"missing", "passwd", "traversal"}
    assert {r["upload_id"] for r in reviews} == {
        d["upload_id"] for d in decisions if d["decision"] == "REVIEW"}
    labels = {e["example_id"]: e["label"] for e in examples}
    assert labels == {"benign-0": 1.0, "benign-1": 0.0}
    assert all("score.nudity" in e["features"] for e in examples)
    assert metric_value(metrics, "techshop_moderation_decisions_total",
                        variant="loader", outcome="REJECT") == 3
    assert metric_value(metrics, "techshop_moderation_load_failures_total",
                        reason="image.forbidden_uri") == 2
    assert metric_value(metrics, "techshop_moderation_repeats_total") == 2
    assert metric_value(metrics, "techshop_moderation_stage_seconds_count", stage="ocr") >= 1
    assert metric_value(metrics, "techshop_moderation_model_info", role="classifier") == 1
    for signal in ("nudity", "review_share"):  # live drift: a state per signal (0/1/2)
        assert f'techshop_moderation_drift_state{{signal="{signal}"}}' in metrics
    again = by_id["benign-0-again"]
    assert again["decision"] == "REJECT"
    assert again["reasons"][0] == "review.similar:benign-0"
