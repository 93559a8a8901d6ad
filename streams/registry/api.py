"""Confluent Schema Registry REST API over a :class:`~streams.registry.store.SchemaStore`.

Transport-free: :meth:`RestAPI.handle` takes a method, a path with its query and the raw
body, and answers ``(HTTP status, JSON-able body)``;
:class:`~streams.registry.server.RegistryServer` puts it on HTTP. It covers what
confluent-kafka's ``SchemaRegistryClient``, ``AvroSerializer`` and ``AvroDeserializer``
use: register, lookup, schemas by id or GUID, subjects, versions, deletes, compatibility
tests, config. Errors are ``{"error_code": ..., "message": ...}`` with Confluent's codes.

Avro only; schema references are refused. Differences from Confluent worth knowing:
``GET /config/{subject}`` falls back to the global level when the subject has none
(Confluent answers 40408 unless ``defaultToGlobal=true``); ``normalize`` is accepted and
ignored (identity is always by canonical form); compatibility answers always carry
``messages``; GUIDs are derived from the canonical form (UUID 5), not stored.

>>> from streams.registry.store import SchemaStore
>>> api = RestAPI(SchemaStore(None))
>>> body = json.dumps({"schema": '"string"'}).encode()
>>> api.handle("POST", "/subjects/t-value/versions", body)[1]["id"]
1
>>> api.handle("GET", "/schemas/ids/2", b"")
(404, {'error_code': 40403, 'message': 'Schema 2 not found'})
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from streams.errors import RegistryError, SchemaNotFoundError
from streams.registry.errors import http_error
from streams.registry.store import SchemaStore, canonical_form

__all__ = ["CONTENT_TYPE", "RestAPI"]

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
_GUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "techshop-streams:schema-registry")


class _HTTPError(Exception):
    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


def _flag(query: dict[str, str], name: str, default: bool = False) -> bool:
    value = query.get(name)
    return default if value is None else value.strip().lower() == "true"


def _int(query: dict[str, str], name: str, default: int) -> int:
    try:
        return int(query.get(name, default))
    except ValueError:
        raise _HTTPError(400, 400, f"query parameter {name!r} must be an integer") from None


def _page(items: list[Any], query: dict[str, str]) -> list[Any]:
    offset, limit = max(_int(query, "offset", 0), 0), _int(query, "limit", -1)
    items = items[offset:]
    return items if limit < 0 else items[:limit]


_SEGMENT = "([^/]+)"
_ROUTES: tuple[tuple[str, str, str], ...] = tuple(
    (method, pattern.replace("{}", _SEGMENT), name)
    for method, pattern, name in (
        ("GET", "", "get_root"),
        ("GET", "schemas/types", "get_types"),
        ("GET", "schemas/ids/{}", "get_schema"),
        ("GET", "schemas/ids/{}/schema", "get_raw_schema"),
        ("GET", "schemas/ids/{}/versions", "get_id_versions"),
        ("GET", "schemas/ids/{}/subjects", "get_id_subjects"),
        ("GET", "schemas/guids/{}", "get_schema_by_guid"),
        ("GET", "subjects", "get_subjects"),
        ("POST", "subjects/{}", "lookup"),
        ("DELETE", "subjects/{}", "delete_subject"),
        ("GET", "subjects/{}/versions", "get_versions"),
        ("POST", "subjects/{}/versions", "register"),
        ("GET", "subjects/{}/versions/{}", "get_version"),
        ("GET", "subjects/{}/versions/{}/schema", "get_version_schema"),
        ("DELETE", "subjects/{}/versions/{}", "delete_version"),
        ("POST", "compatibility/subjects/{}/versions/{}", "test_compatibility"),
        ("POST", "compatibility/subjects/{}/versions", "test_compatibility_all"),
        ("GET", "config", "get_config"),
        ("PUT", "config", "put_config"),
        ("DELETE", "config", "delete_config"),
        ("GET", "config/{}", "get_config"),
        ("PUT", "config/{}", "put_config"),
        ("DELETE", "config/{}", "delete_config"),
        ("GET", "associations/resources/{}/{}", "get_associations"),
        ("GET", "mode", "get_mode"),
        ("GET", "mode/{}", "get_mode"),
    )
)

_Route = Callable[[list[str], dict[str, str], Any], Any]


class RestAPI:
    """The REST API of one store; see :meth:`handle`."""

    def __init__(self, store: SchemaStore) -> None:
        self.store = store
        self.routes: list[tuple[str, re.Pattern[str], _Route]] = [
            (method, re.compile(f"^{pattern}$"), getattr(self, name))
            for method, pattern, name in _ROUTES
        ]

    def handle(self, method: str, raw_path: str, raw_body: bytes) -> tuple[int, Any]:
        """``(HTTP status, JSON-able answer)`` for one request; never raises."""
        try:
            body = json.loads(raw_body) if raw_body else None
        except ValueError as exc:
            return 400, {"error_code": 400, "message": f"the body is not JSON: {exc}"}
        try:
            return 200, self.dispatch(method, raw_path, body)
        except _HTTPError as exc:
            return exc.status, {"error_code": exc.error_code, "message": exc.message}
        except Exception as exc:  # a bug must not leave the client without an answer
            log.exception("schema registry: %s %s failed", method, raw_path)
            return 500, {"error_code": 50001, "message": f"Error in the backend data store: {exc}"}

    def dispatch(self, method: str, raw_path: str, body: Any) -> Any:
        split = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        path = split.path.strip("/")
        known = False
        for route_method, pattern, handler in self.routes:
            match = pattern.match(path)
            if match is None:
                continue
            known = True
            if route_method == method:
                params = [unquote(g) for g in match.groups() if g is not None]
                try:
                    return handler(params, query, body)
                except RegistryError as exc:
                    raise _HTTPError(*http_error(exc), str(exc)) from None
        if known:
            raise _HTTPError(405, 405, "HTTP 405 Method Not Allowed")
        raise _HTTPError(404, 404, "HTTP 404 Not Found")

    # --- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _schema_of(body: Any) -> str:
        if not isinstance(body, dict) or not isinstance(body.get("schema"), str):
            raise _HTTPError(422, 42201, "Invalid schema: the body needs a 'schema' string")
        schema_type = body.get("schemaType") or "AVRO"
        if str(schema_type).upper() != "AVRO":
            raise _HTTPError(
                422,
                42201,
                f"Invalid schema: schema type {schema_type!r} is not supported (AVRO only)",
            )
        if body.get("references"):
            raise _HTTPError(422, 42201, "Invalid schema: schema references are not supported")
        schema: str = body["schema"]
        return schema

    @staticmethod
    def _schema_id(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise _HTTPError(404, 40403, f"Schema {text} not found") from None

    def guid(self, schema_id: int) -> str:
        """The GUID of ``schema_id``: a UUID 5 of its canonical form, stable across restarts."""
        text = self.store.schema_by_id(schema_id)
        return str(uuid.uuid5(_GUID_NAMESPACE, canonical_form(json.loads(text))))

    def _registered(self, subject: str, schema_id: int, version: int, schema: str) -> Any:
        return {
            "subject": subject,
            "id": schema_id,
            "guid": self.guid(schema_id),
            "version": version,
            "schema": schema,
        }

    # --- schemas ---------------------------------------------------------------------------

    def get_root(self, p: list[str], q: dict[str, str], b: Any) -> Any:
        return {}

    def get_types(self, p: list[str], q: dict[str, str], b: Any) -> Any:
        return ["AVRO"]

    def get_mode(self, p: list[str], q: dict[str, str], b: Any) -> Any:
        return {"mode": "READWRITE"}

    def get_associations(self, p: list[str], q: dict[str, str], b: Any) -> Any:
        # confluent-kafka >= 2.13 serdes ask this first (AssociatedNameStrategy); no
        # associations makes them fall back to TopicNameStrategy.
        return []

    def get_schema(self, p: list[str], q: dict[str, str], b: Any) -> Any:
        schema_id = self._schema_id(p[0])
        text = self.store.schema_by_id(schema_id)
        return {"schema": text, "guid": self.guid(schema_id)}

    def get_raw_schema(self, p: list[str], q: dict[str, str], b: Any) -> Any:
        return json.loads(self.store.schema_by_id(self._schema_id(p[0])))

    def get_schema_by_guid(self, p: list[str], q: dict[str, str], b: Any) -> Any:
        found = [i for i in self.store.schema_ids() if self.guid(i) == p[0]]
        if not found:
            raise _HTTPError(404, 40403, f"Schema {p[0]} not found")
        schema_id = found[0]
        return {"schema": self.store.schema_by_id(schema_id), "id": schema_id, "guid": p[0]}

    def get_id_versions(self, p: list[str], q: dict[str, str], b: Any) -> Any:
        pairs = self.store.subject_versions_of(self._schema_id(p[0]), _flag(q, "deleted"))
        if "subject" in q:
            pairs = [(s, v) for s, v in pairs if s == q["subject"]]
        return _page([{"subject": s, "version": v} for s, v in pairs], q)

    def get_id_subjects(self, p: list[str], q: dict[str, str], b: Any) -> Any:
        pairs = self.store.subject_versions_of(self._schema_id(p[0]), _flag(q, "deleted"))
        subjects = sorted({s for s, _ in pairs if q.get("subject") in (None, s)})
        return _page(subjects, q)

    # --- subjects --------------------------------------------------------------------------

    def get_subjects(self, p: list[str], q: dict[str, str], b: Any) -> Any:
        deleted_only = _flag(q, "deleted_only")
        subjects = self.store.subjects(deleted=_flag(q, "deleted") or deleted_only)
        if deleted_only:
            live = set(self.store.subjects())
            subjects = [s for s in subjects if s not in live]
        prefix = q.get("subjectPrefix", "")
        return _page([s for s in subjects if s.startswith(prefix)], q)

    def get_versions(self, p: list[str], q: dict[str, str], b: Any) -> Any:
        deleted_only = _flag(q, "deleted_only")
        versions = self.store.versions(p[0], deleted=_flag(q, "deleted") or deleted_only)
        if deleted_only:
            try:
                live = set(self.store.versions(p[0]))
            except SchemaNotFoundError:
                live = set()
            versions = [v for v in versions if v not in live]
        return _page(versions, q)

    def register(self, p: list[str], q: dict[str, str], b: Any) -> Any:
        schema_id = self.store.register(p[0], self._schema_of(b))
        return {"id": schema_id, "guid": self.guid(schema_id)}

    def lookup(self, p: list[str], q: dict[str, str], b: Any) -> Any:
        subject = p[0]
        schema_id, version = self.store.lookup(subject, self._schema_of(b), _flag(q, "deleted"))
        return self._registered(subject, schema_id, version, self.store.schema_by_id(schema_id))

    def get_version(self, p: list[str], q: dict[str, str], b: Any) -> Any:
        schema_id, version, text = self.store.version(p[0], p[1], _flag(q, "deleted"))
        return self._registered(p[0], schema_id, version, text)

    def get_version_schema(self, p: list[str], q: dict[str, str], b: Any) -> Any:
        return json.loads(self.store.version(p[0], p[1], _flag(q, "deleted"))[2])

    def delete_subject(self, p: list[str], q: dict[str, str], b: Any) -> Any:
        return self.store.delete_subject(p[0], permanent=_flag(q, "permanent"))

    def delete_version(self, p: list[str], q: dict[str, str], b: Any) -> Any:
        return self.store.delete_version(p[0], p[1], permanent=_flag(q, "permanent"))

    # --- compatibility and config ----------------------------------------------------------

    def test_compatibility(self, p: list[str], q: dict[str, str], b: Any) -> Any:
        problems = self.store.test_compatibility(p[0], self._schema_of(b), p[1])
        return {"is_compatible": not problems, "messages": problems}

    def test_compatibility_all(self, p: list[str], q: dict[str, str], b: Any) -> Any:
        problems = self.store.test_compatibility(p[0], self._schema_of(b), None)
        return {"is_compatible": not problems, "messages": problems}

    def get_config(self, p: list[str], q: dict[str, str], b: Any) -> Any:
        return {"compatibilityLevel": self.store.get_config(p[0] if p else None)}

    def put_config(self, p: list[str], q: dict[str, str], b: Any) -> Any:
        level = b.get("compatibility") if isinstance(b, dict) else None
        if not isinstance(level, str):
            raise _HTTPError(
                422, 42203, "Invalid compatibility level: the body needs a 'compatibility' string"
            )
        return {"compatibility": self.store.set_config(level, p[0] if p else None)}

    def delete_config(self, p: list[str], q: dict[str, str], b: Any) -> Any:
        return {"compatibilityLevel": self.store.delete_config(p[0] if p else None)}
