"""Connection limits for both ports, below uvicorn: what one client may hold and for how long.

uvicorn bounds none of this: it accepts every connection, leaves the TLS handshake to the event loop (60 s
to finish), never times out a client that sends its headers or body slowly, and lets a header line grow
without limit. So each port's protocol factory returns a `Connection`, which:

- counts every accepted TCP connection, handshakes included, against `max_connections`; when all are
  taken, the connection idle the longest (still in its handshake, or not in a request) is closed for the
  newcomer, and only when none is idle is the newcomer closed at once: clients holding idle connections
  cannot starve the apiserver, and busy ones are bounded by the timeouts below;
- runs the TLS handshake itself (as `loop.start_tls` would), so it can bound it, and the closing
  handshake too, with `handshake_timeout`; evicted and timed-out connections are aborted, not closed, so
  no memory waits for a peer's close_notify;
- hands the connection to uvicorn's own HTTP protocol, extended (`_Http`) to close a connection whose
  request (headers and body) has not fully arrived `request_timeout` seconds after its first byte (or
  after the connection opened), and to answer 431 once the request line and headers pass
  `max_header_bytes`. Idle keep-alive connections are closed by uvicorn after `timeout_keep_alive`.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

REFUSALS: Final = ("connection-limit", "handshake", "header-too-large", "request-timeout")
_431: Final = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
)


@dataclass(frozen=True)
class ConnectionLimits:
    """One port's limits (`webhook.settings` documents each)."""

    max_connections: int
    max_header_bytes: int
    handshake_timeout: float
    request_timeout: float


class Guard:
    """The open connections of one port, in the order they last became idle."""

    def __init__(
        self,
        limits: ConnectionLimits,
        tls: Callable[[], ssl.SSLContext] | None = None,
        on_refusal: Callable[[str], None] | None = None,
    ) -> None:
        self.limits = limits
        self.tls = tls
        self.on_refusal = on_refusal or (lambda _: None)
        self.open: set[Connection] = set()
        # Connections not in the middle of a request (handshaking, or between requests), the longest idle
        # first (dicts keep insertion order).
        self.idle: dict[Connection, None] = {}

    def factory(self, **uvicorn_kwargs: Any) -> Connection:
        """Called by uvicorn (as its `http` protocol class) for every accepted connection."""
        return Connection(self, _Http(self, **uvicorn_kwargs))

    def admit(self, connection: Connection) -> bool:
        """Room for one more connection: close the longest idle one if need be; False when all are busy."""
        if len(self.open) >= self.limits.max_connections:
            if not self.idle:
                self.on_refusal("connection-limit")
                return False
            oldest = next(iter(self.idle))
            oldest.release()
            # abort, not close: a TLS close waits for the peer's close_notify, holding on to its memory.
            oldest.transport.abort()
        self.open.add(connection)
        self.idle[connection] = None
        return True


class Connection(asyncio.Protocol):
    """The protocol uvicorn gets for an accepted socket: the count, the TLS handshake, then `_Http`."""

    transport: asyncio.Transport  # the TCP transport, under TLS if any

    def __init__(self, guard: Guard, http: _Http) -> None:
        self.guard = guard
        # Held only until the connection is handed over: `_Http` points back here, and a cycle would keep
        # every closed connection's TLS buffers until the next full garbage collection.
        self.http: _Http | None = http
        http.connection = self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio's classes, but have their methods.
        transport = self.transport = cast(asyncio.Transport, transport)
        if not self.guard.admit(self):
            transport.abort()
            return
        http, self.http = self.http, None
        assert http is not None
        if self.guard.tls is None:
            transport.set_protocol(http)
            http.connection_made(transport)
            return
        # What `loop.start_tls` does, but here and now: as a task it would run after the loop has already
        # handed the ClientHello to this protocol (uvloop starts reading right after connection_made).
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        tls = _ssl_protocol_class(loop)(
            loop,
            http,
            self.guard.tls(),
            waiter,
            server_side=True,
            ssl_handshake_timeout=self.guard.limits.handshake_timeout,
            ssl_shutdown_timeout=self.guard.limits.handshake_timeout,
        )
        waiter.add_done_callback(self._handshake_done)
        transport.set_protocol(tls)
        tls.connection_made(transport)

    def _handshake_done(self, waiter: asyncio.Future[None]) -> None:
        """A failed or timed-out handshake: `_Http` never saw the connection, so release the count here."""
        if waiter.cancelled() or waiter.exception() is not None:
            self.guard.on_refusal("handshake")
            self.release()

    def connection_lost(self, exc: Exception | None) -> None:
        """Only for a connection refused by `Guard.admit` (later the TLS or HTTP protocol has the socket)."""
        self.release()

    def release(self) -> None:
        self.guard.open.discard(self)
        self.guard.idle.pop(self, None)

    def busy(self, busy: bool) -> None:
        """A request begun (not evictable) or answered (idle again, now the most recent)."""
        self.guard.idle.pop(self, None)
        if not busy and self in self.guard.open:
            self.guard.idle[self] = None


def _ssl_protocol_class(loop: asyncio.AbstractEventLoop) -> Any:
    """The SSL protocol the loop's own `start_tls` uses: uvloop's for a uvloop loop, else asyncio's."""
    try:
        import uvloop
        import uvloop.loop
    except ImportError:
        return asyncio.sslproto.SSLProtocol
    # Not in uvloop's type stubs, but the class its start_tls uses, with asyncio's signature.
    if isinstance(loop, uvloop.Loop):
        return uvloop.loop.SSLProtocol  # type: ignore[attr-defined]
    return asyncio.sslproto.SSLProtocol


class _Http(HttpToolsProtocol):
    """uvicorn's HTTP protocol, plus the header-size cap, the request deadline and idle tracking."""

    connection: Connection

    def __init__(self, guard: Guard, **uvicorn_kwargs: Any) -> None:
        super().__init__(**uvicorn_kwargs)
        self.guard = guard
        self._head_bytes = 0
        self._in_headers = True
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.connection.release()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_headers:
            # Any byte between requests counts (llhttp skips stray CRLFs without starting a message, and
            # uvicorn's keep-alive timer stops at the first byte): the deadline runs from here.
            self._head_bytes += len(data)
            self._arm()
        super().data_received(data)
        # Checked after parsing, so a small head with a large body in the same read passes.
        if self._in_headers and self._head_bytes > self.guard.limits.max_header_bytes:
            self.guard.on_refusal("header-too-large")
            message = f"request line and headers are larger than {self.guard.limits.max_header_bytes} bytes"
            body = message.encode()
            self.transport.write(_431 % (len(body), body))
            self.transport.close()
            self.parser = None  # type: ignore[assignment] # no further parsing of what is buffered

    def on_message_begin(self) -> None:
        self.connection.busy(True)
        self._in_headers = True
        self._arm()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._head_bytes = 0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self._in_headers = True
            self.connection.busy(False)

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.guard.limits.request_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        self.guard.on_refusal("request-timeout")
        self.connection.transport.abort()
