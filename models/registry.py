"""The model registry: signed, versioned model artefacts on a filesystem.

Layout::

    root/<name>/<version>/artifact.bin     the scorer's bytes (ONNX, River pickle, rules JSON)
    root/<name>/<version>/thresholds.json  decision thresholds (may be {})
    root/<name>/<version>/features.json    the feature schema: names, in column order
    root/<name>/<version>/metrics.json     training / prequential metrics
    root/<name>/<version>/lineage.json     parent version, data range, what trained it
    root/<name>/<version>/<extra>          any further file (e.g. reference.json, the
                                           training reference histograms for drift)
    root/<name>/<version>/manifest.json    what the version is, signed
    root/_routing/<family>.json            champion / challenger aliases (models.routing)

Versions are increasing integers ("1", "2", ...), never reused or rewritten. A
version is written in a temporary directory beside it and renamed into place, so a
reader sees a whole version or none, and two concurrent publishers of the same name get
two different versions (the loser of a rename race retries with the next number).
A publisher that dies mid-way leaves only a ``.publish-*`` directory, which readers
ignore (safe to delete when no publish is running).

The manifest records ``sha256`` (of the artefact), ``files`` (the sha256 of every other
file of the version) and ``signature``, an HMAC-SHA256 with the registry's signing key
over the canonical JSON of every other manifest field. :meth:`ModelRegistry.load`
checks all of them, and that the manifest names the directory it lies in, before it
returns a byte; anything else is a :class:`~scorers.errors.ModelIntegrityError`, and
the registry's ``on_refused`` hook is called (workers count it in
``techshop_model_refused_total``). Versions written before ``files`` existed (no such
field) still load. River artefacts are pickles, and
:meth:`ModelRegistry.load_scorer` unpickles only after those checks passed.

>>> import tempfile
>>> from pathlib import Path
>>> from scorers import RulesScorer
>>> registry = ModelRegistry(Path(tempfile.mkdtemp()), signing_key=b"k" * 32)
>>> rules = RulesScorer(["count_1m", "amount_usd", "median_amount_usd", "device_is_new",
...                      "country_is_new"], columns={"merchants_1h": None,
...                                                  "foreign_country": None})
>>> registry.publish_scorer(rules, name="fraud_rules").version
'1'
>>> registry.load_scorer("fraud_rules").model_id
'fraud_rules@1'
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from models.signing import KEY_BYTES, canonical_json, finite, signing_key_from
from scorers import (
    ModelIntegrityError,
    ModelNotFoundError,
    OnnxScorer,
    RiverScorer,
    RulesScorer,
    Scorer,
    ScorerError,
)

__all__ = [
    "KEY_BYTES",
    "LOADERS",
    "Manifest",
    "ModelRegistry",
    "canonical_json",
    "open_registry",
    "signing_key_from",
]

ARTIFACT = "artifact.bin"
MANIFEST = "manifest.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: Hook called with (name, version, reason) when a version is refused.
RefusedHook = Callable[[str, str, str], None]

#: kind -> ``from_bytes(data, *, name, version, feature_names)`` of its scorer class.
LOADERS: dict[str, Callable[..., Scorer]] = {
    "onnx": OnnxScorer.from_bytes,
    "river": RiverScorer.from_bytes,
    "rules": RulesScorer.from_bytes,
}


@dataclass(frozen=True)
class Manifest:
    """What a registry version is; every field is covered by ``signature``."""

    name: str
    version: str
    kind: str
    sha256: str
    created_at: str
    feature_names: tuple[str, ...]
    thresholds: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    parent_version: str | None = None
    #: file name -> sha256 of every file of the version but the artefact and manifest.
    files: dict[str, str] = field(default_factory=dict)
    #: parent version, data range (event-time ms), trainer: where the version came from.
    lineage: dict[str, Any] = field(default_factory=dict)
    signature: str = ""

    @property
    def model_id(self) -> str:
        return f"{self.name}@{self.version}"

    def unsigned(self) -> dict[str, Any]:
        """The signed content: every field but ``signature``, JSON-ready."""
        body = asdict(self)
        body.pop("signature")
        body["feature_names"] = list(self.feature_names)
        return body

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        return cls(
            name=str(data["name"]),
            version=str(data["version"]),
            kind=str(data["kind"]),
            sha256=str(data["sha256"]),
            created_at=str(data["created_at"]),
            feature_names=tuple(str(f) for f in data["feature_names"]),
            thresholds={str(k): float(v) for k, v in dict(data["thresholds"]).items()},
            metrics=dict(data["metrics"]),
            params=dict(data["params"]),
            parent_version=None if data["parent_version"] is None else str(data["parent_version"]),
            files={str(k): str(v) for k, v in dict(data.get("files") or {}).items()},
            lineage=dict(data.get("lineage") or {}),
            signature=str(data.get("signature", "")),
        )


class ModelRegistry:
    """Versioned, signed model artefacts under ``root`` (see the module docstring)."""

    def __init__(self, root: Path, signing_key: bytes, *,
                 on_refused: RefusedHook | None = None) -> None:
        if len(signing_key) < 16:
            raise ScorerError("the model signing key must be at least 16 bytes")
        self.root = Path(root)
        self._key = bytes(signing_key)
        #: Called with (name, version, reason) for every refused version.
        self.on_refused = on_refused

    # -- reading ---------------------------------------------------------------------

    def names(self) -> list[str]:
        """Model names with at least one version, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if _NAME.match(p.name) and p.is_dir() and self.versions(p.name)
        )

    def versions(self, name: str) -> list[str]:
        """The published versions of ``name``, oldest first ([] if none)."""
        folder = self._folder(name)
        if not folder.is_dir():
            return []
        found = [
            int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / MANIFEST).is_file()
        ]
        return [str(v) for v in sorted(found)]

    def latest_version(self, name: str) -> str:
        """The highest version of ``name``, or :class:`ModelNotFoundError`."""
        versions = self.versions(name)
        if not versions:
            raise ModelNotFoundError(f"no model named {name!r} in {self.root}")
        return versions[-1]

    def manifest(self, name: str, version: str = "latest") -> Manifest:
        """The verified manifest (the artefact's digest is checked too)."""
        return self.load(name, version)[0]

    def load(self, name: str, version: str = "latest") -> tuple[Manifest, bytes]:
        """The manifest and artefact bytes, after checking the manifest's signature,
        that it names this very ``name``/``version``, and the sha256 of the artefact
        and of every other file of the version. A refusal calls ``on_refused``."""
        if version == "latest":
            version = self.latest_version(name)
        if not version.isdigit():
            raise ModelNotFoundError(f"bad version {version!r} of {name!r}")
        try:
            return self._load(name, version)
        except ModelIntegrityError as exc:
            if self.on_refused is not None:
                self.on_refused(name, version, _reason(str(exc)))
            raise

    def read_file(self, name: str, version: str, filename: str) -> bytes:
        """One further file of a verified version (``thresholds.json``,
        ``reference.json``, ...); :class:`ModelNotFoundError` if the version has none."""
        manifest, _ = self.load(name, version)
        if filename not in manifest.files:
            raise ModelNotFoundError(f"{manifest.model_id} has no file {filename!r}")
        return (self._folder(name) / manifest.version / filename).read_bytes()

    def export(self, name: str, version: str, dest: Path) -> Path:
        """Copy a verified version (every file and its signed manifest) to
        ``dest/<name>-<version>/``; returns that folder. Its manifest still proves,
        to anyone holding the key, what every file must hash to."""
        manifest, _ = self.load(name, version)
        target = Path(dest) / f"{manifest.name}-{manifest.version}"
        if target.exists():
            raise ScorerError(f"{target} exists already")
        target.mkdir(parents=True)
        source = self._folder(name) / manifest.version
        for filename in (ARTIFACT, MANIFEST, *manifest.files):
            shutil.copyfile(source / filename, target / filename)
        return target

    def _load(self, name: str, version: str) -> tuple[Manifest, bytes]:
        where = self._folder(name) / version
        if not where.is_dir():
            raise ModelNotFoundError(f"no version {version} of {name!r} in {self.root}")
        try:
            raw = json.loads((where / MANIFEST).read_bytes())
            signature = raw.pop("signature")
            artifact = (where / ARTIFACT).read_bytes()
        except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
            raise ModelIntegrityError(f"{name}@{version}: unreadable version: {exc}") from exc
        expected = self._sign(raw)
        if not isinstance(signature, str) or not hmac.compare_digest(signature, expected):
            raise ModelIntegrityError(f"{name}@{version}: manifest signature does not match")
        try:
            manifest = Manifest.from_dict({**raw, "signature": signature})
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelIntegrityError(f"{name}@{version}: malformed manifest: {exc}") from exc
        if (manifest.name, manifest.version) != (name, version):
            raise ModelIntegrityError(
                f"{name}@{version}: the manifest is for {manifest.model_id} (moved or copied)"
            )
        if not hmac.compare_digest(hashlib.sha256(artifact).hexdigest(), manifest.sha256):
            raise ModelIntegrityError(f"{name}@{version}: artefact sha256 does not match")
        for filename, digest in manifest.files.items():
            if not _FILE.match(filename) or filename in (ARTIFACT, MANIFEST):
                raise ModelIntegrityError(f"{name}@{version}: bad file name {filename!r}")
            try:
                data = (where / filename).read_bytes()
            except OSError as exc:
                raise ModelIntegrityError(f"{name}@{version}: unreadable file: {exc}") from exc
            if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), digest):
                raise ModelIntegrityError(f"{name}@{version}: {filename} sha256 does not match")
        return manifest, artifact

    def load_scorer(self, name: str, version: str = "latest", **options: Any) -> Scorer:
        """The verified version rebuilt as its kind's scorer; ``options`` go to the
        loader (e.g. ``providers=`` for ONNX). River pickles are unpickled only here,
        after :meth:`load` verified them."""
        manifest, artifact = self.load(name, version)
        loader = LOADERS.get(manifest.kind)
        if loader is None:
            raise ScorerError(f"{manifest.model_id}: no loader for kind {manifest.kind!r}")
        return loader(
            artifact,
            name=manifest.name,
            version=manifest.version,
            feature_names=manifest.feature_names,
            **options,
        )

    # -- writing ---------------------------------------------------------------------

    def publish(
        self,
        name: str,
        kind: str,
        artifact: bytes,
        *,
        feature_names: Sequence[str],
        thresholds: Mapping[str, float] | None = None,
        metrics: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        parent_version: str | None = None,
        files: Mapping[str, bytes] | None = None,
        lineage: Mapping[str, Any] | None = None,
    ) -> Manifest:
        """Store ``artifact`` as the next version of ``name``; returns its manifest.

        ``parent_version`` is the version this one was derived from (an online model
        that went on learning), ``None`` for a fresh model. Non-finite metric values
        are stored as ``null``. Besides the artefact, a version holds
        ``thresholds.json``, ``features.json``, ``metrics.json``, ``lineage.json``
        (``lineage`` plus the parent version) and each of ``files`` (name -> bytes),
        every one of them hashed in the signed manifest."""
        folder = self._folder(name)
        extra = dict(files or {})
        for filename in extra:
            if not _FILE.match(filename) or filename in (ARTIFACT, MANIFEST):
                raise ScorerError(f"bad file name {filename!r}")
        folder.mkdir(parents=True, exist_ok=True)
        lineage_body = finite({"parent_version": parent_version, **dict(lineage or {})})
        body: dict[str, Any] = {
            "name": name,
            "kind": kind,
            "sha256": hashlib.sha256(artifact).hexdigest(),
            "created_at": dt.datetime.now(dt.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "feature_names": [str(f) for f in feature_names],
            "thresholds": {str(k): float(v) for k, v in (thresholds or {}).items()},
            "metrics": finite(dict(metrics or {})),
            "params": finite(dict(params or {})),
            "parent_version": parent_version,
            "lineage": lineage_body,
        }
        extra = {
            "thresholds.json": canonical_json(body["thresholds"]),
            "features.json": canonical_json({"feature_names": body["feature_names"],
                                             "dtype": "float32"}),
            "metrics.json": canonical_json(body["metrics"]),
            "lineage.json": canonical_json(lineage_body),
            **extra,
        }
        body["files"] = {k: hashlib.sha256(v).hexdigest() for k, v in sorted(extra.items())}
        tmp = Path(tempfile.mkdtemp(prefix=".publish-", dir=folder))
        try:
            _write(tmp / ARTIFACT, artifact)
            for filename, data in extra.items():
                _write(tmp / filename, data)
            while True:
                version = str(self._next_version(folder))
                signed = {**body, "version": version}
                signed["signature"] = self._sign(signed)
                _write(tmp / MANIFEST, canonical_json(signed))
                try:
                    os.rename(tmp, folder / version)
                except OSError:
                    if (folder / version).exists():
                        continue  # another publisher took this number: take the next
                    raise
                _fsync_dir(folder)
                return Manifest.from_dict(signed)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def publish_scorer(
        self,
        scorer: Scorer,
        *,
        name: str | None = None,
        thresholds: Mapping[str, float] | None = None,
        metrics: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        parent_version: str | None = None,
        files: Mapping[str, bytes] | None = None,
        lineage: Mapping[str, Any] | None = None,
    ) -> Manifest:
        """:meth:`publish` of ``scorer.to_bytes()`` with its kind and feature names.
        A rules scorer's configuration is recorded in ``params`` too, for readers."""
        if params is None and isinstance(scorer, RulesScorer):
            params = scorer.params()
        return self.publish(
            name or scorer.name,
            scorer.kind,
            scorer.to_bytes(),
            feature_names=scorer.feature_names,
            thresholds=thresholds,
            metrics=metrics,
            params=params,
            parent_version=parent_version,
            files=files,
            lineage=lineage,
        )

    # -- signing other registry records (routing aliases) ------------------------------

    def sign(self, body: Mapping[str, Any]) -> str:
        """HMAC-SHA256 of ``body`` without its ``signature`` key, with this key."""
        return self._sign(body)

    def verify(self, body: Mapping[str, Any]) -> bool:
        """True when ``body["signature"]`` is this registry's signature of the rest."""
        signature = body.get("signature")
        return isinstance(signature, str) and hmac.compare_digest(signature, self._sign(body))

    # -- internals -------------------------------------------------------------------

    def _folder(self, name: str) -> Path:
        if not _NAME.match(name):
            raise ScorerError(f"bad model name {name!r}: letters, digits, '_', '.', '-'")
        return self.root / name

    def _sign(self, body: Mapping[str, Any]) -> str:
        content = {k: v for k, v in body.items() if k != "signature"}
        return hmac.new(self._key, canonical_json(content), hashlib.sha256).hexdigest()

    @staticmethod
    def _next_version(folder: Path) -> int:
        taken = [int(p.name) for p in folder.iterdir() if p.name.isdigit()]
        return max(taken, default=0) + 1


def _reason(message: str) -> str:
    """A short, stable label for a refusal (for a metric), from its message."""
    for needle, reason in (("signature", "signature"), ("sha256", "digest"),
                           ("moved or copied", "moved"), ("unreadable", "unreadable"),
                           ("malformed", "malformed")):
        if needle in message:
            return reason
    return "other"


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_registry(root: Path, env_key: str | None = None, *,
                  on_refused: RefusedHook | None = None) -> ModelRegistry:
    """The registry at ``root`` (created if missing), signed with ``env_key`` or with the
    key file ``root/signing.key`` (created on first use, mode 0600)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    return ModelRegistry(root, signing_key_from(root / "signing.key", env_key),
                         on_refused=on_refused)
