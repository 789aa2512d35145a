"""The webhook called by a real kube-apiserver over TLS; what gets stored is what we promised."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from initcontainer import contract
from tests.e2e.conftest import namespace_for, pod, webhook_configuration
from tests.support.kube import Cluster
from tests.support.kubelet_env import container_env
from tests.support.webhook import running_webhook

pytestmark = pytest.mark.e2e

URL = "https://packages.example.com/app/config-1.4.tar.gz"
DIGEST = "a" * 64


def create(cluster: Cluster, ns: str, manifest: dict[str, Any], dry_run: bool = False) -> tuple[int, Any]:
    kind = manifest["kind"].lower() + "s"
    base = "/api/v1" if manifest["apiVersion"] == "v1" else f"/apis/{manifest['apiVersion']}"
    suffix = "?dryRun=All" if dry_run else ""
    return cluster.request("POST", f"{base}/namespaces/{ns}/{kind}{suffix}", manifest)


def get_pod(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    status, body = cluster.request("GET", f"/api/v1/namespaces/{ns}/pods/{name}")
    assert status == 200, body
    return body


def assert_injected(stored: dict[str, Any], mount_path: str = contract.DEFAULT_DEST) -> None:
    spec = stored["spec"]
    init = [c for c in spec.get("initContainers", []) if c["name"] == contract.INIT_CONTAINER_NAME]
    assert len(init) == 1, spec.get("initContainers")
    env = container_env(init[0])  # as the kubelet hands it over (stand-in: no kubelet here)
    assert env[contract.ENV_URL] == stored["metadata"]["annotations"]["package-url"]
    sc = init[0]["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert sc["readOnlyRootFilesystem"] is True
    rw = [m for m in init[0]["volumeMounts"] if m["name"] == contract.VOLUME_NAME]
    assert rw == [{"name": contract.VOLUME_NAME, "mountPath": contract.DEFAULT_DEST}]
    volumes = [v for v in spec["volumes"] if v["name"] == contract.VOLUME_NAME]
    assert len(volumes) == 1 and "emptyDir" in volumes[0]
    for container in spec["containers"]:
        mounts = [m for m in container.get("volumeMounts", []) if m["name"] == contract.VOLUME_NAME]
        assert mounts == [{"name": contract.VOLUME_NAME, "mountPath": mount_path, "readOnly": True}], (
            container
        )


def test_annotated_pod_is_stored_injected(
    cluster: Cluster, registered: str, namespace: Callable[[str], str]
) -> None:
    ns = namespace(registered)
    manifest = pod("web", {"package-url": URL, "package-sha256": DIGEST}, containers=2)
    status, body = create(cluster, ns, manifest)
    assert status == 201, body
    stored = get_pod(cluster, ns, "web")
    assert_injected(stored)
    env = {e["name"]: e.get("value") for e in stored["spec"]["initContainers"][0]["env"]}
    assert env[contract.ENV_SHA256] == DIGEST
    assert env[contract.ENV_DEST] == contract.DEFAULT_DEST
    status_keys = [k for k in stored["metadata"]["annotations"] if "status" in k]
    assert status_keys, stored["metadata"]["annotations"]


def test_unannotated_pod_is_untouched(
    cluster: Cluster, registered: str, namespace: Callable[[str], str]
) -> None:
    ns = namespace(registered)
    manifest = pod("plain")
    status, body = create(cluster, ns, manifest)
    assert status == 201, body
    stored = get_pod(cluster, ns, "plain")
    assert "initContainers" not in stored["spec"]
    assert not [v for v in stored["spec"].get("volumes", []) if v["name"] == contract.VOLUME_NAME]
    assert not stored["metadata"].get("annotations")


def test_custom_mount_path_and_selected_containers(
    cluster: Cluster, registered: str, namespace: Callable[[str], str]
) -> None:
    ns = namespace(registered)
    manifest = pod(
        "picky",
        {"package-url": URL, "package-mount-path": "/opt/config", "package-containers": "app1"},
        containers=2,
    )
    status, body = create(cluster, ns, manifest)
    assert status == 201, body
    containers = {c["name"]: c for c in get_pod(cluster, ns, "picky")["spec"]["containers"]}
    assert "volumeMounts" not in containers["app0"] or not [
        m for m in containers["app0"]["volumeMounts"] if m["name"] == contract.VOLUME_NAME
    ]
    assert {"name": contract.VOLUME_NAME, "mountPath": "/opt/config", "readOnly": True} in containers["app1"][
        "volumeMounts"
    ]


@pytest.mark.parametrize(
    ("annotations", "fragment"),
    [
        ({"package-url": "http://packages.example.com/a.tar"}, "https"),
        ({"package-url": "https://user:secret@packages.example.com/a.tar"}, "Secret"),
        ({"package-url": URL, "package-sha256": "abc"}, "package-sha256"),
        ({"package-url": URL, "package-mount-path": "/etc"}, "package-mount-path"),
        ({"package-url": URL, "package-containers": "nope"}, "nope"),
    ],
)
def test_invalid_annotation_is_rejected_with_the_message(
    cluster: Cluster,
    registered: str,
    namespace: Callable[[str], str],
    annotations: dict[str, str],
    fragment: str,
) -> None:
    ns = namespace(registered)
    stderr = cluster.create_denied(ns, pod("bad", annotations))
    assert fragment in stderr
    assert "secret@" not in stderr, "credentials from the URL must not be echoed back"
    status, _ = cluster.request("GET", f"/api/v1/namespaces/{ns}/pods/bad")
    assert status == 404


def test_warnings_reach_the_client(
    cluster: Cluster, registered: str, namespace: Callable[[str], str]
) -> None:
    ns = namespace(registered)
    manifest = pod("typo", {"package-url": URL, "package-sha265": DIGEST})
    result = cluster.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(manifest))
    assert "Warning:" in result.stderr
    assert 'did you mean "package-sha256"?' in result.stderr


UNPINNED = 'Warning: package-injector: "package-url" has no "package-sha256": the package is unverified'


def test_a_package_without_sha256_is_warned_once_at_kubectl(
    cluster: Cluster, registered: str, namespace: Callable[[str], str]
) -> None:
    ns = namespace(registered)
    unpinned = pod("unpinned", {"package-url": URL})
    result = cluster.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(unpinned))
    assert result.stderr.count(UNPINNED) == 1, result.stderr
    assert "downloaded again, not kept, each time the Pod's init containers re-run" in result.stderr
    assert_injected(get_pod(cluster, ns, "unpinned"))
    pinned = pod("pinned", {"package-url": URL, "package-sha256": DIGEST})
    result = cluster.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(pinned))
    assert "Warning:" not in result.stderr, result.stderr


def deployment(
    name: str, template_annotations: dict[str, str], meta_annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": meta_annotations or {}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": template_annotations},
                "spec": {"containers": [{"name": "app", "image": "example.invalid/app:1"}]},
            },
        },
    }


def test_deployment_with_bad_template_annotation_is_rejected_at_apply(
    cluster: Cluster, registered: str, namespace: Callable[[str], str]
) -> None:
    ns = namespace(registered)
    manifest = deployment("broken", {"package-url": URL, "package-strip-components": "many"})
    result = cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(manifest), check=False)
    assert result.returncode != 0
    assert "package-strip-components" in result.stderr


def test_annotation_on_deployment_metadata_only_warns(
    cluster: Cluster, registered: str, namespace: Callable[[str], str]
) -> None:
    ns = namespace(registered)
    manifest = deployment("misplaced", {}, meta_annotations={"package-url": URL})
    result = cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(manifest))
    assert "Warning:" in result.stderr and "template" in result.stderr


def test_deployment_pods_made_by_controllers_are_injected(
    cluster: Cluster, registered: str, namespace: Callable[[str], str]
) -> None:
    ns = namespace(registered)
    manifest = deployment("web", {"package-url": URL, "package-mount-path": "/srv/static"})
    status, body = create(cluster, ns, manifest)
    assert status == 201, body
    stored = cluster.request("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/web")[1]
    assert "initContainers" not in stored["spec"]["template"]["spec"], "workloads are never mutated"

    def pods() -> list[dict[str, Any]]:
        items = cluster.request("GET", f"/api/v1/namespaces/{ns}/pods")[1]["items"]
        return items if len(items) == 2 else []

    made = cluster.wait_for(pods, timeout=60, what="the controllers to create 2 pods")
    for item in made:
        assert item["metadata"]["generateName"].startswith("web-")
        assert_injected(item, mount_path="/srv/static")


def test_server_side_dry_run_returns_injected_and_stores_nothing(
    cluster: Cluster, registered: str, namespace: Callable[[str], str]
) -> None:
    ns = namespace(registered)
    manifest = pod("dry", {"package-url": URL})
    result = cluster.kubectl(
        "create", "--dry-run=server", "-o", "json", "-n", ns, "-f", "-", input=json.dumps(manifest)
    )
    assert_injected(json.loads(result.stdout))
    status, _ = cluster.request("GET", f"/api/v1/namespaces/{ns}/pods/dry")
    assert status == 404


def test_pull_secrets_setting_is_stored_on_injected_pods(cluster: Cluster, tmp_path: Path) -> None:
    """init_image_pull_secrets through the real apiserver: appended after the pod's own entries, recorded."""
    label = "package-injector-e2e-pull-secrets"
    settings = {"PACKAGE_INJECTOR_INIT_IMAGE_PULL_SECRETS": '["corp-registry"]'}
    mwc_path = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
    with running_webhook(tmp_path, settings) as hook:
        mwc = webhook_configuration("a-package-injector-pull-secrets", hook.url, hook.ca_bundle_b64, label)
        status, body = cluster.request("POST", mwc_path, mwc)
        assert status == 201, body
        try:
            ns = namespace_for(cluster, label)

            def active() -> bool:
                status, body = create(cluster, ns, pod("probe", {"package-url": URL}), dry_run=True)
                return status == 201 and bool(body["spec"].get("imagePullSecrets"))

            cluster.wait_for(active, timeout=30, what="the pull-secret webhook to take effect")
            own = pod("own", {"package-url": URL})
            own["spec"]["imagePullSecrets"] = [{"name": "app-registry"}, {"name": "corp-registry"}]
            for manifest in (pod("bare", {"package-url": URL}), own):
                status, body = create(cluster, ns, manifest)
                assert status == 201, body
            bare, listed = get_pod(cluster, ns, "bare"), get_pod(cluster, ns, "own")
            assert_injected(bare)
            assert bare["spec"]["imagePullSecrets"] == [{"name": "corp-registry"}]
            assert json.loads(bare["metadata"]["annotations"]["package-status"])["imagePullSecrets"] == [
                "corp-registry"
            ]
            assert listed["spec"]["imagePullSecrets"] == own["spec"]["imagePullSecrets"], "never duplicated"
            assert "imagePullSecrets" not in json.loads(listed["metadata"]["annotations"]["package-status"])
        finally:
            cluster.request("DELETE", f"{mwc_path}/{mwc['metadata']['name']}")


