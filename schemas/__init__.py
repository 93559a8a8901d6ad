"""Avro schemas of every TechShop event, and the typed records that mirror them.

The ``.avsc`` files in ``schemas/avsc`` are the source of truth; :mod:`schemas.records`
mirrors them as frozen dataclasses (a test checks that both agree).

>>> sorted(SCHEMA_NAMES)[:3]
['catalog_item', 'click_event', 'dead_letter']
>>> load_schema("transaction")["name"]
'Transaction'
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

AVSC_DIR = Path(__file__).resolve().parent / "avsc"
SCHEMA_NAMES: frozenset[str] = frozenset(p.stem for p in AVSC_DIR.glob("*.avsc"))

__all__ = ["AVSC_DIR", "SCHEMA_NAMES", "load_schema", "schema_text"]


def schema_text(name: str) -> str:
    """Return the canonical JSON text of schema ``name`` (compact, stable key order)."""
    return json.dumps(load_schema(name), separators=(",", ":"), sort_keys=False)


@cache
def _load(name: str) -> str:
    if name not in SCHEMA_NAMES:
        raise KeyError(f"no schema named {name!r}; known: {', '.join(sorted(SCHEMA_NAMES))}")
    return (AVSC_DIR / f"{name}.avsc").read_text()


def load_schema(name: str) -> dict[str, Any]:
    """Return a fresh copy of schema ``name`` parsed from its ``.avsc`` file."""
    loaded: dict[str, Any] = json.loads(_load(name))
    return loaded
