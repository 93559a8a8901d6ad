"""Champion / challenger routing, for any pipeline: which model decides for an entity.

A *family* (``fraud``, ``recommend``, ``moderation``) has a :class:`Routing`: the
``champion`` and ``challenger`` aliases (``name@version`` references into the model
registry) and a mode:

- ``shadow``: the champion decides everything; the challenger is scored and logged;
- ``canary``: the challenger decides for ``canary_percent`` % of the entities, chosen
  by a stable hash of the entity id (:func:`bucket`), so one card or user always sees
  the same variant; the champion decides the rest.

:class:`RoutingStore` keeps each family's routing in the registry
(``<model dir>/_routing/<family>.json``), signed with the registry's key, with the
history of every change; a tampered file is refused (the last good routing stays in
use). ``promote`` makes the challenger the champion, ``rollback`` brings back the
champion before the last promotion (the demoted version becomes challenger, in
shadow). :class:`PromotionPolicy` says when a challenger has earned a promotion.

>>> bucket("card-42") == bucket("card-42") and 0.0 <= bucket("card-42") < 100.0
True
>>> r = Routing("fraud", champion="fraud_gbdt@1", challenger="fraud_gbdt@2",
...             mode="canary", canary_percent=30.0)
>>> sum(r.challenger_decides(f"card-{i}") for i in range(10_000)) // 100
30
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from models.registry import ModelRegistry, canonical_json
from scorers.errors import ModelIntegrityError, ModelNotFoundError, ScorerError

__all__ = ["MODES", "PromotionPolicy", "Routing", "RoutingStore", "bucket", "parse_ref"]

MODES = ("shadow", "canary")
ROUTING_DIR = "_routing"
HISTORY_KEPT = 50


def bucket(entity_id: str, salt: str = "") -> float:
    """The entity's stable position in [0, 100): the same id, the same bucket, on every
    worker and every run (BLAKE2b, not Python's salted ``hash``)."""
    digest = hashlib.blake2b(f"{salt}\x00{entity_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000 / 100.0


def parse_ref(ref: str) -> tuple[str, str]:
    """``"name@version"`` -> (name, version); the version may be ``latest``."""
    name, sep, version = ref.rpartition("@")
    if not sep or not name or not (version.isdigit() or version == "latest"):
        raise ScorerError(f"bad model reference {ref!r}: expected name@version")
    return name, version


@dataclass(frozen=True)
class Routing:
    """Who decides for a family. ``champion`` / ``challenger`` are ``name@version``
    (``name@latest`` follows the newest version: the default before any promotion)."""

    family: str
    champion: str | None = None
    challenger: str | None = None
    mode: str = "shadow"
    canary_percent: float = 0.0
    revision: int = 0
    updated_at: str = ""
    #: Newest last: {"action", "champion", "challenger", "mode", "canary_percent", "at"}.
    history: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def challenger_decides(self, entity_id: str) -> bool:
        """True when the challenger decides for this entity (canary and in its share)."""
        return (self.mode == "canary" and self.challenger is not None
                and bucket(entity_id, self.family) < self.canary_percent)

    def canary_mask(self, entity_ids: Sequence[str]) -> list[bool]:
        return [self.challenger_decides(e) for e in entity_ids]

    def as_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["history"] = list(self.history)
        return body

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Routing:
        return cls(family=str(data["family"]), champion=data.get("champion"),
                   challenger=data.get("challenger"), mode=str(data.get("mode", "shadow")),
                   canary_percent=float(data.get("canary_percent", 0.0)),
                   revision=int(data.get("revision", 0)),
                   updated_at=str(data.get("updated_at", "")),
                   history=tuple(data.get("history") or ()))


class RoutingStore:
    """The signed routing of each family, kept in the registry's folder."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.folder = registry.root / ROUTING_DIR

    def path(self, family: str) -> Path:
        self.registry._folder(family)  # the same name rules as models
        return self.folder / f"{family}.json"

    def get(self, family: str, default: Routing | None = None) -> Routing:
        """The stored routing (signature checked), else ``default`` (else an empty one).
        A tampered or unreadable file is a :class:`ModelIntegrityError`."""
        path = self.path(family)
        try:
            raw = json.loads(path.read_bytes())
        except FileNotFoundError:
            return default if default is not None else Routing(family)
        except (OSError, ValueError) as exc:
            raise ModelIntegrityError(f"routing of {family}: unreadable: {exc}") from exc
        if not isinstance(raw, dict) or not self.registry.verify(raw):
            if self.registry.on_refused is not None:
                self.registry.on_refused(f"routing:{family}", "-", "signature")
            raise ModelIntegrityError(f"routing of {family}: signature does not match")
        raw.pop("signature")
        routing = Routing.from_dict(raw)
        if routing.family != family:
            raise ModelIntegrityError(f"routing of {family}: the file is for {routing.family}")
        return routing

    def resolve(self, ref: str | None) -> tuple[str, str] | None:
        """(name, concrete version) of a reference, ``None`` if it names nothing yet."""
        if ref is None:
            return None
        name, version = parse_ref(ref)
        if version == "latest":
            versions = self.registry.versions(name)
            if not versions:
                return None
            version = versions[-1]
        return name, version

    # -- changes -------------------------------------------------------------------------

    def update(self, family: str, change: Callable[[Routing], Routing], action: str,
               default: Routing | None = None) -> Routing:
        """Apply ``change`` to the current routing under a file lock and store it signed,
        with ``action`` and the previous state appended to the history. ``@latest``
        references are pinned to the version they mean now, so a later publish does not
        silently replace a champion."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._locked(family):
            before = self.get(family, default)
            after = change(before)
            at = _now()
            entry: dict[str, Any] = {
                "action": action, "champion": self._pin(before.champion),
                "challenger": self._pin(before.challenger), "mode": before.mode,
                "canary_percent": before.canary_percent, "at": at}
            after = replace(after, champion=self._pin(after.champion),
                            challenger=self._pin(after.challenger), family=family,
                            revision=before.revision + 1, updated_at=at,
                            history=(*before.history, entry)[-HISTORY_KEPT:])
            body = after.as_dict()
            body["signature"] = self.registry.sign(body)
            fd, tmp = tempfile.mkstemp(prefix=".routing-", dir=self.folder)
            with os.fdopen(fd, "wb") as f:
                f.write(canonical_json(body))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path(family))
            return after

    def set_challenger(self, family: str, ref: str, default: Routing | None = None,
                       action: str = "challenger") -> Routing:
        self._check(ref)
        return self.update(family, lambda r: replace(r, challenger=ref), action, default)

    def canary(self, family: str, percent: float, default: Routing | None = None) -> Routing:
        """Let the challenger decide for ``percent`` % of entities (0: shadow)."""
        if not 0.0 <= percent <= 100.0:
            raise ScorerError(f"canary percentage must be within 0..100, got {percent}")

        def change(r: Routing) -> Routing:
            if r.challenger is None:
                raise ScorerError(f"{family} has no challenger to route traffic to")
            return replace(r, mode="canary" if percent > 0 else "shadow",
                           canary_percent=percent)

        return self.update(family, change, f"canary {percent:g}%" if percent else "shadow",
                           default)

    def promote(self, family: str, default: Routing | None = None) -> Routing:
        """The challenger becomes the champion (in shadow mode, with no challenger)."""
        def change(r: Routing) -> Routing:
            if r.challenger is None:
                raise ScorerError(f"{family} has no challenger to promote")
            self._check(r.challenger)
            return replace(r, champion=r.challenger, challenger=None, mode="shadow",
                           canary_percent=0.0)

        return self.update(family, change, "promote", default)

    def rollback(self, family: str, default: Routing | None = None) -> Routing:
        """The champion before the last promotion comes back; the demoted one becomes
        the challenger, in shadow mode."""
        def change(r: Routing) -> Routing:
            for entry in reversed(r.history):
                if entry["action"] in ("promote", "rollback") and entry["champion"] \
                        and entry["champion"] != r.champion:
                    self._check(entry["champion"])
                    return replace(r, champion=entry["champion"], challenger=r.champion,
                                   mode="shadow", canary_percent=0.0)
            raise ScorerError(f"{family} has no earlier champion to roll back to")

        return self.update(family, change, "rollback", default)

    # -- internals -----------------------------------------------------------------------

    def _pin(self, ref: str | None) -> str | None:
        resolved = self.resolve(ref)
        return None if resolved is None else f"{resolved[0]}@{resolved[1]}"

    def _check(self, ref: str) -> None:
        """A reference must name a version that exists and verifies."""
        resolved = self.resolve(ref)
        if resolved is None:
            raise ModelNotFoundError(f"no model {ref}")
        self.registry.manifest(*resolved)

    @contextlib.contextmanager
    def _locked(self, family: str) -> Iterator[None]:
        with open(self.folder / f".{family}.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass(frozen=True)
class PromotionPolicy:
    """Promote when the challenger beats the champion on ``metric`` by at least
    ``margin`` over a window holding at least ``min_examples`` examples of each and
    ``min_positives`` positives (recall means nothing on three frauds).

    >>> p = PromotionPolicy(min_examples=100, min_positives=5, margin=0.01)
    >>> p.verdict({"auc": 0.90, "n": 500, "positives": 20},
    ...           {"auc": 0.95, "n": 500, "positives": 20}, "auc")
    ('promote', 'challenger auc 0.9500 > champion 0.9000 + 0.01 over 500 examples')
    >>> p.verdict({"auc": 0.90, "n": 50, "positives": 2},
    ...           {"auc": 0.99, "n": 50, "positives": 2}, "auc")[0]
    'wait'
    """

    min_examples: int = 2_000
    min_positives: int = 20
    margin: float = 0.02

    def verdict(self, champion: dict[str, Any], challenger: dict[str, Any],
                metric: str) -> tuple[str, str]:
        """("promote" | "hold" | "wait", why)."""
        n = min(int(champion.get("n", 0)), int(challenger.get("n", 0)))
        pos = min(int(champion.get("positives", 0)), int(challenger.get("positives", 0)))
        if n < self.min_examples or pos < self.min_positives:
            return "wait", f"{n} examples, {pos} positives in the window"
        a, b = champion.get(metric), challenger.get(metric)
        if not isinstance(a, float) or not isinstance(b, float):
            return "wait", f"{metric} not defined yet"
        if b > a + self.margin:
            return "promote", (f"challenger {metric} {b:.4f} > champion {a:.4f} "
                               f"+ {self.margin:g} over {n} examples")
        return "hold", f"challenger {metric} {b:.4f} vs champion {a:.4f}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
