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
from urllib.parse import urlsplit

from cryptography import x509

from initcontainer import contract
from webhook import annotation_keys as keys
from webhook import clusterapi

DEFAULT_NAME: Final = "package-injector"
DEFAULT_PACKAGE_URL: Final = "https://example.com/package-injector-check.tar.gz"
# SHA-256 of the empty string: a well-formed pin, for clusters that require checksums.
DUMMY_SHA256: Final = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
EXPIRY_WARNING: Final = timedelta(days=14)

# What to do, by cause; the chart's three TLS modes differ only in who makes the caBundle.
FIX_REINSTALL: Final = "reinstall: helm upgrade --install (or kubectl apply -k deploy/overlays/...)"
FIX_CA_BUNDLE: Final = (
    "tls.mode auto: helm upgrade re-renders it; certManager: is cert-manager's cainjector running and "
    "the Certificate Ready (kubectl -n NAMESPACE get certificate)?; secret: set tls.secret.caBundle to "
    "the CA's PEM"
)
FIX_CA_MISMATCH: Final = (
    "the caBundle and the serving Secret come from different CAs: helm upgrade (auto mode re-issues from one "
    "CA), or deploy/generate-certs.sh then kubectl apply -k again"
)
FIX_NOT_SERVING: Final = (
    "is the webhook running? kubectl -n NAMESPACE get pods,endpoints NAME and kubectl -n NAMESPACE logs "
    "deploy/NAME"
)
FIX_RENEW: Final = (
    "put the CA (not the serving certificate) in the caBundle; renew with helm upgrade (auto), cert-manager, "
    "or deploy/generate-certs.sh"
)

Status = Literal["PASS", "WARN", "SKIP", "FAIL"]


@dataclass(frozen=True)
class Result:
    """One line of the report; a FAIL or WARN carries what to do about it."""

    check: str
    status: Status
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<4}  {self.check}: {self.detail}"
        if self.fix and self.status in ("FAIL", "WARN"):
            text += f"\n      fix: {self.fix}"
        return text


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
        return Result(name, "FAIL", str(exc), FIX_REINSTALL)
    where = f"{target.host}:{target.port}"
    raw_bundle = client_config.get("caBundle") or ""
    try:
        bundle = base64.b64decode(raw_bundle, validate=True)
    except ValueError:
        return Result(name, "FAIL", "caBundle is not valid base64", FIX_CA_BUNDLE)
    cas = _pem_certs(bundle)
    if not cas:
        hint = "empty" if not raw_bundle else "not PEM certificates"
        return Result(
            name,
            "FAIL",
            f"caBundle is {hint}: the apiserver cannot trust {where} (CA injection pending?)",
            FIX_CA_BUNDLE,
        )
    try:
        leaf = fetch_verified(target, bundle, timeout)
    except ssl.SSLCertVerificationError as exc:
        return Result(
            name,
            "FAIL",
            f"{where} serves a certificate the caBundle does not verify: {exc.verify_message}",
            FIX_CA_MISMATCH,
        )
    except ssl.SSLError as exc:
        return Result(name, "FAIL", f"TLS handshake with {where} failed: {exc}", FIX_NOT_SERVING)
    except socket.gaierror as exc:
        if target.in_cluster_only and not in_cluster:
            return Result(
                name,
                "SKIP",
                f"{target.host} does not resolve outside the cluster ({exc.strerror}); "
                "run the check in the cluster (helm test) to verify it",
            )
        return Result(name, "FAIL", f"cannot resolve {target.host}: {exc.strerror}", FIX_NOT_SERVING)
    except OSError as exc:
        return Result(name, "FAIL", f"cannot connect to {where}: {exc.strerror or exc}", FIX_NOT_SERVING)
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
        return Result(name, "WARN", f"{detail}; " + "; ".join(notes), FIX_RENEW)
    return Result(name, "PASS", detail)


# --- dry-run injection ----------------------------------------------------------------------------------


def handles_pods(webhook: dict[str, Any]) -> bool:
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
        if handles_pods(webhook):
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
            f"package-injector explain -f POD.yaml -n {namespace} says which selector or condition skips it; "
            "or run the check in a namespace the webhook selects (--namespace)",
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
    """The API calls the checks make, so tests can substitute nothing but the transport."""

    get_configuration: Callable[[str], dict[str, Any] | None]
    dry_run_pod: Callable[[str, dict[str, Any]], tuple[int, dict[str, Any]]]
    in_cluster: bool
    # GET/POST of any path (None in tests that only exercise the first checks).
    get: Callable[[str], dict[str, Any] | None] | None = None
    post: Callable[[str, dict[str, Any]], tuple[int, dict[str, Any]]] | None = None


