"""`package-injector check`: prove, against the live cluster, that injection works end to end.

Three checks, one report line each (PASS, WARN, SKIP or FAIL), exit 1 if any FAIL:

1. the MutatingWebhookConfiguration exists (the chart owns it; a missing one is a common outage);
2. for each webhook, its `caBundle` verifies the certificate the endpoint *actually serves*, for the host name
   the apiserver dials (a TLS handshake with the caBundle as the only trust anchor, hostname checked);
   a leaf instead of a CA in the caBundle (osm#4603) and a certificate close to expiry are warnings;
3. a server-side dry-run create of an annotated Pod comes back with the init container and the volume.

For `clientConfig.service` the check dials `NAME.NAMESPACE.svc:PORT`, which resolves inside the cluster (the
chart's `helm test` pod); from outside the cluster that name does not resolve and the check is SKIPped rather
than guessed. The apiserver's service proxy is not used: it would hide the certificate we must verify.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import socket
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal
from urllib.parse import quote, urlsplit

from cryptography import x509

from initcontainer import contract
from webhook import annotation_keys as keys
from webhook import kubeapi

DEFAULT_NAME: Final = "package-injector"
DEFAULT_PACKAGE_URL: Final = "https://example.com/package-injector-check.tar.gz"
# SHA-256 of the empty string: a well-formed pin, for clusters that require checksums.
DUMMY_SHA256: Final = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
EXPIRY_WARNING: Final = timedelta(days=14)
MWC_PATH: Final = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"

Status = Literal["PASS", "WARN", "SKIP", "FAIL"]


@dataclass(frozen=True)
class Result:
    """One line of the report."""

    check: str
    status: Status
    detail: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.check}: {self.detail}"


# --- caBundle against the served certificate ------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where the apiserver sends reviews, and the name it checks the certificate against."""

    host: str
    port: int
    server_name: str
    in_cluster_only: bool


def target_of(client_config: dict[str, Any]) -> Target:
    """The endpoint of `webhooks[].clientConfig` (url or service)."""
    url = client_config.get("url")
    if url:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"clientConfig.url must be an https:// URL, got {url!r}")
        return Target(parts.hostname, parts.port or 443, parts.hostname, in_cluster_only=False)
    service = client_config.get("service")
    if not service:
        raise ValueError("clientConfig has neither url nor service")
    name = f"{service['name']}.{service['namespace']}.svc"
    return Target(name, int(service.get("port") or 443), name, in_cluster_only=True)


