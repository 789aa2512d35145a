"""Prometheus metrics of the webhook, in a registry of their own.

A dedicated `CollectorRegistry` keeps the metrics port free of the process
collectors' defaults of other libraries and lets tests build fresh instances.
The server exposes `METRICS.registry` on the metrics port, sets
`METRICS.certificate_expiry` whenever it (re)loads the serving certificate and
counts every load attempt's outcome in `METRICS.certificate_reloads`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

# Admission answers should take well under the apiserver's 10 s default timeout;
# buckets are fine-grained at the low end, where a healthy webhook lives.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """All metrics of one webhook process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.admission_requests = Counter(
            "package_injector_admission_requests_total",
            "AdmissionReviews answered, by object kind, result (injected, skipped, validated, warned, "
            "denied, removed, error) and a low-cardinality reason.",
            ("kind", "result", "reason"),
            registry=self.registry,
        )
        self.admission_duration = Histogram(
            "package_injector_admission_duration_seconds",
            "Time to answer one AdmissionReview, from the first body byte read to the response built.",
            ("kind",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.bad_requests = Counter(
            "package_injector_bad_requests_total",
            "HTTP requests to /mutate refused before admission (malformed JSON, too large, wrong type).",
            ("reason",),
            registry=self.registry,
        )
        self.certificate_expiry = Gauge(
            "package_injector_certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate currently loaded, as a Unix timestamp.",
            registry=self.registry,
        )
        self.certificate_reloads = Counter(
            "package_injector_certificate_reloads_total",
            "Loads of the serving certificate files: success (a new pair is served) or failure (the "
            "previous pair keeps serving; counted once per distinct broken content or error).",
            ("result",),
            registry=self.registry,
        )
        self.connections_refused = Counter(
            "package_injector_connections_refused_total",
            "Connections closed by a connection limit, by port (admission, metrics) and reason: "
            "connection-limit (all busy), handshake (failed or too slow), header-too-large, request-timeout "
            "(headers and body not read in time).",
            ("port", "reason"),
            registry=self.registry,
        )
        for result in ("success", "failure"):
            self.certificate_reloads.labels(result=result)  # export 0 from the start, for alert rules

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type, for the metrics endpoint."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


METRICS = Metrics()
"""The process-wide instance used by `create_app` and the server unless told otherwise."""
