"""Test helpers: worker subprocesses, HTTP polling, reading topics to the end."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from streams.settings import Settings

__all__ = ["http_get", "wait_for", "start_process", "stop_process", "read_topic"]


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
