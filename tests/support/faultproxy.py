"""A TCP proxy on 127.0.0.1 that drops chosen connections mid-response: a flaky network before a server.

    with FaultProxy(upstream_port, cut_after=[100_000_000]) as proxy:
        proxy.port          # connect here instead of upstream
        proxy.connections   # how many were accepted
        proxy.cut           # how many were cut

The n-th accepted connection is reset (RST, like a middlebox dropping it) after
`cut_after[n]` bytes came back from the server; connections past the list, or
with None, pass through untouched. A RST makes the client's kernel drop what the
program has not read yet, so where a test needs the client to have received
every byte before the cut, `reset=False` closes cleanly (FIN) instead.

Unlike FaultServer it scripts nothing about HTTP: the server behind it answers
for itself (moto recomputing signatures).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType


class FaultProxy:
    def __init__(
        self, upstream_port: int, *, cut_after: list[int | None] | None = None, reset: bool = True
    ) -> None:
        self.upstream_port = upstream_port
        self.reset = reset
        self.cut_after = list(cut_after or [])
        self.connections = 0
        self.cut = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                index = self.connections
                self.connections += 1
            limit = self.cut_after[index] if index < len(self.cut_after) else None
            threading.Thread(target=self._serve, args=(client, limit), daemon=True).start()

    def _serve(self, client: socket.socket, limit: int | None) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=30)
        except OSError:
            client.close()
            return
        threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True).start()
        self._pump(upstream, client, limit)

    def _pump(self, src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        """Copy src -> dst; past `limit` bytes reset both connections."""
        sent = 0
        try:
            while not self._stop.is_set():
                want = 256 * 1024 if limit is None else min(256 * 1024, limit - sent)
                if want <= 0:
                    self._reset(dst, src)
                    return
                data = src.recv(want)
                if not data:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass

    def _reset(self, *socks: socket.socket) -> None:
        with self._lock:
            self.cut += 1
        if not self.reset:
            # A clean close (FIN): the client reads every byte sent, then a short body.
            for s in socks:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()
            return
        for s in socks:
            with contextlib.suppress(OSError):
                # SO_LINGER 0: the close sends RST, not FIN, like a middlebox dropping the connection.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # Wakes the other direction's recv(), which holds the socket open until it returns.
                s.shutdown(socket.SHUT_RD)
            with contextlib.suppress(OSError):
                s.close()

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
