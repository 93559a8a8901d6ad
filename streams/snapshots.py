"""State snapshots in Redis, for reads across keys a partition does not own.

A Faust table is partitioned: a worker holding a card's partition cannot read a merchant's
table entry. Agents that own such state mirror it here (JSON, with a TTL) and the agents
that need it read a whole batch's keys with one MGET. The tables stay the source of truth.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

__all__ = ["RedisSnapshots"]


class RedisSnapshots:
    """JSON dicts under ``<namespace><key>`` in Redis, written with ``ttl_s``."""

    def __init__(self, redis_url: str, namespace: str, ttl_s: int) -> None:
        import redis

        self.redis = redis.Redis.from_url(redis_url, socket_timeout=2)
        self.namespace = namespace
        self.ttl_s = ttl_s

    def fetch(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The stored snapshot of each of ``keys`` that has one (one round trip)."""
        wanted = list(keys)
        if not wanted:
            return {}
        values = self.redis.mget([self.namespace + k for k in wanted])
        return {k: orjson.loads(v) for k, v in zip(wanted, values, strict=True) if v}

    def store(self, snapshots: Mapping[str, dict[str, Any]]) -> None:
        """Write every snapshot (one pipelined round trip)."""
        if not snapshots:
            return
        pipe = self.redis.pipeline(transaction=False)
        for key, value in snapshots.items():
            pipe.set(self.namespace + key, orjson.dumps(value), ex=self.ttl_s)
        pipe.execute()
