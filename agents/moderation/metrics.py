"""The moderation pipeline's Prometheus metrics, created once per registry.

Names and labels follow the fraud pipeline's (the dashboard's moderation panel reads
``techshop_moderation_decisions_total{outcome,variant}``,
``techshop_moderation_decision_latency_seconds`` and ``techshop_moderation_model_info``).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ModerationMetrics"]

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 30.0)
STAGE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclass(frozen=True)
class ModerationMetrics:
    decisions: Counter
    flags: Counter
    latency: Histogram
    stage_seconds: Histogram
    batch_size: Histogram
    load_failures: Counter
    review_queue: Gauge
    model_info: Gauge
    thresholds: Gauge
    repeats: Counter
    verdicts: Counter
    memory_hits: Counter
    training_examples: Counter
    labels_unmatched: Counter
    recalibrations: Counter
    drift_state: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ModerationMetrics:
        return cls(
            decisions=Counter("techshop_moderation_decisions_total",
                              "Moderation decisions published (variant: model, loader = the "
                              "image could not be judged, memory = a reviewer's verdict on a "
                              "near-duplicate)", ["outcome", "variant"], registry=registry),
            flags=Counter("techshop_moderation_category_flags_total",
                          "Categories at or above their review/reject threshold",
                          ["category", "outcome"], registry=registry),
            latency=Histogram("techshop_moderation_decision_latency_seconds",
                              "Upload produced (record timestamp) -> decision published",
                              buckets=LATENCY_BUCKETS, registry=registry),
            stage_seconds=Histogram("techshop_moderation_stage_seconds",
                                    "Wall time per micro-batch of each stage (load = read + "
                                    "decode of the batch, in parallel)", ["stage"],
                                    buckets=STAGE_BUCKETS, registry=registry),
            batch_size=Histogram("techshop_moderation_batch_size",
                                 "Uploads per micro-batch (one inference per stage)",
                                 buckets=BATCH_BUCKETS, registry=registry),
            load_failures=Counter("techshop_moderation_load_failures_total",
                                  "Uploads whose image could not be loaded, by reason",
                                  ["reason"], registry=registry),
            review_queue=Gauge("techshop_moderation_review_queue_depth",
                               "Uploads sent to review (REVIEW and audits) by this worker "
                               "without a verdict yet", registry=registry),
            model_info=Gauge("techshop_moderation_model_info", "Models in use (1 = in use)",
                             ["role", "model"], registry=registry),
            thresholds=Gauge("techshop_moderation_threshold",
                             "Thresholds in use per category", ["category", "bound"],
                             registry=registry),
            repeats=Counter("techshop_moderation_repeats_total",
                            "Redelivered uploads answered from moderation-decided "
                            "(not republished)", registry=registry),
            verdicts=Counter("techshop_moderation_verdicts_total",
                             "Reviewer verdicts joined with their decision",
                             ["verdict", "decided"], registry=registry),
            memory_hits=Counter("techshop_moderation_memory_hits_total",
                                "Decisions changed by a verdict on a near-duplicate",
                                ["verdict"], registry=registry),
            training_examples=Counter("techshop_moderation_training_examples_total",
                                      "Training examples published, by label",
                                      ["label"], registry=registry),
            labels_unmatched=Counter("techshop_moderation_labels_unmatched_total",
                                     "Verdicts for unknown uploads (dead-lettered)",
                                     registry=registry),
            recalibrations=Counter("techshop_moderation_recalibrations_total",
                                   "Threshold versions published from verdicts",
                                   registry=registry),
            drift_state=Gauge("techshop_moderation_drift_state",
                              "Drift per signal: 0 stable, 1 warning, 2 drift",
                              ["signal"], registry=registry),
        )
