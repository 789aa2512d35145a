"""The HTTP face of the webhook: `POST /mutate` translates HTTP to `webhook.admission` and back.

Everything a client can get wrong (wrong content type, oversized or malformed
body, a body that is not an AdmissionReview) is a 4xx JSON error, never a 500
with a traceback. The body is read in chunks and the read stops as soon as it
passes `max_body_bytes`, so a huge body costs no more memory than the limit.

`POST /mutate` is a plain ASGI app (`Mutate`), called by `AdmissionApp` before FastAPI's middleware,
routing, request objects and dependency solving: every Pod create in the cluster waits for it, and
that machinery cost about as much as the review itself. For the same reason a review's log line is
written just after its answer is sent. Everything else (405 for other methods on /mutate, a JSON 404 for
other paths, lifespan) is FastAPI's.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Final

from fastapi import FastAPI
from prometheus_client.metrics import Counter, Histogram
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from webhook import __version__, admission
from webhook.metrics import METRICS, Metrics
from webhook.settings import Settings
from webhook.workloads import WORKLOADS

LOG: Final = logging.getLogger("package_injector.admission")
JSON_TYPES: Final = ("application/json",)
METRIC_KINDS: Final = frozenset({"Pod", *WORKLOADS})
MUTATE_PATH: Final = "/mutate"
BAD_REQUEST_REASONS: Final = ("content-type", "too-large", "malformed-json", "not-a-review")

# The bytes starlette's JSONResponse writes, with one encoder built once instead of one per response.
_JSON: Final = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


async def read_body(receive: Receive, limit: int) -> bytes:
    """The request body, in chunks, stopping as soon as it passes `limit` (raises _TooLarge)."""
    chunks: list[bytes] = []
    size = 0
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
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


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
        LOG.error("admission internal error", extra=fields, exc_info=outcome.error)
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
            raw = await read_body(receive, limit)
        except _TooLarge:
            await self._error(send, 413, "too-large", f"request body is larger than {limit} bytes")
            return
        except _Disconnected:
            return  # nobody to answer
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            await self._error(send, 400, "malformed-json", f"request body is not valid JSON: {exc}")
            return
        try:
            outcome = admission.review(body, self.settings)
        except admission.BadReview as exc:
            message = f"request body is not an AdmissionReview: {exc}"
            await self._error(send, 400, "not-a-review", message)
            return
        answer = _JSON.encode(outcome.review).encode()
        duration = time.perf_counter() - started
        self._account(outcome, duration)
        await send_json(send, 200, answer)
        # Only now: the apiserver does not wait for the log line (0.2-0.3 ms of a call that finds the
        # logging code cold, as every call does when Pods come now and then).
        _log(outcome, duration)

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
