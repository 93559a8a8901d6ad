"""Test helpers: worker subprocesses, HTTP polling, reading topics to the end, a fresh
topic prefix, headless Chromium, a synthetic clickstream."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from streams.settings import Settings
from streams.stack import StackInfo
from streams.topics import TopicCatalog

__all__ = ["http_get", "wait_for", "start_process", "stop_process", "read_topic",
           "prefix_env", "create_prefix", "chromium", "headless_chromium", "clickstream"]


def http_get(port: int, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def wait_for(port: int, path: str, ok: Callable[[int, Any], bool], timeout: float,
             proc: subprocess.Popen[bytes] | None = None) -> Any:
    """Poll ``GET path`` until ``ok(status, body)``; fail with the last answer."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} while waiting")
        try:
            status, body = http_get(port, path)
            last = (status, body)
            if ok(status, body):
                return body
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{path} never satisfied the check; last answer {last}")


def start_process(args: Sequence[str], env: dict[str, str], log_path: Path
                  ) -> subprocess.Popen[bytes]:
    """Start ``python <args>`` with ``env``, output to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("wb")
    return subprocess.Popen([sys.executable, *args], env=env, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
                 timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def read_topic(settings: Settings, physical_topic: str, *, until: Callable[[list[Any]], bool],
               timeout: float = 60.0) -> list[Any]:
    """Read a topic from the beginning until ``until(messages)`` or the timeout."""
    consumer = Consumer({**settings.kafka_client_config(), "group.id": "test-reader",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 20,
                         "log.connection.close": False})
    meta = consumer.list_topics(physical_topic, timeout=10).topics[physical_topic]
    consumer.assign([TopicPartition(physical_topic, p, OFFSET_BEGINNING)
                     for p in meta.partitions])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(messages):
            for msg in consumer.consume(500, 0.2):
                err = msg.error()
                if err is None:
                    messages.append(msg)
                elif err.code() != KafkaError._PARTITION_EOF:
                    raise AssertionError(err.str())
    finally:
        consumer.close()
    return messages


def prefix_env(stack: StackInfo, data_dir: Path, **extra: str) -> dict[str, str]:
    """A worker's environment: the session's stack, a new topic prefix, ``data_dir``, the
    broker compatibility under test, and ``extra``."""
    return {**stack.env(), "TECHSHOP_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:10]}.",
            "TECHSHOP_DATA_DIR": str(data_dir),
            "TECHSHOP_BROKER_COMPAT": os.environ.get("TEST_BROKER_COMPAT", "tansu"), **extra}


def create_prefix(env: dict[str, str]) -> tuple[Settings, TopicCatalog]:
    """The settings ``env`` gives, with the prefix's topics and schema subjects created."""
    from streams.admin import ensure_subjects, ensure_topics
    from streams.worker import schema_source

    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        settings = Settings()
    catalog = TopicCatalog(settings.topic_prefix)
    ensure_topics(settings, catalog)
    ensure_subjects(schema_source(settings), catalog)
    return settings, catalog


def chromium() -> str:
    """The headless browser's path; skips the test when there is none."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium binary (Debian: apt-get install chromium; make test "
                "installs it when it can)")


def headless_chromium(browser: str, profile: Path, *args: str
                      ) -> subprocess.CompletedProcess[str]:
    """Run ``browser`` headless with a fresh ``profile`` and ``args`` (``--dump-dom URL``,
    ``--screenshot=FILE URL``, ``--window-size=W,H`` ...)."""
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def clickstream(seed: int, n: int, *, n_items: int, n_users: int
                ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A synthetic shop's catalog (by item id) and its first ``n`` clickstream events, as
    :func:`replay.recommend_backtest.recommend_backtest` generates them."""
    from replay.generator import TrafficGenerator
    from replay.recommend_backtest import START_TS_MS

    gen = TrafficGenerator(seed=seed, start_ts_ms=START_TS_MS, rates={"clickstream": 20.0},
                           n_items=n_items, n_users=n_users)
    catalog: dict[str, Any] = {}
    clicks: list[dict[str, Any]] = []
    for event in gen:
        if event.topic == "catalog":
            catalog[event.key] = event.value
            continue
        clicks.append(event.value)
        if len(clicks) == n:
            break
    return catalog, clicks
