"""Local ports for the processes tests start: a free one, and waiting until one listens."""

from __future__ import annotations

import socket
import time

from sandbox.statefiles import free_port

__all__ = ["free_port", "wait_for_port"]


def wait_for_port(port: int, *, timeout: float = 30) -> None:
    """Return once something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")
