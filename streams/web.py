"""``/health`` and ``/ready`` on the Faust web monitor (CONTRACTS.md).

``/ready`` is 200 only once the worker has partitions assigned, its tables are
recovered (Faust's web server answers long before that) and every readiness check a
pipeline added (models loaded, ...) passes; 503 with the failing parts before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from faust import web

if TYPE_CHECKING:
    from streams.app import TechShopApp

__all__ = ["install_health_pages", "readiness"]


def readiness(app: TechShopApp) -> dict[str, bool]:
    """Each readiness condition and whether it holds now."""
    fa = app.faust
    checks: dict[str, bool] = {}
    try:
        assignment = fa.consumer.assignment()
    except Exception:
        assignment = set()
    checks["partitions_assigned"] = bool(assignment)
    checks["not_rebalancing"] = not fa.rebalancing
    recovery: Any = fa.tables.recovery  # type: ignore[attr-defined]
    checks["tables_recovered"] = bool(
        recovery.completed.is_set() and not recovery.active_remaining_total()
    )
    for name, check in app.readiness.items():
        try:
            checks[name] = bool(check())
        except Exception:
            checks[name] = False
    return checks


def _json(response: Any, body: dict[str, Any], status: int) -> Any:
    return response.bytes(orjson.dumps(body), content_type="application/json", status=status)


def install_health_pages(app: TechShopApp) -> None:
    fa = app.faust

    @fa.page("/health")
    async def health(self: web.View, request: web.Request) -> web.Response:
        return _json(self, {"status": "ok", "app": fa.conf.id}, 200)  # type: ignore[no-any-return]

    @fa.page("/ready")
    async def ready(self: web.View, request: web.Request) -> web.Response:
        checks = readiness(app)
        ok = all(checks.values())
        body = {"ready": ok, "checks": checks}
        return _json(self, body, 200 if ok else 503)  # type: ignore[no-any-return]