def test_downloader_resources_from_annotations_are_stored_and_capped(
    cluster: Cluster, registered: str, namespace: Callable[[str], str]
) -> None:
    """Per-Pod requests/limits reach the stored init container (as the apiserver writes quantities); a value
    above the cluster cap is denied with the cap, and nothing is stored."""
    ns = namespace(registered)
    annotations = {
        "package-url": URL,
        "package-init-requests-cpu": "0.25",
        "package-init-limits-memory": "1024Mi",
        "package-init-limits-ephemeral-storage": "2Gi",
    }
    status, body = create(cluster, ns, pod("big", annotations))
    assert status == 201, body
    stored = get_pod(cluster, ns, "big")
    assert_injected(stored)
    (init,) = [c for c in stored["spec"]["initContainers"] if c["name"] == contract.INIT_CONTAINER_NAME]
    # The apiserver defaults a request that has a limit but no request to the limit (ephemeral-storage here).
    assert init["resources"] == {
        "requests": {"cpu": "250m", "memory": "64Mi", "ephemeral-storage": "2Gi"},
        "limits": {"memory": "1Gi", "ephemeral-storage": "2Gi"},
    }
    status, body = create(cluster, ns, pod("default", {"package-url": URL}))
    assert status == 201, body
    (init,) = get_pod(cluster, ns, "default")["spec"]["initContainers"]
    assert init["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}

    too_big = {"package-url": URL, "package-init-limits-memory": "5Gi"}
    result = cluster.kubectl(
        "create", "-n", ns, "-f", "-", input=json.dumps(pod("huge", too_big)), check=False
    )
    assert result.returncode != 0
    assert 'annotation "package-init-limits-memory": 5Gi is above the cluster maximum of 4Gi' in result.stderr
    status, _ = cluster.request("GET", f"/api/v1/namespaces/{ns}/pods/huge")
    assert status == 404
