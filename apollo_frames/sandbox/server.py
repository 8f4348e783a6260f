"""Serve a sandbox over real HTTP on loopback, in a background thread (stdlib wsgiref only)."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import socketserver
import struct
import threading
from typing import cast
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer, make_server


class _QuietServerHandler(ServerHandler):
    def log_exception(self, exc_info):  # the app never raises on purpose; keep stderr clean anyway
        pass

    def write(self, data):
        """Write a body chunk; a ``hostile.Drop`` chunk drops the connection there instead (a FIN or an RST)."""
        how = getattr(data, "how", None)
        if how is None:
            return super().write(data)
        connection = self.request_handler.connection  # type: ignore[attr-defined]
        if how == "reset":  # close with SO_LINGER 0: the peer gets an RST
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            connection.shutdown(socket.SHUT_RDWR)
        connection.close()
        raise ConnectionAbortedError  # wsgiref ends the request quietly on this


class _QuietHandler(WSGIRequestHandler):
    """No access log lines on stderr; HTTP/1.1 keep-alive is not needed (one request per connection)."""

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass

    def handle(self):
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = ""
            self.request_version = ""
            self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():
            return
        # as WSGIRequestHandler.handle does; typeshed knows neither rfile's real type nor the back-pointer
        handler = _QuietServerHandler(
            self.rfile, self.wfile, self.get_stderr(), self.get_environ(), multithread=True  # type: ignore[arg-type]
        )
        handler.request_handler = self  # type: ignore[attr-defined]
        app = cast(WSGIServer, self.server).get_app()
        assert app is not None  # SandboxServer always sets one
        handler.run(app)


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _ThreadingWSGIServer6(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


def _check_loopback(host: str) -> None:
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = host == "localhost"
    if not ok:
        raise ValueError(f"the sandbox only binds to loopback (127.0.0.1, ::1 or localhost), not {host!r}")


class SandboxServer:
    """A started/stopped loopback HTTP server around one WSGI app."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        _check_loopback(host)
        self.app = app
        server_class = _ThreadingWSGIServer6 if ":" in host else _ThreadingWSGIServer
        self.httpd = make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler)
        self.host, self.port = cast("tuple[str, int]", self.httpd.server_address[:2])
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/api/v1"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="apollo-sandbox", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


@contextlib.contextmanager
def serve(app, host: str = "127.0.0.1", port: int = 0):
    """``with serve(sandbox) as base_url:`` - the server stops when the block ends."""
    server = SandboxServer(app, host=host, port=port)
    server.start()
    try:
        yield server.base_url
    finally:
        server.stop()
