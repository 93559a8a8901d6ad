"""The demo's simulated reviewers turn review-queue records into moderation-reviews."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry

from replay.reviewers import ReviewPlan, SimulatedReviewers
from streams.metrics import StreamMetrics
from streams.publisher import Codecs, Publisher
from streams.settings import Settings
from streams.topics import TopicCatalog
from streams.worker import schema_source
from tests.helpers import read_topic

pytestmark = pytest.mark.integration


def _decision(upload_id: str) -> dict[str, object]:
    now = int(time.time() * 1000)
    return {"upload_id": upload_id, "decision": "REVIEW", "scores": {"nudity": 0.6},
            "model": "moderation_classifier@1", "ts": now, "decided_at": now,
            "reasons": ["nudity:0.600>=0.400"]}


def test_reviewers_post_verdicts_for_known_uploads_only(settings: Settings) -> None:
    catalog = TopicCatalog(settings.topic_prefix)
    source = schema_source(settings)
    truth = {"up-1": "REJECT", "up-2": "APPROVE"}

    def verdicts(upload_id: str, ts: int) -> dict[str, object] | None:
        if upload_id not in truth:
            return None
        return {"upload_id": upload_id, "decision": truth[upload_id], "reviewer": "bot", "ts": ts}

    reviewers = SimulatedReviewers(settings, source, verdicts, ReviewPlan(delay_s=(0.0, 0.2)))
    reviewers.start()
    try:
        time.sleep(2.0)  # the reviewers start at the queue's end
        publisher = Publisher(settings.kafka_client_config(), Codecs(source, catalog),
                              StreamMetrics.create(CollectorRegistry()))
        for upload_id in ("up-1", "someone-elses", "up-2"):
            publisher.publish("review-queue", _decision(upload_id), key=upload_id)
        publisher.flush_sync()
        publisher.close()
        messages = read_topic(settings, catalog.physical("moderation-reviews"),
                              until=lambda m: len(m) >= 2, timeout=30)
    finally:
        reviewers.stop()
    codec = Codecs(source, catalog)["moderation-reviews"]
    posted = {codec.decode(m.value())["upload_id"]: codec.decode(m.value())["decision"]
              for m in messages}
    assert posted == truth
    assert reviewers.posted == 2