def kubernetes_cluster(kubeconfig: str | None, context: str | None) -> Cluster:
    """API access from a kubeconfig (flag, $KUBECONFIG, ~/.kube/config) or, failing that, in-cluster."""
    kube = clusterapi.connect(kubeconfig, context)

    def dry_run_pod(namespace: str, pod: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return kube.post(f"{clusterapi.resource_path('Pod', namespace)}?dryRun=All", pod)

    return Cluster(
        lambda name: clusterapi.webhook_configuration(kube, name),
        dry_run_pod,
        kube.where.startswith("in-cluster") or "KUBERNETES_SERVICE_HOST" in os.environ,
        kube.get,
        kube.post,
    )


def check_endpoints(cluster: Cluster, webhooks: list[dict[str, Any]]) -> Result | None:
    """Are webhook Pods ready behind the Service the apiserver calls? None when there is no Service."""
    name = "webhook pods"
    service = next(
        (
            (w.get("clientConfig") or {}).get("service")
            for w in webhooks
            if (w.get("clientConfig") or {}).get("service")
        ),
        None,
    )
    if not service or cluster.get is None:
        return None
    ns, svc = service.get("namespace"), service.get("name")
    fix = (
        f"kubectl -n {ns} get pods,deploy; kubectl -n {ns} describe deploy/{svc}; "
        f"kubectl -n {ns} logs deploy/{svc}"
    )
    try:
        endpoints = cluster.get(clusterapi.resource_path("Endpoints", ns, svc))
    except clusterapi.ApiError as exc:
        if exc.status == 403:
            return Result(name, "SKIP", f"not allowed to read the endpoints of Service {ns}/{svc}")
        return Result(name, "FAIL", f"cannot read the endpoints of Service {ns}/{svc}: {exc}", fix)
    if endpoints is None:
        return Result(name, "FAIL", f"Service {ns}/{svc} has no endpoints object (is it installed?)", fix)
    subsets = endpoints.get("subsets") or []
    ready = sum(len(s.get("addresses") or []) for s in subsets)
    not_ready = sum(len(s.get("notReadyAddresses") or []) for s in subsets)
    if ready == 0:
        return Result(
            name, "FAIL", f"no ready Pod behind Service {ns}/{svc} ({not_ready} not ready): reviews fail", fix
        )
    if not_ready:
        return Result(name, "WARN", f"{ready} ready, {not_ready} not ready behind Service {ns}/{svc}", fix)
    return Result(name, "PASS", f"{ready} ready behind Service {ns}/{svc}")


def run_checks(cluster: Cluster, args: argparse.Namespace) -> list[Result]:
    """All checks, in order; later checks still run after a failure when they can say something useful."""
    results: list[Result] = []
    try:
        mwc = cluster.get_configuration(args.name)
    except Exception as exc:  # any API failure is a finding, not a traceback
        return [
            Result(
                "configuration",
                "FAIL",
                f"cannot read MutatingWebhookConfiguration {args.name}: {exc}",
                "check the kubeconfig's context and that it may get mutatingwebhookconfigurations",
            )
        ]
    if mwc is None:
        return [
            Result(
                "configuration",
                "FAIL",
                f"MutatingWebhookConfiguration {args.name} not found",
                "installed under another release name? kubectl get mutatingwebhookconfigurations, then "
                "--name; not installed yet? package-injector check --pre, then helm install",
            )
        ]
    webhooks: list[dict[str, Any]] = mwc.get("webhooks") or []
    summary = ", ".join(f"{w.get('name')} (failurePolicy {w.get('failurePolicy', 'Fail')})" for w in webhooks)
    results.append(
        Result(
            "configuration",
            "PASS" if webhooks else "FAIL",
            f"{args.name}: {summary or 'no webhooks'}",
            FIX_REINSTALL,
        )
    )
    endpoints = check_endpoints(cluster, webhooks)
    if endpoints is not None:
        results.append(endpoints)
    for webhook in webhooks:
        results.append(check_ca_bundle(webhook, timeout=args.timeout, in_cluster=cluster.in_cluster))
    if not any(handles_pods(w) for w in webhooks):
        results.append(
            Result("dry-run injection", "FAIL", "no webhook of the configuration handles pods", FIX_REINSTALL)
        )
        return results
    pod = probe_pod(webhooks, args.annotation_prefix, args.package_url)
    try:
        status, body = cluster.dry_run_pod(args.namespace, pod)
    except Exception as exc:
        results.append(Result("dry-run injection", "FAIL", f"dry-run create failed: {exc}", FIX_NOT_SERVING))
        return results
    if status >= 300:
        message = body.get("message") or body
        fix = (
            "allow the check's URL with --package-url (one your policy.allowedHosts admits)"
            if "package-injector" in str(message)
            else "a webhook call that fails or times out: see the caBundle and webhook pods lines; "
            f"may you create pods in {args.namespace}?"
        )
        results.append(
            Result("dry-run injection", "FAIL", f"dry-run create refused ({status}): {message}", fix)
        )
    else:
        results.append(evaluate_injection(body, args.namespace))
    return results


# --- before install (--pre) ----------------------------------------------------------------------------

# (group, version, what needs it); the PodDisruptionBudget's API depends on the cluster's version.
REQUIRED_APIS: Final = (
    ("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration"),
    ("apps", "v1", "Deployment"),
)
# What `helm install` creates: (API group, resource, namespaced).
INSTALL_PERMISSIONS: Final = (
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", False),
    ("apps", "deployments", True),
    ("", "services", True),
    ("", "configmaps", True),
    ("", "secrets", True),
    ("", "serviceaccounts", True),
    ("policy", "poddisruptionbudgets", True),
)
# The oldest Kubernetes the chart's kubeVersion admits and the e2e tests run (README, "Supported versions").
OLDEST_SUPPORTED: Final = (1, 34)
CERT_MANAGER_PERMISSIONS: Final = (
    ("cert-manager.io", "issuers", True),
    ("cert-manager.io", "certificates", True),
)


def _version(cluster: Cluster) -> Result:
    assert cluster.get is not None
    try:
        info = cluster.get("/version") or {}
    except clusterapi.ApiError as exc:
        return Result("cluster", "FAIL", f"cannot read the version: {exc}", "check the kubeconfig's server")
    major = "".join(c for c in str(info.get("major", "")) if c.isdigit())
    minor = "".join(c for c in str(info.get("minor", "")) if c.isdigit())
    if not major or not minor:
        return Result("cluster", "WARN", f"unknown version {info.get('gitVersion')!r}")
    version = (int(major), int(minor))
    detail = f"Kubernetes {info.get('gitVersion')}"
    if version < OLDEST_SUPPORTED:
        oldest = ".".join(map(str, OLDEST_SUPPORTED))
        return Result(
            "cluster",
            "FAIL",
            f"{detail} is not supported (matchConditions, native sidecars and the chart need {oldest}+)",
            f"upgrade the cluster to {oldest} or newer",
        )
    return Result("cluster", "PASS", detail)


def _api_served(cluster: Cluster, group: str, version: str) -> bool:
    assert cluster.get is not None
    path = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    return cluster.get(path) is not None


def _allowed(cluster: Cluster, group: str, resource: str, namespace: str | None) -> tuple[bool, str]:
    assert cluster.post is not None
    attributes: dict[str, Any] = {"verb": "create", "group": group, "resource": resource}
    if namespace:
        attributes["namespace"] = namespace
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attributes},
    }
    status, body = cluster.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)
    if status >= 300:
        return False, str(body.get("message") or status)
    answer = body.get("status") or {}
    return bool(answer.get("allowed")), str(answer.get("reason") or "")


