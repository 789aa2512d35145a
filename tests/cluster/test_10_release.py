"""Case 10: a release installed the way the README says: `make release` (scripts/release.sh) publishes both
images and the digest-pinned chart to a registry, then `helm install oci://...` on the cluster, the
kubelet pulls both images from the registry by digest, and an annotated Pod gets its package.

Where this differs from production, and why: the registry is Debian's docker-registry on 127.0.0.1 of this
machine, plain HTTP (PLAIN_HTTP=1; the Docker engine pushes to 127.0.0.0/8 without TLS). The node lives in
its own network namespace, where 127.0.0.1 is the node's own loopback; a second docker-registry process
there serves the same storage directory read-only on the same address, so image references and the chart
are byte-for-byte what was published, and the node's containerd really pulls them (over plain HTTP, set in
its hosts.toml, as a node is configured for such a registry). A production registry is remote and speaks
TLS; the pull path (kubelet -> containerd -> registry by digest) is the same.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.conftest import NamespaceFactory
from tests.cluster.live import ROOT, Live, pod_container_status
from tests.cluster.pkgserver import PackageServer, make_package
from tests.cluster.pods import package_annotations, pod
from tests.cluster.registry import plain_http_on_node, registry_in_netns
from tests.support.registry import start_registry
from tests.support.release import Published, published, release_tree, run_release

RELEASE = "package-injector"
RELEASE_NS = "package-injector"
VERSION = "0.1.0"


def _last_line(script: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / script)], env=env, capture_output=True, text=True, timeout=1200
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture
def released(live: Live, tmp_path: Path) -> Iterator[tuple[Published, Path]]:
    """A release of this tree to a registry on 127.0.0.1 (root namespace) and a read-only twin of it on
    the node's 127.0.0.1; yields what was published and the twin's log."""
    reg = start_registry(tmp_path / "registry")
    address = f"127.0.0.1:{reg.port}"
    try:
        engine = {**os.environ, "DOCKER_HOST": _last_line("dockerd.sh", dict(os.environ))}
        env = {
            **engine,
            "REGISTRY": f"{address}/platform",
            "VERSION": VERSION,
            "PLAIN_HTTP": "1",
            "BASE_IMAGE": _last_line("base-image.sh", engine),
            "HELM": live.helm_bin,
            "HOST_PIP": str(ROOT / ".venv" / "bin" / "pip"),
            "DOCKER_CONFIG": str(tmp_path / "docker-config"),
            "HELM_REGISTRY_CONFIG": str(tmp_path / "helm" / "registry.json"),
            "HELM_CACHE_HOME": str(tmp_path / "helm" / "cache"),
            "HELM_CONFIG_HOME": str(tmp_path / "helm" / "config"),
        }
        proc = run_release(release_tree(tmp_path / "src"), env)
        assert proc.returncode == 0, proc.stderr[-6000:]
        pub = published(proc.stdout)
        with (
            registry_in_netns(
                live, tmp_path / "twin", address, reg.workdir / "storage", readonly=True
            ) as log,
            plain_http_on_node(address),
        ):
            yield pub, log
    finally:
        reg.stop()


@pytest.fixture
def reinstall(live: Live) -> Iterator[None]:
    """Put the release back as scripts/cluster.sh installed it (from the checkout's chart)."""
    yield
    live.uninstall_release(RELEASE, RELEASE_NS)
    live.install_release(RELEASE, RELEASE_NS)


def test_helm_install_from_the_released_chart(
    live: Live,
    released: tuple[Published, Path],
    reinstall: None,
    server: PackageServer,
    package_root: Path,
    namespace: NamespaceFactory,
) -> None:
    pub, twin_log = released
    live.uninstall_release(RELEASE, RELEASE_NS)
    live.helm(
        "install",
        RELEASE,
        pub.chart,
        "--version",
        VERSION,
        "--plain-http",
        "-n",
        RELEASE_NS,
        "--create-namespace",
        "--wait",
        "--timeout",
        "5m",
    )
    # The webhook runs the pinned image, pulled from the registry by digest.
    webhook_pods = live.items(
        "pods", RELEASE_NS, "app.kubernetes.io/name=package-injector,app.kubernetes.io/component!=test"
    )
    assert webhook_pods
    for p in webhook_pods:
        (container,) = p["spec"]["containers"]
        assert container["image"] == pub.webhook
        assert pod_container_status(p, container["name"])["imageID"].endswith(pub.webhook.rsplit("@", 1)[1])

    ns = namespace()
    pkg = make_package(package_root, f"{ns}.tar.gz", {"released.txt": b"installed from oci://\n"})
    live.create(pod("p", package_annotations(server.url(pkg.name), pkg.sha256)), namespace=ns)
    p = live.wait_pod(ns, "p")
    (init,) = [c for c in p["spec"]["initContainers"] if c["name"] == "package-downloader"]
    assert init["image"] == pub.init  # what the webhook injects: the chart's pinned reference
    # (The status's `image` of a reference pinned by digest only is the image's config digest.)
    assert pod_container_status(p, "package-downloader")["imageID"].endswith(pub.init.rsplit("@", 1)[1])
    assert live.exec(ns, "p", "app0", "/bin/busybox", "cat", "/shared-data/diff-var-files/released.txt") == (
        "installed from oci://\n"
    )
    # The node fetched both manifests by digest from the registry in its namespace (helm fetched the chart
    # there too): a real pull, not the images the cluster script imported.
    text = twin_log.read_text()
    for name, ref in (("package-injector", pub.webhook), ("package-init-container", pub.init)):
        assert f"/v2/platform/{name}/manifests/{ref.rsplit('@', 1)[1]}" in text, text[-3000:]
    assert "/v2/platform/charts/package-injector/manifests/" in text
