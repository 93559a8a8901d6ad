"""The model registry: versions, manifests, signing keys, concurrent publishers."""

from __future__ import annotations

import json
import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from models import Manifest, ModelRegistry, signing_key_from
from scorers import ModelIntegrityError, ModelNotFoundError, ScorerError

KEY = b"registry-test-key-0123456789abcd"
FEATURES = ("a", "b")


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models", signing_key=KEY)


def publish(registry: ModelRegistry, name: str, payload: bytes, **kw: object) -> Manifest:
    return registry.publish(name, "rules", payload, feature_names=FEATURES, **kw)  # type: ignore[arg-type]


def test_an_empty_registry(registry: ModelRegistry) -> None:
    assert registry.names() == []
    assert registry.versions("fraud") == []
    with pytest.raises(ModelNotFoundError):
        registry.latest_version("fraud")
    with pytest.raises(ModelNotFoundError):
        registry.load("fraud")


def test_versions_increase_and_latest_is_the_highest(registry: ModelRegistry) -> None:
    for i in range(1, 12):
        assert publish(registry, "fraud", f"v{i}".encode()).version == str(i)
    publish(registry, "churn", b"x")
    assert registry.versions("fraud") == [str(i) for i in range(1, 12)]  # numeric order
    assert registry.latest_version("fraud") == "11"
    assert registry.names() == ["churn", "fraud"]
    assert registry.load("fraud")[1] == b"v11"
    assert registry.load("fraud", "2")[1] == b"v2"
    with pytest.raises(ModelNotFoundError):
        registry.load("fraud", "12")
    with pytest.raises(ModelNotFoundError):
        registry.load("fraud", "../churn/1")


def test_the_manifest_records_what_the_version_is(registry: ModelRegistry) -> None:
    manifest = publish(
        registry,
        "fraud",
        b"model",
        thresholds={"review": 0.4, "decline": 0.9},
        metrics={"auc": 0.93, "undefined": float("nan")},
        params={"trees": 200},
        parent_version="7",
    )
    loaded, artefact = registry.load("fraud")
    assert loaded == manifest and artefact == b"model"
    assert loaded.model_id == "fraud@1"
    assert loaded.kind == "rules" and loaded.feature_names == FEATURES
    assert loaded.thresholds == {"review": 0.4, "decline": 0.9}
    assert loaded.metrics == {"auc": 0.93, "undefined": None}
    assert loaded.params == {"trees": 200} and loaded.parent_version == "7"
    assert loaded.created_at.endswith("Z") and len(loaded.signature) == 64
    on_disk = json.loads((registry.root / "fraud" / "1" / "manifest.json").read_text())
    assert on_disk["sha256"] == loaded.sha256 and on_disk["version"] == "1"


def test_a_version_moved_or_copied_is_rejected(registry: ModelRegistry) -> None:
    publish(registry, "fraud", b"old")
    publish(registry, "fraud", b"new")
    folder = registry.root / "fraud"
    (folder / "2" / "artifact.bin").write_bytes(b"old")
    (folder / "2" / "manifest.json").write_bytes((folder / "1" / "manifest.json").read_bytes())
    with pytest.raises(ModelIntegrityError, match="moved or copied"):
        registry.load("fraud", "2")


def test_unreadable_versions_are_integrity_errors(registry: ModelRegistry) -> None:
    publish(registry, "fraud", b"x")
    manifest = registry.root / "fraud" / "1" / "manifest.json"
    manifest.write_text("{not json")
    with pytest.raises(ModelIntegrityError):
        registry.load("fraud")
    manifest.write_text("[]")
    with pytest.raises(ModelIntegrityError):
        registry.load("fraud")
    publish(registry, "fraud", b"y")
    (registry.root / "fraud" / "2" / "artifact.bin").unlink()
    with pytest.raises(ModelIntegrityError):
        registry.load("fraud", "2")


def test_bad_names_and_keys_are_refused(registry: ModelRegistry, tmp_path: Path) -> None:
    for name in ("../escape", "", ".hidden", "a/b"):
        with pytest.raises(ScorerError):
            publish(registry, name, b"x")
    with pytest.raises(ScorerError):
        ModelRegistry(tmp_path, signing_key=b"short")
    with pytest.raises(ScorerError, match="no loader"):
        registry.publish("odd", "pmml", b"x", feature_names=FEATURES)
        registry.load_scorer("odd")


def test_concurrent_publishers_get_distinct_whole_versions(registry: ModelRegistry) -> None:
    start = threading.Barrier(8)

    def worker(w: int) -> list[str]:
        start.wait()
        return [publish(registry, "fraud", f"{w}-{i}".encode()).version for i in range(6)]

    with ThreadPoolExecutor(8) as pool:
        got = [v for versions in pool.map(worker, range(8)) for v in versions]
    assert sorted(got, key=int) == [str(i) for i in range(1, 49)]
    assert registry.versions("fraud") == [str(i) for i in range(1, 49)]
    payloads = {registry.load("fraud", v)[1] for v in registry.versions("fraud")}
    assert payloads == {f"{w}-{i}".encode() for w in range(8) for i in range(6)}
    assert sorted(os.listdir(registry.root / "fraud"), key=int) == registry.versions("fraud")


