"""Create every topic and register every value schema, idempotently."""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streams.errors import StackError
from streams.registry.client import SchemaSource
from streams.settings import Settings
from streams.topics import TopicCatalog

__all__ = ["is_tansu", "ensure_topics", "ensure_subjects", "wait_for_broker", "quiet_client_config"]

log = logging.getLogger(__name__)


def quiet_client_config(settings: Settings) -> dict[str, Any]:
    """Client settings that do not log every closed idle connection at ERROR."""
    return {**settings.kafka_client_config(), "log.connection.close": False, "log_level": 2}


def wait_for_broker(settings: Settings, timeout: float = 10.0) -> AdminClient:
    """An admin client once the cluster answers metadata; ``StackError`` if it never does."""
    admin = AdminClient(quiet_client_config(settings))
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin.list_topics(timeout=min(2.0, timeout))
            return admin
        except KafkaException as exc:
            if time.monotonic() > deadline:
                hint = ("run `techshop up` first, or set TECHSHOP_KAFKA_BOOTSTRAP_SERVERS"
                        if settings.embedded else "check TECHSHOP_KAFKA_BOOTSTRAP_SERVERS")
                raise StackError(
                    f"no Kafka broker answers at {settings.bootstrap_servers} ({exc.args[0]}): "
                    f"{hint}"
                ) from None
            time.sleep(0.2)


def is_tansu(settings: Settings) -> bool:
    """Whether the configured broker is Tansu (by setting, or by asking its cluster id)."""
    if settings.broker_compat != "auto":
        return settings.broker_compat == "tansu"
    try:
        cluster_id = wait_for_broker(settings).list_topics(timeout=5).cluster_id or ""
    except (StackError, KafkaException):
        return settings.embedded
    return cluster_id.startswith("tansu")


def ensure_topics(settings: Settings, catalog: TopicCatalog | None = None) -> list[str]:
    """Create the missing topics of the deployment; returns the names created."""
    catalog = catalog or TopicCatalog(settings.topic_prefix)
    admin = wait_for_broker(settings)
    existing = set(admin.list_topics(timeout=5).topics)
    wanted = []
    for spec in catalog.all():
        name = catalog.physical(spec.name)
        if name in existing:
            continue
        config = {"cleanup.policy": "compact"} if spec.compacted else {}
        wanted.append(NewTopic(name, spec.partitions or settings.partitions,
                               settings.replication_factor, config=config))
    created = []
    for name, future in admin.create_topics(wanted, request_timeout=15).items() if wanted else []:
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise StackError(f"cannot create topic {name}: {exc.args[0].str()}") from None
    if created:
        log.info("created topics: %s", ", ".join(sorted(created)))
    return created


def ensure_subjects(source: SchemaSource, catalog: TopicCatalog) -> dict[str, int]:
    """Register every topic's value schema under ``<physical topic>-value``."""
    from schemas import schema_text

    return {
        catalog.subject(spec.name): source.register(catalog.subject(spec.name),
                                                    schema_text(spec.schema))
        for spec in sorted(catalog.all(), key=lambda s: s.name)
    }
