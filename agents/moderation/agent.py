"""The moderation pipeline's Faust adapter.

* ``moderation-decide`` reads ``image-uploads`` in micro-batches (at most
  ``TECHSHOP_MODERATION_MAX_BATCH`` uploads gathered for at most
  ``TECHSHOP_MODERATION_BATCH_WAIT_MS``, per partition), loads and decodes the images in
  a thread pool (:mod:`agents.moderation.loading`), runs each model stage once per batch
  in that pool too (:func:`agents.moderation.features.score_batch`), decides
  (:func:`agents.moderation.decide.decide`) and publishes ``moderation-decisions`` (and
  ``review-queue`` for REVIEW and audit samples). Once delivered, each decision and its
  provenance is stored in ``moderation-decided`` (keyed by upload_id, changelogged): a
  redelivered upload is found there and not decided again.
* ``moderation-reviews`` joins each verdict with ``moderation-decided`` (same key, same
  partition) into ``training-examples`` and remembers it by image hash in Redis, where
  the decision agent of any worker finds it for the next near-duplicate. A verdict for an
  unknown upload waits ``TECHSHOP_MODERATION_LABEL_WINDOW_MS``, then is dead-lettered
  ``label.unmatched``.
* Live drift (:mod:`agents.moderation.drift`): each category's probability from the
  classifier and the REVIEW share, in ``techshop_moderation_drift_state{signal}`` and
  as ``model-events`` records keyed by the classifier.
* Examples of family ``moderation`` reach :class:`~agents.moderation.thresholds.ThresholdTrainer`
  through the shared online trainer agent.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from agents.learning.drift_events import ModelDrift, registry_reference
from agents.learning.windows import LabelWindow
from agents.moderation.decide import MemoryHit, decide
from agents.moderation.drift import REVIEW_SHARE, drift_features, drift_matrix
from agents.moderation.features import ScoredImage, score_batch
from agents.moderation.feedback import (
    MODEL_FAMILY,
    band_keys,
    best_match,
    remember,
    training_example,
)
from agents.moderation.loading import LoadOutcome, LoadPolicy, load_image
from agents.moderation.metrics import ModerationMetrics
from agents.moderation.models import ModerationModelHolder, image_providers
from agents.moderation.thresholds import RECENT_KEEP, ThresholdTrainer, recent_key
from streams.errors import ProcessingError
from streams.intake import Admitted, RawMessage
from streams.snapshots import RedisSnapshots

if TYPE_CHECKING:
    from streams.app import TechShopApp

__all__ = ["register", "load_policy"]

log = logging.getLogger(__name__)
MEMORY_TTL_S = 30 * 24 * 3600


def load_policy(app: TechShopApp) -> LoadPolicy:
    s = app.settings
    return LoadPolicy(
        roots=tuple(Path(r) for r in s.upload_roots),
        hosts=frozenset(h.strip().lower() for h in s.image_hosts.split(",") if h.strip()),
        max_bytes=s.image_max_bytes, max_pixels=s.moderation_max_pixels,
        formats=tuple(f.strip().upper() for f in s.moderation_formats.split(",") if f.strip()),
        work_side=max(640, s.moderation_detector_side))


def register(app: TechShopApp) -> None:
    from agents.fraud.agent import open_registry
    from streams.app import now_ms

    s = app.settings
    metrics = ModerationMetrics.create(app.registry)
    policy = load_policy(app)
    pool = ThreadPoolExecutor(s.moderation_threads, thread_name_prefix="moderation")

    def show(holder: ModerationModelHolder) -> None:
        metrics.model_info.clear()
        if holder.stages is not None:
            for role, model in holder.stages.model_ids.items():
                metrics.model_info.labels(role, model).set(1)
        for category, t in holder.thresholds.items():
            metrics.thresholds.labels(category, "approve").set(t.approve)
            metrics.thresholds.labels(category, "reject").set(t.reject)

    holder = ModerationModelHolder(open_registry(app), image_providers(s.moderation_providers),
                                   detector_side=s.moderation_detector_side,
                                   threads=s.moderation_intra_op_threads,
                                   chunk=s.moderation_inference_chunk, on_change=show)
    app.moderation_models = holder  # type: ignore[attr-defined]

    def emit_event(record: dict[str, Any]) -> None:
        app.publisher.publish("model-events", record)

    # The columns follow the classifier's categories (set at its first batch).
    live_drift = ModelDrift(metrics.drift_state, emit_event, features=drift_features(()),
                            score=None, reference=registry_reference(holder.registry),
                            window=s.drift_window, adwin_delta=s.drift_adwin_delta)
    metrics.drift_state.labels(REVIEW_SHARE).set(0)
    app.add_readiness_check("moderation_models_loaded", lambda: holder.stages is not None)
    decided = app.faust.Table("moderation-decided", default=None, key_type=str,
                              partitions=s.partitions)
    pending = app.faust.Table("moderation-pending-reviews", default=None, key_type=str,
                              partitions=s.partitions)
    memory = RedisSnapshots(s.serving_redis_url, f"{s.topic_prefix}moderation:verdict:",
                            MEMORY_TTL_S)
    recent = recent_key(s.topic_prefix)
    # Kept for the dedup TTL and for verdicts to find their decision, whichever is longer.
    expiry = LabelWindow(max(s.dedup_ttl_ms, s.moderation_label_window_ms))
    rebuilt = {"done": False}

    def sweep_decided(partition: int) -> None:
        if not rebuilt["done"]:
            for upload_id, entry in list(decided.items()):
                if entry:
                    expiry.add(entry["partition"], entry["decided_at"], upload_id)
            rebuilt["done"] = True
        for _, upload_id in expiry.expired(partition, now_ms()):
            decided.pop(upload_id, None)

    @app.faust.task
    async def load_models() -> None:
        await asyncio.get_running_loop().run_in_executor(pool, holder.ensure_loaded)

    app.on_model_update(holder.on_update)

    from agents.learning.trainer import register_trainer

    register_trainer(app, MODEL_FAMILY,
                     ThresholdTrainer(app, holder, metrics, memory.redis))  # type: ignore[arg-type]

    async def on_uploads(batch: list[Admitted]) -> None:
        loop = asyncio.get_running_loop()
        if holder.stages is None:  # consuming began before the start-up load finished
            await loop.run_in_executor(pool, holder.ensure_loaded)
        stages, thresholds = holder.current
        if stages is None:
            raise ProcessingError("moderation models could not be loaded", "process.not_ready")
        sweep_decided(batch[0].message.partition)
        uploads, messages, seen = [], [], set()
        for item in batch:
            upload_id = item.event["upload_id"]
            if upload_id in seen or decided.get(upload_id) is not None:
                metrics.repeats.inc()
                continue
            seen.add(upload_id)
            uploads.append(item.event)
            messages.append(item.message)
        if not uploads:
            return
        metrics.batch_size.observe(len(uploads))
        t0 = time.perf_counter()
        loads: list[LoadOutcome] = list(await asyncio.gather(*(
            loop.run_in_executor(pool, load_image, u["uri"], policy) for u in uploads)))
        metrics.stage_seconds.labels("load").observe(time.perf_counter() - t0)
        failures: dict[int, str] = {}
        good = []
        for i, outcome in enumerate(loads):
            if outcome.reason is None:
                good.append(i)
                continue
            metrics.load_failures.labels(outcome.reason).inc()
            if outcome.dead_letter:
                app.reject(messages[i], ProcessingError(outcome.detail, outcome.reason))
            else:
                failures[i] = outcome.reason
        scored: dict[int, ScoredImage] = {}
        if good:
            images = [img for i in good if (img := loads[i].image) is not None]
            results, timings = await loop.run_in_executor(pool, score_batch, images, stages)
            for stage, seconds in timings.items():
                metrics.stage_seconds.labels(stage).observe(seconds)
            scored = dict(zip(good, results, strict=True))
        hits = _memory_hits(memory, uploads, scored)
        results_ = decide(uploads, failures, scored, thresholds, stages.classifier.model_id,
                          now_ms(), memory=hits, audit_rate=s.moderation_audit_rate)
        if scored:
            columns = drift_features(stages.classifier.policy_categories)
            live_drift.observe(stages.classifier.model_id, None,
                               drift_matrix(results_, scored, columns),
                               max(int(u["ts"]) for u in uploads), features=columns)
        for d in results_:
            app.publisher.publish("moderation-decisions", d.decision)
            if d.to_review:
                app.publisher.publish("review-queue", d.decision)
        if scored:
            try:
                pipe = memory.redis.pipeline(transaction=False)
                pipe.lpush(recent, *(orjson.dumps(v.scores) for v in scored.values()))
                pipe.ltrim(recent, 0, RECENT_KEEP - 1)
                pipe.execute()
            except Exception as exc:  # the sample is for recalibration only
                log.warning("could not record recent scores: %s", exc)
        await app.publisher.flush()
        published = time.time()
        for d in results_:
            message, upload = messages[d.position], uploads[d.position]
            entry = {**d.decision, **d.provenance, "seller_id": upload["seller_id"],
                     "partition": message.partition, "offset": message.offset,
                     "to_review": d.to_review, "verdict": None}
            decided[upload["upload_id"]] = entry
            expiry.add(message.partition, entry["decided_at"], upload["upload_id"])
            if message.timestamp_ms:
                metrics.latency.observe(max(0.0, published - message.timestamp_ms / 1000.0))
            variant = ("loader" if d.position in failures else
                       "memory" if d.position in hits else "model")
            metrics.decisions.labels(d.decision["decision"], variant).inc()
            if d.position in hits:
                metrics.memory_hits.labels(hits[d.position].verdict).inc()
            for reason in d.decision["reasons"]:
                category = reason.split(":", 1)[0]
                if ">=" in reason and d.decision["decision"] != "APPROVE":
                    metrics.flags.labels(category, d.decision["decision"]).inc()
            if d.to_review:
                metrics.review_queue.inc()
            waiting = pending.pop(upload["upload_id"], None)
            if waiting is not None:
                apply_verdict(entry, waiting["decision"], waiting["ts"])
        sweep_pending(batch[0].message.partition)

    def _memory_hits(snapshots: RedisSnapshots, uploads: list[dict[str, Any]],
                     scored: dict[int, ScoredImage]) -> dict[int, MemoryHit]:
        if not scored:
            return {}
        try:
            buckets = snapshots.fetch({k for v in scored.values() for k in band_keys(v.phash)})
        except Exception as exc:  # Redis away: decide on the models alone
            log.warning("verdict memory unavailable: %s", exc)
            return {}
        out = {}
        for i, v in scored.items():
            hit = best_match(v.phash, buckets, exclude=uploads[i]["upload_id"])
            if hit is not None:
                out[i] = hit
        return out

    def apply_verdict(entry: dict[str, Any], verdict: str, ts: int) -> None:
        if entry.get("verdict") is not None:  # a repeated verdict: the first one counts
            return
        app.publisher.publish("training-examples", training_example(entry, verdict, ts))
        metrics.training_examples.labels("reject" if verdict == "REJECT" else "approve").inc()
        metrics.verdicts.labels(verdict, entry["decision"]).inc()
        if entry.get("to_review"):
            metrics.review_queue.dec()
        phash = entry.get("phash")
        if phash:
            value = int(phash, 16)
            try:
                memory.store(remember(memory.fetch(band_keys(value)), value, verdict,
                                      entry["upload_id"], ts))
            except Exception as exc:
                log.warning("could not remember the verdict on %s: %s", entry["upload_id"], exc)
        decided[entry["upload_id"]] = {**entry, "verdict": verdict}

    async def on_reviews(batch: list[Admitted]) -> None:
        for item in batch:
            review, message = item.event, item.message
            entry = decided.get(review["upload_id"])
            if entry is not None:
                apply_verdict(entry, review["decision"], review["ts"])
                continue
            pending[review["upload_id"]] = {
                "decision": review["decision"], "ts": review["ts"], "wall": now_ms(),
                "topic": message.topic, "partition": message.partition,
                "offset": message.offset, "key": _b64(message.key),
                "value": _b64(message.value)}
        sweep_pending(batch[0].message.partition)

    def sweep_pending(partition: int) -> None:
        limit = now_ms() - s.moderation_label_window_ms
        expired = [k for k, v in pending.items()
                   if v and v["partition"] == partition and v["wall"] < limit]
        for upload_id in expired:
            waiting = pending.pop(upload_id)
            metrics.labels_unmatched.inc()
            app.reject(RawMessage(waiting["topic"], waiting["partition"], waiting["offset"],
                                  _unb64(waiting["key"]), _unb64(waiting["value"])),
                       ProcessingError(f"no upload {upload_id} within the label window",
                                       "label.unmatched"))

    app.input_agent("image-uploads", on_uploads, name="moderation-decide",
                    max_batch=s.moderation_max_batch,
                    within_s=s.moderation_batch_wait_ms / 1000.0)
    app.input_agent("moderation-reviews", on_reviews, name="moderation-reviews")


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)
