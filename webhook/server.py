"""`package-injector serve`: the admission app over HTTPS and health/metrics over plain HTTP, one event loop.

Two uvicorn servers share one asyncio loop: the admission port (TLS, certificate hot-reloaded by
`webhook.tls`) and the metrics port (`/healthz`, `/readyz`, `/metrics`, no TLS so kubelet probes and
Prometheus need no certificates). Signals are handled here, not by uvicorn: uvicorn re-raises the captured
signal after a graceful stop, which would turn a clean SIGTERM drain into exit status -15.

Shutdown on SIGTERM/SIGINT: `/readyz` fails at once; after `shutdown_delay` the admission port stops
accepting, in-flight reviews finish (bounded by `shutdown_timeout`), then the metrics port closes and the
process exits 0. A second SIGINT forces an immediate stop. Every admission response sent while draining says
`Connection: close`: the apiserver reaches us through the Service's ClusterIP, and a kept-alive connection
stays with this Pod after its endpoint is gone; closed after a complete response, the apiserver's next
review opens a new connection, which lands on a ready Pod. Closing such a connection without that header
(as the end of the drain does to idle ones) races a review the apiserver may be writing on it, and Go does
not retry a POST: the user's create fails with `failed calling webhook ...: EOF`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import signal
import socket
import ssl
from collections.abc import Callable, Coroutine, Generator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webhook.guard import REFUSALS, ConnectionLimits, Guard
from webhook.logs import configure_logging
from webhook.metrics import METRICS, Metrics
from webhook.settings import Settings
from webhook.tls import CertInfo, ReloadingCertificate

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to `Runtime` and says truly how it listens.

    uvicorn's own "Uvicorn running on http://..." line (dropped by `webhook.logs`) would call the admission
    port plain HTTP: its TLS is `webhook.guard`'s, which uvicorn does not know about.
    """

    def __init__(self, config: uvicorn.Config, name: str, scheme: str) -> None:
        super().__init__(config)
        self.name, self.scheme = name, scheme

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            host = self.config.host
            port = self.config.port or self.servers[0].sockets[0].getsockname()[1]  # port 0: the one bound
            url = f"{self.scheme}://{f'[{host}]' if ':' in host else host}:{port}"
            log.info(f"{self.name} port listening on {url}", extra={"port_name": self.name, "url": url})


class Runtime:
    """State shared by the two servers, the certificate watcher and the signal handlers."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.cert = ReloadingCertificate(
            settings.tls_cert_file,
            settings.tls_key_file,
            on_change=self._cert_changed,
            on_result=self._cert_loaded,
        )
        self.draining = False
        self.stop_watching = asyncio.Event()
        self.admission: _Server | None = None
        self.health: _Server | None = None
        self._signals = 0

    def _cert_changed(self, info: CertInfo) -> None:
        self.metrics.certificate_expiry.set(info.not_after.timestamp())

    def _cert_loaded(self, ok: bool) -> None:
        self.metrics.certificate_reloads.labels(result="success" if ok else "failure").inc()

    def readiness(self) -> tuple[bool, str]:
        """Ready to take reviews: serving, not draining, with a certificate valid now."""
        if self.draining:
            return False, "shutting down"
        if self.admission is None or not self.admission.started:
            return False, "admission port not listening yet"
        if self.cert.info is None:
            return False, f"no serving certificate loaded: {self.cert.last_error or 'not read yet'}"
        if not self.cert.ready():
            info = self.cert.info
            return False, f"serving certificate not valid now (valid {info.not_before} to {info.not_after})"
        return True, "ready"

    def on_signal(self, signum: int) -> None:
        """First signal: drain gracefully; a second SIGINT: stop now."""
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals > 1 and signum == signal.SIGINT:
            log.warning("second interrupt: stopping without waiting for in-flight reviews")
            for server in (self.admission, self.health):
                if server is not None:
                    server.should_exit = server.force_exit = True
            return
        if self.draining:
            return
        self.draining = True
        delay = self.settings.shutdown_delay
        log.info(f"{name} received: draining", extra={"shutdown_delay": delay})
        asyncio.get_running_loop().call_later(delay, self.close_admission)

    def close_admission(self) -> None:
        if self.admission is not None:
            self.admission.should_exit = True


def closing_while_draining(app: ASGIApp, runtime: Runtime) -> ASGIApp:
    """`app`, whose HTTP responses carry `Connection: close` once `runtime` is draining (module docstring)."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and runtime.draining:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await app(scope, receive, send_closing)

    return wrapped


