"""What the benchmarks share: progress on stderr, percentiles, the JSON result file, the
machine and code measured, number formats and the closing lines of a printout."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["OUT_DIR", "ROOT", "NOISE_NOTE", "progress", "percentiles", "write_result",
           "machine", "code_version", "wait_for_quiet", "leftover_children", "fmt", "fmt_ratio",
           "failure_lines"]

ROOT = Path(__file__).resolve().parent.parent

OUT_DIR = Path(__file__).resolve().parent / "out"
NOISE_NOTE = ("Figures are noisy (a shared 2-core machine): compare the ratios measured in "
              "the same run, not absolute numbers across runs.")
_T0 = time.monotonic()


def progress(message: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    """p50/p95/p99/max (nearest-rank) and the count of ``values``."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    return {"n": len(ordered), "p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99),
            "max": ordered[-1], "mean": sum(ordered) / len(ordered)}


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"python": platform.python_version(), "cpus": os.cpu_count(),
            "loadavg_at_start": load, "platform": platform.platform()}


def write_result(name: str, result: dict[str, Any]) -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return path


def code_version(files: Sequence[str], dirty_paths: Sequence[str]) -> dict[str, Any]:
    """Which code was measured: the commit, uncommitted changes under ``dirty_paths`` and
    a short sha256 of each measured file."""
    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "--short", "HEAD"),
            "dirty": git("status", "--porcelain", *dirty_paths),
            "sha256": {f: hashlib.sha256((ROOT / f).read_bytes()).hexdigest()[:16]
                       for f in files if (ROOT / f).exists()}}


def wait_for_quiet(others_cpu_s: Callable[[], float], most_s: float,
                   threshold: float = 0.3) -> float:
    """Wait (at most ``most_s``) until processes outside the benchmark use less than
    ``threshold`` of a core over one second; the share seen last. ``others_cpu_s``
    returns their CPU seconds so far."""
    deadline = time.monotonic() + most_s
    while True:
        before = others_cpu_s()
        time.sleep(1.0)
        share = others_cpu_s() - before
        if share < threshold or time.monotonic() >= deadline:
            return share
        progress(f"other processes use {share:.0%} of a core: waiting for a quieter moment")


def leftover_children() -> list[str]:
    """Processes still parented by this one (should be none at the end)."""
    me, out = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            text = stat.read_text()
            if int(text.rsplit(")", 1)[1].split()[1]) == me:
                out.append(f"{stat.parent.name} {text.split('(', 1)[1].split(')', 1)[0]}")
    return out


def fmt(x: float | None, spec: str = ".0f") -> str:
    return "-" if x is None else format(x, spec)


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def failure_lines(result: dict[str, Any]) -> list[str]:
    """The printout's closing lines: the phases that failed, the children left running."""
    out = [f"FAILED {label}: {error}" for label, error in result.get("failed", {}).items()]
    if result.get("leftover_children"):
        out.append(f"WARNING: child processes left running: {result['leftover_children']}")
    return out
