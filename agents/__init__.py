"""The pipelines: one package per pipeline, each with a ``register(app)`` function.

A pipeline's logic is pure and batch-shaped (``features.py``, ``decide.py``); its
``agent.py`` is a thin Faust adapter over it.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streams.app import TechShopApp

__all__ = ["PIPELINES", "register_pipelines"]

log = logging.getLogger(__name__)

#: pipeline name -> module with ``register(app)``; pipelines not built yet are absent.
PIPELINES: dict[str, str] = {
    "fraud": "agents.fraud.agent",
    "recommend": "agents.recommend.agent",
    "moderation": "agents.moderation.agent",
}


def register_pipelines(app: TechShopApp, names: Iterable[str]) -> list[str]:
    """Register the agents of each named pipeline that exists; returns those registered."""
    registered = []
    for name in names:
        module_name = PIPELINES.get(name)
        if module_name is None:
            log.warning("pipeline %r is not built yet: skipped", name)
            continue
        importlib.import_module(module_name).register(app)
        registered.append(name)
    return registered
