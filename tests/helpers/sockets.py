"""Loopback sockets that misbehave: a port nothing listens on, a full accept queue, a server that never answers;
and a webhook receiver that keeps what is posted to it."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def closed_port() -> int:
    """A loopback port nothing listens on (connection refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def unaccepting_listener() -> Iterator[int]:
    """A loopback port whose accept queue is full: new connections are never completed (connect timeout)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError, OSError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        probe = socket.socket()
        probe.settimeout(0.3)
        try:
            probe.connect(("127.0.0.1", port))
            raise AssertionError("the backlog did not fill: connect-timeout simulation impossible here")
        except TimeoutError:
            pass
        finally:
            probe.close()
        yield port
    finally:
        for filler in fillers:
            filler.close()
        server.close()


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A loopback server that accepts connections and reads, but never answers (read timeout)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.1)
    port = server.getsockname()[1]
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, name="silent-listener", daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


@contextlib.contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A loopback HTTP server that answers 204 to every POST and keeps its JSON body: yields (its /hook URL, the
    bodies received so far, in order)."""
    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Hook) as hook:
        threading.Thread(target=hook.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{hook.server_address[1]}/hook", received
        finally:
            hook.shutdown()
