"""Case 6: `package-secret` with basic auth against nginx, and the init image pulled from a private
registry with auth through the chart's `initContainer.imagePullSecrets`."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import images
from tests.cluster.conftest import NamespaceFactory
from tests.cluster.live import ROOT, Live, pod_container_status
from tests.cluster.pkgserver import PackageServer, make_package
from tests.cluster.pods import package_annotations, pod
from tests.support.nginx import make_test_ca

RELEASE = "package-injector"
RELEASE_NS = "package-injector"
REGISTRY_PORT = 5443


def test_basic_auth_from_package_secret(
    live: Live, server: PackageServer, package_root: Path, namespace: NamespaceFactory
) -> None:
    ns = namespace()
    pkg = make_package(package_root, f"{ns}.tar.gz", {"secret.txt": b"behind auth\n"})
    url = server.url(pkg.name, "basic")
    # Without credentials nginx answers 401 and the Pod does not start.
    live.create(pod("anon", package_annotations(url, pkg.sha256, secret="pkg-ca")), namespace=ns)
    live.wait_for(
        "the anonymous download to fail", lambda: _downloader_terminated(live, ns, "anon"), timeout=120
    )
    # With the Secret's username and password it does.
    live.create(pod("authed", package_annotations(url, pkg.sha256, secret="pkg-basic")), namespace=ns)
    live.wait_pod(ns, "authed")
    assert live.exec(
        ns, "authed", "app0", "/bin/busybox", "cat", "/shared-data/diff-var-files/secret.txt"
    ) == ("behind auth\n")
    entries = [r for r in server.requests() if r["uri"].endswith(pkg.name)]
    assert {r["status"] for r in entries if r["auth"] == server.user} == {200}
    assert all(r["status"] == 401 for r in entries if r["auth"] != server.user)


def _downloader_terminated(live: Live, ns: str, name: str) -> dict[str, Any] | None:
    """The downloader's (last) terminated state; None until the kubelet has reported the container at all."""
    try:
        status = pod_container_status(live.get("pod", name, ns), "package-downloader")
    except KeyError:
        return None
    found = status.get("lastState", {}).get("terminated") or status.get("state", {}).get("terminated")
    return dict(found) if found else None


@dataclass
class Registry:
    address: str
    user: str
    password: str
    log: Path
    hosts_dir: Path


@pytest.fixture
def registry(live: Live, tmp_path: Path) -> Iterator[Registry]:
    """Debian's docker-registry in the cluster's namespace on CLUSTER_HOST_IP, TLS and htpasswd (bcrypt)
    auth; the node's containerd trusts its CA through a hosts.toml (as a node would be configured)."""
    address = f"{live.host_ip}:{REGISTRY_PORT}"
    ca = make_test_ca(tmp_path / "tls", hosts=(live.host_ip,))
    user, password = "puller", "reg-" + os.urandom(6).hex()
    subprocess.run(
        ["htpasswd", "-Bbc", str(tmp_path / "htpasswd"), user, password], check=True, capture_output=True
    )
    (tmp_path / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: info\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
        f"auth:\n  htpasswd:\n    realm: test\n    path: {tmp_path / 'htpasswd'}\n"
        f"http:\n  addr: {address}\n  tls:\n    certificate: {ca.cert_path}\n    key: {ca.key_path}\n"
    )
    cluster_dir = Path(
        subprocess.run(
            ["bash", str(ROOT / "scripts" / "cluster.sh"), "dir"], capture_output=True, text=True
        ).stdout.strip()
    )
    hosts = cluster_dir / "certs.d" / address
    hosts.mkdir(parents=True, exist_ok=True)
    (hosts / "ca.crt").write_text(ca.ca_pem)
    (hosts / "hosts.toml").write_text(
        f'server = "https://{address}"\n'
        f'[host."https://{address}"]\n  capabilities = ["pull", "resolve", "push"]\n'
        f'  ca = "{hosts / "ca.crt"}"\n'
    )
    log = tmp_path / "registry.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            live.in_netns("/usr/bin/docker-registry", "serve", str(tmp_path / "config.yml")),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while "listening on" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield Registry(address, user, password, log, cluster_dir / "certs.d")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        subprocess.run(["rm", "-rf", str(hosts)], check=False)


@pytest.fixture
def reinstall(live: Live) -> Iterator[None]:
    yield
    live.uninstall_release(RELEASE, RELEASE_NS)
    live.install_release(RELEASE, RELEASE_NS)


def test_init_image_from_private_registry(
    live: Live,
    server: PackageServer,
    package_root: Path,
    namespace: NamespaceFactory,
    registry: Registry,
    reinstall: None,
    tmp_path: Path,
) -> None:
    ref = f"{registry.address}/private/package-init-container:auth-test"
    # The init image under another image ID (one more label): pulled with a Secret, the preloaded one's ID
    # would make the kubelet re-pull it for every later Pod without that Secret (tests/cluster/images.py).
    images.derive(
        "docker.io/library/package-init-container:cluster", ref, "package-injector.test/copy", tmp_path
    )
    images.ctr(
        "images",
        "push",
        "--hosts-dir",
        str(registry.hosts_dir),
        "--user",
        f"{registry.user}:{registry.password}",
        ref,
    )
    # Not in the node's store any more: the kubelet must pull it, with the pull secret.
    images.ctr("images", "rm", ref)
    assert ref not in images.refs()

    ns = namespace()
    auth = base64.b64encode(f"{registry.user}:{registry.password}".encode()).decode()
    dockerconfig = json.dumps({"auths": {registry.address: {"auth": auth}}})
    live.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "regcred"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(dockerconfig.encode()).decode()},
        },
        namespace=ns,
    )
    live.helm(
        "upgrade",
        RELEASE,
        str(ROOT / "charts" / "package-injector"),
        "-n",
        RELEASE_NS,
        "--reuse-values",
        "--set",
        f"initContainer.image.registry={registry.address}/private",
        "--set",
        "initContainer.image.tag=auth-test",
        "--set",
        "initContainer.imagePullSecrets={regcred}",
        "--wait",
    )
    live.wait_rollout(RELEASE_NS, "package-injector")
    pkg = make_package(package_root, f"{ns}.tar.gz", {"r.txt": b"from a private image\n"})
    live.create(pod("p", package_annotations(server.url(pkg.name), pkg.sha256)), namespace=ns)
    p = live.wait_pod(ns, "p")
    assert {"name": "regcred"} in p["spec"]["imagePullSecrets"]
    assert pod_container_status(p, "package-downloader")["image"].endswith("package-init-container:auth-test")
    # The registry served the image to an authenticated client.
    text = registry.log.read_text()
    assert f'auth.user.name="{registry.user}"' in text or f"auth.user.name={registry.user}" in text, text[
        -3000:
    ]
    assert "/v2/private/package-init-container/manifests/auth-test" in text