def run_pre_checks(cluster: Cluster, args: argparse.Namespace) -> list[Result]:
    """Before `helm install`: the cluster's version and APIs, cert-manager when chosen, permissions."""
    results: list[Result] = []
    try:
        results.append(_version(cluster))
        for group, api_version, what in REQUIRED_APIS:
            if _api_served(cluster, group, api_version):
                results.append(Result(f"API {group}/{api_version}", "PASS", f"served ({what})"))
            else:
                results.append(
                    Result(
                        f"API {group}/{api_version}",
                        "FAIL",
                        f"not served; the chart's {what} needs it",
                        "upgrade",
                    )
                )
        if args.tls_mode == "certManager":
            if _api_served(cluster, "cert-manager.io", "v1"):
                results.append(Result("cert-manager", "PASS", "cert-manager.io/v1 is served"))
            else:
                results.append(
                    Result(
                        "cert-manager",
                        "FAIL",
                        "cert-manager.io/v1 is not served: tls.mode certManager needs cert-manager",
                        "install cert-manager with its CRDs first "
                        "(https://cert-manager.io/docs/installation/), or use tls.mode auto",
                    )
                )
        ns = args.release_namespace
        assert cluster.get is not None
        try:
            exists = cluster.get(clusterapi.resource_path("Namespace", None, ns)) is not None
        except clusterapi.ApiError as exc:
            if exc.status != 403:
                raise
            exists = True  # unknown: the permission line below still says what is missing
            results.append(Result(f"namespace {ns}", "SKIP", "you may not read namespaces"))
        if not exists:
            allowed, _ = _allowed(cluster, "", "namespaces", None)
            results.append(
                Result(
                    f"namespace {ns}",
                    "PASS" if allowed else "FAIL",
                    "does not exist yet; " + ("you may create it" if allowed else "you may not create it"),
                    f"ask a cluster admin to create namespace {ns}",
                )
            )
        elif not any(r.check == f"namespace {ns}" for r in results):
            results.append(Result(f"namespace {ns}", "PASS", "exists"))
        wanted = INSTALL_PERMISSIONS + (CERT_MANAGER_PERMISSIONS if args.tls_mode == "certManager" else ())
        denied = []
        for group, resource, namespaced in wanted:
            allowed, _ = _allowed(cluster, group, resource, ns if namespaced else None)
            if not allowed:
                denied.append(f"{resource}.{group}" if group else resource)
        if denied:
            results.append(
                Result(
                    "permissions",
                    "FAIL",
                    f"you may not create {', '.join(denied)} (in {ns} where namespaced)",
                    "ask a cluster admin to install the chart, or to grant these (helm install creates them)",
                )
            )
        else:
            results.append(
                Result("permissions", "PASS", f"you may create everything the chart installs in {ns}")
            )
        try:
            existing = cluster.get_configuration(args.name)
        except clusterapi.ApiError as exc:
            if exc.status != 403:
                raise
            existing = None
        if existing is not None:
            results.append(
                Result(
                    "existing installation",
                    "WARN",
                    f"MutatingWebhookConfiguration {args.name} exists already",
                    "helm upgrade that release instead of installing a second one, or choose another "
                    "release name",
                )
            )
    except clusterapi.ApiError as exc:
        results.append(Result("cluster", "FAIL", str(exc), "check the kubeconfig's server and credentials"))
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
    parser.add_argument(
        "--pre",
        action="store_true",
        help="before installing: Kubernetes version and APIs, cert-manager (with --tls-mode certManager), "
        "your permissions",
    )
    parser.add_argument(
        "--release-namespace",
        default="package-injector",
        help="with --pre: the namespace you will install in",
    )
    parser.add_argument(
        "--tls-mode",
        choices=("auto", "certManager", "secret"),
        default="auto",
        help="with --pre: the chart's tls.mode",
    )


