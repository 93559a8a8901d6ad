"""py-spy profiles of a benchmark's worker: start one (:func:`start_profile`), wait for
it and summarise it (:func:`finish_profile`, :func:`summarise_profile`: self and
inclusive shares by function, self shares by package, samples by thread), and the
printed lines of a summary (:func:`profile_head`, :func:`main_thread_lines`)."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from bench._common import ROOT
from streams.embedded import die_with_parent


def start_profile(py_spy: str, pid: int, seconds: float, out: Path, rate: int,
                  idle: bool = False) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [py_spy, "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", str(rate),
         "--nonblocking", "--threads", "--format", "raw", "-o", str(out),
         *(["--idle"] if idle else [])],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        preexec_fn=die_with_parent)


def finish_profile(spy: subprocess.Popen[bytes], out: Path, seconds: float, rate: int,
                   idle: bool) -> dict[str, Any]:
    """Wait for py-spy (kill it after 15 s); the summary of its profile, or its error."""
    try:
        _, err = spy.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        spy.kill()
        _, err = spy.communicate()
    if out.exists():
        summary = summarise_profile(out, seconds, rate)
        summary["idle_included"] = idle
        return summary
    return {"error": err.decode(errors="replace")[-500:]}


def _frame(frame: str) -> tuple[str, str]:
    """'func (path/file.py:123)' -> ('func (path/file.py)', package)."""
    match = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if not match:
        return frame, "?"
    func, path = match.groups()
    parts = Path(path).parts
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1:]
    elif str(ROOT) in path:
        parts = Path(path).relative_to(ROOT).parts
    package = "/".join(parts[:2]) if parts and parts[0] in ("agents", "streams") else (
        parts[0].removesuffix(".py") if parts else "?")
    return f"{func} ({'/'.join(parts[-2:])})", package


#: Frames on (nearly) every stack: left out of the inclusive list.
_WRAPPERS = re.compile(
    r"^(<module>|main|_run_code|_run_module_as_main|worker_command|run_worker|run_faust|"
    r"Worker\.execute_from_commandline|BaseEventLoop\.(run_until_complete|run_forever|"
    r"_run_once)|Handle\._run|Thread\._bootstrap(_inner)?|Thread\.run|"
    r"ServiceThread\._start_thread|WorkerThread\.run|Service\._execute_task|"
    r"Agent\._execute_actor) ")


def summarise_profile(path: Path, seconds: float, rate: int, top: int = 25) -> dict[str, Any]:
    """Self and inclusive shares by function, self shares by package and samples by
    thread, of a py-spy raw (collapsed, ``--threads``) profile: over every thread's busy
    samples, and over the main thread's alone (the event loop: Faust, the handlers)."""
    stacks: list[tuple[str, list[tuple[str, str]], int]] = []
    threads: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        names = stack.split(";")
        thread = ""
        if names[0].startswith("thread ("):
            thread = names[0].split(": ", 1)[-1]
            names = names[1:]
        threads[thread] += int(count)
        stacks.append((thread, [_frame(f) for f in names] or [("(native)", "?")], int(count)))
    total = sum(threads.values())
    if not total:
        return {"samples": 0}
    out: dict[str, Any] = {
        "samples": total, "seconds": seconds, "rate_hz": rate, "file": str(path),
        "busy_thread_seconds_per_s": total / (seconds * rate),
        "by_thread": [(name, n / total) for name, n in threads.most_common(8)]}
    for key, only in (("all_threads", None), ("main_thread", "MainThread")):
        self_s: Counter[str] = Counter()
        incl: Counter[str] = Counter()
        pkg: Counter[str] = Counter()
        n_all = 0
        for thread, frames, n in stacks:
            if only is not None and thread != only:
                continue
            n_all += n
            self_s[frames[-1][0]] += n
            pkg[frames[-1][1]] += n
            for name in {f for f, _ in frames}:
                incl[name] += n
        if not n_all:
            continue
        out[key] = {
            "samples": n_all,
            "self": [(name, n / n_all) for name, n in self_s.most_common(top)],
            "inclusive": [(name, n / n_all) for name, n in incl.most_common()
                          if not _WRAPPERS.match(name)][:top],
            "self_by_package": [(name, n / n_all) for name, n in pkg.most_common(14)]}
    return out



def profile_head(prof: dict[str, Any], what: str) -> list[str]:
    """The first lines printed for a profile of ``what``: samples, rate, file, threads."""
    return [f"py-spy, {what}: {prof['samples']} samples at "
            f"{prof['rate_hz']} Hz over {prof['seconds']:.0f} s ("
            + ("idle threads included: shares of wall time" if prof.get("idle_included")
               else f"busy threads only: {prof['busy_thread_seconds_per_s']:.2f} "
               "thread-seconds per second") + f"). Collapsed stacks: {prof['file']}",
            "  samples by thread: " + ", ".join(
                f"{name} {share:.0%}" for name, share in prof["by_thread"])]


def main_thread_lines(part: dict[str, Any]) -> list[str]:
    """The main thread's top functions, inclusive and self, as printed."""
    out = ["  main thread, inclusive (the function and what it calls):"]
    out += [f"    {share:6.1%}  {name}" for name, share in part["inclusive"][:22]]
    out.append("  main thread, self (the function's own code):")
    out += [f"    {share:6.1%}  {name}" for name, share in part["self"][:12]]
    return out
