"""The fraud pipeline's Prometheus metrics, created once per registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["FraudMetrics"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class FraudMetrics:
    decisions: Counter
    latency: Histogram
    fallbacks: Counter
    late_events: Counter
    repeats: Counter
    model_info: Gauge
    score_seconds: Histogram
    training_examples: Counter
    labels_unmatched: Counter
    drift_state: Gauge
    shadow_scored: Counter
    prequential: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> FraudMetrics:
        return cls(
            decisions=Counter("techshop_fraud_decisions_total", "Fraud decisions published",
                              ["outcome", "variant"], registry=registry),
            latency=Histogram("techshop_fraud_decision_latency_seconds",
                              "Transaction produced (record timestamp) -> decision published",
                              buckets=LATENCY_BUCKETS, registry=registry),
            fallbacks=Counter("techshop_fraud_fallback_total",
                              "Batches decided by the rules instead of the champion",
                              ["reason"], registry=registry),
            late_events=Counter("techshop_fraud_late_events_total",
                                "Transactions behind the card's event time by more than the "
                                "grace period (dead-lettered)", registry=registry),
            repeats=Counter("techshop_fraud_repeats_total",
                            "Redelivered transactions answered from the decision store "
                            "(not republished)", registry=registry),
            model_info=Gauge("techshop_fraud_model_info", "Models in use (1 = in use)",
                             ["role", "model"], registry=registry),
            score_seconds=Histogram("techshop_fraud_model_score_seconds",
                                    "Champion scoring time per batch", registry=registry),
            training_examples=Counter("techshop_fraud_training_examples_total",
                                      "Training examples published, by label",
                                      ["label"], registry=registry),
            labels_unmatched=Counter("techshop_fraud_labels_unmatched_total",
                                     "Labels for unknown transactions (dead-lettered)",
                                     registry=registry),
            drift_state=Gauge("techshop_fraud_drift_state",
                              "Drift per signal: 0 stable, 1 warning, 2 drift",
                              ["signal"], registry=registry),
            shadow_scored=Counter("techshop_fraud_shadow_scored_total",
                                  "Transactions the challenger scored without deciding",
                                  ["model"], registry=registry),
            prequential=Gauge("techshop_fraud_prequential",
                              "Prequential metrics over the window (test-then-train), by "
                              "role", ["role", "metric"], registry=registry),
        )
