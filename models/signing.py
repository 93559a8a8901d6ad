"""The registry's signing key and the canonical JSON that manifests and routing files sign.

>>> canonical_json({"b": 1, "a": [1.5, "x"]})
b'{"a":[1.5,"x"],"b":1}'
>>> finite({"auc": float("nan"), "n": 3})
{'auc': None, 'n': 3}
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scorers import ScorerError

__all__ = ["KEY_BYTES", "canonical_json", "finite", "signing_key_from"]

KEY_BYTES = 32


def canonical_json(data: Any) -> bytes:
    """Sorted keys, no spaces, ASCII, no NaN: the same bytes for the same content."""
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def finite(value: Any) -> Any:
    """JSON has no NaN/inf: they become ``None`` (a metric not defined yet)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return finite(value.item())
    return value


def signing_key_from(path: Path, env_value: str | None = None) -> bytes:
    """The registry's signing key.

    ``env_value`` (the caller passes ``TECHSHOP_MODEL_SIGNING_KEY`` from its settings;
    this package reads no environment) wins when set: its UTF-8 bytes, at least 16 of
    them. Otherwise the key file at ``path``: 32 random bytes created on first use with
    mode 0600 (its directory 0700 if created), read on later uses. Concurrent first
    uses agree on one key (the file is linked into place, never overwritten).
    """
    if env_value:
        key = env_value.encode("utf-8")
        if len(key) < 16:
            raise ScorerError("the model signing key must be at least 16 bytes")
        return key
    with contextlib.suppress(FileNotFoundError):
        return _read_key(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".key-", dir=path.parent)  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(KEY_BYTES))
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise ScorerError(f"signing key file {path} holds {len(key)} bytes, not {KEY_BYTES}")
    return key