def health_app(runtime: Runtime) -> Starlette:
    """`/healthz` (process alive), `/readyz` (see `Runtime.readiness`), `/metrics` (Prometheus)."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        ready, reason = runtime.readiness()
        return JSONResponse({"ready": ready, "reason": reason}, status_code=200 if ready else 503)

    async def metrics(_: Request) -> Response:
        body, content_type = runtime.metrics.render()
        return PlainTextResponse(body, media_type=content_type)

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ]
    )


def limits(settings: Settings) -> ConnectionLimits:
    return ConnectionLimits(
        max_connections=settings.max_connections,
        max_header_bytes=settings.max_header_bytes,
        handshake_timeout=settings.tls_handshake_timeout,
        request_timeout=settings.request_read_timeout,
    )


def _config(app: ASGIApp, port: int, settings: Settings, guard: Guard, **kwargs: Any) -> uvicorn.Config:
    """uvicorn speaks HTTP; connections, TLS and their limits are `webhook.guard`'s (so no ssl= here)."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=port,
        http=guard.factory,  # type: ignore[arg-type] # any callable making the protocol will do
        log_config=None,
        access_log=settings.access_log,
        server_header=False,
        timeout_keep_alive=settings.keep_alive_timeout,
        timeout_graceful_shutdown=int(settings.shutdown_timeout + 0.999),
        **kwargs,
    )


async def run_servers(app: ASGIApp, settings: Settings, metrics: Metrics = METRICS) -> None:
    """Serve until a signal (or `Runtime` asks to stop); raise SystemExit(1) if a server fails."""
    runtime = Runtime(settings, metrics)
    runtime.cert.reload()

    def refused(port: str) -> Callable[[str], None]:
        children = {r: metrics.connections_refused.labels(port=port, reason=r) for r in REFUSALS}
        return lambda reason: children[reason].inc()

    def listener() -> ssl.SSLContext:
        return runtime.cert.listener

    admission_guard = Guard(limits(settings), tls=listener, on_refusal=refused("admission"))
    health_guard = Guard(limits(settings), on_refusal=refused("metrics"))
    admission = closing_while_draining(app, runtime)
    runtime.admission = _Server(
        _config(admission, settings.port, settings, admission_guard), "admission", "https"
    )
    runtime.health = _Server(
        _config(health_app(runtime), settings.metrics_port, settings, health_guard, lifespan="off"),
        "metrics",
        "http",
    )

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, runtime.on_signal, signum)
    watcher = asyncio.create_task(runtime.cert.watch(settings.cert_reload_interval, runtime.stop_watching))
    health = asyncio.create_task(
        _guard(runtime.health.serve(), "metrics", on_failure=runtime.close_admission)
    )
    try:
        await _guard(runtime.admission.serve(), "admission")
    finally:
        runtime.draining = True
        runtime.health.should_exit = True
        runtime.stop_watching.set()
        await asyncio.gather(health, watcher, return_exceptions=True)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    if not runtime.admission.started or not runtime.health.started:
        raise SystemExit(1)
    log.info("stopped")


async def _guard(
    coro: Coroutine[Any, Any, None], name: str, on_failure: Callable[[], None] | None = None
) -> None:
    """uvicorn calls sys.exit on a bind or lifespan error; log it and let the other server stop too."""
    try:
        await coro
    except SystemExit as exc:
        log.error(f"{name} server failed to start", extra={"exit_code": exc.code})
        if on_failure is not None:
            on_failure()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _fixed_mmap_threshold() -> None:
    """Keep glibc's mmap threshold at its default instead of letting it grow.

    Every TLS connection allocates a 256 KiB read buffer. glibc serves that from mmap, but after the first
    one is freed it raises its threshold and later ones come from the heap, which a churn of thousands of
    connections (an attack, or one evicted per newcomer) fragments into memory never given back. Setting
    the threshold explicitly turns that adjustment off: each buffer is returned to the system when freed.
    """
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to tune
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(_M_MMAP_THRESHOLD, 128 * 1024)


def serve_app(app: ASGIApp, settings: Settings, metrics: Metrics = METRICS) -> None:
    """Run `app` as the admission app with the health/metrics port; returns after a graceful stop."""
    _fixed_mmap_threshold()
    configure_logging(settings.log_level, settings.log_format, access_log=settings.access_log)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(run_servers(app, settings, metrics))


def serve(settings: Settings) -> None:
    """`package-injector serve`: the admission webhook of `webhook.app`."""
    from webhook.app import create_app  # imported here so the runtime can be tested without it

    serve_app(create_app(settings), settings)
