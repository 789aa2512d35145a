"""Case 11: `package-url: oci://...` from a registry with auth, credentials from the Pod's own
`imagePullSecrets` (no `package-secret`): the artifact `oras push` made lands in the app containers.

Where this differs from production, and why: the registry (Debian's docker-registry, htpasswd) speaks plain
HTTP, listed in the cluster policy's `plainHttpRegistries`. Without `package-secret` the init container has
no way to trust a private CA (a `ca.crt` travels only in a `package-secret`), so a TLS registry here would
need a publicly trusted certificate, which a test machine without network cannot have.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.conftest import NamespaceFactory
from tests.cluster.live import ROOT, Live, pod_container_status
from tests.cluster.pods import pod
from tests.cluster.registry import registry_in_netns
from tests.support.registry import oci_tools_bin

RELEASE = "package-injector"
RELEASE_NS = "package-injector"
REGISTRY_PORT = 5444
FILES = {"app.conf": b"listen = 8080\nname = from-oci\n", "README": b"pushed with oras\n"}


@pytest.fixture
def registry(live: Live, tmp_path: Path) -> Iterator[tuple[str, str, str, Path]]:
    """(address, user, password, log) of an htpasswd registry on CLUSTER_HOST_IP in the namespace."""
    user, password = "puller", "oci-" + os.urandom(6).hex()
    htpasswd = tmp_path / "htpasswd"
    subprocess.run(["htpasswd", "-Bbc", str(htpasswd), user, password], check=True, capture_output=True)
    address = f"{live.host_ip}:{REGISTRY_PORT}"
    with registry_in_netns(live, tmp_path / "reg", address, tmp_path / "storage", htpasswd=htpasswd) as log:
        yield address, user, password, log


@pytest.fixture
def plain_http_policy(live: Live) -> Iterator[None]:
    live.helm(
        "upgrade",
        RELEASE,
        str(ROOT / "charts" / "package-injector"),
        "-n",
        RELEASE_NS,
        "--reuse-values",
        "--set",
        f"policy.plainHttpRegistries={{{live.host_ip}}}",
        "--wait",
    )
    # Until the Pods with the old settings are gone: they would inject without the plain-http registry.
    live.wait_rollout(RELEASE_NS, "package-injector")
    live.wait_serving()
    yield
    live.uninstall_release(RELEASE, RELEASE_NS)
    live.install_release(RELEASE, RELEASE_NS)


def oras_push(live: Live, tmp_path: Path, ref: str, user: str, password: str) -> str:
    """Push FILES as file layers (what `oras push FILE...` makes); returns the manifest digest."""
    src = tmp_path / "artifact"
    src.mkdir()
    for name, data in FILES.items():
        (src / name).write_bytes(data)
    oras = str(oci_tools_bin() / "oras")
    out = subprocess.run(
        live.in_netns(oras, "push", "--plain-http", "-u", user, "--password-stdin", ref, *FILES),
        input=password,
        cwd=src,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    match = re.search(r"^Digest: (sha256:[0-9a-f]{64})$", out.stdout, re.M)
    assert match, out.stdout
    return match.group(1)


def test_oci_package_with_the_pods_own_pull_secret(
    live: Live,
    registry: tuple[str, str, str, Path],
    plain_http_policy: None,
    namespace: NamespaceFactory,
    tmp_path: Path,
) -> None:
    address, user, password, log = registry
    digest = oras_push(live, tmp_path, f"{address}/team/app-config:v1", user, password)
    ns = namespace()
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    dockerconfig = json.dumps({"auths": {address: {"auth": auth}}})
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
    url = f"oci://{address}/team/app-config@{digest}"

    # Without a pull secret the registry answers 401 and the Pod does not start.
    live.create(pod("anon", {"package-url": url}), namespace=ns)

    def anon_failed() -> object:
        status = pod_container_status(live.get("pod", "anon", ns), "package-downloader")
        return status.get("lastState", {}).get("terminated") or status.get("state", {}).get("terminated")

    failed = live.wait_for("the anonymous download to fail", anon_failed, timeout=120)
    assert failed["exitCode"] != 0, failed

    # With the Pod's own imagePullSecrets (no package-secret) it does.
    manifest = pod("authed", {"package-url": url})
    manifest["spec"]["imagePullSecrets"] = [{"name": "regcred"}]
    live.create(manifest, namespace=ns)
    p = live.wait_pod(ns, "authed")
    init = next(c for c in p["spec"]["initContainers"] if c["name"] == "package-downloader")
    volumes = {v["name"]: v for v in p["spec"]["volumes"]}
    assert "package-credentials" not in volumes  # no package-secret
    sources = volumes["package-pull-secrets"]["projected"]["sources"]
    assert [s["secret"]["name"] for s in sources] == ["regcred"]
    assert {"name": "PACKAGE_ALLOW_HTTP", "value": "true"} in init["env"]
    for name, data in FILES.items():
        got = live.exec(ns, "authed", "app0", "/bin/busybox", "cat", f"/shared-data/diff-var-files/{name}")
        assert got == data.decode()
    # The registry served the manifest by digest to the authenticated user.
    text = log.read_text()
    assert f"/v2/team/app-config/manifests/{digest}" in text
    assert f'auth.user.name="{user}"' in text or f"auth.user.name={user}" in text, text[-3000:]
