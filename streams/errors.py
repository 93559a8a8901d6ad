"""The one exception tree of TechShop Streams.

::

    TechShopError
     ├── ConfigError            a setting or CLI argument that cannot be used
     ├── StackError             the embedded broker / redis / registry could not start
     │    ├── PortInUseError
     │    └── BinaryMissingError
     ├── RegistryError          a schema registry answered with an error
     │    ├── SchemaNotFoundError
     │    └── IncompatibleSchemaError
     ├── EncodeError            a record that does not fit its schema (our bug, not the input's)
     ├── ModelIntegrityError    an artefact whose digest or signature does not check out
     └── EventError             one event cannot be handled; carries a dead-letter reason
          ├── DecodeError       decode.*   (bad magic, unknown schema id, truncated, ...)
          ├── ValidationError   validate.* (amount, ts_range, too_large, ...)
          └── ProcessingError   process.*, image.*, label.*, late_event

Every :class:`EventError` has a stable dotted ``reason`` code that becomes the
``reason`` field of the dead letter, and a human-readable message (its ``detail``).
"""

from __future__ import annotations

__all__ = [
    "BinaryMissingError",
    "ConfigError",
    "DecodeError",
    "EncodeError",
    "EventError",
    "IncompatibleSchemaError",
    "ModelIntegrityError",
    "PortInUseError",
    "ProcessingError",
    "RegistryError",
    "SchemaNotFoundError",
    "StackError",
    "TechShopError",
    "ValidationError",
]


class TechShopError(Exception):
    """Root of every error raised on purpose by TechShop Streams."""


class ConfigError(TechShopError):
    """A setting or command-line argument that cannot be used."""


class StackError(TechShopError):
    """An embedded process (broker, redis, registry) failed to start or stop."""


class PortInUseError(StackError):
    """The port an embedded process should listen on is taken."""


class BinaryMissingError(StackError):
    """The executable of an embedded process cannot be found."""


class RegistryError(TechShopError):
    """A schema registry refused a request."""


class SchemaNotFoundError(RegistryError):
    """No schema with that id, subject or version."""


class IncompatibleSchemaError(RegistryError):
    """A schema breaks the subject's compatibility rule."""


class EncodeError(TechShopError):
    """A record we produce does not fit its schema."""


class ModelIntegrityError(TechShopError):
    """A model artefact whose digest or signature does not match its manifest."""


class EventError(TechShopError):
    """One event cannot be handled; ``reason`` is the dead-letter reason code."""

    default_reason = "process.error"

    def __init__(self, detail: str, reason: str | None = None) -> None:
        super().__init__(detail)
        self.reason = reason or self.default_reason
        self.detail = detail


class DecodeError(EventError):
    """Bytes that are not a readable event (``decode.*``)."""

    default_reason = "decode.error"


class ValidationError(EventError):
    """A readable event whose content breaks the contract (``validate.*``)."""

    default_reason = "validate.error"


class ProcessingError(EventError):
    """A valid event that could not be processed (``process.*`` and friends)."""

    default_reason = "process.error"
