"""What the supported apiservers (1.34+) do around the webhook, proven by the apiserver itself.

Before, these were render tests only (the e2e control plane was 1.20, which had none of them):

- `matchConditions` (CEL, evaluated by the apiserver): with the chart's configuration and
  `failurePolicy: Fail`, an unreachable webhook refuses annotated Pods with the apiserver's own message,
  while Pods and workloads without `package-url` are created; with the real webhook, its metrics show that
  unannotated Pods never reached it (and, without matchConditions, that they would have);
- native sidecars (`restartPolicy: Always` init containers): stored as such, the downloader placed after
  them, also when a later webhook (a mesh injector) prepends one and ours is re-invoked;
- Pod Security admission (`restricted`): the apiserver's verdict on injected Pods, with and without their
  own `runAsUser`, and its refusal of a non-compliant one (so the plugin is really enforcing).
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from initcontainer import contract
from tests.chart.helpers import one, render
from tests.e2e.conftest import pod, webhook_configuration
from tests.support import other_webhook
from tests.support.kube import MWC_PATH, Cluster
from tests.support.net import free_port
from tests.support.webhook import WebhookProcess, running_webhook

pytestmark = pytest.mark.e2e

URL = "https://packages.example.com/app/config-1.4.tar.gz"
PODS = "/api/v1/namespaces/{ns}/pods"
_ids = itertools.count()


def _create(cluster: Cluster, ns: str, manifest: dict[str, Any], dry_run: bool = False) -> tuple[int, Any]:
    suffix = "?dryRun=All" if dry_run else ""
    return cluster.request("POST", PODS.format(ns=ns) + suffix, manifest)


def _chart_configuration(url: str, ca_bundle: str, label: str, **webhook: Any) -> dict[str, Any]:
    """The chart's configuration as rendered (defaults: Fail, matchConditions), dialling `url`."""
    values = {"webhook": {"optIn": True, "namespaceLabel": label, **webhook}}
    mwc: dict[str, Any] = one(render(values, namespace="pi-release"), "MutatingWebhookConfiguration")
    mwc["metadata"] = {"name": f"features-{label.split('/')[0]}"}
    for hook in mwc["webhooks"]:
        hook["clientConfig"] = {"url": f"{url}/mutate", "caBundle": ca_bundle}
    return mwc


@contextlib.contextmanager
def _registered(cluster: Cluster, mwc: dict[str, Any], label: str) -> Iterator[str]:
    """Register `mwc`; yield a namespace it selects once an annotated dry-run shows it took effect."""
    status, body = cluster.request("POST", MWC_PATH, mwc)
    assert status == 201, body
    try:
        ns = f"features-{next(_ids)}-{secrets.token_hex(3)}"
        cluster.create_namespace(ns, {label: "enabled"})

        def active() -> bool:
            status, body = _create(cluster, ns, pod("probe", {"package-url": URL}), dry_run=True)
            # Injected by a reachable webhook, or refused by the apiserver for an unreachable one.
            return (status == 201 and bool(body["spec"].get("initContainers"))) or (
                status >= 500 and "failed calling webhook" in body.get("message", "")
            )

        cluster.wait_for(active, timeout=30, what="the configuration to take effect")
        yield ns
    finally:
        cluster.request("DELETE", f"{MWC_PATH}/{mwc['metadata']['name']}")


def _pod_reviews(hook: WebhookProcess) -> float:
    """AdmissionReviews of Pods the webhook answered, from its own /metrics."""
    with urllib.request.urlopen(hook.metrics_url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("package_injector_admission_requests_total{") and 'kind="Pod"' in line
    )


# --- matchConditions ------------------------------------------------------------------------------


def test_match_conditions_let_unannotated_objects_past_a_failing_webhook(
    cluster: Cluster, webhook_server: WebhookProcess
) -> None:
    """The webhook "scaled to zero": nothing listens where the configuration points, failurePolicy Fail."""
    label = f"features-down-{next(_ids)}.example.com/injection"
    closed = f"https://127.0.0.1:{free_port()}"
    mwc = _chart_configuration(closed, webhook_server.ca_bundle_b64, label)
    assert all(h["failurePolicy"] == "Fail" and h["matchConditions"] for h in mwc["webhooks"])
    with _registered(cluster, mwc, label) as ns:
        status, body = _create(cluster, ns, pod("annotated", {"package-url": URL}))
        assert status == 500, body
        assert 'failed calling webhook "pods.package-injector.dev"' in body["message"], body
        assert "connection refused" in body["message"], body
        status, body = _create(cluster, ns, pod("plain", {"other.example.com/note": "x"}))
        assert status == 201, body
        assert "initContainers" not in body["spec"]
        # The workload webhooks filter too: an unannotated Deployment is created, an annotated one is not.
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "plain"},
            "spec": {
                "selector": {"matchLabels": {"app": "plain"}},
                "template": {"metadata": {"labels": {"app": "plain"}}, "spec": pod("x")["spec"]},
            },
        }
        path = f"/apis/apps/v1/namespaces/{ns}/deployments"
        status, body = cluster.request("POST", path, deployment)
        assert status == 201, body
        deployment["metadata"]["name"] = "annotated"
        deployment["spec"]["template"]["metadata"]["annotations"] = {"package-url": URL}
        status, body = cluster.request("POST", path, deployment)
        assert status == 500 and 'failed calling webhook "workloads.package-injector.dev"' in body["message"]


