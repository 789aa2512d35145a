"""`package-injector check` against the real kube-apiserver: a pass, and failures that say what is wrong."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest

from tests.e2e.conftest import webhook_configuration
from tests.support.kube import Cluster
from tests.support.webhook import WebhookProcess
from webhook import certs, check

pytestmark = pytest.mark.e2e

MWC_PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"


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
