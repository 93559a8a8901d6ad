"""The schema registry: compatibility rules, a store, an embedded server, schema sources.

- :mod:`~streams.registry.compat`: Avro schema resolution and Confluent compatibility
  levels, pure functions.
- :class:`SchemaStore`: subjects, versions and ids, kept in a JSON file.
- :class:`RestAPI` / :class:`RegistryServer`: the Confluent REST API over a store, and
  the embedded HTTP server that serves it to any standard client.
- :class:`SchemaSource`: what the Avro codec reads schemas from, in process
  (:class:`LocalSchemaSource`) or over HTTP (:class:`RemoteSchemaSource`).
- :func:`register_builtin`: every topic's value schema from ``schemas/``, in a fixed order.

Errors are :class:`~streams.errors.RegistryError` and its children; those of
:mod:`streams.registry.errors` carry Confluent's ``error_code`` and ``http_status``.
"""

from __future__ import annotations

from streams.registry.api import RestAPI
from streams.registry.client import LocalSchemaSource, RemoteSchemaSource, SchemaSource
from streams.registry.compat import COMPATIBILITY_LEVELS, can_read, check_compatibility
from streams.registry.errors import (
    CompatibilityError,
    InvalidCompatibilityLevelError,
    InvalidSchemaError,
    InvalidVersionError,
    SubjectNotFoundError,
    SubjectStateError,
    VersionNotFoundError,
)
from streams.registry.server import RegistryServer
from streams.registry.store import SchemaStore, canonical_form, register_builtin

__all__ = [
    "COMPATIBILITY_LEVELS",
    "CompatibilityError",
    "InvalidCompatibilityLevelError",
    "InvalidSchemaError",
    "InvalidVersionError",
    "LocalSchemaSource",
    "RegistryServer",
    "RemoteSchemaSource",
    "RestAPI",
    "SchemaSource",
    "SchemaStore",
    "SubjectNotFoundError",
    "SubjectStateError",
    "VersionNotFoundError",
    "can_read",
    "canonical_form",
    "check_compatibility",
    "register_builtin",
]
