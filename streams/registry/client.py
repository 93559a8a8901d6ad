"""Where the Avro codec gets its schemas: the :class:`SchemaSource` protocol, two ways.

:class:`LocalSchemaSource` reads a :class:`~streams.registry.store.SchemaStore` in the
same process; :class:`RemoteSchemaSource` talks to any Confluent-compatible registry
through confluent-kafka's ``SchemaRegistryClient`` (which caches ids and schemas).
Both raise only our errors: :class:`~streams.errors.SchemaNotFoundError`,
:class:`~streams.errors.IncompatibleSchemaError` or another
:class:`~streams.errors.RegistryError`.

>>> from streams.registry.store import SchemaStore
>>> source = LocalSchemaSource(SchemaStore(None))
>>> source.register("t-value", '"string"'), source.latest("t-value")
(1, (1, '"string"'))
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from streams.errors import IncompatibleSchemaError, RegistryError, SchemaNotFoundError
from streams.registry.store import SchemaStore

try:  # the HTTP library confluent-kafka uses (httpx2 where installed, else httpx)
    from httpx2 import TransportError as _TransportError
except ImportError:  # pragma: no cover - depends on the installed confluent-kafka
    from httpx import TransportError as _TransportError  # type: ignore[no-redef]

__all__ = ["LocalSchemaSource", "RemoteSchemaSource", "SchemaSource"]


@runtime_checkable
class SchemaSource(Protocol):
    """Schemas by id and by subject, as the Avro codec needs them."""

    def register(self, subject: str, schema_str: str) -> int:
        """Register ``schema_str`` under ``subject`` (idempotent); its id."""
        ...

    def schema_by_id(self, schema_id: int) -> str:
        """The schema text of ``schema_id``; :class:`SchemaNotFoundError` if unknown."""
        ...

    def latest(self, subject: str) -> tuple[int, str]:
        """``(id, schema text)`` of the subject's latest version."""
        ...


class LocalSchemaSource:
    """A :class:`SchemaSource` over a store in this process."""

    def __init__(self, store: SchemaStore) -> None:
        self.store = store

    def register(self, subject: str, schema_str: str) -> int:
        return self.store.register(subject, schema_str)

    def schema_by_id(self, schema_id: int) -> str:
        return self.store.schema_by_id(schema_id)

    def latest(self, subject: str) -> tuple[int, str]:
        schema_id, _, text = self.store.version(subject, "latest")
        return schema_id, text


def _translate(exc: SchemaRegistryError, what: str) -> RegistryError:
    message = f"{what}: {exc.error_message} (HTTP {exc.http_status_code}, code {exc.error_code})"
    if exc.http_status_code == 404:
        return SchemaNotFoundError(message)
    if exc.http_status_code == 409:
        return IncompatibleSchemaError(message)
    return RegistryError(message)


class RemoteSchemaSource:
    """A :class:`SchemaSource` over a Confluent-compatible registry.

    ``conf`` is a ``SchemaRegistryClient`` configuration (``{"url": ...}`` at least).
    Ids and schemas by id are cached by the client; :meth:`latest` always asks the
    registry (the client would otherwise cache "latest" for ever).
    """

    def __init__(self, conf: dict[str, Any]) -> None:
        self.url = str(conf.get("url", ""))
        self.client = SchemaRegistryClient(dict(conf))

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except SchemaRegistryError as exc:
            raise _translate(exc, what) from None
        except _TransportError as exc:
            raise RegistryError(
                f"{what}: cannot reach the schema registry at {self.url}: {exc}"
            ) from None

    def register(self, subject: str, schema_str: str) -> int:
        schema_id: int = self._call(
            f"register under {subject!r}",
            self.client.register_schema,
            subject,
            Schema(schema_str, "AVRO"),
        )
        return schema_id

    def schema_by_id(self, schema_id: int) -> str:
        schema: Schema = self._call(f"schema {schema_id}", self.client.get_schema, schema_id)
        if schema.schema_str is None:
            raise SchemaNotFoundError(f"schema {schema_id}: the registry returned no text")
        return schema.schema_str

    def latest(self, subject: str) -> tuple[int, str]:
        registered = self._call(
            f"latest of {subject!r}", self.client.get_version, subject, "latest"
        )
        text = registered.schema.schema_str
        if registered.schema_id is None or text is None:
            raise RegistryError(f"latest of {subject!r}: the registry returned no schema")
        return int(registered.schema_id), str(text)

    def close(self) -> None:
        """Close the HTTP session of the underlying client."""
        self.client.close()

    def __enter__(self) -> RemoteSchemaSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
