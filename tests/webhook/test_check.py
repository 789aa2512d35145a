"""`package-injector check` without a cluster: the caBundle check against a real TLS endpoint, the report."""

from __future__ import annotations

import argparse
import base64
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from webhook import certs, check, clusterapi


class TlsEndpoint:
    """A real TLS listener on 127.0.0.1 that completes handshakes with the given pair, then closes."""

    def __init__(self, tmp: Path, cert: bytes, key: bytes) -> None:
        (tmp / "c.pem").write_bytes(cert)
        (tmp / "k.pem").write_bytes(key)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(tmp / "c.pem", tmp / "k.pem")
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.ctx.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[tuple[TlsEndpoint, certs.CertBundle]]:
    bundle = certs.generate("pi", "tools", ips=["127.0.0.1"], dns=["localhost"])
    server = TlsEndpoint(tmp_path, bundle.cert, bundle.key)
    yield server, bundle
    server.close()


def webhook(url: str, ca_pem: bytes) -> dict[str, Any]:
    return {
        "name": "pods.package-injector.dev",
        "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_pem).decode()},
        "rules": [
            {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
        ],
        "objectSelector": {"matchLabels": {"inject": "yes"}},
    }


def test_ca_bundle_verifies_the_served_certificate(endpoint: tuple[TlsEndpoint, certs.CertBundle]) -> None:
    server, bundle = endpoint
    result = check.check_ca_bundle(webhook(f"https://127.0.0.1:{server.port}/mutate", bundle.ca_cert))
    assert result.status == "PASS", result
    assert "CN=pi.tools.svc" in result.detail


def test_a_foreign_ca_fails(endpoint: tuple[TlsEndpoint, certs.CertBundle]) -> None:
    server, _ = endpoint
    other = certs.generate("pi", "tools").ca_cert
    result = check.check_ca_bundle(webhook(f"https://127.0.0.1:{server.port}/mutate", other))
    assert result.status == "FAIL"
    assert "does not verify" in result.detail


def test_a_name_not_in_the_certificate_fails(tmp_path: Path) -> None:
    bundle = certs.generate("pi", "tools")  # no 127.0.0.1 SAN
    server = TlsEndpoint(tmp_path, bundle.cert, bundle.key)
    try:
        result = check.check_ca_bundle(webhook(f"https://127.0.0.1:{server.port}/mutate", bundle.ca_cert))
    finally:
        server.close()
    assert result.status == "FAIL" and "127.0.0.1" in result.detail


def test_leaf_in_ca_bundle_and_near_expiry_are_warnings(
    endpoint: tuple[TlsEndpoint, certs.CertBundle],
) -> None:
    server, bundle = endpoint
    result = check.check_ca_bundle(
        webhook(f"https://127.0.0.1:{server.port}/mutate", bundle.cert),
        now=datetime.now(UTC) + timedelta(days=360),
    )
    assert result.status == "WARN", result
    assert "leaf, not a CA" in result.detail and "expires" in result.detail


def test_empty_bundle_and_closed_port_fail() -> None:
    result = check.check_ca_bundle(webhook("https://127.0.0.1:1/mutate", b""))
    assert result.status == "FAIL" and "empty" in result.detail
    assert "fix: tls.mode auto: helm upgrade re-renders it" in result.line()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    result = check.check_ca_bundle(webhook(f"https://127.0.0.1:{port}/mutate", certs.new_ca("x")[0]))
    assert result.status == "FAIL" and "cannot connect" in result.detail
    assert result.fix == check.FIX_NOT_SERVING


def test_target_of_service_uses_the_name_the_apiserver_dials() -> None:
    target = check.target_of({"service": {"name": "pi", "namespace": "tools", "port": 8443}})
    assert (target.host, target.port, target.server_name, target.in_cluster_only) == (
        "pi.tools.svc",
        8443,
        "pi.tools.svc",
        True,
    )
    assert check.target_of({"service": {"name": "pi", "namespace": "tools"}}).port == 443
    with pytest.raises(ValueError):
        check.target_of({"url": "http://127.0.0.1/mutate"})


def test_probe_pod_carries_the_object_selector_labels_and_the_annotations() -> None:
    pod = check.probe_pod(
        [webhook("https://x/mutate", b"")], "example.com/", "https://pkgs.example.com/a.tgz"
    )
    assert pod["metadata"]["labels"]["inject"] == "yes"
    assert pod["metadata"]["annotations"]["example.com/package-url"] == "https://pkgs.example.com/a.tgz"


def injected_pod() -> dict[str, Any]:
    mount = {"name": "package-shared-volume", "mountPath": "/shared-data/diff-var-files", "readOnly": True}
    return {
        "spec": {
            "initContainers": [{"name": "package-downloader", "image": "package-init-container:0.1.0"}],
            "volumes": [{"name": "package-shared-volume", "emptyDir": {}}],
            "containers": [{"name": "app", "volumeMounts": [mount]}],
        }
    }


def test_evaluate_injection() -> None:
    assert check.evaluate_injection(injected_pod(), "default").status == "PASS"
    result = check.evaluate_injection({"spec": {"containers": [{"name": "app"}]}}, "default")
    assert (
        result.status == "FAIL"
        and "package-downloader" in result.detail
        and "namespaceSelector" in result.detail
    )


def args(**overrides: Any) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    check.add_arguments(parser)
    ns = parser.parse_args([])
    vars(ns).update(overrides)
    return ns


def test_run_checks_report(endpoint: tuple[TlsEndpoint, certs.CertBundle]) -> None:
    server, bundle = endpoint
    mwc = {"webhooks": [webhook(f"https://127.0.0.1:{server.port}/mutate", bundle.ca_cert)]}
    sent: list[dict[str, Any]] = []

    def dry_run(namespace: str, pod: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        sent.append(pod)
        return 201, injected_pod()

    cluster = check.Cluster(
        lambda name: mwc if name == "package-injector" else None, dry_run, in_cluster=False
    )
    results = check.run_checks(cluster, args())
    assert [r.status for r in results] == ["PASS", "PASS", "PASS"]
    assert sent[0]["metadata"]["labels"]["inject"] == "yes"

    missing = check.run_checks(cluster, args(name="other"))
    assert [r.status for r in missing] == ["FAIL"] and "not found" in missing[0].detail

    denied = check.Cluster(
        lambda _: mwc, lambda ns, pod: (400, {"message": "admission webhook denied: host not allowed"}), False
    )
    last = check.run_checks(denied, args())[-1]
    assert last.status == "FAIL" and "host not allowed" in last.detail


def test_every_fail_line_has_a_fix(endpoint: tuple[TlsEndpoint, certs.CertBundle]) -> None:
    server, _ = endpoint
    foreign = certs.new_ca("someone-else")[0]
    results = [
        check.check_ca_bundle(webhook(f"https://127.0.0.1:{server.port}/mutate", foreign)),
        check.check_ca_bundle({"name": "x", "clientConfig": {}}),
        check.check_ca_bundle({"name": "x", "clientConfig": {"url": "https://a/", "caBundle": "%%"}}),
        check.evaluate_injection({"spec": {}}, "default"),
        *check.run_checks(check.Cluster(lambda _: None, lambda ns, pod: (201, {}), False), args()),
    ]
    assert all(r.status == "FAIL" for r in results), results
    for result in results:
        assert result.fix, result
        assert result.line().splitlines()[1].startswith("      fix: ")


def endpoints_cluster(answer: Any) -> check.Cluster:
    def get(path: str) -> dict[str, Any] | None:
        assert path == "/api/v1/namespaces/tools/endpoints/pi"
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    return check.Cluster(lambda _: None, lambda ns, pod: (201, {}), False, get)


SERVICE_HOOK = {"name": "pods.x", "clientConfig": {"service": {"name": "pi", "namespace": "tools"}}}


@pytest.mark.parametrize(
    ("answer", "status", "words"),
    [
        ({"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}]}]}, "PASS", "2 ready"),
        (
            {"subsets": [{"addresses": [{"ip": "1.1.1.1"}], "notReadyAddresses": [{"ip": "2.2.2.2"}]}]},
            "WARN",
            "1 not ready",
        ),
        ({"subsets": [{"notReadyAddresses": [{"ip": "2.2.2.2"}]}]}, "FAIL", "no ready Pod"),
        ({}, "FAIL", "no ready Pod"),
        (None, "FAIL", "no endpoints object"),
        (clusterapi.ApiError("/x", 403, "forbidden"), "SKIP", "not allowed"),
    ],
)
def test_webhook_pods_ready_behind_the_service(answer: Any, status: str, words: str) -> None:
    result = check.check_endpoints(endpoints_cluster(answer), [SERVICE_HOOK])
    assert result is not None and result.status == status and words in result.detail
    if status in ("FAIL", "WARN"):
        assert "kubectl -n tools" in result.fix
    assert check.check_endpoints(endpoints_cluster(answer), [webhook("https://x/mutate", b"")]) is None


def test_summary_wording() -> None:
    ok = [check.Result("a", "PASS", ""), check.Result("b", "WARN", ""), check.Result("c", "SKIP", "")]
    assert check.summary(ok) == "OK: 1 of 3 checks passed (1 with warnings, 1 skipped)"
    assert check.summary(ok[:1]) == "OK: 1 of 1 checks passed"
    failed = [*ok, check.Result("d", "FAIL", ""), check.Result("d", "FAIL", "")]
    assert check.summary(failed) == (
        "FAILED: 2 of 5 checks failed (d); fix the FAIL lines above (1 with warnings, 1 skipped)"
    )


def test_without_a_kubeconfig_it_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert check.run(args()) == 2
    out = capsys.readouterr().out
    assert out.startswith("FAIL  cluster access: cannot load Kubernetes credentials: no kubeconfig")
    assert "fix: point --kubeconfig" in out


@pytest.mark.parametrize(
    ("info", "status"),
    [
        ({"major": "1", "minor": "33", "gitVersion": "v1.33.9"}, "FAIL"),
        ({"major": "1", "minor": "20", "gitVersion": "v1.20.2"}, "FAIL"),
        ({"major": "1", "minor": "34+", "gitVersion": "v1.34.4-eks-1"}, "PASS"),
        ({"major": "1", "minor": "37", "gitVersion": "v1.37.2"}, "PASS"),
    ],
)
def test_versions_below_the_supported_range_fail_with_a_fix(info: dict[str, str], status: str) -> None:
    cluster = check.Cluster(
        get_configuration=lambda name: None,
        dry_run_pod=lambda ns, pod: (500, {}),
        in_cluster=False,
        get=lambda path: info if path == "/version" else None,
    )
    result = check._version(cluster)
    assert result.status == status and info["gitVersion"] in result.detail
    if status == "FAIL":
        assert "not supported" in result.detail and result.fix == "upgrade the cluster to 1.34 or newer"