def test_key_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "model-signing.key"
    key = signing_key_from(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert signing_key_from(path) == key
    assert signing_key_from(tmp_path / "other.key") != key
    assert os.listdir(path.parent) == ["model-signing.key"]


def test_concurrent_first_uses_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "model-signing.key"
    start = threading.Barrier(8)

    def first_use(_: int) -> bytes:
        start.wait()
        return signing_key_from(path)

    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(first_use, range(8)))
    assert keys == {path.read_bytes()}


def test_a_key_from_the_environment_wins(tmp_path: Path) -> None:
    path = tmp_path / "model-signing.key"
    assert signing_key_from(path, "from-the-environment!") == b"from-the-environment!"
    assert not path.exists()
    assert signing_key_from(path, "") == signing_key_from(path)  # empty: the file
    with pytest.raises(ScorerError):
        signing_key_from(path, "too-short")
    path.write_bytes(b"truncated")
    with pytest.raises(ScorerError):
        signing_key_from(path)


# -- model lifecycle: files per version, refusals, export ------------------------------


def test_a_version_holds_every_file_hashed_in_the_signed_manifest(
        registry: ModelRegistry) -> None:
    manifest = publish(registry, "fraud", b"model", thresholds={"review": 0.4, "decline": 0.9},
                       metrics={"auc": 0.9}, files={"reference.json": b'{"score": {}}'},
                       lineage={"data_range": [1, 2]})
    folder = registry.root / "fraud" / "1"
    assert set(manifest.files) == {"thresholds.json", "features.json", "metrics.json",
                                   "lineage.json", "reference.json"}
    assert {p.name for p in folder.iterdir()} == {*manifest.files, "artifact.bin",
                                                  "manifest.json"}
    assert json.loads((folder / "thresholds.json").read_text()) == {"decline": 0.9,
                                                                    "review": 0.4}
    assert json.loads((folder / "features.json").read_text())["feature_names"] == ["a", "b"]
    assert manifest.lineage == {"parent_version": None, "data_range": [1, 2]}
    assert registry.read_file("fraud", "1", "reference.json") == b'{"score": {}}'
    with pytest.raises(ModelNotFoundError):
        registry.read_file("fraud", "1", "nothing.json")
    with pytest.raises(ScorerError):
        publish(registry, "fraud", b"x", files={"manifest.json": b"{}"})


@pytest.mark.parametrize("victim", ["artifact.bin", "thresholds.json", "reference.json",
                                    "manifest.json"])
def test_a_tampered_file_is_refused_and_counted(tmp_path: Path, victim: str) -> None:
    refused: list[tuple[str, str, str]] = []
    registry = ModelRegistry(tmp_path, KEY, on_refused=lambda *a: refused.append(a))
    publish(registry, "fraud", b"model", files={"reference.json": b"{}"})
    path = registry.root / "fraud" / "1" / victim
    if victim == "manifest.json":
        body = json.loads(path.read_text())
        body["thresholds"] = {"review": 0.99}
        path.write_text(json.dumps(body))
    else:
        path.write_bytes(path.read_bytes() + b" ")
    with pytest.raises(ModelIntegrityError):
        registry.load_scorer("fraud", "1")
    assert refused == [("fraud", "1", "signature" if victim == "manifest.json" else "digest")]


def test_an_unsigned_version_is_refused(registry: ModelRegistry) -> None:
    publish(registry, "fraud", b"model")
    path = registry.root / "fraud" / "1" / "manifest.json"
    body = json.loads(path.read_text())
    del body["signature"]
    path.write_text(json.dumps(body))
    with pytest.raises(ModelIntegrityError):
        registry.load("fraud", "1")


def test_export_copies_every_file_and_the_manifest(registry: ModelRegistry,
                                                   tmp_path: Path) -> None:
    manifest = publish(registry, "fraud", b"model", files={"reference.json": b"{}"})
    target = registry.export("fraud", "1", tmp_path / "out")
    assert target == tmp_path / "out" / "fraud-1"
    assert {p.name for p in target.iterdir()} == {*manifest.files, "artifact.bin",
                                                  "manifest.json"}
    assert (target / "artifact.bin").read_bytes() == b"model"
    with pytest.raises(ScorerError, match="exists"):
        registry.export("fraud", "1", tmp_path / "out")


def test_versions_written_before_files_existed_still_load(registry: ModelRegistry) -> None:
    publish(registry, "fraud", b"model")
    path = registry.root / "fraud" / "1" / "manifest.json"
    body = json.loads(path.read_text())
    for key in ("files", "lineage", "signature"):
        del body[key]
    body["signature"] = registry.sign(body)
    path.write_text(json.dumps(body))
    manifest, artefact = registry.load("fraud", "1")
    assert artefact == b"model" and manifest.files == {} and manifest.lineage == {}
