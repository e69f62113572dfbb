"""Helpers shared by the analysis tests: real local HTTP peers, Prometheus, an API server.

Everything here is a real server on 127.0.0.1: tests exercise the activities' HTTP code over
sockets, never through patched clients.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Recorded:
    """One request a `Receiver` got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Reply = tuple[int, bytes]
"""Status and body a receiver answers."""


@dataclass
class Receiver:
    """A local HTTP server that records requests and answers with ``reply(recorded)``."""

    reply: Callable[[Recorded], Reply] = lambda _r: (200, b"ok")
    delay_seconds: float = 0.0
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""

    def on(self, path_prefix: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith(path_prefix)]


@contextmanager
def receiver(
    reply: Callable[[Recorded], Reply] | None = None, *, delay_seconds: float = 0.0
) -> Iterator[Receiver]:
    """A running `Receiver` on a free port; ``url`` is its base address."""
    state = Receiver(delay_seconds=delay_seconds)
    if reply is not None:
        state.reply = reply

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            recorded = Recorded(
                method=self.command,
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length) if length else b"",
            )
            state.requests.append(recorded)
            if state.delay_seconds:
                time.sleep(state.delay_seconds)
            status, body = state.reply(recorded)
            try:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                if status in (301, 302, 307, 308):
                    self.send_header("Location", "http://127.0.0.1:1/elsewhere")
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        do_GET = do_POST = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url() -> str:
    """The URL of a port nobody listens on (a receiver that is down)."""
    return f"http://127.0.0.1:{free_port()}"
