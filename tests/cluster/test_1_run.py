"""Case 1: an annotated Deployment's Pods run with the package, on a real kubelet."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tests.cluster.conftest import NamespaceFactory
from tests.cluster.live import Live, pod_container_status
from tests.cluster.pkgserver import PackageServer, make_package
from tests.cluster.pods import MOUNT, deployment, package_annotations


def test_deployment_pods_run_with_the_package(
    live: Live, server: PackageServer, package_root: Path, namespace: NamespaceFactory
) -> None:
    check_deployment_runs_with_package(live, server, package_root, namespace())


def check_deployment_runs_with_package(
    live: Live, server: PackageServer, package_root: Path, ns: str
) -> None:
    """Case 1, shared with the kustomize install (case 9)."""
    pkg = make_package(
        package_root,
        f"{ns}.tar.gz",
        {"config/app.conf": b"listen = 8080\n", "data/blob.bin": os.urandom(300_000), "README": b"hello\n"},
    )
    live.apply(deployment("web", 2, package_annotations(server.url(pkg.name), pkg.sha256)), namespace=ns)
    live.kubectl("rollout", "status", "-n", ns, "deployment/web", "--timeout=240s", timeout=300)
    pods = live.items("pods", ns, "app=web")
    assert len(pods) == 2
    for p in pods:
        name = p["metadata"]["name"]
        p = live.wait_pod(ns, name)
        downloader = pod_container_status(p, "package-downloader")
        assert downloader["state"]["terminated"]["exitCode"] == 0, downloader
        for container in ("app0", "app1"):
            # Every main container sees every file, byte-identical to the archive's member.
            for path, data in pkg.files.items():
                out = live.exec(ns, name, container, "/bin/busybox", "sha256sum", f"{MOUNT}/{path}")
                assert out.split()[0] == hashlib.sha256(data).hexdigest(), (container, path)
            # ... and cannot write there.
            proc = live.kubectl(
                "exec",
                "-n",
                ns,
                name,
                "-c",
                container,
                "--",
                "/bin/busybox",
                "touch",
                f"{MOUNT}/new",
                check=False,
            )
            assert proc.returncode != 0
            assert "Read-only file system" in proc.stderr, proc.stderr
    # Each Pod downloaded into its own emptyDir.
    assert server.downloads(pkg.name) == 2

    # A container restart keeps the Pod's volume: no new download.
    name = pods[0]["metadata"]["name"]
    live.exec(ns, name, "app0", "/bin/busybox", "kill", "1")
    live.wait_for(
        "app0 restarted",
        lambda: pod_container_status(live.get("pod", name, ns), "app0").get("restartCount", 0) >= 1,
    )
    p = live.wait_pod(ns, name)
    assert pod_container_status(p, "package-downloader")["state"]["terminated"]["exitCode"] == 0
    out = live.exec(ns, name, "app0", "/bin/busybox", "sha256sum", f"{MOUNT}/README")
    assert out.split()[0] == hashlib.sha256(pkg.files["README"]).hexdigest()
    assert server.downloads(pkg.name) == 2
