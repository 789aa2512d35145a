"""The HTTP face of the webhook: `POST /mutate` translates HTTP to `webhook.admission` and back.

Everything a client can get wrong (wrong content type, oversized or malformed
body, a body that is not an AdmissionReview) is a 4xx JSON error, never a 500
with a traceback. The body is read in chunks and the read stops as soon as it
passes `max_body_bytes`, so a huge body costs no more memory than the limit.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from webhook import __version__, admission
from webhook.metrics import METRICS, Metrics
from webhook.settings import Settings
from webhook.workloads import WORKLOADS

LOG: Final = logging.getLogger("package_injector.admission")
JSON_TYPES: Final = ("application/json",)
METRIC_KINDS: Final = frozenset({"Pod", *WORKLOADS})


class _TooLarge(Exception):
    pass


def _error(status: int, reason: str, message: str, metrics: Metrics) -> JSONResponse:
    metrics.bad_requests.labels(reason=reason).inc()
    LOG.warning("refused request: %s", message, extra={"reason": reason, "status": status})
    return JSONResponse({"error": reason, "message": message}, status_code=status)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


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


def create_app(settings: Settings, metrics: Metrics = METRICS) -> FastAPI:
    """The admission app; serve it over TLS (`webhook.server`) or call it in-process in tests."""
    app = FastAPI(
        title="package-injector",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.post("/mutate")
    async def mutate(request: Request) -> Response:
        started = time.perf_counter()
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type not in JSON_TYPES:
            shown = content_type or "none"
            return _error(415, "content-type", f"Content-Type must be application/json, got {shown}", metrics)
        try:
            raw = await _read_body(request, settings.max_body_bytes)
        except _TooLarge:
            limit = settings.max_body_bytes
            return _error(413, "too-large", f"request body is larger than {limit} bytes", metrics)
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            return _error(400, "malformed-json", f"request body is not valid JSON: {exc}", metrics)
        try:
            outcome = admission.review(body, settings)
        except admission.BadReview as exc:
            return _error(400, "not-a-review", f"request body is not an AdmissionReview: {exc}", metrics)
        duration = time.perf_counter() - started
        decision = outcome.decision
        # Label values from a fixed set: kinds arrive from the client and must not grow the series.
        kind = outcome.kind if outcome.kind in METRIC_KINDS else "other"
        metrics.admission_requests.labels(kind=kind, result=decision.result, reason=decision.reason).inc()
        metrics.admission_duration.labels(kind=kind).observe(duration)
        _log(outcome, duration)
        return JSONResponse(outcome.review)

    return app
