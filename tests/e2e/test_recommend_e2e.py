"""Recommendations end to end on the embedded stack: clicks in, a fresh top-K out on
`recommendations` and in Redis (and at GET /recommendations/<user>), excluding what the
user just bought; a cold-start user and a brand-new catalog item are served."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from replay.generator import TrafficGenerator
from schemas import load_schema
from streams.codec import AvroCodec
from streams.embedded import free_port
from streams.settings import Settings
from streams.topics import TopicCatalog
from streams.worker import schema_source
from tests.conftest import subprocess_env
from tests.e2e.fraud_support import publisher
from tests.helpers import http_get, read_topic, start_process, stop_process, wait_for

pytestmark = pytest.mark.e2e


def _click(user: str, item: str, kind: str, ts: int, n: int) -> dict[str, Any]:
    return {"event_id": f"e-{user}-{n}", "user_id": user, "session_id": f"s-{user}",
            "item_id": item, "event_type": kind, "ts": ts}


def test_clicks_become_fresh_recommendations_in_redis_and_on_the_web(
        settings: Settings, stack_env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    worker = start_process(["-m", "streams.cli", "worker", "--pipelines", "recommend"],
                           {**subprocess_env(stack_env), "TECHSHOP_WEB_PORT": str(port),
                            "TECHSHOP_MODEL_DIR": str(tmp_path / "models")},
                           tmp_path / "worker.log")
    pub = publisher(settings)
    now = int(time.time() * 1000)
    gen = TrafficGenerator(seed=31, start_ts_ms=now - 300_000, rates={"clickstream": 50.0},
                           n_users=300, n_items=400)
    history = gen.take(6000, {"catalog", "clickstream"})
    catalog_items = [e.value for e in history if e.topic == "catalog"]
    new_item = {"item_id": "brand-new-item", "title": catalog_items[0]["title"] + " v2",
                "category": catalog_items[0]["category"],
                "price": catalog_items[0]["price"], "ts": now - 1000}
    try:
        wait_for(port, "/ready", lambda status, _: status == 200, 90, proc=worker)
        for event in history:
            pub.publish(event.topic, event.value, key=event.key)
        pub.publish("catalog", new_item)
        pub.flush_sync()
        time.sleep(3)  # the catalog reaches every worker's memory
        bought = catalog_items[1]["item_id"]
        ts = now
        script = [("returning-user", catalog_items[2]["item_id"], "click"),
                  ("returning-user", bought, "purchase"),
                  ("cold-start-user", catalog_items[0]["item_id"], "click")]
        script += [(f"probe-{i}", catalog_items[0]["item_id"], "click") for i in range(30)]
        for n, (user, item, kind) in enumerate(script):
            ts += 10
            pub.publish("clickstream", _click(user, item, kind, ts, n))
        pub.flush_sync()
        catalog = TopicCatalog(settings.topic_prefix)
        codec = AvroCodec(schema_source(settings), catalog.subject("recommendations"),
                          load_schema("recommendation"))

        def ours(messages: list[Any]) -> list[dict[str, Any]]:
            decoded = [codec.decode(m.value()) for m in messages]
            return [r for r in decoded if r["user_id"] in {u for u, _, _ in script}]

        messages = read_topic(settings, catalog.physical("recommendations"),
                              until=lambda m: len(ours(m)) >= len(script), timeout=90)
        records = ours(messages)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            metrics = resp.read().decode()
    finally:
        stop_process(worker)

    by_user: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_user.setdefault(record["user_id"], []).append(record)
    after_purchase = by_user["returning-user"][-1]
    assert after_purchase["ts"] == now + 20
    items = [i["item_id"] for i in after_purchase["items"]]
    assert len(items) == settings.recs_k
    assert bought not in items  # purchased and just acted on: excluded
    cold = by_user["cold-start-user"][-1]
    assert len(cold["items"]) == settings.recs_k
    assert catalog_items[0]["item_id"] not in [i["item_id"] for i in cold["items"]]
    shown = {i["item_id"] for r in records for i in r["items"]}
    assert "brand-new-item" in shown, "a never-clicked catalog item was never shown"

    client = redis.Redis.from_url(settings.serving_redis_url)
    stored = client.get(f"{settings.topic_prefix}recs:returning-user")
    assert stored is not None and orjson.loads(stored) == after_purchase
    for signal in ("top_score", "cold_share", "explore_share"):  # live drift, 0/1/2
        assert f'techshop_recommend_drift_state{{signal="{signal}"}}' in metrics


def test_web_endpoint_reads_what_redis_holds(settings: Settings, stack_env: dict[str, str],
                                             tmp_path: Path) -> None:
    port = free_port()
    worker = start_process(["-m", "streams.cli", "worker", "--pipelines", "recommend"],
                           {**subprocess_env(stack_env), "TECHSHOP_WEB_PORT": str(port),
                            "TECHSHOP_MODEL_DIR": str(tmp_path / "models")},
                           tmp_path / "worker.log")
    try:
        wait_for(port, "/ready", lambda status, _: status == 200, 90, proc=worker)
        record = {"user_id": "reader-1", "items": [{"item_id": "i1", "score": 0.5}],
                  "model": "recommend_ranker@1", "ts": 1}
        redis.Redis.from_url(settings.serving_redis_url).set(
            f"{settings.topic_prefix}recs:reader-1", orjson.dumps(record))
        status, body = http_get(port, "/recommendations/reader-1/")
        assert (status, body) == (200, record)
        status, body = http_get(port, "/recommendations/nobody/")
        assert status == 404 and "nobody" in body["error"]
    finally:
        stop_process(worker)
