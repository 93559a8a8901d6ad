"""The moderation backtest: published category scores through the live decision rule.

Moderation versions of ``moderation_classifier`` mostly differ by their thresholds:
recalibration publishes the same artefact again with new ones (see
:mod:`agents.moderation.thresholds`). The backtest therefore re-decides the uploads of
a range from the category scores their published ``moderation-decisions`` carry, with
each version's thresholds, through :func:`agents.moderation.decide.judge` (the rule
``decide()`` applies) and the same overrides: an upload the loader could not judge
stays REJECT; a reviewer's verdict on a near-duplicate (``review.similar`` in the
reasons) keeps overriding as live (REJECT stays, APPROVE turns a REVIEW into APPROVE);
APPROVE decisions are sampled for audit with :func:`~agents.moderation.decide.audited`.
A version whose artefact differs from the one that scored (sha256) would score
differently: the report marks it (``same_artefact`` false) — its figures are then only
those of its thresholds over the old scores.

Ground truth: ``moderation-reviews`` (the first verdict per upload counts, as live).
Figures per version: decisions, review volume (REVIEW + audit samples), agreement with
the reviewers on the uploads they judged (APPROVE or REJECT equal to the verdict; a
REVIEW defers to them), wrong approvals and wrong rejections. The decisions re-made
with the thresholds of the version that decided are compared with the published ones,
one by one (consistency).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from replay.backtest.inputs import Loaded, Where, load_events
from replay.progress import Bars
from streams.errors import ConfigError
from streams.settings import Settings

__all__ = ["ModVariant", "load_mod_variants", "redecide", "moderation_figures",
           "ModerationJob", "moderation_job"]

CLASSIFIER = "moderation_classifier"


@dataclass
class ModVariant:
    label: str
    thresholds: Mapping[str, Any]  # category -> CategoryThresholds
    sha256: str = ""


def load_mod_variants(registry: Any, names: Sequence[str]) -> list[ModVariant]:
    """Each ``moderation_classifier@N`` (default: the latest) with its manifest's
    thresholds."""
    from agents.moderation.decide import thresholds_from_flat
    from scorers.errors import ScorerError
    from streams.errors import TechShopError

    out = []
    for text in names or [f"{CLASSIFIER}@latest"]:
        name, _, version = text.partition("@")
        try:
            m = registry.manifest(name, version or "latest")
        except (TechShopError, ScorerError, OSError, KeyError, ValueError) as exc:
            raise ConfigError(f"model {text}: {exc}") from None
        out.append(ModVariant(m.model_id, thresholds_from_flat(m.thresholds or {}), m.sha256))
    return out


def redecide(record: Mapping[str, Any], thresholds: Mapping[str, Any],
             audit_rate: float) -> tuple[str, bool]:
    """The decision ``thresholds`` give this published record, and whether it goes to
    the review queue (REVIEW, or an audit sample)."""
    from agents.moderation.decide import LOADER_MODEL, audited, judge

    if record["model"] == LOADER_MODEL:
        decision = record["decision"]
    else:
        decision, _ = judge(record.get("scores") or {}, thresholds)
        similar = any(str(r).startswith("review.similar:") for r in record.get("reasons", []))
        if similar and (record["decision"] == "REJECT" or decision == "REVIEW"):
            decision = record["decision"]  # the near-duplicate's verdict, as published
    audit = decision == "APPROVE" and audited(record["upload_id"], audit_rate)
    return decision, decision == "REVIEW" or audit


@dataclass
class _Figures:
    outcomes: Counter[str] = field(default_factory=Counter)
    to_review: int = 0
    reviewed: int = 0
    agree: int = 0
    deferred: int = 0
    wrong_approve: int = 0
    wrong_reject: int = 0


def moderation_figures(decisions: Sequence[tuple[str, bool]], upload_ids: Sequence[str],
                       verdicts: Mapping[str, str]) -> dict[str, Any]:
    """Counts and rates for one variant's decisions against reviewers' verdicts.

    >>> moderation_figures([("APPROVE", False), ("REVIEW", True), ("REJECT", False)],
    ...                    ["a", "b", "c"], {"a": "REJECT", "b": "APPROVE", "c": "REJECT"}
    ...                    )["agreement"]
    0.5
    """
    f = _Figures()
    for (decision, to_review), upload_id in zip(decisions, upload_ids, strict=True):
        f.outcomes[decision] += 1
        f.to_review += to_review
        verdict = verdicts.get(upload_id)
        if verdict is None:
            continue
        f.reviewed += 1
        if decision == "REVIEW":
            f.deferred += 1
        elif decision == verdict:
            f.agree += 1
        elif decision == "APPROVE":
            f.wrong_approve += 1
        else:
            f.wrong_reject += 1
    n = len(decisions)
    judged = f.reviewed - f.deferred
    return {"uploads": n, "outcomes": {o: f.outcomes[o] for o in ("APPROVE", "REVIEW",
                                                                    "REJECT")},
            "review_volume": f.to_review, "review_share": f.to_review / n if n else 0.0,
            "reviewed": f.reviewed, "deferred": f.deferred, "agree": f.agree,
            "agreement": f.agree / judged if judged else 0.0,
            "wrong_approve": f.wrong_approve, "wrong_reject": f.wrong_reject}


@dataclass
class ModerationJob:
    decisions: Where
    models: list[str] = field(default_factory=list)
    reviews: Where | None = None
    audit_rate: float | None = None
    model_dir: Any = None


def moderation_job(settings: Settings, job: ModerationJob, bars: Bars | None = None
                   ) -> dict[str, Any]:
    """Read the published decisions and the verdicts, re-decide with every version."""
    from replay.backtest.jobs import open_registry

    bars = bars or Bars(enabled=False)
    registry = open_registry(settings, job.model_dir)
    variants = load_mod_variants(registry, job.models)
    loaded = load_events(settings, job.decisions, validate_events=False,
                         on_progress=bars.task("reading decisions"))
    records = _first_per_upload(loaded)
    reviews_where = job.reviews or (Where("moderation-reviews")
                                    if job.decisions.file is None else None)
    verdicts: dict[str, str] = {}
    if reviews_where is not None:
        for r in load_events(settings, reviews_where, validate_events=False,
                             on_progress=bars.task("reading reviews")).events:
            verdicts.setdefault(r["upload_id"], r["decision"])
    rate = job.audit_rate if job.audit_rate is not None else float(
        getattr(settings, "moderation_audit_rate", 0.0))
    ids = [r["upload_id"] for r in records]
    published = [(r["decision"], r["decision"] == "REVIEW" or "audit.sample" in r.get(
        "reasons", [])) for r in records]
    scored_by = Counter(r["model"] for r in records)
    models = [{"label": "published", "model": ", ".join(sorted(scored_by)),
               **moderation_figures(published, ids, verdicts)}]
    shas = {_sha(registry, m) for m in scored_by}
    for v in variants:
        mine = [redecide(r, v.thresholds, rate) for r in records]
        models.append({"label": v.label, "model": v.label, "same_artefact": v.sha256 in shas,
                       "thresholds": {c: [t.approve, t.reject] for c, t in
                                      sorted(v.thresholds.items())},
                       **moderation_figures(mine, ids, verdicts)})
    ts = [int(r["ts"]) for r in records]
    return {"pipeline": "moderation", "version": 1, "audit_rate": rate,
            "data": {"source": loaded.source, "uploads": len(records),
                     "event_ts": [min(ts), max(ts)] if ts else None,
                     "reviews_source": reviews_where.describe(_catalog(settings))
                     if reviews_where else None, "verdicts": len(verdicts),
                     "scored_by": dict(scored_by)},
            "models": models,
            "consistency": _consistency(registry, records, rate)}


def _first_per_upload(loaded: Loaded) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for r in loaded.events:
        if r["upload_id"] not in seen:
            seen.add(r["upload_id"])
            out.append(r)
    return out


def _sha(registry: Any, model_id: str) -> str:
    name, _, version = model_id.partition("@")
    try:
        return str(registry.manifest(name, version).sha256)
    except Exception:  # not a registry model (the loader), or gone: no artefact to match
        return ""


def _consistency(registry: Any, records: list[dict[str, Any]], rate: float
                 ) -> dict[str, Any]:
    """Each record re-decided with the thresholds of the version that decided it."""
    from agents.moderation.decide import LOADER_MODEL, thresholds_from_flat

    cache: dict[str, Any] = {}
    compared, differences, unknown = 0, [], 0
    for r in records:
        model = r["model"]
        if model == LOADER_MODEL:
            continue
        if model not in cache:
            name, _, version = model.partition("@")
            try:
                cache[model] = thresholds_from_flat(registry.manifest(name, version).thresholds
                                                    or {})
            except Exception:  # a version this registry does not hold
                cache[model] = None
        if cache[model] is None:
            unknown += 1
            continue
        compared += 1
        decision, _ = redecide(r, cache[model], rate)
        if decision != r["decision"]:
            differences.append({"upload_id": r["upload_id"], "model": model,
                                "backtest": decision, "published": r["decision"]})
    return {"compared": compared, "matched": compared - len(differences),
            "differing": len(differences), "unknown_version": unknown,
            "differences": differences[:1000]}


def _catalog(settings: Settings) -> Any:
    from streams.topics import TopicCatalog

    return TopicCatalog(settings.topic_prefix)
