"""The moderation backtest against a live moderation worker: its published decisions,
re-decided with the thresholds of the classifier version that made them, are the same
decisions; reviewers' verdicts give the agreement and the review volume."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import pytest

from replay.generator.images import render
from streams.cli import main
from streams.settings import Settings
from streams.topics import TopicCatalog
from tests.e2e.fraud_support import publisher
from tests.e2e.moderation_support import start_moderation_worker, wait_ready
from tests.helpers import read_topic, stop_process

pytestmark = pytest.mark.e2e

CATEGORIES = ["benign", "benign", "benign", "text_contact_info", "text_banned_words",
              "nudity", "violence", "benign"]


def test_backtest_redecides_the_published_decisions_and_measures_agreement(
        settings: Settings, stack_env: dict[str, str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "uploads"
    root.mkdir()
    rng, np_rng = random.Random(3), np.random.default_rng(3)
    now = int(time.time() * 1000)
    uploads = []
    for i, category in enumerate(CATEGORIES):
        img, _ = render(category, rng, np_rng, 320, 280)
        path = root / f"{category}-{i}.jpg"
        img.save(path, format="JPEG", quality=90)
        uploads.append({"upload_id": f"{category}-{i}", "product_id": f"p{i}",
                        "seller_id": "s1", "uri": path.as_uri(), "ts": now + i})
    (root / "cut.jpg").write_bytes((root / "benign-0.jpg").read_bytes()[:500])
    uploads.append({"upload_id": "cut", "product_id": "p-cut", "seller_id": "s1",
                    "uri": (root / "cut.jpg").as_uri(), "ts": now + 99})
    worker, port = start_moderation_worker(stack_env, tmp_path, root)
    try:
        wait_ready(worker, port)
        pub = publisher(settings)
        for upload in uploads:
            pub.publish("image-uploads", upload, key=upload["upload_id"].encode())
        pub.flush_sync()
        physical = TopicCatalog(settings.topic_prefix).physical("moderation-decisions")
        assert len(read_topic(settings, physical, until=lambda m: len(m) >= len(uploads),
                              timeout=90)) == len(uploads)
        verdicts = {"benign-0": "APPROVE", "nudity-5": "REJECT", "violence-6": "REJECT",
                    "text_contact_info-3": "REJECT", "benign-7": "REJECT"}
        for upload_id, verdict in verdicts.items():
            pub.publish("moderation-reviews", {"upload_id": upload_id, "decision": verdict,
                                               "reviewer": "r1", "ts": now + 1000},
                        key=upload_id.encode())
        pub.flush_sync()
    finally:
        stop_process(worker)

    out = tmp_path / "report"
    assert main(["backtest", "moderation", "--model", "moderation_classifier@latest",
                 "--model-dir", str(tmp_path / "models"), "--audit-rate", "0", "--quiet",
                 "--out", str(out)]) == 0
    assert "agreement" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    published, latest = report["models"]
    assert report["data"]["uploads"] == len(uploads)
    c = report["consistency"]
    assert (c["compared"], c["differing"], c["unknown_version"]) == (len(uploads) - 1, 0, 0)
    assert latest["outcomes"] == published["outcomes"]  # same version, same decisions
    assert latest["same_artefact"] is True
    assert published["reviewed"] == latest["reviewed"] == len(verdicts)
    assert published["outcomes"]["REJECT"] >= 1  # the cut file, from the loader
    assert latest["agree"] + latest["deferred"] + latest["wrong_approve"] + \
        latest["wrong_reject"] == len(verdicts)
    assert 'data-plot="agreement"' in (out / "report.html").read_text()
