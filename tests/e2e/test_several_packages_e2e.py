"""Several packages per Pod through the real kube-apiserver: a Pod with named packages is stored as
promised (each package's volume, Secret volume, mounts, PACKAGE_LIST entry and status record, converged
as stored), the stored init container's environment installs every package with the real init program
(two from nginx, one from moto S3), conflicts and the cap are denied with their fix, and a dump re-created
without one package's key is stored without that package.

Where this differs from a cluster: there is no kubelet here, so the test plays its part for the init
container (each package's directory and Secret mount move under tmp_path, the Secret's keys become files);
nginx and moto speak plain http on 127.0.0.1 (allowed by this webhook's settings), a cluster would use https.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from initcontainer import contract
from tests.e2e.conftest import namespace_for, pod, webhook_configuration
from tests.initcontainer.test_main import run
from tests.support.kube import Cluster
from tests.support.kubelet_env import container_env
from tests.support.nginx import NginxServer, run_nginx
from tests.support.packages import FILES_A, FILES_B, PKG_B, SHA_A, SHA_B, visible, write_packages
from tests.support.s3server import MotoS3, run_moto
from tests.support.webhook import running_webhook
from webhook.inject import inject
from webhook.settings import Settings

pytestmark = pytest.mark.e2e

MWC_PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
S3_URL = "s3://packages/models/v7.tgz"


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxServer]:
    with run_nginx(
        write_packages(tmp_path_factory.mktemp("www")), tmp_path_factory.mktemp("nginx")
    ) as server:
        yield server


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    with run_moto(tmp_path_factory.mktemp("moto"), {"packages/models/v7.tgz": PKG_B}) as server:
        yield server


@pytest.fixture(scope="module")
def settings_env(s3: MotoS3) -> dict[str, str]:
    return {
        "PACKAGE_INJECTOR_ALLOWED_SCHEMES": '["https", "http", "s3"]',
        "PACKAGE_INJECTOR_S3_REGION": "us-east-1",
        "PACKAGE_INJECTOR_S3_ENDPOINT": s3.url,
        "PACKAGE_INJECTOR_MAX_PACKAGES_PER_POD": "3",
    }


@pytest.fixture(scope="module")
def ns(
    cluster: Cluster, settings_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    label = "package-injector-e2e-several"
    with running_webhook(tmp_path_factory.mktemp("webhook-several"), settings_env) as hook:
        mwc = webhook_configuration("a-package-injector-several", hook.url, hook.ca_bundle_b64, label)
        status, body = cluster.request("POST", MWC_PATH, mwc)
        assert status == 201, body
        try:
            namespace = namespace_for(cluster, label)
            probe = pod("probe", {"package-url.probe": "https://packages.example.com/probe.tar"})

            def active() -> bool:
                status, body = cluster.request(
                    "POST", f"/api/v1/namespaces/{namespace}/pods?dryRun=All", probe
                )
                return status == 201 and bool(body["spec"].get("initContainers"))

            cluster.wait_for(active, timeout=30, what="the webhook configuration to take effect")
            yield namespace
        finally:
            cluster.request("DELETE", f"{MWC_PATH}/{mwc['metadata']['name']}")


def annotations_for(nginx: NginxServer) -> dict[str, str]:
    return {
        "package-url.tools": nginx.url("a.tgz"),
        "package-sha256.tools": SHA_A,
        "package-url.extra": nginx.url("b.tgz"),
        "package-strip-components.extra": "1",
        "package-mount-path.extra": "/app/extra",
        "package-containers.extra": "app0",
        "package-url.models": S3_URL,
        "package-sha256.models": SHA_B,
        "package-secret.models": "models-reader",
    }


def create(cluster: Cluster, ns: str, manifest: dict[str, Any]) -> dict[str, Any]:
    status, body = cluster.request("POST", f"/api/v1/namespaces/{ns}/pods", manifest)
    assert status == 201, body
    return dict(body)


def test_a_pod_with_three_packages_is_stored_as_promised_and_installs(
    cluster: Cluster, ns: str, nginx: NginxServer, s3: MotoS3, settings_env: dict[str, str], tmp_path: Path
) -> None:
    stored = create(cluster, ns, pod("several", annotations_for(nginx), containers=2))
    spec = stored["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert {
        "package-shared-volume-extra",
        "package-shared-volume-models",
        "package-shared-volume-tools",
    } <= set(volumes)
    assert volumes["package-credentials-models"]["secret"] == {
        "secretName": "models-reader",
        "defaultMode": 420,
    }
    assert contract.VOLUME_NAME not in volumes  # no unnamed package
    app0, app1 = spec["containers"]
    mounts0 = {m["name"]: m for m in app0["volumeMounts"]}
    mounts1 = {m["name"]: m for m in app1["volumeMounts"]}
    assert mounts0["package-shared-volume-extra"]["mountPath"] == "/app/extra"
    assert "package-shared-volume-extra" not in mounts1
    for mounts in (mounts0, mounts1):
        assert mounts["package-shared-volume-tools"] == {
            "name": "package-shared-volume-tools",
            "mountPath": "/shared-data/packages/tools",
            "readOnly": True,
        }
        assert mounts["package-shared-volume-models"]["readOnly"] is True
    status = json.loads(stored["metadata"]["annotations"]["package-status"])
    assert [(p["name"], p["containers"]) for p in status["packages"]] == [
        ("extra", ["app0"]),
        ("models", ["app0", "app1"]),
        ("tools", ["app0", "app1"]),
    ]
    # What the apiserver stored (defaults included) is what inject converges on: no patch on reinvocation.
    settings = Settings(allowed_schemes=["https", "http", "s3"], s3_region="us-east-1", s3_endpoint=s3.url)
    assert not inject(stored, settings, ns).changed

    (init,) = spec["initContainers"]
    env = container_env(init)
    assert contract.ENV_URL not in env
    assert env[contract.ENV_S3_ENDPOINT] == s3.url and env[contract.ENV_ALLOW_HTTP] == "true"
    entries = json.loads(env[contract.ENV_PACKAGE_LIST])
    assert [e["name"] for e in entries] == ["extra", "models", "tools"]
    # The kubelet's part: each package's emptyDir and the models Secret, under tmp_path.
    secret = tmp_path / "secret-models"
    secret.mkdir()
    (secret / "AWS_ACCESS_KEY_ID").write_text(s3.reader.access_key_id)
    (secret / "AWS_SECRET_ACCESS_KEY").write_text(s3.reader.secret_access_key)
    mounts = {m["mountPath"]: m["name"] for m in init["volumeMounts"]}
    for entry in entries:
        assert mounts[entry["dest"]] == f"package-shared-volume-{entry['name']}"
        entry["dest"] = str(tmp_path / entry["name"])
        if "credentialsDir" in entry:
            assert mounts[entry["credentialsDir"]] == "package-credentials-models"
            entry["credentialsDir"] = str(secret)
    env.update(
        {
            "PATH": "/usr/bin:/bin",
            contract.ENV_PACKAGE_LIST: json.dumps(entries),
            contract.ENV_TERMINATION_LOG: str(tmp_path / "termination-log"),
        }
    )
    result = run(env)
    assert result.code == 0, result.stderr[-3000:]
    assert visible(tmp_path / "tools") == FILES_A
    assert visible(tmp_path / "extra") == {"b.txt", "common/other.ini"}
    assert visible(tmp_path / "models") == FILES_B


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (
            {"package-mount-path.tools": "/app/extra/tools"},
            'annotation "package-mount-path.tools": package "extra" and package "tools" nest: /app/extra and '
            "/app/extra/tools in the same container; give each package its own directory",
        ),
        (
            {
                "package-url.third": "https://packages.example.com/3.tgz",
                "package-url.fourth": "https://x.io/4",
            },
            "asks for 4 packages, more than this cluster's maximum of 3 per Pod "
            "(setting max_packages_per_pod)",
        ),
        (
            {"package-url.Tools": "https://packages.example.com/t.tgz"},
            'packages "Tools" and "tools" would share the volume "package-shared-volume-tools"',
        ),
    ],
)
def test_conflicts_and_the_cap_are_denied_with_the_fix(
    cluster: Cluster, ns: str, nginx: NginxServer, extra: dict[str, str], fragment: str
) -> None:
    annotations = {k: v for k, v in annotations_for(nginx).items() if not k.endswith(".models")}
    manifest = pod("denied", {**annotations, **extra}, containers=2)
    stderr = cluster.create_denied(ns, manifest)
    assert fragment in stderr, stderr


def test_a_dump_without_one_packages_key_is_stored_without_that_package(
    cluster: Cluster, ns: str, nginx: NginxServer
) -> None:
    stored = create(cluster, ns, pod("dump-source", annotations_for(nginx), containers=2))
    dump = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "dump-copy", "annotations": dict(stored["metadata"]["annotations"])},
        "spec": copy.deepcopy(stored["spec"]),
    }
    for key in [k for k in dump["metadata"]["annotations"] if k.endswith(".models")]:
        del dump["metadata"]["annotations"][key]
    dump["spec"].pop("nodeName", None)
    clean = create(cluster, ns, dump)
    names = {v["name"] for v in clean["spec"]["volumes"]}
    assert "package-shared-volume-models" not in names and "package-credentials-models" not in names
    assert {"package-shared-volume-tools", "package-shared-volume-extra"} <= names
    for container in [*clean["spec"]["containers"], *clean["spec"]["initContainers"]]:
        assert all(
            m["name"] not in ("package-shared-volume-models", "package-credentials-models")
            for m in container["volumeMounts"]
        )
    (init,) = clean["spec"]["initContainers"]
    env = {e["name"]: e["value"] for e in init["env"]}
    assert [e["name"] for e in json.loads(env[contract.ENV_PACKAGE_LIST])] == ["extra", "tools"]
    status = json.loads(clean["metadata"]["annotations"]["package-status"])
    assert [p["name"] for p in status["packages"]] == ["extra", "tools"]


def test_a_hand_written_status_record_cannot_remove_a_users_mount(
    cluster: Cluster, ns: str, nginx: NginxServer
) -> None:
    """attack-multi: a `packages` record naming the user's own ConfigMap volume made its read-only mount
    ours; the real apiserver stored the Pod without it."""
    forged = {
        "version": 1,
        "initContainer": contract.INIT_CONTAINER_NAME,
        "volumes": [],
        "containers": [],
        "packages": [{"name": "tools", "volume": "config", "containers": ["app0"]}],
    }
    manifest = pod("forged", {"package-url.tools": nginx.url("a.tgz"), "package-status": json.dumps(forged)})
    mine = {"name": "config", "mountPath": "/etc/app", "readOnly": True}
    manifest["spec"]["containers"][0]["volumeMounts"] = [mine]
    manifest["spec"]["volumes"] = [{"name": "config", "configMap": {"name": "app-config"}}]
    stored = create(cluster, ns, manifest)
    app = stored["spec"]["containers"][0]
    assert any(m["name"] == "config" and m["mountPath"] == "/etc/app" for m in app["volumeMounts"]), app
    assert any(m["name"] == "package-shared-volume-tools" for m in app["volumeMounts"])
