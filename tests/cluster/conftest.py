"""The one-node cluster of scripts/cluster.sh, started and torn down by this test session.

`live` runs `scripts/cluster.sh up` once (first run on a machine builds everything: see the README for
the cost), and `down` at the end of the session, then checks that nothing of it is left: no process in its
network namespace, no namespace, no mount, no cgroup, and the kubelet's global sysctls as they were.
KUBE_VERSION selects the Kubernetes version (default: the newest 1.37.x). CLUSTER_KEEP=1 (development only)
reuses a running cluster and leaves it running.
"""

from __future__ import annotations

import base64
import fcntl
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.live import ROOT, Live
from tests.cluster.pkgserver import Package, PackageServer, make_package, start_package_server

pytestmark = pytest.mark.cluster

NAME = os.environ.get("CLUSTER_NAME", "pi-cluster")
CLUSTER_DIR = Path(os.environ.get("CLUSTER_DIR", f"/tmp/package-injector-cluster/{NAME}"))
KUBELET_SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
)


def _sysctls() -> dict[str, str]:
    return {k: Path("/proc/sys/" + k.replace(".", "/")).read_text().strip() for k in KUBELET_SYSCTLS}


def _script(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "cluster.sh"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _leftovers() -> list[str]:
    """What a stopped cluster must not leave behind."""
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    if any(line.split()[0] == NAME for line in netns.splitlines() if line.strip()):
        found.append(f"network namespace {NAME}")
    mounts = Path("/proc/self/mounts").read_text()
    found += [f"mount {line.split()[1]}" for line in mounts.splitlines() if str(CLUSTER_DIR) in line]
    found += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob(f"*/{NAME}")]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(CLUSTER_DIR) in cmdline:
            found.append(f"process {proc.name}: {cmdline[:200]}")
    if CLUSTER_DIR.exists():
        found.append(f"directory {CLUSTER_DIR}")
    return found


@pytest.fixture(scope="session")
def live() -> Iterator[Live]:
    """A running cluster with both images loaded and the chart installed (release package-injector).

    The cluster is one per machine: the session holds an exclusive lock on CLUSTER_LOCK (default
    /tmp/package-injector-cluster.lock) from `up` to `down`, so two test runs on one machine take turns.
    """
    lock = open(os.environ.get("CLUSTER_LOCK", "/tmp/package-injector-cluster.lock"), "a")  # noqa: SIM115
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        yield from _live()
    finally:
        lock.close()


def _live() -> Iterator[Live]:
    before = _sysctls()
    up = _script("up", timeout=5000)
    if up.returncode != 0:
        down = _script("down", timeout=300)
        pytest.fail(
            f"scripts/cluster.sh up failed ({up.returncode}):\n{up.stderr[-8000:]}\n{down.stderr[-2000:]}"
        )
    exports = dict(
        line.removeprefix("export ").split("=", 1)
        for line in up.stdout.splitlines()
        if line.startswith("export ")
    )
    last3 = [line.split("=", 1)[0] for line in up.stdout.strip().splitlines()[-3:]]
    assert last3 == ["export KUBECONFIG", "export CLUSTER_HOST_IP", "export CLUSTER_NETNS"], up.stdout[-500:]
    cluster = Live(
        kubeconfig=exports["KUBECONFIG"],
        host_ip=exports["CLUSTER_HOST_IP"],
        netns=exports["CLUSTER_NETNS"],
        kubectl_bin=exports["CLUSTER_KUBECTL"],
        helm_bin=exports["CLUSTER_HELM"],
        version=exports["CLUSTER_VERSION"],
    )
    yield cluster
    if os.environ.get("CLUSTER_KEEP") == "1":  # development only: keep it for the next run
        return
    down = _script("down", timeout=300)
    assert down.returncode == 0, down.stderr[-4000:]
    assert _leftovers() == []
    assert _sysctls() == before, "scripts/cluster.sh down did not restore the kubelet's sysctls"


@pytest.fixture(scope="session")
def package_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory the package server serves."""
    return tmp_path_factory.mktemp("packages")


@pytest.fixture(scope="session")
def packages(package_root: Path) -> dict[str, Package]:
    """Test packages: `app` (a few files, nested, one binary) and `job` (one file)."""
    root = package_root
    return {
        "app": make_package(
            root,
            "app.tar.gz",
            {
                "config/app.conf": b"listen = 8080\nname = demo\n",
                "data/blob.bin": os.urandom(300_000),
                "README": b"package for the cluster tests\n",
            },
        ),
        "job": make_package(root, "job.tar.gz", {"input.txt": b"42\n"}),
    }


@pytest.fixture(scope="session")
def server(
    live: Live, package_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PackageServer]:
    """nginx in the cluster's network namespace on CLUSTER_HOST_IP, serving `package_root` over HTTPS."""
    srv = start_package_server(live.netns, live.host_ip, 8443, package_root, tmp_path_factory.mktemp("nginx"))
    yield srv
    srv.stop()


NamespaceFactory = Callable[..., str]


@pytest.fixture
def namespace(live: Live, server: PackageServer) -> Iterator[NamespaceFactory]:
    """Make a fresh namespace (optionally labelled) holding the Secrets `pkg-ca` (ca.crt of the package
    server) and `pkg-basic` (its basic-auth user, password and ca.crt); deleted after the test."""
    made: list[str] = []

    def make(labels: dict[str, str] | None = None) -> str:
        name = f"t-{uuid.uuid4().hex[:8]}"
        live.namespace(name, labels)
        ca = base64.b64encode(server.ca_pem.encode()).decode()
        live.apply(
            secret("pkg-ca", {"ca.crt": ca}),
            secret(
                "pkg-basic",
                {
                    "ca.crt": ca,
                    "username": base64.b64encode(server.user.encode()).decode(),
                    "password": base64.b64encode(server.password.encode()).decode(),
                },
            ),
            namespace=name,
        )
        made.append(name)
        return name

    yield make
    for name in made:
        live.kubectl("delete", "namespace", name, "--wait=false", check=False)


def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque", "data": data}
