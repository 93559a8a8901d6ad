"""Session fixtures: one real Tansu broker, one real schema registry and one real
redis-server for the whole run; each test gets its own topic prefix and data dir."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.embedded import free_port
from streams.settings import Settings
from streams.stack import EmbeddedStack, StackInfo


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo]:
    """The embedded stack on free ports (topics of the empty prefix created)."""
    data_dir = tmp_path_factory.mktemp("stack")
    settings = Settings(broker_port=free_port(), registry_port=free_port(),
                        embedded_redis_port=free_port(), data_dir=data_dir)
    with EmbeddedStack(settings) as running:
        assert running.info is not None
        yield running.info


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def stack_env(stack: StackInfo, prefix: str, tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """``TECHSHOP_*`` variables for this test: the session stack, a fresh prefix,
    data dir and web port; also set in ``os.environ`` for code that reads them."""
    env = {
        **stack.env(), "TECHSHOP_TOPIC_PREFIX": prefix,
           "TECHSHOP_DATA_DIR": str(tmp_path / "data"),
           "TECHSHOP_WEB_PORT": str(free_port()),
           "TECHSHOP_BROKER_COMPAT": os.environ.get("TEST_BROKER_COMPAT", "tansu"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def settings(stack_env: dict[str, str]) -> Settings:
    """Settings for this test's prefix, with its topics and subjects created."""
    from tests.helpers import create_prefix

    return create_prefix(stack_env)[0]


def subprocess_env(stack_env: dict[str, str]) -> dict[str, str]:
    """The environment for a ``techshop`` child process of a test."""
    return {**os.environ, **stack_env}


@pytest.fixture(scope="session")
def fraud_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model registry with the fraud champion and challenger trained once per run on
    synthetic history (seed 1). Copy it before changing it."""
    from models.registry import ModelRegistry, signing_key_from
    from replay.fraud_backtest import bootstrap_fraud_models

    root = tmp_path_factory.mktemp("models")
    registry = ModelRegistry(root, signing_key_from(root / "signing.key"))
    bootstrap_fraud_models(registry, seed=1, n=100_000)
    return root
