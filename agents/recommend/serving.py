"""Serving recommendations to readers outside the stream.

Every published top-K is also written to Redis under ``<prefix>recs:<user_id>`` (the
same record as on the ``recommendations`` topic, as JSON); ``GET
/recommendations/<user_id>`` on the worker's web server answers from there. Both are
documented in the README for an API gateway or a web shop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from streams.app import TechShopApp

__all__ = ["RecommendationStore", "install_read_endpoint", "redis_key"]

#: How long a user's last top-K stays readable without new activity.
TTL_S = 7 * 24 * 3600


def redis_key(prefix: str, user_id: str) -> str:
    return f"{prefix}recs:{user_id}"


class RecommendationStore:
    """Writes and reads users' latest recommendation records in Redis."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        import redis

        self.redis = redis.Redis.from_url(redis_url, socket_timeout=2)
        self.prefix = prefix

    def put_many(self, records: Sequence[dict[str, Any]]) -> None:
        if not records:
            return
        pipe = self.redis.pipeline(transaction=False)
        for record in records:
            pipe.set(redis_key(self.prefix, record["user_id"]), orjson.dumps(record), ex=TTL_S)
        pipe.execute()

    def get_raw(self, user_id: str) -> bytes | None:
        value = self.redis.get(redis_key(self.prefix, user_id))
        return value if isinstance(value, bytes) else None


def install_read_endpoint(app: TechShopApp, store: RecommendationStore,
                          latency: Any = None) -> None:
    """``GET /recommendations/{user_id}``: the user's latest top-K, or 404."""
    import time

    from faust import web

    @app.faust.page("/recommendations/{user_id}/")
    async def read(self: web.View, request: web.Request, user_id: str) -> web.Response:
        started = time.perf_counter()
        raw = store.get_raw(user_id)
        if latency is not None:
            latency.observe(time.perf_counter() - started)
        if raw is None:
            body = orjson.dumps({"error": f"no recommendations for user {user_id!r} yet"})
            return self.bytes(body, content_type="application/json", status=404)
        return self.bytes(raw, content_type="application/json")
