"""A tiny worker with one changelogged table, for the table-recovery test.

Run as ``python -m tests.integration.counter_app``; counts the input events on
``transactions`` per key and serves the table's total at ``/counts``.
"""

from __future__ import annotations

import sys

from faust import web

from streams.app import TechShopApp
from streams.settings import Settings
from streams.worker import run_worker, schema_source


def build() -> TechShopApp:
    settings = Settings()
    app = TechShopApp(settings, schema_source(settings))
    counts = app.faust.Table("counts", default=int, key_type=str, value_type=int,
                             partitions=settings.partitions)

    @app.faust.agent(app.topic("transactions"), name="count")
    async def count(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            counts[event.key.decode()] += 1

    @app.faust.page("/counts")
    async def totals(self: web.View, request: web.Request) -> web.Response:
        return self.json({"total": sum(counts.values()), "keys": len(counts)})

    return app


if __name__ == "__main__":
    sys.exit(run_worker(build()))