def _pem_certs(bundle: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(bundle)
    except ValueError:
        return []


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def fetch_verified(target: Target, ca_pem: bytes, timeout: float) -> x509.Certificate:
    """Handshake trusting only `ca_pem`, hostname checked; the served leaf. Raises ssl/OS errors."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=ca_pem.decode("ascii", errors="replace"))
    # Like the apiserver (Go crypto/x509), accept a certificate of the bundle itself as the anchor, so a
    # leaf-in-caBundle setup is reported as the warning it is, not as a failure the apiserver never sees.
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    with (
        socket.create_connection((target.host, target.port), timeout=timeout) as raw,
        ctx.wrap_socket(raw, server_hostname=target.server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError("the server presented no certificate")
    return x509.load_der_x509_certificate(der)


def check_ca_bundle(
    webhook: dict[str, Any], *, timeout: float = 5.0, in_cluster: bool = False, now: datetime | None = None
) -> Result:
    """Does this webhook's caBundle verify what its endpoint serves, for the name the apiserver uses?"""
    name = f"caBundle {webhook.get('name', '?')}"
    client_config = webhook.get("clientConfig") or {}
    try:
        target = target_of(client_config)
    except (ValueError, KeyError) as exc:
        return Result(name, "FAIL", str(exc))
    where = f"{target.host}:{target.port}"
    raw_bundle = client_config.get("caBundle") or ""
    try:
        bundle = base64.b64decode(raw_bundle, validate=True)
    except ValueError:
        return Result(name, "FAIL", "caBundle is not valid base64")
    cas = _pem_certs(bundle)
    if not cas:
        hint = "empty" if not raw_bundle else "not PEM certificates"
        return Result(
            name, "FAIL", f"caBundle is {hint}: the apiserver cannot trust {where} (CA injection pending?)"
        )
    try:
        leaf = fetch_verified(target, bundle, timeout)
    except ssl.SSLCertVerificationError as exc:
        return Result(
            name, "FAIL", f"{where} serves a certificate the caBundle does not verify: {exc.verify_message}"
        )
    except ssl.SSLError as exc:
        return Result(name, "FAIL", f"TLS handshake with {where} failed: {exc}")
    except socket.gaierror as exc:
        if target.in_cluster_only and not in_cluster:
            return Result(
                name,
                "SKIP",
                f"{target.host} does not resolve outside the cluster ({exc.strerror}); "
                "run the check in the cluster (helm test) to verify it",
            )
        return Result(name, "FAIL", f"cannot resolve {target.host}: {exc.strerror}")
    except OSError as exc:
        return Result(name, "FAIL", f"cannot connect to {where}: {exc.strerror or exc}")
    now = now or datetime.now(UTC)
    notes = []
    if not any(_is_ca(c) for c in cas):
        notes.append("the caBundle holds a leaf, not a CA: it will break at the next certificate renewal")
    if leaf.not_valid_after_utc - now < EXPIRY_WARNING:
        notes.append(f"the served certificate expires {leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}")
    detail = (
        f"{where} serves {leaf.subject.rfc4514_string()} (until {leaf.not_valid_after_utc:%Y-%m-%d}), "
        f"verified by the caBundle for {target.server_name}"
    )
    if notes:
        return Result(name, "WARN", f"{detail}; " + "; ".join(notes))
    return Result(name, "PASS", detail)


# --- dry-run injection ----------------------------------------------------------------------------------


def _handles_pods(webhook: dict[str, Any]) -> bool:
    for rule in webhook.get("rules") or []:
        resources = rule.get("resources") or []
        groups = rule.get("apiGroups") or []
        if ("pods" in resources or "*" in resources) and ("" in groups or "*" in groups):
            return True
    return False


def probe_pod(webhooks: list[dict[str, Any]], annotation_prefix: str, package_url: str) -> dict[str, Any]:
    """A Pod that every pod webhook of the configuration selects, restricted-PSS compliant, never run."""
    labels: dict[str, str] = {"app.kubernetes.io/name": "package-injector-check"}
    for webhook in webhooks:
        if _handles_pods(webhook):
            labels.update((webhook.get("objectSelector") or {}).get("matchLabels") or {})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"package-injector-check-{secrets.token_hex(4)}",
            "labels": labels,
            "annotations": {
                annotation_prefix + keys.URL: package_url,
                annotation_prefix + keys.SHA256: DUMMY_SHA256,
            },
        },
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "app",
                    "image": "registry.k8s.io/pause:3.9",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "readOnlyRootFilesystem": True,
                    },
                }
            ],
        },
    }


def evaluate_injection(pod: dict[str, Any], namespace: str) -> Result:
    """Did the dry-run Pod come back with our init container, volume and read-only mount?"""
    name = "dry-run injection"
    spec = pod.get("spec") or {}
    init = [c for c in spec.get("initContainers") or [] if c.get("name") == contract.INIT_CONTAINER_NAME]
    volumes = [v for v in spec.get("volumes") or [] if v.get("name") == contract.VOLUME_NAME]
    mounts = [
        m
        for c in spec.get("containers") or []
        for m in c.get("volumeMounts") or []
        if m.get("name") == contract.VOLUME_NAME and m.get("readOnly")
    ]
    missing = [
        what
        for what, found in (
            (f"init container {contract.INIT_CONTAINER_NAME}", init),
            (f"volume {contract.VOLUME_NAME}", volumes),
            ("read-only mount in the app container", mounts),
        )
        if not found
    ]
    if missing:
        return Result(
            name,
            "FAIL",
            f"the Pod came back without {', '.join(missing)}: is namespace {namespace} excluded by the "
            "namespaceSelector, or is the webhook not called for it?",
        )
    image = init[0].get("image", "?")
    return Result(
        name,
        "PASS",
        f"an annotated Pod in {namespace} is injected ({image}, mounted at {mounts[0]['mountPath']})",
    )


# --- the command ----------------------------------------------------------------------------------------


