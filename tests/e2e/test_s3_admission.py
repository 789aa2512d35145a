"""s3:// packages through a real kube-apiserver: stored injected with the cluster's S3 settings, bad URLs
denied with the reason, and the stored init container's environment driving the real init program
against moto (signatures checked).

Where this differs from a cluster: there is no kubelet here, so the test plays its part for the init
container (the Secret's keys become files in a directory, the paths move under tmp_path).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from initcontainer import contract
from tests.e2e.conftest import namespace_for, pod, webhook_configuration
from tests.initcontainer.test_main import run
from tests.support.kube import Cluster
from tests.support.packages import PKG_A, SHA_A, assert_package_a
from tests.support.s3server import MotoS3, run_moto
from tests.support.webhook import running_webhook

pytestmark = pytest.mark.e2e

URL = "s3://packages/app/pkg.tar.gz"
MWC_PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    with run_moto(tmp_path_factory.mktemp("moto"), {"packages/app/pkg.tar.gz": PKG_A}) as server:
        yield server


@pytest.fixture(scope="module")
def s3_namespace(cluster: Cluster, s3: MotoS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A webhook whose cluster settings point s3:// packages at moto, registered for one namespace."""
    label = "package-injector-e2e-s3"
    settings = {
        # moto speaks plain http on 127.0.0.1; a real cluster would use https (the default).
        "PACKAGE_INJECTOR_ALLOWED_SCHEMES": '["https", "http", "s3"]',
        "PACKAGE_INJECTOR_ALLOWED_HOSTS": '["files.example.com", "s3://packages"]',
        "PACKAGE_INJECTOR_S3_REGION": "us-east-1",
        "PACKAGE_INJECTOR_S3_ENDPOINT": s3.url,
    }
    with running_webhook(tmp_path_factory.mktemp("webhook-s3"), settings) as hook:
        mwc = webhook_configuration("a-package-injector-s3", hook.url, hook.ca_bundle_b64, label)
        status, body = cluster.request("POST", MWC_PATH, mwc)
        assert status == 201, body
        try:
            ns = namespace_for(cluster, label)

            def active() -> bool:
                status, body = cluster.request(
                    "POST", f"/api/v1/namespaces/{ns}/pods?dryRun=All", pod("probe", {"package-url": URL})
                )
                return status == 201 and bool(body["spec"].get("initContainers"))

            cluster.wait_for(active, timeout=30, what="the s3 webhook configuration to take effect")
            yield ns
        finally:
            cluster.request("DELETE", f"{MWC_PATH}/{mwc['metadata']['name']}")


def init_env(stored: dict[str, Any]) -> dict[str, str]:
    (init,) = [c for c in stored["spec"]["initContainers"] if c["name"] == contract.INIT_CONTAINER_NAME]
    return {e["name"]: e["value"] for e in init["env"]}


def test_s3_pod_is_stored_with_the_cluster_settings_and_installs(
    cluster: Cluster, s3: MotoS3, s3_namespace: str, tmp_path: Path
) -> None:
    manifest = pod("s3-app", {"package-url": URL, "package-secret": "s3-reader", "package-sha256": SHA_A})
    status, body = cluster.request("POST", f"/api/v1/namespaces/{s3_namespace}/pods", manifest)
    assert status == 201, body
    status, stored = cluster.request("GET", f"/api/v1/namespaces/{s3_namespace}/pods/s3-app")
    assert status == 200
    env = init_env(stored)
    assert env == {
        contract.ENV_URL: URL,
        contract.ENV_SHA256: SHA_A,
        contract.ENV_DEST: contract.DEFAULT_DEST,
        contract.ENV_CREDENTIALS_DIR: contract.DEFAULT_CREDENTIALS_DIR,
        contract.ENV_ALLOW_HTTP: "true",
        contract.ENV_S3_REGION: "us-east-1",
        contract.ENV_S3_ENDPOINT: s3.url,
    }
    volumes = {v["name"]: v for v in stored["spec"]["volumes"]}
    assert volumes["package-credentials"]["secret"] == {"secretName": "s3-reader", "defaultMode": 420}

    # The kubelet's part: the Secret's keys as files, the emptyDir and termination log under tmp_path.
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "AWS_ACCESS_KEY_ID").write_text(s3.reader.access_key_id)
    (creds / "AWS_SECRET_ACCESS_KEY").write_text(s3.reader.secret_access_key)
    env.update(
        {
            "PATH": "/usr/bin:/bin",
            contract.ENV_DEST: str(tmp_path / "dest"),
            contract.ENV_CREDENTIALS_DIR: str(creds),
            contract.ENV_TERMINATION_LOG: str(tmp_path / "termination-log"),
        }
    )
    result = run(env)
    assert result.code == 0, result.stderr[-3000:]
    assert_package_a(tmp_path / "dest")
    assert json.loads((tmp_path / "dest" / contract.MARKER_NAME).read_text())["url"] == URL


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        (
            "s3://Bad_Bucket/app.tgz",
            "is not a valid s3://BUCKET/KEY URL: bucket name 'Bad_Bucket' may hold only",
        ),
        ("s3://packages/", "names no object"),
        (
            "s3://other-bucket/app.tgz",
            'bucket "other-bucket" is not in the cluster allow-list (s3://packages)',
        ),
    ],
)
def test_bad_s3_urls_are_denied_with_the_reason(
    cluster: Cluster, s3_namespace: str, url: str, fragment: str
) -> None:
    assert fragment in cluster.create_denied(s3_namespace, pod("bad", {"package-url": url}))
