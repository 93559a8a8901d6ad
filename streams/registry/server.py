"""An embedded HTTP server speaking the Confluent Schema Registry REST API over a store.

It serves :class:`~streams.registry.api.RestAPI` (what confluent-kafka's
``SchemaRegistryClient``, ``AvroSerializer`` and ``AvroDeserializer`` use, with
Confluent's JSON bodies, error codes and content type) from a ``ThreadingHTTPServer`` in
a daemon thread, with HTTP/1.1 keep-alive.

    with RegistryServer(SchemaStore(path), port=0) as server:
        client = SchemaRegistryClient({"url": server.url})
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from streams.errors import PortInUseError, StackError
from streams.registry.api import CONTENT_TYPE, RestAPI
from streams.registry.store import SchemaStore

__all__ = ["CONTENT_TYPE", "RegistryServer"]

log = logging.getLogger(__name__)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: RestAPI
    connections: set[socket.socket]
    connections_lock: threading.Lock

    def handle_error(self, request: Any, client_address: Any) -> None:
        # e.g. a client that hangs up mid-request: not worth a traceback on stderr
        log.debug("schema registry: connection from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keep-alive: the client reuses one connection for every call.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this, Nagle + delayed ACK add ~40 ms.
    disable_nagle_algorithm = True
    server: _Server
    server_version = "TechShopSchemaRegistry/1.0"

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.connections_lock:
                self.server.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
        log.debug("%s %s", self.address_string(), format % args)

    def _handle(self, method: str) -> None:
        length = self.headers.get("Content-Length", "0")
        raw = self.rfile.read(int(length)) if length.isdigit() and int(length) > 0 else b""
        status, answer = self.server.api.handle(method, self.path, raw)
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")


class RegistryServer:
    """A schema registry on ``http://host:port`` over ``store``, served from a daemon thread.

    ``port=0`` picks a free port (read it from :attr:`url` or :attr:`port` after
    :meth:`start`). A taken port raises :class:`~streams.errors.PortInUseError`.
    """

    def __init__(self, store: SchemaStore, host: str = "127.0.0.1", port: int = 8081) -> None:
        self.store = store
        self.host = host
        self.port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL clients use, e.g. ``http://127.0.0.1:8081``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> RegistryServer:
        """Bind and serve in the background; returns ``self``. Idempotent."""
        if self._server is not None:
            return self
        try:
            server = _Server((self.host, self.port), _Handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(
                    f"schema registry: port {self.port} on {self.host} is already in use "
                    f"({exc.strerror}); choose another with --registry-port"
                ) from None
            raise StackError(
                f"schema registry: cannot listen on {self.host}:{self.port}: {exc}"
            ) from None
        server.api = RestAPI(self.store)
        server.connections = set()
        server.connections_lock = threading.Lock()
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"schema-registry:{self.port}",
            daemon=True,
        )
        self._thread.start()
        log.info("schema registry listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        # Keep-alive connections would otherwise go on being answered by this server.
        with server.connections_lock:
            open_connections = list(server.connections)
        for conn in open_connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
