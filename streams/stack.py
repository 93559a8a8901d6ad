"""The embedded stack as one unit: broker, schema registry, redis, topics and subjects.

Used by ``techshop up``, ``techshop demo`` and the test suite's session fixture.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from streams.admin import ensure_subjects, ensure_topics
from streams.embedded import EmbeddedBroker, EmbeddedRedis
from streams.errors import StackError
from streams.registry import LocalSchemaSource, RegistryServer, SchemaStore
from streams.settings import Settings
from streams.topics import TopicCatalog

__all__ = ["EmbeddedStack", "StackInfo"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StackInfo:
    bootstrap_servers: str
    schema_registry_url: str
    redis_url: str
    subjects: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, str]:
        return {"bootstrap_servers": self.bootstrap_servers,
                "schema_registry_url": self.schema_registry_url, "redis_url": self.redis_url}

    def env(self) -> dict[str, str]:
        """The ``TECHSHOP_*`` variables that point a worker or client at this stack."""
        return {"TECHSHOP_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
                "TECHSHOP_SCHEMA_REGISTRY_URL": self.schema_registry_url,
                "TECHSHOP_REDIS_URL": self.redis_url}


class EmbeddedStack:
    """Start Tansu, the embedded registry and redis-server; create topics and subjects.

    Parts the settings point elsewhere (``TECHSHOP_SCHEMA_REGISTRY_URL``,
    ``TECHSHOP_REDIS_URL``) are not started. Stops everything it started, in reverse.
    """

    def __init__(self, settings: Settings, *, start_redis: bool = True) -> None:
        if not settings.embedded:
            raise StackError(
                "TECHSHOP_KAFKA_BOOTSTRAP_SERVERS is set: the embedded stack is not used "
                "with an outside Kafka"
            )
        self.settings = settings
        logs = settings.data_dir / "logs"
        self.broker = EmbeddedBroker(port=settings.broker_port, log_path=logs / "tansu.log")
        self.redis = (EmbeddedRedis(port=settings.embedded_redis_port,
                                    log_path=logs / "redis.log")
                      if start_redis and settings.redis_url is None else None)
        self.registry_server: RegistryServer | None = None
        self.store: SchemaStore | None = None
        self.info: StackInfo | None = None

    def start(self) -> StackInfo:
        s = self.settings
        try:
            self.broker.start()
            registry_url = s.schema_registry_url
            if registry_url is None:
                self.store = SchemaStore(s.data_dir / "registry" / "schemas.json")
                self.registry_server = RegistryServer(self.store, port=s.registry_port)
                self.registry_server.start()
                registry_url = self.registry_server.url
            if self.redis is not None:
                self.redis.start()
            redis_url = self.redis.url if self.redis is not None else s.serving_redis_url
            catalog = TopicCatalog(s.topic_prefix)
            ensure_topics(s, catalog)
            subjects = self.register_subjects(catalog)
        except BaseException:
            self.stop()
            raise
        self.info = StackInfo(self.broker.bootstrap_servers, registry_url, redis_url, subjects)
        return self.info

    def register_subjects(self, catalog: TopicCatalog) -> dict[str, int]:
        """Register every value schema for ``catalog``'s prefix (idempotent)."""
        if self.store is not None:
            return ensure_subjects(LocalSchemaSource(self.store), catalog)
        from streams.registry import RemoteSchemaSource

        return ensure_subjects(RemoteSchemaSource(self.settings.registry_client_config()),
                               catalog)

    def stop(self) -> None:
        if self.redis is not None:
            self.redis.stop()
        if self.registry_server is not None:
            self.registry_server.stop()
            self.registry_server = None
        self.broker.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
