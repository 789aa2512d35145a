"""oci:// through a real kube-apiserver: the stored Pod, the Pod's pull secrets, denials and warnings."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from initcontainer import contract
from tests.e2e.conftest import pod
from tests.support.kube import Cluster
from webhook.inject import PULL_SECRETS_VOLUME

pytestmark = pytest.mark.e2e

DIGEST = "sha256:" + "c" * 64


def test_oci_pod_gets_its_own_pull_secrets_and_a_tag_warning(
    cluster: Cluster, registered: str, namespace: Callable[[str], str]
) -> None:
    ns = namespace(registered)
    manifest = pod("oci", {"package-url": "oci://ghcr.io/team/site:v1"})
    manifest["spec"]["imagePullSecrets"] = [{"name": "ghcr"}, {"name": "mirror"}]
    result = cluster.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(manifest))
    assert "Warning:" in result.stderr and "tag without a digest" in result.stderr
    status, stored = cluster.request("GET", f"/api/v1/namespaces/{ns}/pods/oci")
    assert status == 200, stored
    init = stored["spec"]["initContainers"][0]
    env = {e["name"]: e.get("value") for e in init["env"]}
    assert env[contract.ENV_URL] == "oci://ghcr.io/team/site:v1"
    assert env[contract.ENV_CREDENTIALS_DIR] == contract.DEFAULT_CREDENTIALS_DIR
    (volume,) = [v for v in stored["spec"]["volumes"] if v["name"] == PULL_SECRETS_VOLUME]
    sources = volume["projected"]["sources"]
    assert [s["secret"]["name"] for s in sources] == ["ghcr", "mirror"]
    assert sources[0]["secret"]["items"] == [{"key": ".dockerconfigjson", "path": "ghcr/.dockerconfigjson"}]
    mounts = {m["name"]: m for m in init["volumeMounts"]}
    assert mounts[PULL_SECRETS_VOLUME]["readOnly"] is True
    for container in stored["spec"]["containers"]:
        assert PULL_SECRETS_VOLUME not in {m["name"] for m in container.get("volumeMounts", [])}


def test_pinned_docker_hub_name_is_stored_canonical(
    cluster: Cluster, registered: str, namespace: Callable[[str], str]
) -> None:
    ns = namespace(registered)
    result = cluster.kubectl(
        "create", "-n", ns, "-f", "-", input=json.dumps(pod("hub", {"package-url": f"oci://nginx@{DIGEST}"}))
    )
    assert "Warning:" not in result.stderr
    status, stored = cluster.request("GET", f"/api/v1/namespaces/{ns}/pods/hub")
    assert status == 200
    env = {e["name"]: e.get("value") for e in stored["spec"]["initContainers"][0]["env"]}
    assert env[contract.ENV_URL] == f"oci://docker.io/library/nginx@{DIGEST}"


@pytest.mark.parametrize(
    ("annotations", "fragment"),
    [
        ({"package-url": "oci://ghcr.io/Team/site:v1"}, "is not a valid oci:// reference"),
        (
            {"package-url": "oci://ghcr.io/team/site:v1", "package-sha256": "a" * 64},
            "does not apply to oci:// packages",
        ),
    ],
)
def test_bad_oci_annotations_are_denied_with_the_reason(
    cluster: Cluster,
    registered: str,
    namespace: Callable[[str], str],
    annotations: dict[str, str],
    fragment: str,
) -> None:
    ns = namespace(registered)
    assert fragment in cluster.create_denied(ns, pod("bad", annotations))
