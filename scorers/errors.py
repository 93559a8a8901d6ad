"""Exceptions of the scoring and model layers (``scorers/``, ``models/``).

::

    ScorerError                 root: a scorer or model artefact that cannot be used
     ├── FeatureMismatchError   a matrix whose shape or columns do not fit the scorer
     ├── ModelNotFoundError     no such model name or version in the registry
     ├── ModelIntegrityError    an artefact whose digest or signature does not check out
     └── ModelExportError       an exported model that does not agree with its source

``streams.errors`` is expected to reuse these classes (so a worker can map them to
dead-letter reasons) rather than define its own: the dependency points from
``streams`` to here, never the other way.
"""

from __future__ import annotations

__all__ = [
    "FeatureMismatchError",
    "ModelExportError",
    "ModelIntegrityError",
    "ModelNotFoundError",
    "ScorerError",
]


class ScorerError(Exception):
    """Root of every error raised on purpose by ``scorers`` and ``models``."""


class FeatureMismatchError(ScorerError, ValueError):
    """The feature matrix does not have the scorer's shape or feature names."""


class ModelNotFoundError(ScorerError, LookupError):
    """No model of that name, or no such version of it, in the registry."""


class ModelIntegrityError(ScorerError):
    """A model artefact or manifest whose digest or signature does not match.

    Raised before any byte of the artefact is interpreted (never unpickled)."""


class ModelExportError(ScorerError):
    """An exported model (e.g. ONNX) disagrees with the model it was exported from."""
