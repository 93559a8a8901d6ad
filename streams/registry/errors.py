"""Registry errors with the error code and HTTP status Confluent's REST API gives them.

All are children of :class:`~streams.errors.RegistryError` (see :mod:`streams.errors`)::

    RegistryError                       50001 / 500 unless below
     ├── SchemaNotFoundError            40403 / 404 (no schema with that id, or not in a subject)
     │    ├── SubjectNotFoundError      40401 / 404
     │    └── VersionNotFoundError      40402 / 404
     ├── IncompatibleSchemaError        409 / 409
     │    └── CompatibilityError        409 / 409, with ``problems``
     ├── InvalidSchemaError             42201 / 422
     ├── InvalidVersionError            42202 / 422
     ├── InvalidCompatibilityLevelError 42203 / 422
     └── SubjectStateError              40404, 40405, 40407 / 404 (soft-delete state)
"""

from __future__ import annotations

from streams.errors import IncompatibleSchemaError, RegistryError, SchemaNotFoundError

__all__ = [
    "CompatibilityError",
    "InvalidCompatibilityLevelError",
    "InvalidSchemaError",
    "InvalidVersionError",
    "SubjectNotFoundError",
    "SubjectStateError",
    "VersionNotFoundError",
    "http_error",
]


class SubjectNotFoundError(SchemaNotFoundError):
    """No live version under this subject (Confluent 40401)."""

    error_code = 40401
    http_status = 404


class VersionNotFoundError(SchemaNotFoundError):
    """The subject exists, the version does not (Confluent 40402)."""

    error_code = 40402
    http_status = 404


class InvalidSchemaError(RegistryError):
    """Text that is not a valid Avro schema (Confluent 42201)."""

    error_code = 42201
    http_status = 422


class InvalidVersionError(RegistryError):
    """A version that is neither a positive integer, ``-1`` nor ``latest`` (42202)."""

    error_code = 42202
    http_status = 422


class InvalidCompatibilityLevelError(RegistryError):
    """An unknown compatibility level (Confluent 42203)."""

    error_code = 42203
    http_status = 422


class CompatibilityError(IncompatibleSchemaError):
    """A schema that breaks its subject's compatibility level; ``problems`` says how."""

    error_code = 409
    http_status = 409

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(message)
        self.problems = problems


class SubjectStateError(RegistryError):
    """A delete that the soft-delete state does not allow (40404, 40405, 40407)."""

    http_status = 404

    def __init__(self, message: str, error_code: int) -> None:
        super().__init__(message)
        self.error_code = error_code


def http_error(exc: RegistryError) -> tuple[int, int]:
    """``(HTTP status, Confluent error code)`` of any registry error."""
    status = getattr(exc, "http_status", None)
    code = getattr(exc, "error_code", None)
    if isinstance(status, int) and isinstance(code, int):
        return status, code
    if isinstance(exc, SchemaNotFoundError):
        return 404, 40403
    if isinstance(exc, IncompatibleSchemaError):
        return 409, 409
    return 500, 50001
