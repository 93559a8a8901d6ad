"""The ``model-updates`` and ``model-events`` records of registry changes, built in one
place for workers, trainers and the CLI (publishing is the caller's: this package has
no Kafka).

``model-updates`` says "load again": a new version (``role`` champion / challenger) or
a routing change (``role`` ``routing``); every worker re-reads the signed routing and
versions from the registry, so the record itself grants nothing. ``model-events`` is
the audit trail: drift, promotion, rollback, canary, retrain.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from models.registry import Manifest, ModelRegistry

__all__ = ["event_record", "update_record"]


def update_record(registry: ModelRegistry, manifest: Manifest, role: str, ts: int
                  ) -> dict[str, Any]:
    """The ``model-updates`` record of a registry version."""
    return {
        "model": manifest.name, "version": manifest.version, "kind": manifest.kind,
        "uri": (registry.root / manifest.name / manifest.version).as_uri(),
        "sha256": manifest.sha256, "signature": manifest.signature, "role": role,
        "metrics": _numbers(manifest.metrics), "ts": int(ts),
    }


def event_record(model: str, kind: str, detail: str, metrics: Mapping[str, Any], ts: int
                 ) -> dict[str, Any]:
    """A ``model-events`` record (``kind``: drift, drift_warning, drift_cleared,
    promote, rollback, canary, shadow, retrain, policy)."""
    return {"event_id": uuid.uuid4().hex, "model": model, "kind": kind, "detail": detail,
            "metrics": _numbers(metrics), "ts": int(ts)}


def _numbers(values: Mapping[str, Any]) -> dict[str, float]:
    return {str(k): float(v) for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and v == v}
