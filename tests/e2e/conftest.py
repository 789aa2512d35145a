"""End-to-end fixtures: register the webhook with the real kube-apiserver."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.kube import Cluster
from tests.support.webhook import WebhookProcess

WORKLOAD_RULES = [
    {
        "apiGroups": ["apps"],
        "apiVersions": ["v1"],
        "operations": ["CREATE", "UPDATE"],
        "resources": ["deployments", "statefulsets", "daemonsets", "replicasets"],
    },
    {
        "apiGroups": ["batch"],
        "apiVersions": ["v1"],
        "operations": ["CREATE", "UPDATE"],
        "resources": ["jobs", "cronjobs"],
    },
]


def webhook_configuration(
    name: str,
    url: str,
    ca_bundle: str,
    namespace_label: str,
    *,
    failure_policy: str = "Fail",
    reinvocation: str = "IfNeeded",
) -> dict[str, Any]:
    """The MutatingWebhookConfiguration the chart renders, with clientConfig.url for 127.0.0.1."""
    common = {
        "clientConfig": {"url": f"{url}/mutate", "caBundle": ca_bundle},
        "admissionReviewVersions": ["v1", "v1beta1"],
        "sideEffects": "None",
        "failurePolicy": failure_policy,
        "timeoutSeconds": 5,
        "namespaceSelector": {"matchLabels": {namespace_label: "enabled"}},
    }
    pod_rules = [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}]
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "pods.package-injector.dev",
                "rules": pod_rules,
                "reinvocationPolicy": reinvocation,
                **common,
            },
            {"name": "workloads.package-injector.dev", "rules": WORKLOAD_RULES, **common},
        ],
    }


def pod(name: str, annotations: dict[str, str] | None = None, containers: int = 1) -> dict[str, Any]:
    """A minimal Pod manifest; `package-url` and friends go in annotations."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {
            "containers": [{"name": f"app{i}", "image": "example.invalid/app:1"} for i in range(containers)],
        },
    }


def namespace_for(cluster: Cluster, label: str) -> str:
    name = f"e2e-{secrets.token_hex(4)}"
    cluster.create_namespace(name, {label: "enabled"})
    return name


def _wait_until_active(cluster: Cluster, ns: str) -> None:
    """The apiserver picks up a new webhook configuration asynchronously: probe with a dry-run."""
    probe = pod("probe", {"package-url": "https://packages.example.com/probe.tar"})

    def injected() -> bool:
        status, body = cluster.request("POST", f"/api/v1/namespaces/{ns}/pods?dryRun=All", probe)
        return status == 201 and bool(body["spec"].get("initContainers"))

    cluster.wait_for(injected, timeout=30, what="the webhook configuration to take effect")


@pytest.fixture
def namespace(cluster: Cluster) -> Callable[..., str]:
    """Make a fresh namespace carrying the given label (so only our test webhooks see it)."""

    def make(label: str) -> str:
        return namespace_for(cluster, label)

    return make


@pytest.fixture
def registered(cluster: Cluster, webhook_server: WebhookProcess) -> Iterator[str]:
    """Register the running webhook for namespaces labelled with a per-test label; yield that label."""
    label = f"package-injector-e2e-{secrets.token_hex(4)}"
    mwc = webhook_configuration(
        f"a-package-injector-{label}", webhook_server.url, webhook_server.ca_bundle_b64, label
    )
    status, body = cluster.request(
        "POST", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", mwc
    )
    assert status == 201, body
    _wait_until_active(cluster, namespace_for(cluster, label))
    yield label
    cluster.request(
        "DELETE",
        f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{mwc['metadata']['name']}",
    )
