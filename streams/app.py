"""The Faust application factory and the adapter every pipeline agent uses.

:class:`TechShopApp` owns one Faust app (RocksDB tables via rocksdict, the web monitor
on ``TECHSHOP_WEB_HOST``, a short session timeout), every topic declared once, the
codecs, the publisher, the dead-letter path, metrics and readiness. A pipeline
registers its agents with :meth:`TechShopApp.input_agent`: a thin adapter that reads
batches, admits them (decode + validate, dead letters for the rest), hands the
accepted events to a plain function and flushes what it published before Faust
commits the input offsets.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import faust
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.streams import _current_event
from prometheus_client import CollectorRegistry

from streams import faust_transport
from streams.admin import is_tansu
from streams.dashboard import install_dashboard
from streams.errors import ConfigError, EventError, ProcessingError
from streams.intake import Admitted, RawMessage, admit, dead_letter
from streams.metrics import StreamMetrics
from streams.publisher import Codecs, EventPublisher, FaustPublisher, Publisher
from streams.registry.client import SchemaSource
from streams.settings import Settings
from streams.topics import TopicCatalog
from streams.validation import Limits
from streams.web import install_health_pages

__all__ = ["TechShopApp", "BatchHandler", "now_ms"]

log = logging.getLogger(__name__)

BatchHandler = Callable[[list[Admitted]], Awaitable[None]]


def now_ms() -> int:
    return int(time.time() * 1000)


class TechShopApp:
    """A configured Faust app plus what every pipeline shares."""

    def __init__(self, settings: Settings, source: SchemaSource,
                 registry: CollectorRegistry | None = None, *, app_id: str | None = None,
                 data_dir: Path | None = None) -> None:
        self.settings = settings
        self.catalog = TopicCatalog(settings.topic_prefix)
        self.registry = registry or CollectorRegistry()
        self.metrics = StreamMetrics.create(self.registry)
        self.codecs = Codecs(source, self.catalog)
        self.limits = Limits(max_record_bytes=settings.max_record_bytes,
                             max_future_ms=settings.max_future_ms)
        self.readiness: dict[str, Callable[[], bool]] = {}
        self._model_listeners: list[Callable[[dict[str, Any]], None]] = []
        self._publisher: EventPublisher | None = None
        self.faust = self._create_faust(app_id or settings.app_id,
                                        data_dir or settings.data_dir / "worker")
        setup_prometheus_sensors(self.faust, registry=self.registry,
                                 name_prefix="techshop_faust")
        install_health_pages(self)
        self._topics: dict[str, faust.TopicT] = {}
        install_dashboard(self)

    # -- construction ------------------------------------------------------------
    def _create_faust(self, app_id: str, data_dir: Path) -> faust.App:
        s = self.settings
        tansu = is_tansu(s)
        if tansu and s.processing_guarantee == "exactly_once":
            raise ConfigError("TECHSHOP_PROCESSING_GUARANTEE=exactly_once needs Kafka "
                              "transactions, which the embedded broker (Tansu) does not have")
        faust_transport.install(
            fetch_wait_ms=s.fetch_wait_ms(tansu), exact_end_offsets=tansu,
            client_config=s.kafka_client_config(),
        )
        data_dir.mkdir(parents=True, exist_ok=True)
        return faust.App(
            app_id,
            broker=f"{faust_transport.SCHEME}://{s.bootstrap_servers}",
            broker_credentials=_faust_credentials(s),
            store="rocksdb://",
            datadir=str(data_dir),
            web_host=s.web_host,
            web_bind=s.web_host,  # Faust binds 0.0.0.0 unless told; web_host only advertises
            web_port=s.web_port,
            web_tables_enabled=False,
            web_router_enabled=False,
            topic_partitions=s.partitions,
            topic_replication_factor=s.replication_factor,
            consumer_auto_offset_reset="earliest",
            broker_session_timeout=s.session_timeout_s,
            broker_heartbeat_interval=max(1.0, s.session_timeout_s / 5),
            broker_request_timeout=max(40.0, s.session_timeout_s * 2),
            broker_max_poll_records=s.max_poll_records,
            stream_buffer_maxsize=s.stream_buffer_maxsize,
            producer_linger=s.producer_linger_ms / 1000.0,
            producer_max_batch_size=256 * 1024,
            stream_wait_empty=False,
            processing_guarantee=s.processing_guarantee,
        )

    @property
    def publisher(self) -> EventPublisher:
        if self._publisher is None:
            if self.settings.processing_guarantee == "exactly_once":
                self._publisher = FaustPublisher(self, self.codecs, self.metrics)
            else:
                self._publisher = Publisher(self.settings.kafka_client_config(), self.codecs,
                                            self.metrics, self.settings.producer_linger_ms)
        return self._publisher

    def topic(self, logical: str) -> faust.TopicT:
        """The Faust topic of a logical name, declared once with its spec."""
        topic = self._topics.get(logical)
        if topic is None:
            spec = self.catalog.spec(logical)
            topic = self.faust.topic(
                self.catalog.physical(logical),
                key_type=bytes, value_type=bytes, key_serializer="raw",
                value_serializer="raw", partitions=spec.partitions or self.settings.partitions,
                compacting=spec.compacted or None,
            )
            self._topics[logical] = topic
        return topic

    # -- the agent adapter -------------------------------------------------------
    def input_agent(self, logical_topic: str, handler: BatchHandler, *, name: str,
                    max_batch: int = 1000, within_s: float = 0.01) -> None:
        """Run ``handler`` over admitted batches of ``logical_topic``.

        Each call gets events of one partition, in offset order, so table writes in the
        handler land in that partition's store and changelog.

        A handler that raises :class:`EventError` (or anything else) dead-letters the
        whole batch with that reason instead of stopping the worker; handlers that
        can tell which event failed should dead-letter it themselves with
        :meth:`reject`.
        """
        codec = self.codecs[logical_topic]
        metrics = self.metrics

        async def run(stream: Any) -> None:
            async for events in stream.take_events(max_batch, within_s):
                metrics.events_in.labels(logical_topic).inc(len(events))
                metrics.batch_size.labels(logical_topic).observe(len(events))
                for group in _by_partition(events):
                    # Faust writes table changes to the changelog partition of the
                    # "current event": make it one of this group's, not the batch's last.
                    _current_event.set(weakref.ref(group[-1]))
                    await self._handle(logical_topic, group, codec, handler, name)
                await self.publisher.flush()

        run.__name__ = name
        self.faust.agent(self.topic(logical_topic), name=name)(run)

    async def _handle(self, logical_topic: str, events: list[Any], codec: Any,
                      handler: BatchHandler, name: str) -> None:
        batch = admit(logical_topic, [_raw(e.message) for e in events], codec, self.limits,
                      now_ms())
        for record in batch.rejected:
            self._send_dead_letter(logical_topic, record)
        if not batch.accepted:
            return
        try:
            await handler(batch.accepted)
        except Exception as exc:  # keep going: the batch goes to dead letters
            error = exc if isinstance(exc, EventError) else ProcessingError(
                f"{type(exc).__name__}: {exc}")
            log.exception("%s failed on a batch of %d", name, len(batch.accepted))
            for item in batch.accepted:
                self.reject(item.message, error)

    def reject(self, message: RawMessage, error: EventError) -> None:
        """Dead-letter one input message with the reason carried by ``error``."""
        logical = self.catalog.logical(message.topic)
        self._send_dead_letter(logical, dead_letter(message, error, now_ms()))

    def _send_dead_letter(self, logical_topic: str, record: dict[str, Any]) -> None:
        self.metrics.dead_letters.labels(logical_topic, record["reason"]).inc()
        self.publisher.publish("dead-letters", record, key=record["key"] or b"")

    # -- model updates ---------------------------------------------------------------
    def on_model_update(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call ``callback`` with every ``model-updates`` record, on every worker (read
        outside the consumer group from the beginning, so a late worker catches up)."""
        if not self._model_listeners:
            from streams.broadcast import BroadcastReader

            @self.faust.task
            async def read_model_updates() -> None:
                import asyncio

                def fan_out(record: dict[str, Any]) -> None:
                    for listener in self._model_listeners:
                        try:
                            listener(record)
                        except Exception:
                            log.exception("a model-updates listener failed on %s", record)

                BroadcastReader(self.settings, self.codecs, "model-updates",
                                fan_out).start(asyncio.get_running_loop())

        self._model_listeners.append(callback)

    # -- readiness -----------------------------------------------------------------
    def add_readiness_check(self, name: str, check: Callable[[], bool]) -> None:
        """``/ready`` answers 200 only when every check returns True."""
        self.readiness[name] = check


