"""Namespace policies real clusters run alongside us: LimitRanger defaults and a ResourceQuota on limits.

The ResourceQuota admission plugin (validating, default-on) denies a Pod with a container lacking a limit the
quota counts; LimitRanger (mutating, default-on) fills the namespace's defaults into every container, ours
included, when the apiserver runs its plugins again after our patch. The cluster runs the resourcequota
controller, as real ones do (the plugin needs the quota's status).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import pod
from tests.e2e.test_real_cluster import (
    POLICIES,
    assert_real_and_converged,
    configured,
    create,
    downloader,
    new_label,
    ours,
    theirs,
    wait_others_active,
)
from tests.support import other_webhook
from tests.support.kube import Cluster
from tests.support.webhook import WebhookProcess

pytestmark = pytest.mark.e2e

URL = "https://packages.example.com/app/config-1.4.tar.gz"
DEFAULT_CPU_LIMIT = "300m"


def limited_namespace(cluster: Cluster, ns: str) -> None:
    """A LimitRange with default requests and limits, and a quota that makes every container need limits."""
    create(
        cluster,
        ns,
        {
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": {"name": "defaults"},
            "spec": {
                "limits": [
                    {
                        "type": "Container",
                        "default": {"cpu": DEFAULT_CPU_LIMIT, "memory": "200Mi"},
                        "defaultRequest": {"cpu": "20m", "memory": "32Mi"},
                    }
                ]
            },
        },
    )
    create(
        cluster,
        ns,
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "limits"},
            "spec": {"hard": {"limits.cpu": "10", "limits.memory": "10Gi", "pods": "20"}},
        },
    )

    def counted() -> bool:
        status, body = cluster.request("GET", f"/api/v1/namespaces/{ns}/resourcequotas/limits")
        return status == 200 and "hard" in body.get("status", {})

    cluster.wait_for(counted, timeout=60, what="the resourcequota controller to count the quota")


def memory_limit_everywhere(value: str) -> other_webhook.Patcher:
    """A resource-policy webhook: every container's memory limit becomes `value` (no patch once it is)."""

    def mutate(obj: dict[str, Any]) -> list[dict[str, Any]]:
        ops: list[dict[str, Any]] = []
        for key in ("initContainers", "containers"):
            for i, container in enumerate(obj["spec"].get(key) or []):
                resources = container.get("resources") or {}
                if (resources.get("limits") or {}).get("memory") == value:
                    continue
                path = f"/spec/{key}/{i}/resources"
                if not resources:
                    ops.append({"op": "add", "path": path, "value": {"limits": {"memory": value}}})
                elif "limits" not in resources:
                    ops.append({"op": "add", "path": f"{path}/limits", "value": {"memory": value}})
                else:
                    ops.append({"op": "add", "path": f"{path}/limits/memory", "value": value})
        return ops

    return mutate


@pytest.mark.parametrize("policy", POLICIES)
def test_limit_range_defaults_and_a_quota_on_limits(
    cluster: Cluster, webhook_server: WebhookProcess, policy: str
) -> None:
    label = new_label()
    with configured(cluster, label, ours(webhook_server, label, policy)) as ns:
        limited_namespace(cluster, ns)
        stored = create(cluster, ns, pod("web", {"package-url": URL}, containers=2))
        assert_real_and_converged(stored)
        limits = downloader(stored)["resources"]["limits"]
        assert limits == {"cpu": DEFAULT_CPU_LIMIT, "memory": "256Mi"}  # the default fills only what we leave


@pytest.mark.parametrize("policy", POLICIES)
def test_a_policy_changing_our_memory_limit_keeps_the_limit_range_default(
    cluster: Cluster, webhook_server: WebhookProcess, tmp_path: Path, policy: str
) -> None:
    """Another webhook after ours rewrites every memory limit; on reinvocation (after LimitRanger gave our
    container its CPU limit) we put ours back, and must leave the CPU limit there: LimitRanger does not run
    again after that round, and the quota denies a container without one."""
    label = new_label()
    with (
        other_webhook.running_other_webhook(tmp_path, memory_limit_everywhere("300Mi")) as hook,
        configured(
            cluster,
            label,
            ours(webhook_server, label, policy),
            theirs(f"z-limits-{label}", hook, label, policy),
        ) as ns,
    ):
        wait_others_active(cluster, ns, hook)
        limited_namespace(cluster, ns)
        stored = create(cluster, ns, pod("web", {"package-url": URL}))
        limits = downloader(stored)["resources"]["limits"]
        assert limits["cpu"] == DEFAULT_CPU_LIMIT
        assert limits["memory"] == "300Mi"  # theirs has the last word: ordered after ours