@pytest.mark.parametrize(("match_conditions", "reaching"), [("auto", 0), (False, 3)])
def test_unannotated_pods_never_reach_the_webhook(
    cluster: Cluster, tmp_path: Path, match_conditions: Any, reaching: int
) -> None:
    """Counted by the webhook itself; without matchConditions the same Pods do reach it (the control)."""
    label = f"features-count-{next(_ids)}.example.com/injection"
    with running_webhook(tmp_path) as hook:
        mwc = _chart_configuration(hook.url, hook.ca_bundle_b64, label, matchConditions=match_conditions)
        with _registered(cluster, mwc, label) as ns:
            before = _pod_reviews(hook)
            for i in range(3):
                status, body = _create(cluster, ns, pod(f"plain-{i}"))
                assert status == 201, body
            assert _pod_reviews(hook) - before == reaching
            status, body = _create(cluster, ns, pod("annotated", {"package-url": URL}))
            assert status == 201 and body["spec"]["initContainers"][0]["name"] == contract.INIT_CONTAINER_NAME
            assert _pod_reviews(hook) - before >= reaching + 1


# --- native sidecars ------------------------------------------------------------------------------


def _native_sidecar(name: str) -> dict[str, Any]:
    return {"name": name, "image": "mesh.example/proxy:1", "restartPolicy": "Always"}


def test_a_native_sidecar_is_stored_and_stays_ahead_of_the_downloader(
    cluster: Cluster, registered: str
) -> None:
    ns = f"features-sidecar-{secrets.token_hex(3)}"
    cluster.create_namespace(ns, {registered: "enabled"})
    manifest = pod("meshed", {"package-url": URL})
    manifest["spec"]["initContainers"] = [_native_sidecar("proxy"), {"name": "migrate", "image": "app:1"}]
    status, stored = _create(cluster, ns, manifest)
    assert status == 201, stored
    init = stored["spec"]["initContainers"]
    assert [c["name"] for c in init] == ["proxy", contract.INIT_CONTAINER_NAME, "migrate"]
    # The apiserver kept the field (1.20 dropped it: the "sidecar" became an ordinary init container).
    assert init[0]["restartPolicy"] == "Always" and "restartPolicy" not in init[1]


def _prepend_native_sidecar(name: str) -> other_webhook.Patcher:
    """Like a mesh injector in native-sidecar mode: puts its proxy first among the init containers, once."""

    def mutate(obj: dict[str, Any]) -> list[dict[str, Any]]:
        init = obj["spec"].get("initContainers") or []
        if any(c["name"] == name for c in init):
            return []
        if not init:
            return [{"op": "add", "path": "/spec/initContainers", "value": [_native_sidecar(name)]}]
        return [{"op": "add", "path": "/spec/initContainers/0", "value": _native_sidecar(name)}]

    return mutate


def test_a_native_sidecar_added_after_us_ends_up_ahead_of_the_downloader(
    cluster: Cluster, webhook_server: WebhookProcess, tmp_path: Path
) -> None:
    label = f"features-mesh-{next(_ids)}"
    ours = webhook_configuration(f"a-{label}", webhook_server.url, webhook_server.ca_bundle_b64, label)
    with other_webhook.running_other_webhook(tmp_path, _prepend_native_sidecar("istio-proxy")) as mesh:
        theirs = webhook_configuration(f"z-{label}", mesh.url, mesh.ca_bundle_b64, label)
        theirs["webhooks"] = theirs["webhooks"][:1]
        theirs["webhooks"][0]["name"] = "sidecar.mesh.example"
        status, body = cluster.request("POST", MWC_PATH, theirs)
        assert status == 201, body
        try:
            with _registered(cluster, ours, label) as ns:

                def meshed() -> dict[str, Any] | None:
                    status, body = _create(cluster, ns, pod("meshed", {"package-url": URL}), dry_run=True)
                    names = (
                        [c["name"] for c in body["spec"].get("initContainers", [])] if status == 201 else []
                    )
                    return body if "istio-proxy" in names else None

                cluster.wait_for(meshed, timeout=30, what="the mesh webhook to take effect")
                status, stored = _create(cluster, ns, pod("meshed", {"package-url": URL}))
        finally:
            cluster.request("DELETE", f"{MWC_PATH}/{theirs['metadata']['name']}")
    assert status == 201, stored
    init = stored["spec"]["initContainers"]
    assert [c["name"] for c in init] == ["istio-proxy", contract.INIT_CONTAINER_NAME], init
    assert init[0]["restartPolicy"] == "Always"


# --- Pod Security admission -----------------------------------------------------------------------


def _restricted_pod(name: str, run_as_user: int | None) -> dict[str, Any]:
    manifest = pod(name, {"package-url": URL})
    security: dict[str, Any] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    if run_as_user is not None:
        security["runAsUser"] = run_as_user
    manifest["spec"]["securityContext"] = security
    manifest["spec"]["containers"][0]["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    return manifest


def test_pod_security_restricted_admits_injected_pods(cluster: Cluster, registered: str) -> None:
    """PodSecurity validates after the mutating webhooks: its verdict is on the Pod as injected."""
    ns = f"features-pss-{secrets.token_hex(3)}"
    cluster.create_namespace(ns, {registered: "enabled", "pod-security.kubernetes.io/enforce": "restricted"})
    for name, uid in (("own-uid", 1000), ("no-uid", None)):
        status, stored = _create(cluster, ns, _restricted_pod(name, uid))
        assert status == 201, stored
        assert stored["spec"]["initContainers"][0]["name"] == contract.INIT_CONTAINER_NAME
    # The plugin is enforcing: an annotated Pod that is not restricted itself is refused, by the apiserver.
    loose = pod("loose", {"package-url": URL})
    status, body = _create(cluster, ns, loose)
    assert status == 403, body
    assert 'violates PodSecurity "restricted:latest"' in body["message"], body
    assert contract.INIT_CONTAINER_NAME not in body["message"], "our container must not be the violation"
