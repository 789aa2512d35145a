"""`package-injector explain` against the real kube-apiserver: live Pods and workloads, namespaces,
Secrets, and the settings read from the webhook's ConfigMap.

As in a real cluster, the webhook is registered by a MutatingWebhookConfiguration the apiserver calls;
unlike the chart, it uses clientConfig.url (127.0.0.1), so the settings ConfigMap is named explicitly in
most tests and found through a service reference in one.
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import sys
from collections.abc import Callable

import pytest
import yaml

from tests.e2e.conftest import pod
from tests.support.kube import MWC_PATH, Cluster, inert_service_webhook
from webhook import explain

pytestmark = pytest.mark.e2e

URL = "https://packages.example.com/app.tar.gz"


def settings_configmap(cluster: Cluster, namespace: str, name: str, config: str) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {"config.yaml": config},
    }
    status, answer = cluster.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", body)
    assert status == 201, answer


def run_explain(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], registered: str, *argv: str
) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    explain.add_arguments(parser)
    args = parser.parse_args(
        ["--kubeconfig", str(cluster.kubeconfig), "--name", f"a-package-injector-{registered}", *argv]
    )
    code = explain.run(args)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def create(
    cluster: Cluster, namespace: str, obj: dict[str, object], plural: str = "pods", api: str = "/api/v1"
) -> None:
    status, body = cluster.request("POST", f"{api}/namespaces/{namespace}/{plural}", obj)
    assert status == 201, body


def test_an_injected_pod_and_its_missing_secret(
    cluster: Cluster, registered: str, namespace: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    ns = namespace(registered)
    settings_configmap(cluster, ns, "settings", "require_checksum: false\n")
    create(cluster, ns, pod("web", {"package-url": URL, "package-secret": "creds"}))
    argv = ("pod/web", "-n", ns, "--settings-configmap", f"{ns}/settings")
    code, out = run_explain(cluster, capsys, registered, *argv)
    print(out)
    assert code == 1
    assert f"settings: ConfigMap {ns}/settings" in out
    assert "PASS  live Pod: carries the package-downloader init container" in out
    assert f'FAIL  secret: Secret creds ("package-secret") does not exist in namespace {ns}' in out
    assert f"fix: kubectl create secret generic creds -n {ns}" in out
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds"},
        "stringData": {"token": "t"},
    }
    create(cluster, ns, secret, "secrets")
    code, out = run_explain(cluster, capsys, registered, *argv)
    assert code == 0, out
    assert f"Pod {ns}/web: it was injected" in out
    assert f"PASS  secret: Secret {ns}/creds" in out


def test_a_pod_in_a_namespace_the_webhook_does_not_select(
    cluster: Cluster, registered: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = f"e2e-unlabelled-{secrets.token_hex(3)}"
    cluster.create_namespace(ns)
    settings_configmap(cluster, ns, "settings", "{}\n")
    create(cluster, ns, pod("web", {"package-url": URL}))
    code, out = run_explain(
        cluster, capsys, registered, "pod/web", "-n", ns, "--settings-configmap", f"{ns}/settings"
    )
    assert code == 1
    assert f"does not select namespace {ns}: needs {registered} In (enabled)" in out
    assert f"fix: kubectl label namespace {ns} {registered}=enabled --overwrite" in out
    assert "FAIL  live Pod: the Pod has no package-downloader init container" in out


def test_a_live_deployment_with_the_annotation_on_its_own_metadata(
    cluster: Cluster, registered: str, namespace: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    ns = namespace(registered)
    settings_configmap(cluster, ns, "settings", "{}\n")
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "annotations": {"package-url": URL}},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "example.invalid/app:1"}]},
            },
        },
    }
    create(cluster, ns, deployment, "deployments", "/apis/apps/v1")  # admitted with a warning
    code, out = run_explain(
        cluster, capsys, registered, "deploy/web", "-n", ns, "--settings-configmap", f"{ns}/settings"
    )
    assert code == 1
    assert f"Deployment {ns}/web: its Pods would NOT be injected" in out
    assert "fix: move the annotations to spec.template.metadata.annotations" in out


def test_settings_found_through_the_webhook_configurations_service(
    cluster: Cluster, registered: str, namespace: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The chart's layout: the ConfigMap is named like the Service the configuration calls."""
    ns = namespace(registered)
    settings_configmap(cluster, ns, "pi-settings", "require_checksum: true\n")
    # The webhook Deployment's own variables win over the file, in the Pod and here.
    webhook_deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "pi-settings"},
        "spec": {
            "selector": {"matchLabels": {"app": "pi"}},
            "template": {
                "metadata": {"labels": {"app": "pi"}},
                "spec": {
                    "containers": [
                        {
                            "name": "webhook",
                            "image": "example.invalid/package-injector:1",
                            "env": [
                                {"name": "PACKAGE_INJECTOR_ALLOWED_HOSTS", "value": '["other.example.com"]'}
                            ],
                        }
                    ]
                },
            },
        },
    }
    create(cluster, ns, webhook_deployment, "deployments", "/apis/apps/v1")
    name = f"explain-svc-{secrets.token_hex(3)}"
    inert_service_webhook(cluster, name, "pi-settings", ns)
    manifest = pod("web", {"package-url": URL})
    try:
        parser = argparse.ArgumentParser()
        explain.add_arguments(parser)
        path = cluster.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(manifest))
        code = explain.run(
            parser.parse_args(
                ["--kubeconfig", str(cluster.kubeconfig), "--name", name, "-n", ns, "-f", str(path)]
            )
        )
        out = capsys.readouterr().out
        # `inject --cluster-settings` reads the same ConfigMap the same way.
        injected = subprocess.run(
            [sys.executable, "-m", "webhook", "inject", "--cluster-settings", "--kubeconfig",
             str(cluster.kubeconfig), "--name", name, "-f", str(path)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        cluster.request("DELETE", f"{MWC_PATH}/{name}")
    assert code == 1, out
    assert f"settings: ConfigMap {ns}/pi-settings" in out
    assert '"package-sha256": is required in this cluster' in out
    assert 'host "packages.example.com" is not in the cluster allow-list (other.example.com)' in out
    assert f"and Deployment {ns}/pi-settings's environment" in out
    assert f"needs {name}-nobody In (x)" in out
    assert injected.returncode == 1, injected.stderr
    assert f"using the settings of ConfigMap {ns}/pi-settings" in injected.stderr
    assert '"package-sha256": is required in this cluster' in injected.stderr
