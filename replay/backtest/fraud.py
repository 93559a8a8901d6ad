"""The fraud backtest: transactions through the live decision code, in process.

:func:`run_fraud` calls :func:`agents.fraud.decide.decide` (the function the
``fraud-decide`` agent calls) on batches of transactions in event-time order, with
in-memory state and an event-time clock (``now_ms`` is the newest event time seen, so
``decided_at`` is an event time too). Card state is carried exactly as the agent carries
it in its table. Merchant and device windows are what the ``fraud-entities`` agent
keeps up to date in Redis; here they are updated from each sub-batch's transactions
(:func:`agents.fraud.features.update_entities`), and a batch is cut before a
transaction whose merchant or device already appears in it, so every transaction sees
every earlier one of its merchant and device: the state a live worker reads when its
entity agent keeps up (when it lags, live decisions see older windows, and the
consistency check shows which events that changed).

Several models run side by side: the first variant decides through ``decide()``
(provenance, fallback, everything); the others score the same feature rows (the
provenance's) with their scorer and apply their thresholds with the same
:func:`~agents.fraud.decide.outcome`. Features never depend on the model.

Ground truth: the ``fraud-labels`` records (topic or file), with their real delays: a
transaction is fraudulent if a chargeback (``is_fraud`` true) arrived within the label
window of its event time; no label, or only a confirmation, means legitimate
(CONTRACTS.md). Transactions whose window was still open when the labels end are counted
(``open_window``): they are provisional negatives.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np

from agents.fraud.decide import (
    RULES_THRESHOLDS,
    FraudModels,
    FraudState,
    Thresholds,
    decide,
    outcome,
)
from agents.fraud.features import FEATURE_NAMES, GRACE_MS, EntityWindow, update_entities
from agents.fraud.models import rules_scorer
from streams.errors import ConfigError

__all__ = ["ModelSpec", "Variant", "FraudRun", "Labels", "Truth", "Consistency",
           "parse_model_spec", "parse_thresholds", "load_variants", "run_fraud",
           "run_fraud_stream",
           "collect_labels", "ground_truth", "compare_published"]

Progress = Callable[[int, int], None]
_AMOUNT = FEATURE_NAMES.index("amount_usd")


def parse_thresholds(text: str) -> Thresholds:
    """``"0.2,0.9"`` -> review 0.2, decline 0.9.

    >>> parse_thresholds("0.2,0.9")
    Thresholds(review=0.2, decline=0.9)
    """
    try:
        review, decline = (float(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f"bad thresholds {text!r}: expected REVIEW,DECLINE such as "
                          "0.2,0.9") from None
    if not 0.0 <= review <= decline <= 1.0:
        raise ConfigError(f"bad thresholds {text!r}: need 0 <= review <= decline <= 1")
    return Thresholds(review, decline)


@dataclass(frozen=True)
class ModelSpec:
    """``name[@version][:review,decline]``: a registry model (``rules``: the rules;
    ``routing``: the champion/challenger routing stored in the registry, as a worker
    loads it)."""

    name: str
    version: str = "latest"
    thresholds: Thresholds | None = None

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        return parse_model_spec(text)


def parse_model_spec(text: str) -> ModelSpec:
    """A ``--model`` value.

    >>> parse_model_spec("fraud_gbdt@3:0.1,0.8")
    ModelSpec(name='fraud_gbdt', version='3', thresholds=Thresholds(review=0.1, decline=0.8))
    """
    head, _, tail = text.strip().partition(":")
    name, _, version = head.partition("@")
    if not name:
        raise ConfigError(f"bad model {text!r}: expected NAME[@VERSION][:REVIEW,DECLINE]")
    if name.startswith("rules"):
        version = version or "1"
    return ModelSpec(name, version or "latest", parse_thresholds(tail) if tail else None)


@dataclass
class Variant:
    """One column of the report: a scorer (None: the rules) and its thresholds."""

    label: str
    model_id: str
    scorer: Any
    thresholds: Thresholds
    thresholds_from: str  # "manifest", "argument", "rules default", "routing"
    #: The worker's own models (``routing``): champion, challenger and canary as routed.
    models: FraudModels | None = None


def load_variants(registry: Any, specs: Sequence[ModelSpec],
                  sweep: Sequence[Thresholds] = ()) -> list[Variant]:
    """Variants for ``specs`` (each model at its manifest's thresholds unless given), and
    for each of ``sweep`` the first model at those thresholds."""
    from scorers.errors import ScorerError
    from streams.errors import TechShopError

    variants: list[Variant] = []
    for i, spec in enumerate(specs):
        if spec.name == "routing":
            if i:
                raise ConfigError("`routing` decides through decide() itself: give it first")
            variants.append(_routing_variant(registry))
            continue
        if spec.name == "rules":
            t = spec.thresholds or RULES_THRESHOLDS
            src = "argument" if spec.thresholds else "rules default"
            variants.append(Variant("rules@1", "rules@1", None, t, src))
            continue
        try:
            manifest = registry.manifest(spec.name, spec.version)
            scorer = registry.load_scorer(spec.name, manifest.version)
        except (TechShopError, ScorerError, OSError, KeyError, ValueError) as exc:
            raise ConfigError(f"model {spec.name}@{spec.version}: {exc}") from None
        if spec.thresholds is not None:
            t, src = spec.thresholds, "argument"
        elif manifest.thresholds:
            t, src = Thresholds.from_dict(manifest.thresholds, RULES_THRESHOLDS), "manifest"
        else:
            t, src = RULES_THRESHOLDS, "rules default"
        variants.append(Variant(scorer.model_id, scorer.model_id, scorer, t, src))
    if sweep:
        if not variants:
            raise ConfigError("a thresholds sweep needs a --model")
        base = variants[0]
        for t in sweep:
            variants.append(Variant(f"{base.model_id} {t.review:g}/{t.decline:g}",
                                    base.model_id, base.scorer, t, "argument"))
    seen: Counter[str] = Counter(v.label for v in variants)
    dupes = [label for label, n in seen.items() if n > 1]
    if dupes:
        raise ConfigError(f"the same variant twice: {', '.join(dupes)}")
    if not variants:
        raise ConfigError("no model to backtest: give --model NAME@VERSION")
    return variants


def _routing_variant(registry: Any) -> Variant:
    """What a worker on this registry decides with: :class:`FraudModelHolder` loads the
    stored routing (champion, challenger, shadow or canary) as at a worker's start."""
    from agents.fraud.models import FraudModelHolder

    models = FraudModelHolder(registry, budget_ms=math.inf).load_latest()
    champion = models.champion.model_id if models.champion is not None else "rules@1"
    canary = float(getattr(models, "canary_percent", 0.0) or 0.0)
    challenger = models.challenger.model_id if models.challenger is not None else None
    label = f"routing {champion}" + (f" + {challenger} canary {canary:g}%"
                                     if canary and challenger else "")
    return Variant(label, champion, models.champion, models.champion_thresholds, "routing",
                   models)


@dataclass
class FraudRun:
    """Per decided transaction (in decision order) and per variant."""

    variants: list[Variant]
    txn_ids: list[str] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    card_ids: list[str] = field(default_factory=list)
    amounts_usd: list[float] = field(default_factory=list)
    positions: list[tuple[int, int]] = field(default_factory=list)
    scores: dict[str, list[float]] = field(default_factory=dict)
    decisions: dict[str, list[str]] = field(default_factory=dict)
    decided_by: Counter[str] = field(default_factory=Counter)  # primary: model that decided
    models: list[str] = field(default_factory=list)  # primary: model that decided each one
    late: list[str] = field(default_factory=list)
    repeats: int = 0
    calls: int = 0
    seconds: float = 0.0  # in decide() and scoring (not reading)
    cpu_seconds: float = 0.0

    @property
    def n(self) -> int:
        return len(self.txn_ids)

    @property
    def primary(self) -> Variant:
        return self.variants[0]


def _models_for(variant: Variant) -> FraudModels:
    if variant.models is not None:
        return variant.models
    if variant.scorer is None:
        # The rules as the decider at the variant's thresholds (the fallback path would
        # always apply the default ones); same scores, same model id.
        return FraudModels(rules=rules_scorer(), champion=rules_scorer(),
                           champion_thresholds=variant.thresholds, budget_ms=math.inf)
    return FraudModels(rules=rules_scorer(), champion=variant.scorer,
                       champion_thresholds=variant.thresholds, budget_ms=math.inf)


def _conflict_free(txns: Sequence[Mapping[str, Any]]) -> Iterable[Sequence[Mapping[str, Any]]]:
    """Cut ``txns`` before any transaction whose merchant or device is already in the
    current piece (entity windows are read-only snapshots within a decide() call)."""
    for lo, hi in _spans(txns):
        yield txns[lo:hi]


def _spans(txns: Sequence[Mapping[str, Any]]) -> Iterator[tuple[int, int]]:
    start, seen = 0, set[str]()
    for i, t in enumerate(txns):
        m, d = "m" + t["merchant_id"], "d" + t["device_id"]
        if m in seen or d in seen:
            yield start, i
            start, seen = i, set[str]()
        seen.add(m)
        seen.add(d)
    if start < len(txns):
        yield start, len(txns)


def run_fraud(txns: Iterable[Mapping[str, Any]], variants: Sequence[Variant], *,
              positions: Iterable[tuple[int, int]] | None = None, batch_size: int = 1000,
              grace_ms: int = GRACE_MS, on_progress: Progress | None = None) -> FraudRun:
    """Decide ``txns`` (in the order given) with every variant; see the module doc.

    ``txns`` may be any iterable: only ``batch_size`` of them are held at once;
    ``positions`` (partition, offset) runs beside it."""
    total = len(txns) if isinstance(txns, Sized) else 0
    pairs: Iterable[tuple[Mapping[str, Any], tuple[int, int]]] = (
        zip(txns, positions, strict=True) if positions is not None
        else ((t, (-1, -1)) for t in txns))
    return run_fraud_stream(pairs, variants, batch_size=batch_size, grace_ms=grace_ms,
                            on_progress=on_progress, total=total)


def run_fraud_stream(pairs: Iterable[tuple[Mapping[str, Any], tuple[int, int]]],
                     variants: Sequence[Variant], *, batch_size: int = 1000,
                     grace_ms: int = GRACE_MS, on_progress: Progress | None = None,
                     total: int = 0) -> FraudRun:
    """:func:`run_fraud` over ``(transaction, (partition, offset))`` pairs, e.g. from
    :func:`replay.backtest.inputs.iter_events`."""
    run = FraudRun(list(variants))
    for v in variants:
        run.scores[v.label] = []
        run.decisions[v.label] = []
    models = _models_for(variants[0])
    state = FraudState(cards={}, merchants={}, devices={})
    merchants: dict[str, EntityWindow] = {}
    devices: dict[str, EntityWindow] = {}
    state.merchants, state.devices = merchants, devices
    decided: dict[str, bool] = {}
    clock = 0
    stream = iter(pairs)
    done = 0
    while chunk := list(islice(stream, batch_size)):
        wall, cpu = time.perf_counter(), time.process_time()  # deciding, not reading
        events = [c[0] for c in chunk]
        where = [c[1] for c in chunk]
        for lo, hi in _spans(events):
            piece = events[lo:hi]
            clock = max(clock, max(int(t["ts"]) for t in piece))
            result = decide(piece, state, models, now_ms=clock, already=decided,
                            grace_ms=grace_ms)
            run.calls += 1
            run.repeats += len(result.repeats)
            run.late.extend(piece[p]["txn_id"] for p in result.late)
            if result.decided:
                _record(run, piece, where[lo:hi], result)
                for d in result.decided:
                    decided[d.decision["txn_id"]] = True
            update_entities([piece[d.position] for d in result.decided], merchants, devices)
        run.seconds += time.perf_counter() - wall
        run.cpu_seconds += time.process_time() - cpu
        done += len(chunk)
        if on_progress is not None:
            on_progress(done, max(total, done))
    return run


def _record(run: FraudRun, piece: Sequence[Mapping[str, Any]],
            where: Sequence[tuple[int, int]], result: Any) -> None:
    primary = run.variants[0]
    items = result.decided
    X = getattr(result, "matrix", None)
    if X is None or len(X) != len(items):
        X = np.asarray([d.provenance["features"] for d in items], dtype=np.float32)
    for d in items:
        txn = piece[d.position]
        run.txn_ids.append(d.decision["txn_id"])
        run.ts.append(int(txn["ts"]))
        run.card_ids.append(txn["card_id"])
        run.amounts_usd.append(float(d.provenance["features"][_AMOUNT]))
        run.positions.append(where[d.position])
        run.scores[primary.label].append(float(d.decision["score"]))
        run.decisions[primary.label].append(d.decision["decision"])
        run.decided_by[d.decision["model"]] += 1
        run.models.append(d.decision["model"])
    for v in run.variants[1:]:
        scorer = v.scorer
        scores = rules_scorer().score_with_reasons(X)[0] if scorer is None else scorer.score(X)
        run.scores[v.label].extend(float(s) for s in scores)
        run.decisions[v.label].extend(outcome(float(s), v.thresholds) for s in scores)


@dataclass
class Labels:
    """``fraud-labels`` records by txn_id: the first label (by its time) wins, as in the
    live labels agent, which joins the first label it reads and ignores the rest."""

    by_txn: dict[str, tuple[bool, int]] = field(default_factory=dict)
    read: int = 0
    chargebacks: int = 0
    last_ts: int | None = None


def collect_labels(values: Iterable[Mapping[str, Any]]) -> Labels:
    labels = Labels()
    for v in values:
        labels.read += 1
        ts, fraud, txn_id = int(v["ts"]), bool(v["is_fraud"]), v["txn_id"]
        labels.chargebacks += fraud
        labels.last_ts = ts if labels.last_ts is None else max(labels.last_ts, ts)
        old = labels.by_txn.get(txn_id)
        if old is None or ts < old[1]:
            labels.by_txn[txn_id] = (fraud, ts)
    return labels


@dataclass
class Truth:
    y: np.ndarray
    delays_ms: list[int]
    open_window: int
    after_window: int
    window_ms: int
    labelled: int


def ground_truth(run: FraudRun, labels: Labels, window_ms: int) -> Truth:
    """Per decided transaction: fraudulent if a chargeback came within the window."""
    y = np.zeros(run.n, dtype=bool)
    delays: list[int] = []
    open_window = after = labelled = 0
    as_of = max([labels.last_ts or 0, *run.ts[-1:]])
    for i, (txn_id, ts) in enumerate(zip(run.txn_ids, run.ts, strict=True)):
        found = labels.by_txn.get(txn_id)
        if found is None:
            open_window += ts + window_ms > as_of
            continue
        fraud, label_ts = found
        if label_ts - ts > window_ms:
            after += 1  # too late: the decision was already a negative example
            continue
        labelled += 1
        if fraud:
            y[i] = True
            delays.append(label_ts - ts)
    return Truth(y, delays, open_window, after, window_ms, labelled)


@dataclass
class Consistency:
    """The primary variant's decisions against those the live worker published."""

    compared: int = 0
    matched: int = 0  # same decision, model and score
    #: Decision or model differs (listed: the report shows every one).
    differences: list[dict[str, Any]] = field(default_factory=list)
    #: Same decision and model, another score (e.g. entity windows read while the live
    #: entity agent lagged): counted, the first ones kept.
    score_only: list[dict[str, Any]] = field(default_factory=list)
    max_score_delta: float = 0.0
    not_published: int = 0
    published_only: int = 0

    def to_dict(self, limit: int = 1000) -> dict[str, Any]:
        return {"compared": self.compared, "matched": self.matched,
                "differing": len(self.differences), "not_published": self.not_published,
                "published_only": self.published_only,
                "score_only": len(self.score_only), "max_score_delta": self.max_score_delta,
                "differences": self.differences[:limit],
                "differences_truncated": max(0, len(self.differences) - limit),
                "score_only_sample": self.score_only[:100]}


def compare_published(run: FraudRun, published: Iterable[Mapping[str, Any]], *,
                      score_tolerance: float = 1e-6) -> Consistency:
    """Decision by decision: same outcome, same model and (within ``score_tolerance``)
    the same score; a different outcome or model is a difference, a different score
    alone is counted apart (``score_only``). Published decisions of transactions outside
    the run are ignored, except those the backtest refused (late: ``published_only``)."""
    label = run.primary.label
    mine = {t: i for i, t in enumerate(run.txn_ids)}
    late = set(run.late)
    out = Consistency()
    seen: set[str] = set()
    for p in published:
        txn_id = p["txn_id"]
        if txn_id in seen:
            continue
        seen.add(txn_id)
        i = mine.get(txn_id)
        if i is None:
            out.published_only += txn_id in late
            if txn_id in late:
                out.differences.append({"txn_id": txn_id, "backtest": "late_event",
                                        "published": _pub(p)})
            continue
        out.compared += 1
        decision, score, model = run.decisions[label][i], run.scores[label][i], run.models[i]
        ours = {"decision": decision, "score": score, "model": model}
        delta = abs(score - float(p["score"]))
        out.max_score_delta = max(out.max_score_delta, delta)
        same_decision = decision == p["decision"] and model == p["model"]
        if same_decision and delta <= score_tolerance:
            out.matched += 1
            continue
        part, off = run.positions[i]
        entry = {"txn_id": txn_id, "card_id": run.card_ids[i], "ts": run.ts[i],
                 "partition": part, "offset": off, "backtest": ours, "published": _pub(p)}
        (out.score_only if same_decision else out.differences).append(entry)
    out.not_published = len(mine) - out.compared
    return out


def _pub(p: Mapping[str, Any]) -> dict[str, Any]:
    return {"decision": p["decision"], "score": float(p["score"]), "model": p["model"]}
