"""Decode and validate a batch of raw input messages: pure, no Faust, no Kafka.

Every message either becomes an accepted event or a dead letter; nothing is dropped.
The Faust agents and the in-process backtests both call :func:`admit`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from streams.codec import AvroCodec
from streams.errors import EventError
from streams.validation import Limits, validate

__all__ = ["RawMessage", "Admitted", "Batch", "admit", "dead_letter"]


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One record as read from a topic: where it came from and its original bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int = 0


@dataclass(frozen=True, slots=True)
class Admitted:
    message: RawMessage
    event: dict[str, Any]


@dataclass(slots=True)
class Batch:
    """The outcome of :func:`admit`: accepted events in input order, and dead letters."""

    accepted: list[Admitted] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)


def dead_letter(message: RawMessage, error: EventError, now_ms: int) -> dict[str, Any]:
    """The ``dead-letters`` record for ``message`` that failed with ``error``."""
    return {
        "source_topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "reason": error.reason,
        "detail": error.detail[:2000],
        "key": message.key,
        "value": message.value,
        "ts": now_ms,
    }


def admit(logical_topic: str, messages: Iterable[RawMessage], codec: AvroCodec,
          limits: Limits, now_ms: int) -> Batch:
    """Decode and validate ``messages`` of ``logical_topic``."""
    batch = Batch()
    for message in messages:
        try:
            event = codec.decode(message.value)
            validate(logical_topic, event, len(message.value or b""), now_ms=now_ms,
                     limits=limits)
        except EventError as error:
            batch.rejected.append(dead_letter(message, error, now_ms))
            continue
        batch.accepted.append(Admitted(message, event))
    return batch
