"""The examples in our docstrings run, and say what they show."""

from __future__ import annotations

import doctest
import importlib
import os

import pytest

MODULES = [
    "schemas",
    "streams.settings",
    "streams.topics",
    "streams.validation",
    "agents.fraud.decide",
    "streams.dashboard",
    "agents.recommend.state",
    "agents.recommend.decide",
    "streams.registry.client",
    "streams.registry.compat",
    "streams.registry.store",
    "scorers.base",
    "scorers.rules",
    "scorers.river_scorer",
    "models.gbdt",
    "models.registry",
    "models.signing",
    "agents.learning.windows",
    "streams.cli",
    "replay.reviewers",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings example shows the defaults: no TECHSHOP_* of the caller's shell."""
    for name in list(os.environ):
        if name.upper().startswith("TECHSHOP_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False, report=True)
    assert result.attempted > 0, f"{name} has no doctest"
    assert result.failed == 0
