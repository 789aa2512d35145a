"""The HTTP face of the webhook: `POST /mutate` translates HTTP to `webhook.admission` and back.

Everything a client can get wrong (wrong content type, oversized or malformed
body, a body that is not an AdmissionReview) is a 4xx JSON error, never a 500
with a traceback. The body is read in chunks and the read stops as soon as it
passes `max_body_bytes`, so a huge body costs no more memory than the limit. What a body may cost past
parsing (nesting, NaN, lone surrogates, counts) is capped by `webhook.limits`; a large body is answered in a
worker thread, one at a time (`LARGE_BODIES` in flight), so the event loop (health probes, the apiserver's
small reviews) never waits for it.

`POST /mutate` is a plain ASGI app (`Mutate`), called by `AdmissionApp` before FastAPI's middleware,
routing, request objects and dependency solving: every Pod create in the cluster waits for it, and
that machinery cost about as much as the review itself. For the same reason a review's log line is
written just after its answer is sent. Everything else (405 for other methods on /mutate, a JSON 404 for
other paths, lifespan) is FastAPI's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

from fastapi import FastAPI
from prometheus_client.metrics import Counter, Histogram
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from webhook import __version__, admission, limits
from webhook.metrics import METRICS, Metrics
from webhook.settings import Settings
from webhook.workloads import WORKLOADS

LOG: Final = logging.getLogger("package_injector.admission")
JSON_TYPES: Final = ("application/json",)
METRIC_KINDS: Final = frozenset({"Pod", *WORKLOADS})
MUTATE_PATH: Final = "/mutate"
BAD_REQUEST_REASONS: Final = ("content-type", "too-large", "malformed-json", "too-complex", "not-a-review")
INLINE_BYTES: Final = 64 * 1024
"""Bodies up to this size are answered on the event loop (well under a millisecond for a real Pod); larger
ones are read and answered in a worker thread, one at a time, so health probes and small reviews go on."""
LARGE_BODIES: Final = 8
"""Large bodies being read or answered at the same time; others wait (bounded by the read deadline)."""

# The bytes starlette's JSONResponse writes, with one encoder built once instead of one per response.
_JSON: Final = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


async def read_body(
    receive: Receive, limit: int, chunks: list[bytes] | None = None, pause_at: int | None = None
) -> tuple[list[bytes], bool]:
    """The body's chunks and True once it is read whole; raises _TooLarge as soon as it passes `limit`.

    With `pause_at`, returns (chunks, False) once more than that was read; pass the chunks back to go on."""
    chunks = chunks if chunks is not None else []
    size = sum(len(c) for c in chunks)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks, True
        if pause_at is not None and size > pause_at:
            return chunks, False


@dataclass(frozen=True)
class _Refusal:
    """A body we cannot answer as an AdmissionReview: a 400 with this reason and message."""

    reason: str
    message: str


def answer(raw: bytes, settings: Settings) -> tuple[admission.Outcome, bytes] | _Refusal:
    """Parse, check against `webhook.limits`, review and encode one body: the pure part of a request."""
    try:
        body = json.loads(raw, parse_constant=limits.reject_constant, parse_float=limits.finite_float)
    except (ValueError, RecursionError) as exc:
        return _Refusal("malformed-json", f"request body is not valid JSON: {exc}")
    try:
        limits.check_document(body, strings=limits.SURROGATE_ESCAPE.search(raw) is not None)
    except limits.TooComplex as exc:
        return _Refusal("too-complex", f"request body {exc}")
    try:
        outcome = admission.review(body, settings)
    except admission.BadReview as exc:
        return _Refusal("not-a-review", f"request body is not an AdmissionReview: {exc}")
    return outcome, _JSON.encode(outcome.review).encode()


async def send_json(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _log(outcome: admission.Outcome, duration: float) -> None:
    """One line per review: who, what was decided and why; never object specs or annotation values."""
    fields: dict[str, Any] = {
        "uid": outcome.uid,
        "kind": outcome.kind,
        "operation": outcome.operation,
        "namespace": outcome.namespace,
        "pod": outcome.name,
        "decision": outcome.decision.result,
        "reason": outcome.decision.reason,
        "dry_run": outcome.dry_run,
        "warnings": len(outcome.warnings),
        "duration_ms": round(duration * 1000, 3),
    }
    if outcome.error is not None:
        # Where it failed, never the exception's message: that may quote a value (a URL with a token).
        fields["error"] = type(outcome.error).__name__
        frames = traceback.extract_tb(outcome.error.__traceback__)
        fields["traceback"] = [f"{f.filename}:{f.lineno} in {f.name}" for f in frames]
        LOG.error("admission internal error", extra=fields)
    elif outcome.decision.result == "denied":
        # The detail, not the user's message: that one may quote annotation values.
        LOG.info("admission denied: %s", outcome.detail or outcome.decision.reason, extra=fields)
    else:
        LOG.info("admission %s", outcome.decision, extra=fields)


class Mutate:
    """`POST /mutate` as a plain ASGI app: AdmissionReview JSON in, AdmissionReview JSON out.

    Metric children are bound once (label lookups take a lock and validate the labels every time).
    """

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._bad = {reason: metrics.bad_requests.labels(reason=reason) for reason in BAD_REQUEST_REASONS}
        self._duration: dict[str, Histogram] = {
            kind: metrics.admission_duration.labels(kind=kind) for kind in (*METRIC_KINDS, "other")
        }
        # (kind, result, reason) -> child; every part comes from a fixed set, so this stays small.
        self._requests: dict[tuple[str, str, str], Counter] = {}
        # Large bodies: at most LARGE_BODIES read or waiting for the thread (a slow client holds its slot
        # until the read deadline; memory is slots x max_body_bytes), answered one at a time in a thread.
        self._large = asyncio.Semaphore(LARGE_BODIES)
        self._pool: ThreadPoolExecutor | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        content_type = length = b""
        for name, value in scope["headers"]:  # names arrive lower-cased; the first of each counts
            if name == b"content-type":
                content_type = content_type or value
            elif name == b"content-length":
                length = length or value
        media = content_type.decode("latin-1").split(";", 1)[0].strip().lower()
        if media not in JSON_TYPES:
            shown = media or "none"
            await self._error(
                send, 415, "content-type", f"Content-Type must be application/json, got {shown}"
            )
            return
        limit = self.settings.max_body_bytes
        try:
            if length.isdigit() and int(length) > limit:
                raise _TooLarge
            chunks, whole = await read_body(receive, limit, pause_at=INLINE_BYTES)
            if whole:
                answered = answer(b"".join(chunks), self.settings)
            else:
                async with self._large:
                    chunks, _ = await read_body(receive, limit, chunks)
                    answered = await asyncio.get_running_loop().run_in_executor(
                        self._executor(), answer, b"".join(chunks), self.settings
                    )
        except _TooLarge:
            await self._error(send, 413, "too-large", f"request body is larger than {limit} bytes")
            return
        except _Disconnected:
            return  # nobody to answer
        if isinstance(answered, _Refusal):
            await self._error(send, 400, answered.reason, answered.message)
            return
        outcome, encoded = answered
        duration = time.perf_counter() - started
        self._account(outcome, duration)
        await send_json(send, 200, encoded)
        # Only now: the apiserver does not wait for the log line (0.2-0.3 ms of a call that finds the
        # logging code cold, as every call does when Pods come now and then).
        _log(outcome, duration)

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="large-review")
        return self._pool

    def _account(self, outcome: admission.Outcome, duration: float) -> None:
        decision = outcome.decision
        # Label values from a fixed set: kinds arrive from the client and must not grow the series.
        kind = outcome.kind if outcome.kind in METRIC_KINDS else "other"
        key = (kind, decision.result, decision.reason)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = self.metrics.admission_requests.labels(*key)
        counter.inc()
        self._duration[kind].observe(duration)

    async def _error(self, send: Send, status: int, reason: str, message: str) -> None:
        self._bad[reason].inc()
        LOG.warning("refused request: %s", message, extra={"reason": reason, "status": status})
        await send_json(send, status, _JSON.encode({"error": reason, "message": message}).encode())


class AdmissionApp(FastAPI):
    """A FastAPI app that hands `POST /mutate` straight to `Mutate`, before any of FastAPI's layers."""

    mutate: Mutate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == MUTATE_PATH and scope["method"] == "POST":
            await self.mutate(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(settings: Settings, metrics: Metrics = METRICS) -> FastAPI:
    """The admission app; serve it over TLS (`webhook.server`) or call it in-process in tests."""
    app = AdmissionApp(
        title="package-injector",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.mutate = Mutate(settings, metrics)
    # The same handler as a route, so FastAPI answers other methods on /mutate with 405 (Allow: POST).
    app.router.routes.append(Route(MUTATE_PATH, app.mutate, methods=["POST"]))
    return app
