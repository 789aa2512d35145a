"""An in-process HTTP server that misbehaves on cue, for tests nginx cannot script.

    with FaultServer() as srv:
        srv.script("/pkg", Respond(body=data, cut_after=1000),   # 1st request: reset after 1000 bytes
                           Respond(body=data))                   # 2nd and later: serve (Range honoured)
        url = srv.url("/pkg")
        ...
        srv.requests  # [Seen(path, headers), ...] for every request received

Each request to a path takes the next `Respond` of its script; the last one
repeats. `Respond` serves `body` like a real file server (ETag, Last-Modified,
Range + If-Range -> 206), or a status with headers, and can cut the body after
`cut_after` bytes by a TCP reset, a clean close, or a stall.
"""

from __future__ import annotations

import fcntl
import re
import socket
import struct
import termios
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Literal

_RANGE_RE = re.compile(r"bytes=(\d+)-$")


@dataclass(frozen=True)
class Respond:
    """One scripted response."""

    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = '"v1"'
    last_modified: str | None = None
    content_type: str = "application/octet-stream"
    ranges: bool = True
    cut_after: int | None = None
    cut: Literal["reset", "close", "stall"] = "reset"
    stall_seconds: float = 30.0
    chunked: bool = False
    send_length: bool = True
    extra: bytes = b""
    """Sent after the body, beyond its Content-Length (a broken server or a smuggling attempt)."""
    honour_if_range: bool = True
    """False: serve a 206 even when If-Range does not match (a broken cache mixing versions)."""
    max_range_bytes: int | None = None
    """Serve at most this many bytes in a 206 (a shorter range than asked, as RFC 9110 allows)."""


@dataclass(frozen=True)
class Seen:
    """What the server received: enough to assert on Range and Authorization headers."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        for k, v in self.headers.items():
            if k.lower() == name.lower():
                return v
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: FaultServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        owner._record(Seen(self.command, self.path, dict(self.headers.items())))
        spec = owner._next(path)
        if spec is None:
            self._simple(404, b"not found\n")
            return
        self._respond(spec)

    def do_POST(self) -> None:
        """A form POST (an STS token exchange): recorded with its body, answered like a GET."""
        owner = self.server.owner
        body = self.rfile.read(min(int(self.headers.get("Content-Length") or 0), 1 << 20))
        owner._record(Seen(self.command, self.path, dict(self.headers.items()), body))
        spec = owner._next(self.path.split("?", 1)[0])
        if spec is None:
            self._simple(404, b"not found\n")
            return
        self._respond(spec)

    def _simple(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _respond(self, spec: Respond) -> None:
        body = spec.body
        status = spec.status
        headers = {"Content-Type": spec.content_type, "Connection": "close"}
        if spec.etag:
            headers["ETag"] = spec.etag
        if spec.last_modified:
            headers["Last-Modified"] = spec.last_modified
        headers.update(spec.headers)
        rng = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if status == 200 and spec.ranges and rng:
            headers["Accept-Ranges"] = "bytes"
            m = _RANGE_RE.match(rng.strip())
            validator_ok = (
                if_range is None or if_range in (spec.etag, spec.last_modified) or not spec.honour_if_range
            )
            if m and validator_ok:
                start = int(m.group(1))
                if start >= len(body):
                    self._simple(416, b"", {"Content-Range": f"bytes */{len(body)}"})
                    return
                end = (
                    len(body)
                    if spec.max_range_bytes is None
                    else min(len(body), start + spec.max_range_bytes)
                )
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(body)}"
                body = body[start:end]
                status = 206
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if spec.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif spec.send_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        limit = len(body) if spec.cut_after is None else min(spec.cut_after, len(body))
        self._write_body(body[:limit], chunked=spec.chunked)
        if spec.cut_after is None and spec.extra:
            self.wfile.write(spec.extra)
        self.wfile.flush()
        if spec.cut_after is not None and spec.cut_after < len(body):
            self._cut(spec)
            return
        if spec.chunked:
            self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True

    def _write_body(self, data: bytes, *, chunked: bool) -> None:
        step = 64 * 1024
        for i in range(0, len(data), step):
            piece = data[i : i + step]
            if chunked:
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            else:
                self.wfile.write(piece)

    def _cut(self, spec: Respond) -> None:
        self.close_connection = True
        if spec.cut == "stall":
            self.server.owner.stopping.wait(spec.stall_seconds)
            return
        if spec.cut == "reset":
            # A RST drops what is still in our send queue (what the client already received stays
            # readable there): wait until the client's kernel has acknowledged every byte, however
            # busy the machine, so the client gets exactly `cut_after` bytes before the reset.
            _wait_sent(self.connection, self.server.owner.stopping)
            # SO_LINGER 0: close() sends RST instead of FIN, like a dropped middlebox connection.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()


def _wait_sent(sock: socket.socket, stopping: threading.Event, limit: float = 30.0) -> None:
    """Until the kernel's send queue of `sock` is empty (TIOCOUTQ: bytes not yet acknowledged)."""
    deadline = time.monotonic() + limit
    while not stopping.is_set() and time.monotonic() < deadline:
        unacked = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
        if unacked == 0:
            return
        time.sleep(0.005)


class FaultServer:
    """Scripted HTTP/1.1 server on 127.0.0.1 and a free port; a context manager."""

    def __init__(self) -> None:
        self._scripts: dict[str, list[Respond]] = {}
        self._lock = threading.Lock()
        self.requests: list[Seen] = []
        self.stopping = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def script(self, path: str, *responses: Respond) -> None:
        with self._lock:
            self._scripts[path] = list(responses)

    def requests_to(self, path: str) -> list[Seen]:
        return [r for r in self.requests if r.path.split("?", 1)[0] == path]

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.requests.append(seen)

    def _next(self, path: str) -> Respond | None:
        with self._lock:
            script = self._scripts.get(path)
            if not script:
                return None
            return script.pop(0) if len(script) > 1 else script[0]

    def start(self) -> FaultServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
