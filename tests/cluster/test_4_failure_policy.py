"""Case 3: matchConditions keep non-annotated Pods away from the webhook; failurePolicy Fail refuses
annotated Pods while no webhook Pod runs."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.cluster.conftest import NamespaceFactory
from tests.cluster.live import CommandError, Live
from tests.cluster.pkgserver import PackageServer
from tests.cluster.pods import package_annotations, pod

RELEASE_NS = "package-injector"
DEPLOYMENT = "deployment/package-injector"
SELECTOR = "app.kubernetes.io/name=package-injector,app.kubernetes.io/component!=test"


def pod_reviews(live: Live) -> Counter[tuple[str, str]]:
    """AdmissionReviews of Pods answered by all webhook Pods, by (result, reason), read through the
    apiserver's pod proxy."""
    total: Counter[tuple[str, str]] = Counter()
    for p in live.items("pods", RELEASE_NS, SELECTOR):
        if p["status"].get("phase") != "Running":
            continue
        name = p["metadata"]["name"]
        text = live.kubectl(
            "get", "--raw", f"/api/v1/namespaces/{RELEASE_NS}/pods/{name}:8080/proxy/metrics"
        ).stdout
        for m in re.finditer(
            r"^package_injector_admission_requests_total\{([^}]*)\} ([0-9.e+]+)$", text, re.M
        ):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            if labels.get("kind") == "Pod":
                total[labels["result"], labels["reason"]] += int(float(m.group(2)))
    return total


@pytest.fixture
def webhook_restored(live: Live) -> Iterator[None]:
    yield
    live.kubectl("scale", "-n", RELEASE_NS, DEPLOYMENT, "--replicas=2")
    live.kubectl("rollout", "status", "-n", RELEASE_NS, DEPLOYMENT, "--timeout=180s", timeout=240)


def test_match_conditions_and_fail_closed(
    live: Live, server: PackageServer, namespace: NamespaceFactory, webhook_restored: None
) -> None:
    ns = namespace()
    # Pinned (a checksum; never fetched: dry-run and refused Pods), so no review carries the unpinned-package
    # warning, which would turn the reinvocation's ("skipped", "already-injected") into ("warned", ...).
    ann = package_annotations(server.url("never-fetched.tar.gz"), "0" * 64)
    # The configuration really carries matchConditions and Fail (rendered by the chart for this version).
    mwc = live.get("mutatingwebhookconfiguration", "package-injector")
    pods_hook = [w for w in mwc["webhooks"] if "pods" in w["rules"][0]["resources"]]
    assert pods_hook and pods_hook[0]["failurePolicy"] == "Fail" and pods_hook[0].get("matchConditions")

    before = pod_reviews(live)
    for i in range(3):
        live.create(pod(f"plain-{i}"), namespace=ns)
    assert pod_reviews(live) == before, "a Pod without package-url reached the webhook"
    live.kubectl("create", "-n", ns, "--dry-run=server", "-f", "-", input=_yaml(pod("annotated", ann)))
    # Injected exactly once. The apiserver then calls the webhook a second time (reinvocationPolicy
    # IfNeeded): it re-runs its own mutating plugins after a webhook's patch, ServiceAccount admission
    # mounts the token into the injected init container, so the Pod changed since our review. That
    # second review finds the Pod injected and leaves it alone; nothing else may reach the webhook.
    added = pod_reviews(live) - before
    assert added[("injected", "package-url")] == 1, added
    assert set(added) <= {("injected", "package-url"), ("skipped", "already-injected")}, added

    # No webhook Pod at all.
    live.kubectl("scale", "-n", RELEASE_NS, DEPLOYMENT, "--replicas=0")
    live.wait_for("webhook pods gone", lambda: not live.items("pods", RELEASE_NS, SELECTOR), timeout=120)
    live.create(pod("plain-while-down"), namespace=ns)
    with pytest.raises(CommandError) as err:
        live.create(pod("annotated-while-down", ann), namespace=ns)
    msg = err.value.stderr
    assert "failed calling webhook" in msg and "package-injector" in msg, msg
    with pytest.raises(CommandError):
        live.get("pod", "annotated-while-down", ns)


def _yaml(obj: object) -> str:
    import yaml

    return yaml.safe_dump(obj)
