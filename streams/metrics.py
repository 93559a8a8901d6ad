"""The runtime's own Prometheus metrics (pipelines add theirs in ``agents/*/metrics.py``).

Created once per registry, so tests can use a fresh :class:`CollectorRegistry`.
Faust's own sensor (``faust.sensors.prometheus``) adds the runtime series on the same
registry; nothing here duplicates it.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["StreamMetrics"]


@dataclass(frozen=True)
class StreamMetrics:
    events_in: Counter
    dead_letters: Counter
    events_out: Counter
    publish_errors: Counter
    batch_size: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> StreamMetrics:
        return cls(
            events_in=Counter("techshop_events_in_total",
                              "Input events read, by logical topic", ["topic"],
                              registry=registry),
            dead_letters=Counter("techshop_dead_letters_total",
                                 "Events sent to dead-letters, by source topic and reason",
                                 ["topic", "reason"], registry=registry),
            events_out=Counter("techshop_events_out_total",
                               "Events published, by logical topic", ["topic"],
                               registry=registry),
            publish_errors=Counter("techshop_publish_errors_total",
                                   "Produce requests that failed delivery, by topic",
                                   ["topic"], registry=registry),
            batch_size=Histogram("techshop_batch_size_events",
                                 "Events per batch handed to a pipeline", ["topic"],
                                 buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
                                 registry=registry),
        )
