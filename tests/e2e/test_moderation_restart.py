"""Exactly one decision per upload_id across a worker restart with a fresh data dir:
the ``moderation-decided`` table comes back from its changelog, and redelivered uploads
are answered from it, not decided again."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from replay.generator.images import render
from schemas import load_schema
from streams.codec import AvroCodec
from streams.settings import Settings
from streams.topics import TopicCatalog
from streams.worker import schema_source
from tests.e2e.fraud_support import publisher
from tests.e2e.moderation_support import start_moderation_worker, wait_ready
from tests.helpers import read_topic, stop_process

pytestmark = pytest.mark.e2e


def test_no_second_decision_after_kill_and_fresh_data_dir(
        settings: Settings, stack_env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "uploads"
    root.mkdir()
    rng, np_rng = random.Random(2), np.random.default_rng(2)
    now = int(time.time() * 1000)
    uploads = []
    for i in range(8):
        img, _ = render("benign" if i % 2 else "text_banned_words", rng, np_rng, 240, 240)
        img.save(root / f"r{i}.jpg")
        uploads.append({"upload_id": f"r{i}", "product_id": "p", "seller_id": "s",
                        "uri": (root / f"r{i}.jpg").as_uri(), "ts": now})
    catalog = TopicCatalog(settings.topic_prefix)
    physical = catalog.physical("moderation-decisions")
    pub = publisher(settings)

    def send(batch: list[dict[str, object]]) -> None:
        for u in batch:
            pub.publish("image-uploads", u, key=str(u["upload_id"]).encode())
        pub.flush_sync()

    first, port = start_moderation_worker(stack_env, tmp_path / "a", root)
    try:
        wait_ready(first, port)
        send(uploads[:6])
        assert len(read_topic(settings, physical, until=lambda m: len(m) >= 6, timeout=60)) >= 6
        time.sleep(1.0)  # the table writes follow the flush
    finally:
        stop_process(first, signal.SIGKILL)
    second, port = start_moderation_worker(stack_env, tmp_path / "b", root)
    try:
        wait_ready(second, port)
        send(uploads)  # r0-r5 again (a redelivery), r6 and r7 new
        read_topic(settings, physical, until=lambda m: len(m) >= 8, timeout=60)
        time.sleep(1.5)
        messages = read_topic(settings, physical, until=lambda m: False, timeout=2.0)
    finally:
        stop_process(second)
    codec = AvroCodec(schema_source(settings), catalog.subject("moderation-decisions"),
                      load_schema("moderation_decision"))
    per_upload = Counter(codec.decode(m.value())["upload_id"] for m in messages)
    assert per_upload == {f"r{i}": 1 for i in range(8)}
