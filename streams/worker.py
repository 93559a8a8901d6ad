"""Build and run a worker: topics and subjects ensured, then Faust's worker loop."""

from __future__ import annotations

import logging

from streams.admin import ensure_subjects, ensure_topics
from streams.app import TechShopApp
from streams.settings import Settings

__all__ = ["build_app", "run_worker", "schema_source"]

log = logging.getLogger(__name__)


def schema_source(settings: Settings):  # type: ignore[no-untyped-def]
    """The registry a worker or tool uses: configured, or the embedded one of `up`."""
    from streams.registry import RemoteSchemaSource

    return RemoteSchemaSource(settings.registry_client_config())


def build_app(settings: Settings) -> TechShopApp:
    """A :class:`TechShopApp` on a reachable stack whose topics and subjects exist."""
    source = schema_source(settings)
    app = TechShopApp(settings, source)
    ensure_topics(settings, app.catalog)
    ensure_subjects(source, app.catalog)
    return app


def run_worker(app: TechShopApp, *, loglevel: str = "info") -> int:
    """Run the Faust worker until it is stopped (SIGINT/SIGTERM)."""
    from faust import Worker

    worker = Worker(app.faust, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        if app._publisher is not None:
            app._publisher.close()
    return 0
