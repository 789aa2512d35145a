"""`package-injector check` against the real kube-apiserver: a pass, and failures that say what is wrong."""

from __future__ import annotations

import argparse
import json
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import webhook_configuration
from tests.support.kube import MWC_PATH, Cluster, binaries, inert_service_webhook
from tests.support.webhook import WebhookProcess
from webhook import certs, check

pytestmark = pytest.mark.e2e


def run_check(cluster: Cluster, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    check.add_arguments(parser)
    code = check.run(parser.parse_args(["--kubeconfig", str(cluster.kubeconfig), *argv]))
    return code, capsys.readouterr().out


def test_check_passes_against_a_working_installation(
    cluster: Cluster, registered: str, namespace: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    ns = namespace(registered)
    code, out = run_check(cluster, capsys, "--name", f"a-package-injector-{registered}", "--namespace", ns)
    print(out)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("PASS  configuration")
    assert sum(line.startswith("PASS  caBundle") for line in lines) == 2
    assert any(line.startswith("PASS  dry-run injection") for line in lines)
    assert lines[-1].startswith("OK:")


def test_check_fails_in_a_namespace_the_webhook_does_not_select(
    cluster: Cluster, registered: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.create_namespace("check-unselected")
    code, out = run_check(
        cluster, capsys, "--name", f"a-package-injector-{registered}", "--namespace", "check-unselected"
    )
    assert code == 1, out
    assert "FAIL  dry-run injection" in out and "namespaceSelector" in out


def test_check_fails_when_the_configuration_is_missing(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_check(cluster, capsys, "--name", "no-such-configuration")
    assert code == 1
    assert "FAIL  configuration" in out and "not found" in out


def test_check_fails_when_the_ca_bundle_does_not_match_the_served_certificate(
    cluster: Cluster, webhook_server: WebhookProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong_ca = certs.generate("package-injector", "e2e").ca_bundle_b64
    # Selects only namespaces with a label nobody has, and Ignore: harmless to the other tests.
    mwc = webhook_configuration(
        "check-wrong-ca", webhook_server.url, wrong_ca, "check-nobody-has-this", failure_policy="Ignore"
    )
    status, body = cluster.request("POST", MWC_PATH, mwc)
    assert status == 201, body
    try:
        code, out = run_check(cluster, capsys, "--name", "check-wrong-ca")
    finally:
        cluster.request("DELETE", f"{MWC_PATH}/check-wrong-ca")
    assert code == 1
    assert "FAIL  caBundle pods.package-injector.dev" in out
    assert "serves a certificate the caBundle does not verify" in out


# --- before install (--pre) and the webhook pods ---------------------------------------------------------


def test_pre_install_checks_for_an_admin(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_check(cluster, capsys, "--pre", "--release-namespace", "pre-check-new")
    print(out)
    assert code == 0, out
    lines = out.splitlines()
    # The server's own version, in the supported range (an older one is a FAIL, tests/webhook/test_check.py).
    assert lines[0] == f"PASS  cluster: Kubernetes {binaries().version}", lines[0]
    assert "PASS  API admissionregistration.k8s.io/v1: served" in out
    assert "PASS  namespace pre-check-new: does not exist yet; you may create it" in out
    assert "PASS  permissions: you may create everything the chart installs in pre-check-new" in out
    assert lines[-1] == f"OK: {len(lines) - 1} of {len(lines) - 1} checks passed"


def test_pre_install_without_cert_manager(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_check(cluster, capsys, "--pre", "--tls-mode", "certManager")
    assert code == 1
    assert "FAIL  cert-manager: cert-manager.io/v1 is not served" in out
    assert "fix: install cert-manager with its CRDs first" in out
    assert out.splitlines()[-1].startswith("FAILED: ")


def test_pre_install_as_a_user_without_rights(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A real, unprivileged identity: a ServiceAccount's token from the TokenRequest API."""
    cluster.create_namespace("pre-check-sa")
    status, body = cluster.request(
        "POST",
        "/api/v1/namespaces/pre-check-sa/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "dev"}},
    )
    assert status == 201, body
    status, body = cluster.request(
        "POST",
        "/api/v1/namespaces/pre-check-sa/serviceaccounts/dev/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 600},
        },
    )
    assert status == 201, body
    config = json.loads(cluster.kubeconfig.read_text())
    config["users"][0]["user"]["token"] = body["status"]["token"]
    kubeconfig = tmp_path / "dev.kubeconfig"
    kubeconfig.write_text(json.dumps(config))
    parser = argparse.ArgumentParser()
    check.add_arguments(parser)
    code = check.run(parser.parse_args(["--kubeconfig", str(kubeconfig), "--pre"]))
    out = capsys.readouterr().out
    assert code == 1, out
    assert (
        "FAIL  permissions: you may not create mutatingwebhookconfigurations.admissionregistration.k8s.io"
        in out
    )
    assert "fix: ask a cluster admin" in out


def test_webhook_pods_line_reads_the_services_endpoints(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """A configuration that calls a Service: ready addresses behind it, as the apiserver would dial them."""
    ns = f"check-svc-{secrets.token_hex(3)}"
    cluster.create_namespace(ns)
    inert_service_webhook(cluster, ns, "pi", ns)
    try:
        _, out = run_check(cluster, capsys, "--name", ns)
        assert f"FAIL  webhook pods: Service {ns}/pi has no endpoints object" in out
        endpoints = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "pi"},
            "subsets": [
                {
                    "addresses": [{"ip": "10.0.0.10"}],
                    "notReadyAddresses": [{"ip": "10.0.0.11"}],
                    "ports": [{"port": 8443}],
                }
            ],
        }
        status, body = cluster.request("POST", f"/api/v1/namespaces/{ns}/endpoints", endpoints)
        assert status == 201, body
        _, out = run_check(cluster, capsys, "--name", ns)
        assert f"WARN  webhook pods: 1 ready, 1 not ready behind Service {ns}/pi" in out
        assert f"fix: kubectl -n {ns} get pods,deploy" in out
    finally:
        cluster.request("DELETE", f"{MWC_PATH}/{ns}")
