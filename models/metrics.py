"""Model-lifecycle metrics shared by every pipeline, created once per Prometheus
registry (several pipelines in one worker share them)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

__all__ = ["refused_counter"]


def refused_counter(registry: CollectorRegistry) -> Counter:
    """``techshop_model_refused_total{model, reason}``: versions (or routing files) the
    registry refused (signature, digest, moved, unreadable, malformed)."""
    existing = getattr(registry, "_names_to_collectors", {}).get("techshop_model_refused")
    if isinstance(existing, Counter):
        return existing
    return Counter("techshop_model_refused", "Model versions refused by the registry's "
                   "integrity checks", ["model", "reason"], registry=registry)