@dataclass
class Cluster:
    """The two API calls the check makes, so tests can substitute nothing but the transport."""

    get_configuration: Callable[[str], dict[str, Any] | None]
    dry_run_pod: Callable[[str, dict[str, Any]], tuple[int, dict[str, Any]]]
    in_cluster: bool


def kubernetes_cluster(kubeconfig: str | None, context: str | None) -> Cluster:
    """API access from a kubeconfig (flag, $KUBECONFIG, ~/.kube/config) or, failing that, in-cluster."""
    api = kubeapi.load(kubeconfig, context)

    def get_configuration(name: str) -> dict[str, Any] | None:
        status, body = api.request("GET", f"{MWC_PATH}/{quote(name, safe='')}")
        if status == 404:
            return None
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {body.get('message') or body}")
        data: dict[str, Any] = body
        return data

    def dry_run_pod(namespace: str, pod: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        status, body = api.request(
            "POST", f"/api/v1/namespaces/{quote(namespace, safe='')}/pods?dryRun=All", pod
        )
        return status, body if isinstance(body, dict) else {"message": str(body)}

    return Cluster(get_configuration, dry_run_pod, api.in_cluster or "KUBERNETES_SERVICE_HOST" in os.environ)


def run_checks(cluster: Cluster, args: argparse.Namespace) -> list[Result]:
    """All checks, in order; later checks still run after a failure when they can say something useful."""
    results: list[Result] = []
    try:
        mwc = cluster.get_configuration(args.name)
    except Exception as exc:  # any API failure is a finding, not a traceback
        return [
            Result("configuration", "FAIL", f"cannot read MutatingWebhookConfiguration {args.name}: {exc}")
        ]
    if mwc is None:
        return [
            Result(
                "configuration",
                "FAIL",
                f"MutatingWebhookConfiguration {args.name} not found (installed with another release name? "
                "use --name)",
            )
        ]
    webhooks: list[dict[str, Any]] = mwc.get("webhooks") or []
    summary = ", ".join(f"{w.get('name')} (failurePolicy {w.get('failurePolicy', 'Fail')})" for w in webhooks)
    results.append(
        Result("configuration", "PASS" if webhooks else "FAIL", f"{args.name}: {summary or 'no webhooks'}")
    )
    for webhook in webhooks:
        results.append(check_ca_bundle(webhook, timeout=args.timeout, in_cluster=cluster.in_cluster))
    if not any(_handles_pods(w) for w in webhooks):
        results.append(Result("dry-run injection", "FAIL", "no webhook of the configuration handles pods"))
        return results
    pod = probe_pod(webhooks, args.annotation_prefix, args.package_url)
    try:
        status, body = cluster.dry_run_pod(args.namespace, pod)
    except Exception as exc:
        results.append(Result("dry-run injection", "FAIL", f"dry-run create failed: {exc}"))
        return results
    if status >= 300:
        message = body.get("message") or body
        results.append(Result("dry-run injection", "FAIL", f"dry-run create refused ({status}): {message}"))
    else:
        results.append(evaluate_injection(body, args.namespace))
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `package-injector check`."""
    parser.add_argument(
        "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)"
    )
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    parser.add_argument("--name", default=DEFAULT_NAME, help="name of the MutatingWebhookConfiguration")
    parser.add_argument(
        "--namespace",
        default="default",
        help="namespace of the dry-run Pod; it must not be excluded by the webhook (default: default)",
    )
    parser.add_argument("--package-url", default=DEFAULT_PACKAGE_URL, help="package-url of the dry-run Pod")
    parser.add_argument("--annotation-prefix", default="", help="the cluster's annotation prefix, if any")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds for each TLS connection")


def run(args: argparse.Namespace) -> int:
    """Print one line per check; 0 when nothing failed, 1 on a failure, 2 when the cluster is unreachable."""
    try:
        cluster = kubernetes_cluster(args.kubeconfig, args.context)
    except Exception as exc:
        print(Result("cluster access", "FAIL", f"cannot load Kubernetes credentials: {exc}").line())
        return 2
    results = run_checks(cluster, args)
    for result in results:
        print(result.line())
    failed = sum(r.status == "FAIL" for r in results)
    print(
        f"{'FAILED' if failed else 'OK'}: "
        f"{len(results) - failed} of {len(results)} checks passed, warned or were skipped"
    )
    sys.stdout.flush()
    return 1 if failed else 0
