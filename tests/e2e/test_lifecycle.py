"""Failure policy with the webhook down, and reinvocation after another webhook adds a container."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from initcontainer import contract
from tests.e2e.conftest import namespace_for, pod, webhook_configuration
from tests.support import other_webhook
from tests.support.kube import Cluster
from tests.support.webhook import WebhookProcess, running_webhook

pytestmark = pytest.mark.e2e

MWC_PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
URL = "https://packages.example.com/app.tar"


def register(cluster: Cluster, mwc: dict[str, Any]) -> None:
    status, body = cluster.request("POST", MWC_PATH, mwc)
    assert status == 201, body


def unregister(cluster: Cluster, mwc: dict[str, Any]) -> None:
    cluster.request("DELETE", f"{MWC_PATH}/{mwc['metadata']['name']}")


def test_webhook_down_with_failure_policy_fail_refuses_annotated_pods(
    cluster: Cluster, tmp_path: Path
) -> None:
    label = "package-injector-e2e-down"
    ns = namespace_for(cluster, label)
    mwc: dict[str, Any] | None = None
    try:
        with running_webhook(tmp_path) as hook:
            mwc = webhook_configuration("a-package-injector-down", hook.url, hook.ca_bundle_b64, label)
            register(cluster, mwc)

            def injected() -> bool:
                status, body = cluster.request(
                    "POST", f"/api/v1/namespaces/{ns}/pods?dryRun=All", pod("before", {"package-url": URL})
                )
                return status == 201 and bool(body["spec"].get("initContainers"))

            cluster.wait_for(injected, timeout=30, what="injection while the webhook is up")
        # The webhook process has stopped; its configuration is still registered.
        status, body = cluster.request(
            "POST", f"/api/v1/namespaces/{ns}/pods", pod("after", {"package-url": URL})
        )
        assert status == 500, body
        assert "failed calling webhook" in body["message"]
        status, _ = cluster.request("GET", f"/api/v1/namespaces/{ns}/pods/after")
        assert status == 404, "a pod that needs a package must never start without it"
    finally:
        if mwc is not None:
            unregister(cluster, mwc)


@pytest.fixture
def sidecar_webhook(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A second mutating webhook, like a service mesh injector: appends a `sidecar` container."""
    mesh = other_webhook.append_container("sidecar", "mesh:1")
    with other_webhook.running_other_webhook(tmp_path, mesh) as hook:
        yield hook.url, hook.ca_bundle_b64


def test_container_added_by_a_later_webhook_gets_the_mount(
    cluster: Cluster,
    webhook_server: WebhookProcess,
    sidecar_webhook: tuple[str, str],
    namespace: Callable[[str], str],
) -> None:
    label = "package-injector-e2e-reinvoke"
    ours = webhook_configuration(
        "a-package-injector-reinvoke", webhook_server.url, webhook_server.ca_bundle_b64, label
    )
    theirs = webhook_configuration("z-mesh-reinvoke", sidecar_webhook[0], sidecar_webhook[1], label)
    theirs["webhooks"] = theirs["webhooks"][:1]
    theirs["webhooks"][0]["name"] = "sidecar.mesh.example"
    register(cluster, ours)
    register(cluster, theirs)
    try:
        ns = namespace(label)

        def both_applied() -> dict[str, Any] | None:
            status, body = cluster.request(
                "POST", f"/api/v1/namespaces/{ns}/pods?dryRun=All", pod("probe", {"package-url": URL})
            )
            names = [c["name"] for c in body.get("spec", {}).get("containers", [])] if status == 201 else []
            return body if "sidecar" in names and body["spec"].get("initContainers") else None

        cluster.wait_for(both_applied, timeout=30, what="both webhooks to take effect")
        status, stored = cluster.request(
            "POST", f"/api/v1/namespaces/{ns}/pods", pod("meshed", {"package-url": URL})
        )
        assert status == 201, stored
        containers = {c["name"]: c for c in stored["spec"]["containers"]}
        assert set(containers) == {"app0", "sidecar"}
        for name in ("app0", "sidecar"):
            assert {
                "name": contract.VOLUME_NAME,
                "mountPath": contract.DEFAULT_DEST,
                "readOnly": True,
            } in containers[name]["volumeMounts"], name
        assert len(stored["spec"]["initContainers"]) == 1
        assert len([v for v in stored["spec"]["volumes"] if v["name"] == contract.VOLUME_NAME]) == 1
    finally:
        unregister(cluster, theirs)
        unregister(cluster, ours)
