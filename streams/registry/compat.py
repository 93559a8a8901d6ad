"""Avro schema resolution and Confluent compatibility levels, as pure functions.

Schemas are parsed JSON (``dict`` / ``list`` / ``str``), exactly as ``json.loads`` gives
them. Nothing here does I/O or raises on a bad schema: every problem found, including an
unknown type name, is returned as a human-readable string, and ``[]`` means compatible.

The rules are those of the Avro 1.11 specification, section "Schema Resolution", as
Java's ``SchemaCompatibility`` applies them: records match by unqualified name (or a
reader alias), their fields by name (or a reader field alias); a reader field missing
from the writer needs a default; the numeric and string/bytes promotions apply; every
branch of a writer union must be readable. ``logicalType`` is ignored.

>>> old = {"type": "record", "name": "T", "fields": [{"name": "a", "type": "int"}]}
>>> new = {"type": "record", "name": "T", "fields": [{"name": "a", "type": "long"},
...        {"name": "b", "type": "string", "default": ""}]}
>>> can_read(new, old)
[]
>>> check_compatibility(new, [old], "BACKWARD")
[]
>>> check_compatibility(old, [new], "BACKWARD")  # a long cannot be read as an int
["new schema cannot read data written with existing schema 1: at /a: reader type 'int' \
cannot read writer type 'long'"]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["COMPATIBILITY_LEVELS", "PRIMITIVE_TYPES", "can_read", "check_compatibility"]

PRIMITIVE_TYPES: frozenset[str] = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
)
NAMED_TYPES: frozenset[str] = frozenset({"record", "error", "enum", "fixed"})

COMPATIBILITY_LEVELS: tuple[str, ...] = (
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
)

# writer type -> reader types that can read it (Avro 1.11, "Schema Resolution")
_PROMOTIONS: dict[str, frozenset[str]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}


def _split(fullname: str) -> tuple[str, str]:
    """``(namespace, unqualified name)`` of a dotted name."""
    ns, _, name = fullname.rpartition(".")
    return ns, name


def _fullname(name: str, namespace: str | None, enclosing: str) -> str:
    if "." in name:
        return name
    ns = enclosing if namespace is None else namespace
    return f"{ns}.{name}" if ns else name


@dataclass
class _Node:
    """One schema node with named references resolved.

    ``kind`` is a primitive name, a named kind, ``array``, ``map`` or ``union``.
    """

    kind: str
    raw: Any
    fullname: str = ""
    aliases: frozenset[str] = frozenset()
    children: list[Any] = field(default_factory=list)


class _Names:
    """The named types of one schema, by full name, with their enclosing namespace."""

    def __init__(self, schema: Any) -> None:
        self.defs: dict[str, tuple[dict[str, Any], str]] = {}
        self.problems: list[str] = []
        self._collect(schema, "")

    def _collect(self, schema: Any, ns: str) -> None:
        if isinstance(schema, list):
            for branch in schema:
                self._collect(branch, ns)
            return
        if not isinstance(schema, dict):
            return
        kind = schema.get("type")
        if isinstance(kind, (dict, list)):
            self._collect(kind, ns)
            return
        if kind in NAMED_TYPES:
            name = schema.get("name")
            if not isinstance(name, str) or not name:
                self.problems.append(f"a {kind} without a name")
                return
            full = _fullname(name, schema.get("namespace"), ns)
            self.defs[full] = (schema, ns)
            inner_ns = _split(full)[0]
            if kind in ("record", "error"):
                for f in schema.get("fields", []):
                    if isinstance(f, dict):
                        self._collect(f.get("type"), inner_ns)
        elif kind == "array":
            self._collect(schema.get("items"), ns)
        elif kind == "map":
            self._collect(schema.get("values"), ns)

    def resolve(self, schema: Any, ns: str) -> tuple[_Node, str] | str:
        """The node of ``schema`` and the namespace its children live in, or a problem."""
        if isinstance(schema, list):
            return _Node("union", schema, children=schema), ns
        if isinstance(schema, str):
            if schema in PRIMITIVE_TYPES:
                return _Node(schema, schema), ns
            for candidate in (_fullname(schema, None, ns), schema):
                if candidate in self.defs:
                    definition, def_ns = self.defs[candidate]
                    return self.resolve(definition, def_ns)
            return f"unknown type {schema!r}"
        if not isinstance(schema, dict):
            return f"not a schema: {schema!r}"
        kind = schema.get("type")
        if isinstance(kind, (dict, list)):
            return self.resolve(kind, ns)
        if not isinstance(kind, str):
            return f"a schema without a type: {schema!r}"
        if kind in PRIMITIVE_TYPES:
            return _Node(kind, schema), ns
        if kind in NAMED_TYPES:
            name = str(schema.get("name", ""))
            full = _fullname(name, schema.get("namespace"), ns)
            inner_ns = _split(full)[0]
            aliases = frozenset(
                _fullname(a, None, inner_ns)
                for a in schema.get("aliases", [])
                if isinstance(a, str)
            )
            return _Node("record" if kind == "error" else kind, schema, full, aliases), inner_ns
        if kind == "array":
            return _Node("array", schema, children=[schema.get("items")]), ns
        if kind == "map":
            return _Node("map", schema, children=[schema.get("values")]), ns
        # {"type": "SomeNamedType"}: a reference written as an object
        return self.resolve(kind, ns)


def _names_match(reader: _Node, writer: _Node) -> bool:
    r_name = _split(reader.fullname)[1]
    w_name = _split(writer.fullname)[1]
    if r_name == w_name or writer.fullname in reader.aliases:
        return True
    return any(_split(alias)[1] == w_name for alias in reader.aliases)


def _describe(node: _Node) -> str:
    return f"{node.kind} {node.fullname}" if node.fullname else node.kind


class _Checker:
    def __init__(self, reader: Any, writer: Any) -> None:
        self.readers = _Names(reader)
        self.writers = _Names(writer)
        self.problems: list[str] = [f"reader: {p}" for p in self.readers.problems]
        self.problems += [f"writer: {p}" for p in self.writers.problems]
        # (reader record, writer record) pairs being compared: a recursive type that
        # comes back to a pair under comparison adds nothing new.
        self._in_progress: set[tuple[int, int]] = set()

    def check(self, reader: Any, r_ns: str, writer: Any, w_ns: str, path: str) -> list[str]:
        r = self.readers.resolve(reader, r_ns)
        w = self.writers.resolve(writer, w_ns)
        if isinstance(r, str) or isinstance(w, str):
            found = []
            if isinstance(r, str):
                found.append(f"at {path}: reader has {r}")
            if isinstance(w, str):
                found.append(f"at {path}: writer has {w}")
            return found
        (r_node, r_inner), (w_node, w_inner) = r, w

        if w_node.kind == "union":
            found = []
            for i, branch in enumerate(w_node.children):
                found += self.check(reader, r_ns, branch, w_ns, f"{path}/{i}")
            return found
        if r_node.kind == "union":
            for branch in r_node.children:
                if not self.check(branch, r_ns, writer, w_ns, path):
                    return []
            return [
                f"at {path}: writer type {_describe(w_node)!r} matches no branch "
                f"of the reader union"
            ]

        if r_node.kind != w_node.kind:
            if r_node.kind in _PROMOTIONS.get(w_node.kind, frozenset()):
                return []
            return [
                f"at {path}: reader type {_describe(r_node)!r} cannot read "
                f"writer type {_describe(w_node)!r}"
            ]

        kind = r_node.kind
        if kind in PRIMITIVE_TYPES:
            return []
        if kind == "array":
            return self.check(
                r_node.children[0], r_inner, w_node.children[0], w_inner, f"{path}/items"
            )
        if kind == "map":
            return self.check(
                r_node.children[0], r_inner, w_node.children[0], w_inner, f"{path}/values"
            )
        if not _names_match(r_node, w_node):
            return [
                f"at {path}: reader {kind} {r_node.fullname!r} does not match "
                f"writer {kind} {w_node.fullname!r} (different names and no alias)"
            ]
        if kind == "fixed":
            r_size, w_size = r_node.raw.get("size"), w_node.raw.get("size")
            if r_size != w_size:
                return [f"at {path}: fixed size {r_size} cannot read fixed size {w_size}"]
            return []
        if kind == "enum":
            return self._enum(r_node, w_node, path)
        return self._record(r_node, r_inner, w_node, w_inner, path)

    def _enum(self, reader: _Node, writer: _Node, path: str) -> list[str]:
        r_symbols = set(reader.raw.get("symbols", []))
        missing = [s for s in writer.raw.get("symbols", []) if s not in r_symbols]
        if missing and "default" not in reader.raw:
            return [
                f"at {path}: reader enum {reader.fullname!r} lacks writer symbol(s) "
                f"{', '.join(missing)} and has no default"
            ]
        return []

    def _record(self, reader: _Node, r_ns: str, writer: _Node, w_ns: str, path: str) -> list[str]:
        pair = (id(reader.raw), id(writer.raw))
        if pair in self._in_progress:
            return []
        self._in_progress.add(pair)
        try:
            w_fields = {f["name"]: f for f in writer.raw.get("fields", []) if isinstance(f, dict)}
            found: list[str] = []
            for r_field in reader.raw.get("fields", []):
                if not isinstance(r_field, dict):
                    continue
                name = r_field.get("name", "?")
                w_field = w_fields.get(name)
                if w_field is None:
                    for alias in r_field.get("aliases", []):
                        if alias in w_fields:
                            w_field = w_fields[alias]
                            break
                if w_field is None:
                    if "default" not in r_field:
                        found.append(
                            f"at {path}/{name}: reader field {name!r} has no default "
                            f"and is missing from the writer"
                        )
                    continue
                found += self.check(
                    r_field.get("type"), r_ns, w_field.get("type"), w_ns, f"{path}/{name}"
                )
            return found
        finally:
            self._in_progress.discard(pair)


def can_read(reader: Any, writer: Any) -> list[str]:
    """Problems met when data written with ``writer`` is read with ``reader``.

    ``[]`` means every datum of ``writer`` resolves to ``reader``. Paths in messages
    name record fields from the root (``/address/zip``); union branches by index.
    """
    checker = _Checker(reader, writer)
    return checker.problems + checker.check(reader, "", writer, "", "")


def check_compatibility(new: Any, existing: list[Any], level: str) -> list[str]:
    """Problems that make ``new`` break ``level`` against ``existing`` schemas.

    ``existing`` is ordered oldest first (for a subject: its versions in order); messages
    name schemas by their 1-based position in it. Levels have Confluent's meaning:
    ``BACKWARD`` (the new schema reads the latest one's data), ``FORWARD`` (the latest
    reads the new one's data), ``FULL`` (both); the ``_TRANSITIVE`` forms check every
    existing schema instead of the latest only; ``NONE`` checks nothing.

    Raises ``ValueError`` for an unknown level.
    """
    level = level.upper()
    if level not in COMPATIBILITY_LEVELS:
        raise ValueError(
            f"unknown compatibility level {level!r}; levels are: {', '.join(COMPATIBILITY_LEVELS)}"
        )
    if level == "NONE" or not existing:
        return []
    positions = range(len(existing)) if level.endswith("_TRANSITIVE") else [len(existing) - 1]
    backward = level.startswith(("BACKWARD", "FULL"))
    forward = level.startswith(("FORWARD", "FULL"))
    problems: list[str] = []
    for i in positions:
        old = existing[i]
        if backward:
            problems += [
                f"new schema cannot read data written with existing schema {i + 1}: {p}"
                for p in can_read(new, old)
            ]
        if forward:
            problems += [
                f"existing schema {i + 1} cannot read data written with the new schema: {p}"
                for p in can_read(old, new)
            ]
    return problems
