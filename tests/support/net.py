"""Loopback plumbing shared by the test fixtures and the benchmarks: free ports, waiting for a server."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Callable


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http_ok(
    url: str,
    *,
    timeout: float,
    alive: Callable[[], bool] = lambda: True,
    context: Callable[[], str] = lambda: "",
) -> None:
    """Poll `url` until it answers 200; fail early once `alive()` is false (the server exited).

    `context()` is appended to the error (typically the tail of the server's log).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if not alive():
            raise RuntimeError(f"the server behind {url} exited before it was ready:\n{context()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout:g} s:\n{context()}")
        time.sleep(0.1)