def summary(results: list[Result]) -> str:
    """One sentence: passed or failed, and how many of which."""
    counts = {s: sum(r.status == s for r in results) for s in ("PASS", "WARN", "SKIP", "FAIL")}
    extra = []
    if counts["WARN"]:
        extra.append(f"{counts['WARN']} with warnings")
    if counts["SKIP"]:
        extra.append(f"{counts['SKIP']} skipped")
    tail = f" ({', '.join(extra)})" if extra else ""
    if counts["FAIL"]:
        failed = ", ".join(dict.fromkeys(r.check for r in results if r.status == "FAIL"))
        return (
            f"FAILED: {counts['FAIL']} of {len(results)} checks failed ({failed}); "
            f"fix the FAIL lines above{tail}"
        )
    return f"OK: {counts['PASS']} of {len(results)} checks passed{tail}"


def run(args: argparse.Namespace) -> int:
    """Print one line per check; 0 when nothing failed, 1 on a failure, 2 when the cluster is unreachable."""
    try:
        cluster = kubernetes_cluster(args.kubeconfig, args.context)
    except Exception as exc:
        print(
            Result(
                "cluster access",
                "FAIL",
                f"cannot load Kubernetes credentials: {exc}",
                "point --kubeconfig (or $KUBECONFIG) at the cluster's kubeconfig; kubectl must work with it",
            ).line()
        )
        return 2
    results = run_pre_checks(cluster, args) if args.pre else run_checks(cluster, args)
    for result in results:
        print(result.line())
    print(summary(results))
    sys.stdout.flush()
    return 1 if any(r.status == "FAIL" for r in results) else 0
