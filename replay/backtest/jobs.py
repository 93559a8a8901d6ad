"""Whole backtests, from a source to a report dict: what ``techshop backtest`` runs.

:func:`fraud_job` reads the transactions (topic range or file), the labels
(``fraud-labels`` from the range's start on, or a file) and, to check consistency, the
decisions the live pipeline published (``fraud-decisions``, or a file); runs
:func:`replay.backtest.fraud.run_fraud`; and builds the report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replay.backtest.fraud import (
    ModelSpec,
    collect_labels,
    compare_published,
    ground_truth,
    load_variants,
    run_fraud_stream,
)
from replay.backtest.inputs import Loaded, Where, iter_events, load_events
from replay.backtest.metrics import Costs
from replay.progress import Bars
from replay.sources import Bound
from streams.settings import Settings

__all__ = ["FraudJob", "fraud_job", "open_registry"]


def open_registry(settings: Settings, model_dir: Path | None = None) -> Any:
    from models.registry import open_registry as registry_at

    key = settings.model_signing_key.get_secret_value() if settings.model_signing_key else None
    return registry_at(model_dir or settings.models_path, key)


@dataclass
class FraudJob:
    """What to backtest. ``labels``/``published`` None: the topics of the deployment when
    the transactions come from a topic, nothing when they come from a file."""

    transactions: Where
    models: list[ModelSpec]
    sweep: list[Any] = field(default_factory=list)
    labels: Where | None = None
    published: Where | None = None
    compare: bool = True
    batch_size: int = 1000
    label_window_ms: int | None = None
    costs: Costs = field(default_factory=Costs)
    model_dir: Path | None = None


def _follow_on(where: Where, topic: str) -> Where:
    """``topic`` read from the transactions' start on (labels and decisions come later)."""
    start = where.start if where.start is not None and where.start.kind == "time" else None
    return Where(topic, start=start)


def fraud_job(settings: Settings, job: FraudJob, bars: Bars | None = None
              ) -> dict[str, Any]:
    """Run ``job``; the report dict (see :func:`replay.report.fraud.fraud_report`)."""
    from replay.report.fraud import fraud_report

    bars = bars or Bars(enabled=False)
    started = time.monotonic()
    variants = load_variants(open_registry(settings, job.model_dir), job.models, job.sweep)
    txns = Loaded(source="")
    stream = iter_events(settings, job.transactions, txns,
                         on_progress=bars.task("reading transactions"))
    from_topic = job.transactions.file is None
    labels_where = job.labels or (_follow_on(job.transactions, "fraud-labels")
                                  if from_topic else None)
    label_values: list[dict[str, Any]] = []
    if labels_where is not None:
        loaded = load_events(settings, labels_where, validate_events=False,
                             on_progress=bars.task("reading labels"))
        label_values = loaded.events
    run = run_fraud_stream(stream, variants, batch_size=job.batch_size,
                           grace_ms=settings.fraud_grace_ms, on_progress=bars.task("deciding"))
    labels = collect_labels(label_values)
    window = job.label_window_ms if job.label_window_ms is not None \
        else settings.fraud_label_window_ms
    truth = ground_truth(run, labels, window)
    consistency = None
    published_where = job.published or (_follow_on(job.transactions, "fraud-decisions")
                                        if from_topic and job.compare else None)
    if published_where is not None and job.compare:
        published = load_events(settings, published_where, validate_events=False,
                                on_progress=bars.task("reading decisions"))
        consistency = compare_published(run, published.events)
    data = _data(txns, labels_where, published_where, settings, job)
    report = fraud_report(run, truth, labels, data=data, consistency=consistency,
                          costs=job.costs)
    report["speed"]["total_seconds"] = time.monotonic() - started
    report["speed"]["read_seconds"] = txns.seconds
    return report


def _data(txns: Loaded, labels: Where | None, published: Where | None, settings: Settings,
          job: FraudJob) -> dict[str, Any]:
    from streams.topics import TopicCatalog

    catalog = TopicCatalog(settings.topic_prefix)

    def bound(b: Bound | None) -> Any:
        return None if b is None else {"kind": b.kind, "value": b.value}

    return {"source": txns.source, "events_read": txns.streamed + sum(
                txns.dead_letters.values()),
            "accepted": txns.streamed, "dead_letters": dict(txns.dead_letters),
            "from": bound(job.transactions.start), "to": bound(job.transactions.end),
            "record_ts": list(txns.record_ts) if txns.record_ts else None,
            "labels_source": labels.describe(catalog) if labels else None,
            "published_source": published.describe(catalog) if published else None,
            "batch_size": job.batch_size, "grace_ms": settings.fraud_grace_ms}
