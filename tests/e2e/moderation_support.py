"""Starting a moderation worker in the end-to-end tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

from streams.embedded import free_port
from tests.conftest import subprocess_env
from tests.helpers import start_process, wait_for


def start_moderation_worker(stack_env: dict[str, str], tmp_path: Path, uploads: Path,
                            **extra: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**subprocess_env(stack_env), "TECHSHOP_WEB_PORT": str(port),
           "TECHSHOP_DATA_DIR": str(tmp_path / "data"),
           "TECHSHOP_MODEL_DIR": str(tmp_path / "models"),
           "TECHSHOP_IMAGE_ROOTS": str(uploads), "TECHSHOP_MODERATION_AUDIT_RATE": "0",
           "TECHSHOP_MODERATION_BATCH_WAIT_MS": "100", **extra}
    proc = start_process(["-m", "streams.cli", "worker", "--pipelines", "moderation"], env,
                         tmp_path / f"moderation-worker-{port}.log")
    return proc, port


def wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float = 90) -> None:
    wait_for(port, "/ready", lambda status, _: status == 200, timeout, proc=proc)
