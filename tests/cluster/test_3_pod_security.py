"""Case 2: in a `restricted` namespace the apiserver's own Pod Security admission admits injected Pods."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster.conftest import NamespaceFactory
from tests.cluster.live import CommandError, Live, pod_container_status
from tests.cluster.pkgserver import PackageServer, make_package
from tests.cluster.pods import package_annotations, pod

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


def test_pod_security_admission_is_on(live: Live, namespace: NamespaceFactory) -> None:
    """The verdict below is the apiserver's: a non-compliant Pod in the same namespace is refused."""
    ns = namespace(RESTRICTED)
    bad = pod("bad")
    del bad["spec"]["containers"][0]["securityContext"]["capabilities"]
    with pytest.raises(CommandError) as err:
        live.create(bad, namespace=ns)
    assert 'violates PodSecurity "restricted:latest"' in err.value.stderr


@pytest.mark.parametrize("own_user", [True, False], ids=["runAsUser", "image-user"])
def test_injected_pods_are_admitted_and_run(
    live: Live, server: PackageServer, package_root: Path, namespace: NamespaceFactory, own_user: bool
) -> None:
    ns = namespace(RESTRICTED)
    pkg = make_package(package_root, f"{ns}.tar.gz", {"etc/x.conf": b"x = 1\n"})
    ann = package_annotations(server.url(pkg.name), pkg.sha256)
    manifest = pod("p", ann, run_as_user=1000 if own_user else None)
    live.create(manifest, namespace=ns)
    p = live.wait_pod(ns, "p")
    init = [c for c in p["spec"]["initContainers"] if c["name"] == "package-downloader"]
    assert len(init) == 1, "the webhook did not inject (admitted without a package?)"
    assert pod_container_status(p, "package-downloader")["state"]["terminated"]["exitCode"] == 0
    out = live.exec(ns, "p", "app0", "/bin/busybox", "cat", "/shared-data/diff-var-files/etc/x.conf")
    assert out == "x = 1\n"
