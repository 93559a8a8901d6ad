"""`techshop up` and `techshop demo` as a user runs them: a JSON line when ready,
traffic on every input topic, and a clean stop with no stray broker or redis."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams.embedded import free_port

pytestmark = pytest.mark.integration


def _ports_env(tmp_path: Path) -> tuple[dict[str, str], dict[str, int]]:
    ports = {"broker": free_port(), "registry": free_port(), "redis": free_port(),
             "web": free_port()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("TECHSHOP_")}
    env.update({"TECHSHOP_BROKER_PORT": str(ports["broker"]),
                "TECHSHOP_REGISTRY_PORT": str(ports["registry"]),
                "TECHSHOP_EMBEDDED_REDIS_PORT": str(ports["redis"]),
                "TECHSHOP_WEB_PORT": str(ports["web"]),
                "TECHSHOP_DATA_DIR": str(tmp_path / "data")})
    return env, ports


def _stray_processes(port: int) -> list[str]:
    out = subprocess.run(["pgrep", "-af", f"127.0.0.1:{port}|--port {port}"],
                         capture_output=True, text=True, check=False).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def test_up_prints_its_json_line_and_stops_cleanly(tmp_path: Path) -> None:
    env, ports = _ports_env(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "up"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first == {"bootstrap_servers": f"127.0.0.1:{ports['broker']}",
                         "schema_registry_url": f"http://127.0.0.1:{ports['registry']}",
                         "redis_url": f"redis://127.0.0.1:{ports['redis']}/0"}
        with socket.create_connection(("127.0.0.1", ports["broker"]), timeout=2):
            pass
        import urllib.request

        with urllib.request.urlopen(f"{first['schema_registry_url']}/subjects") as resp:
            subjects = json.loads(resp.read())
        assert "transactions-value" in subjects and "dead-letters-value" in subjects
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    assert proc.returncode == 0
    assert _stray_processes(ports["broker"]) == []
    assert _stray_processes(ports["redis"]) == []


def test_up_on_a_taken_port_says_so_in_one_line(tmp_path: Path) -> None:
    env, ports = _ports_env(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports["broker"]))
        taken.listen()
        result = subprocess.run([sys.executable, "-m", "streams.cli", "up"], env=env,
                                capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors == [f"techshop: error: tansu broker: port 127.0.0.1:{ports['broker']} is "
                      f"taken; stop what uses it or choose another port"]
    assert "Traceback" not in result.stderr


def test_demo_shows_traffic_on_every_input_topic_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    env, ports = _ports_env(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "demo", "--rate", "40"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    seen: dict[str, int] = {}
    worker_pid = None
    started = time.monotonic()
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            found = re.search(r"worker pid (\d+)", line)
            worker_pid = int(found.group(1)) if found else worker_pid
            for topic, count in re.findall(r"([a-z-]+) [\d.]+/s \(([\d,]+)\)", line):
                seen[topic] = int(count.replace(",", ""))
            inputs = ("clickstream", "transactions", "image-uploads", "catalog")
            if all(seen.get(t, 0) > 0 for t in inputs) and seen.get("fraud-decisions", 0) > 0:
                break
            assert time.monotonic() - started < 60, f"after 60 s only {seen}"
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, rest
    assert "stopped cleanly" in rest
    for port in (ports["broker"], ports["redis"], ports["web"]):
        assert _stray_processes(port) == []
    assert worker_pid is not None
    assert not Path(f"/proc/{worker_pid}").exists(), "the demo's worker outlived it"
