"""The state of a Confluent-compatible schema registry, optionally kept in a JSON file.

Subjects hold ordered versions; each version points at a schema id. As in Confluent's
registry, one schema (compared by its canonical form: JSON with sorted keys) has one id
across every subject, ids are integers handed out from 1 in registration order and never
reused, and the compatibility level is ``BACKWARD`` unless configured globally or per
subject. With a ``path``, every change is written atomically (temporary file, then
``os.replace``), so ids survive a restart.

Errors: every refusal is a :class:`~streams.errors.RegistryError`; those defined in
:mod:`streams.registry.errors` carry the ``error_code`` and ``http_status`` that
Confluent's REST API answers with.

>>> store = SchemaStore(None)
>>> store.register("t-value", '"string"'), store.register("u-value", '"string"')
(1, 1)
>>> store.register("t-value", '["null", "string"]')
2
>>> store.version("t-value", "latest")
(2, 2, '["null","string"]')
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import fastavro

from schemas import schema_text
from streams.errors import RegistryError, SchemaNotFoundError
from streams.registry.compat import COMPATIBILITY_LEVELS, check_compatibility
from streams.registry.errors import (
    CompatibilityError,
    InvalidCompatibilityLevelError,
    InvalidSchemaError,
    InvalidVersionError,
    SubjectNotFoundError,
    SubjectStateError,
    VersionNotFoundError,
)
from streams.topics import TopicCatalog

__all__ = ["DEFAULT_COMPATIBILITY", "SchemaStore", "canonical_form", "register_builtin"]

DEFAULT_COMPATIBILITY = "BACKWARD"
_FORMAT = 1


def canonical_form(schema: Any) -> str:
    """The text two schemas share exactly when they are the same schema for this store."""
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def _parse(schema_str: str) -> Any:
    """Parsed JSON of a valid Avro schema, or :class:`InvalidSchemaError`."""
    try:
        parsed = json.loads(schema_str)
    except (TypeError, ValueError) as exc:
        raise InvalidSchemaError(f"invalid Avro schema: not JSON ({exc})") from None
    try:
        # _write_hint=False keeps fastavro from adding its own keys to a copy we ignore.
        fastavro.parse_schema(parsed, _write_hint=False)
    except Exception as exc:  # fastavro raises several unrelated types for bad schemas
        raise InvalidSchemaError(f"invalid Avro schema: {exc}") from None
    return parsed


def _compact(schema: Any) -> str:
    return json.dumps(schema, separators=(",", ":"))


@dataclass
class _Version:
    version: int
    schema_id: int
    deleted: bool = False


class SchemaStore:
    """Subjects, versions, schema ids and compatibility levels; safe to share between threads.

    ``path`` is the JSON file the state is kept in (read if it exists); ``None`` keeps it
    in memory only.
    """

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = None if path is None else Path(path)
        self._lock = threading.RLock()
        self._schemas: dict[int, str] = {}
        self._ids: dict[str, int] = {}  # canonical form -> id
        self._subjects: dict[str, list[_Version]] = {}
        self._compatibility = DEFAULT_COMPATIBILITY
        self._subject_compatibility: dict[str, str] = {}
        self._next_id = 1
        if self.path is not None and self.path.exists():
            self._load(self.path)

    def _load(self, path: Path) -> None:
        try:
            state = json.loads(path.read_text())
            if state.get("format") != _FORMAT:
                raise ValueError(f"unknown format {state.get('format')!r}")
            for key, text in state["schemas"].items():
                self._schemas[int(key)] = text
                self._ids[canonical_form(json.loads(text))] = int(key)
            for subject, versions in state["subjects"].items():
                self._subjects[subject] = [
                    _Version(int(v["version"]), int(v["id"]), bool(v.get("deleted", False)))
                    for v in versions
                ]
            self._compatibility = str(state.get("compatibility", DEFAULT_COMPATIBILITY))
            self._subject_compatibility = dict(state.get("subject_compatibility", {}))
            self._next_id = max(int(state.get("next_id", 1)), max(self._schemas, default=0) + 1)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RegistryError(f"cannot read the schema registry state {path}: {exc}") from None

    def _save(self) -> None:
        if self.path is None:
            return
        state = {
            "format": _FORMAT,
            "next_id": self._next_id,
            "compatibility": self._compatibility,
            "subject_compatibility": self._subject_compatibility,
            "schemas": {str(i): text for i, text in sorted(self._schemas.items())},
            "subjects": {
                subject: [
                    {"version": v.version, "id": v.schema_id, "deleted": v.deleted}
                    for v in versions
                ]
                for subject, versions in sorted(self._subjects.items())
            },
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(state, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _live(self, subject: str, deleted: bool = False) -> list[_Version]:
        versions = self._subjects.get(subject, [])
        return list(versions) if deleted else [v for v in versions if not v.deleted]

    def _live_or_raise(self, subject: str, deleted: bool = False) -> list[_Version]:
        versions = self._live(subject, deleted)
        if not versions:
            raise SubjectNotFoundError(f"Subject '{subject}' not found.")
        return versions

    def _find_version(self, subject: str, version: int | str, deleted: bool) -> _Version:
        number = self._version_number(version)
        versions = self._live_or_raise(subject, deleted)
        if number == -1:
            return versions[-1]
        for v in versions:
            if v.version == number:
                return v
        raise VersionNotFoundError(f"Version {number} not found.")

    @staticmethod
    def _version_number(version: int | str) -> int:
        """``-1`` for latest, else the positive version number."""
        if isinstance(version, str):
            if version.lower() == "latest":
                return -1
            try:
                version = int(version)
            except ValueError:
                version = 0
        if version == -1 or version > 0:
            return version
        raise InvalidVersionError(f"Version '{version}' is not a positive integer or 'latest'")

    def _level(self, subject: str) -> str:
        return self._subject_compatibility.get(subject, self._compatibility)

    def _problems(self, subject: str, parsed: Any, against: list[_Version]) -> list[str]:
        existing = [json.loads(self._schemas[v.schema_id]) for v in against]
        return check_compatibility(parsed, existing, self._level(subject))

    def register(self, subject: str, schema_str: str) -> int:
        """Register ``schema_str`` under ``subject``; its id.

        Idempotent: a schema already live under the subject returns its id unchanged.
        Raises :class:`InvalidSchemaError` for text that is not Avro and
        :class:`CompatibilityError` (an ``IncompatibleSchemaError``) when the subject's
        compatibility level refuses it.
        """
        parsed = _parse(schema_str)
        canonical = canonical_form(parsed)
        with self._lock:
            live = self._live(subject)
            known = self._ids.get(canonical)
            for v in live:
                if v.schema_id == known:
                    return v.schema_id
            problems = self._problems(subject, parsed, live)
            if problems:
                raise CompatibilityError(
                    f"Schema being registered is incompatible with an earlier schema for "
                    f"subject '{subject}' ({self._level(subject)}): " + "; ".join(problems),
                    problems,
                )
            if known is None:
                known = self._next_id
                self._next_id += 1
                self._schemas[known] = _compact(parsed)
                self._ids[canonical] = known
            every = self._subjects.setdefault(subject, [])
            every.append(_Version(max((v.version for v in every), default=0) + 1, known))
            self._save()
            return known

    def lookup(self, subject: str, schema_str: str, deleted: bool = False) -> tuple[int, int]:
        """``(id, version)`` of ``schema_str`` under ``subject``.

        Raises :class:`SubjectNotFoundError` or, for a subject without that schema,
        :class:`~streams.errors.SchemaNotFoundError`.
        """
        canonical = canonical_form(_parse(schema_str))
        with self._lock:
            versions = self._live_or_raise(subject, deleted)
            schema_id = self._ids.get(canonical)
            for v in reversed(versions):
                if v.schema_id == schema_id:
                    return v.schema_id, v.version
        raise SchemaNotFoundError("Schema not found")

    def schema_by_id(self, schema_id: int) -> str:
        """The schema text of ``schema_id``, or :class:`~streams.errors.SchemaNotFoundError`."""
        with self._lock:
            try:
                return self._schemas[schema_id]
            except KeyError:
                raise SchemaNotFoundError(f"Schema {schema_id} not found") from None

    def schema_ids(self) -> list[int]:
        """Every schema id, ascending (soft- or hard-deleted versions keep theirs)."""
        with self._lock:
            return sorted(self._schemas)

    def version(
        self, subject: str, version: int | str = "latest", deleted: bool = False
    ) -> tuple[int, int, str]:
        """``(id, version, schema text)`` of a version number, ``-1`` or ``"latest"``."""
        with self._lock:
            v = self._find_version(subject, version, deleted)
            return v.schema_id, v.version, self._schemas[v.schema_id]

    def versions(self, subject: str, deleted: bool = False) -> list[int]:
        """Version numbers of ``subject`` (live only unless ``deleted``), oldest first."""
        with self._lock:
            return [v.version for v in self._live_or_raise(subject, deleted)]

    def subjects(self, deleted: bool = False) -> list[str]:
        """Subjects with a live version (or any version, with ``deleted``), sorted."""
        with self._lock:
            return sorted(s for s in self._subjects if self._live(s, deleted))

    def subject_versions_of(self, schema_id: int, deleted: bool = False) -> list[tuple[str, int]]:
        """Every ``(subject, version)`` that points at ``schema_id``."""
        with self._lock:
            if schema_id not in self._schemas:
                raise SchemaNotFoundError(f"Schema {schema_id} not found")
            return [
                (subject, v.version)
                for subject in sorted(self._subjects)
                for v in self._live(subject, deleted)
                if v.schema_id == schema_id
            ]

    def delete_subject(self, subject: str, permanent: bool = False) -> list[int]:
        """Delete every version of ``subject``; the version numbers deleted.

        As in Confluent: a soft delete hides the versions (ids stay readable); a
        permanent delete is only allowed after a soft one.
        """
        with self._lock:
            versions = self._subjects.get(subject, [])
            live = [v for v in versions if not v.deleted]
            if not versions:
                raise SubjectNotFoundError(f"Subject '{subject}' not found.")
            if permanent:
                if live:
                    raise SubjectStateError(
                        f"Subject '{subject}' must be soft-deleted first", 40405
                    )
                del self._subjects[subject]
                deleted = [v.version for v in versions]
            else:
                if not live:
                    raise SubjectStateError(f"Subject '{subject}' was soft deleted.", 40404)
                for v in live:
                    v.deleted = True
                deleted = [v.version for v in live]
            self._subject_compatibility.pop(subject, None)
            self._save()
            return deleted

    def delete_version(self, subject: str, version: int | str, permanent: bool = False) -> int:
        """Delete one version (soft, or permanent after a soft delete); its number."""
        with self._lock:
            v = self._find_version(subject, version, deleted=permanent)
            if permanent:
                if not v.deleted:
                    raise SubjectStateError(
                        f"Version {v.version} must be soft-deleted first", 40407
                    )
                self._subjects[subject].remove(v)
                if not self._subjects[subject]:
                    del self._subjects[subject]
            else:
                v.deleted = True
            self._save()
            return v.version

    def get_config(self, subject: str | None = None) -> str:
        """The compatibility level of ``subject`` (its own, else the global one)."""
        with self._lock:
            return self._compatibility if subject is None else self._level(subject)

    def set_config(self, level: str, subject: str | None = None) -> str:
        """Set the global level (or ``subject``'s own); the level set, upper-cased."""
        level = str(level).upper()
        if level not in COMPATIBILITY_LEVELS:
            raise InvalidCompatibilityLevelError(
                f"Invalid compatibility level {level!r}. Valid values are: "
                + ", ".join(COMPATIBILITY_LEVELS)
            )
        with self._lock:
            if subject is None:
                self._compatibility = level
            else:
                self._subject_compatibility[subject] = level
            self._save()
            return level

    def delete_config(self, subject: str | None = None) -> str:
        """Drop ``subject``'s own level (or reset the global one); the level it had."""
        with self._lock:
            if subject is None:
                previous, self._compatibility = self._compatibility, DEFAULT_COMPATIBILITY
            else:
                previous = self._subject_compatibility.pop(subject, self._compatibility)
            self._save()
            return previous

    def test_compatibility(
        self, subject: str, schema_str: str, version: int | str | None = "latest"
    ) -> list[str]:
        """Problems ``schema_str`` would have with ``subject``'s level; ``[]`` = compatible.

        With a version (a number, ``-1`` or ``"latest"``), against that version only, as
        Confluent does; a subject without versions is compatible with "latest". With
        ``None``, against the versions the level names (all of them when transitive).
        """
        parsed = _parse(schema_str)
        with self._lock:
            if version is None:
                return self._problems(subject, parsed, self._live(subject))
            if self._version_number(version) == -1 and not self._live(subject):
                return []
            target = self._find_version(subject, version, deleted=False)
            return self._problems(subject, parsed, [target])


class _Registrar(Protocol):
    def register(self, subject: str, schema_str: str) -> int: ...


def register_builtin(store_or_source: _Registrar, catalog: TopicCatalog) -> dict[str, int]:
    """Register every topic's value schema from ``schemas/``; ``{subject: id}``.

    Topics go in sorted logical-name order, so an empty store always ends up with the
    same ids: the deterministic local registry built from ``schemas/``. Idempotent;
    raises :class:`~streams.errors.IncompatibleSchemaError` if a subject already holds a
    schema ours cannot follow.
    """
    ids: dict[str, int] = {}
    for spec in sorted(catalog.all(), key=lambda s: s.name):
        subject = catalog.subject(spec.name)
        ids[subject] = store_or_source.register(subject, schema_text(spec.schema))
    return ids
