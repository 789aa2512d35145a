"""Case 8: `helm test` runs the chart's check Pod in the cluster; an upgrade and the loss of a webhook Pod
fail no Pod creation; `helm uninstall` leaves nothing that blocks Pods."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
import yaml

from tests.cluster.conftest import NamespaceFactory
from tests.cluster.live import ROOT, Live
from tests.cluster.pkgserver import PackageServer
from tests.cluster.pods import package_annotations, pod

RELEASE = "package-injector"
RELEASE_NS = "package-injector"
SELECTOR = "app.kubernetes.io/name=package-injector,app.kubernetes.io/component!=test"
CHART = str(ROOT / "charts" / "package-injector")
# Where the chart's defaults pull from (scripts/cluster.sh tags the loaded images under it).
IMAGE_REGISTRY = yaml.safe_load((ROOT / "charts" / "package-injector" / "values.yaml").read_text())[
    "imageRegistry"
]


class CreateLoop:
    """Creates annotated Pods one after another until stopped; records every failure's message.

    The Pods ask for a node label no node has, so they stay Pending: each is a real, stored create through
    the whole admission chain, without making the kubelet start hundreds of Pods on two cores.
    """

    def __init__(self, live: Live, ns: str, url: str, prefix: str) -> None:
        self.live, self.ns, self.url, self.prefix = live, ns, url, prefix
        self.created = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            manifest = pod(f"{self.prefix}-{i}", package_annotations(self.url, None))
            manifest["spec"]["nodeSelector"] = {"package-injector.test/never": "true"}
            proc = self.live.kubectl(
                "create", "-n", self.ns, "-o", "yaml", "-f", "-", input=yaml.safe_dump(manifest), check=False
            )
            if proc.returncode != 0:
                self.failures.append(proc.stderr.strip())
            elif "package-downloader" not in proc.stdout:
                self.failures.append(f"{self.prefix}-{i} stored without injection")
            else:
                self.created += 1
            i += 1

    def __enter__(self) -> CreateLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)


def webhook_pods(live: Live) -> list[str]:
    return [p["metadata"]["name"] for p in live.items("pods", RELEASE_NS, SELECTOR)]


def tag_image(new_tag: str) -> None:
    subprocess.run(
        [
            "bash",
            str(ROOT / "scripts" / "cluster.sh"),
            "ctr",
            "images",
            "tag",
            "--force",
            "docker.io/library/package-injector:cluster",
            f"{IMAGE_REGISTRY}/package-injector:{new_tag}",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture
def reinstall(live: Live) -> Iterator[None]:
    """Put the release back as scripts/cluster.sh installed it, whatever the test did."""
    yield
    live.uninstall_release(RELEASE, RELEASE_NS)
    live.install_release(RELEASE, RELEASE_NS, CHART)


def test_helm_test_upgrade_disruption_uninstall(
    live: Live, server: PackageServer, namespace: NamespaceFactory, reinstall: None
) -> None:
    # helm test: the chart's check Pod runs in the cluster and passes.
    out = live.helm(
        "test", RELEASE, "-n", RELEASE_NS, "--logs", "--timeout", "5m"
    ).stdout  # raises on failure
    assert "Succeeded" in out and "check" in out, out

    ns = namespace()
    url = server.url("never-fetched.tar.gz")
    # An upgrade to another image (a rolling update of both webhook Pods) while Pods are created.
    tag_image("cluster-upgrade")
    before = set(webhook_pods(live))
    with CreateLoop(live, ns, url, "upgrade") as loop:
        live.helm(
            "upgrade",
            RELEASE,
            CHART,
            "-n",
            RELEASE_NS,
            "--reuse-values",
            "--set",
            "image.tag=cluster-upgrade",
            "--wait",
            "--timeout",
            "5m",
        )
        # ... until the old Pods finished draining: creates go on through their shutdown.
        live.wait_rollout(RELEASE_NS, "package-injector")
        time.sleep(2)
    after = set(webhook_pods(live))
    assert not before & after, "the upgrade replaced no webhook Pod"
    images = {c["image"] for n in after for c in live.get("pod", n, RELEASE_NS)["spec"]["containers"]}
    assert images == {f"{IMAGE_REGISTRY}/package-injector:cluster-upgrade"}, images
    assert loop.failures == [] and loop.created > 0, loop.failures[:3]

    # One of the two webhook Pods deleted while Pods are created.
    victim = sorted(after)[0]
    with CreateLoop(live, ns, url, "disruption") as loop:
        time.sleep(2)
        live.kubectl("delete", "pod", "-n", RELEASE_NS, victim, "--wait=true", timeout=120)
        live.kubectl(
            "rollout",
            "status",
            "-n",
            RELEASE_NS,
            "deployment/package-injector",
            "--timeout=300s",
            timeout=330,
        )
        live.wait_for("two ready webhook Pods", lambda: _ready_count(live) == 2, timeout=180)
        time.sleep(2)
    assert loop.failures == [] and loop.created > 0, loop.failures[:3]

    # helm uninstall: no webhook configuration left, annotated Pods are created (not injected).
    live.helm("uninstall", RELEASE, "-n", RELEASE_NS, "--wait")
    mwcs = live.kubectl("get", "mutatingwebhookconfigurations", "-o", "name").stdout
    assert "package-injector" not in mwcs, mwcs
    created = live.kubectl(
        "create",
        "-n",
        ns,
        "-o",
        "yaml",
        "-f",
        "-",
        input=yaml.safe_dump(pod("after-uninstall", package_annotations(url, None))),
    ).stdout
    assert "package-downloader" not in created


def _ready_count(live: Live) -> int:
    n = 0
    for p in live.items("pods", RELEASE_NS, SELECTOR):
        conds = {c["type"]: c["status"] for c in p["status"].get("conditions", [])}
        if conds.get("Ready") == "True" and not p["metadata"].get("deletionTimestamp"):
            n += 1
    return n