def _by_partition(events: list[Any]) -> list[list[Any]]:
    groups: dict[int, list[Any]] = {}
    for event in events:
        groups.setdefault(event.message.partition, []).append(event)
    return list(groups.values())


def _raw(message: Any) -> RawMessage:
    return RawMessage(message.topic, message.partition, message.offset, message.key,
                      message.value, int((message.timestamp or 0) * 1000))


def _faust_credentials(s: Settings) -> Any:
    if s.kafka_security_protocol == "PLAINTEXT":
        return None
    import ssl

    ssl_context = None
    if s.kafka_security_protocol in ("SSL", "SASL_SSL"):
        ssl_context = ssl.create_default_context(
            cafile=str(s.kafka_ssl_cafile) if s.kafka_ssl_cafile else None)
        if s.kafka_ssl_certfile:
            ssl_context.load_cert_chain(str(s.kafka_ssl_certfile),
                                        str(s.kafka_ssl_keyfile) if s.kafka_ssl_keyfile else None)
    if s.kafka_sasl_mechanism:
        password = s.kafka_sasl_password.get_secret_value() if s.kafka_sasl_password else ""
        return faust.SASLCredentials(
            username=s.kafka_sasl_username or "", password=password,
            mechanism=s.kafka_sasl_mechanism, ssl_context=ssl_context,
        )
    return faust.SSLCredentials(ssl_context)
