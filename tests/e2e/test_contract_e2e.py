"""Contract details proven through the real kube-apiserver, not only in unit tests.

A prefix with `/` in every key (JSON Pointer `~1`), Jobs and CronJobs (batch/v1) with a bad
template, a Secret volume and a sizeLimit as the apiserver stores and re-serializes them (and the stored pod
still converging), a webhook that only speaks AdmissionReview v1beta1, and a dump of an injected pod
re-created without `package-url`.
"""

from __future__ import annotations

import copy
import itertools
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from initcontainer import contract
from tests.e2e.conftest import pod, webhook_configuration
from tests.support.kube import Cluster
from tests.support.webhook import WebhookProcess, running_webhook
from webhook.inject import CREDENTIALS_VOLUME, inject
from webhook.settings import Settings

pytestmark = pytest.mark.e2e

MWC_PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
URL = "https://packages.example.com/app/config-1.4.tar.gz"
PREFIX = "example.com/"
_ids = itertools.count()


def register(
    cluster: Cluster,
    hook: WebhookProcess,
    *,
    trigger: str = "package-url",
    review_versions: tuple[str, ...] = ("v1", "v1beta1"),
) -> Iterator[str]:
    """Register `hook` for namespaces with a fresh label; yield a namespace once injection works there."""
    label = f"package-injector-contract-{next(_ids)}"
    mwc = webhook_configuration(f"a-package-injector-{label}", hook.url, hook.ca_bundle_b64, label)
    for webhook in mwc["webhooks"]:
        webhook["admissionReviewVersions"] = list(review_versions)
    status, body = cluster.request("POST", MWC_PATH, mwc)
    assert status == 201, body
    try:
        # A name of our own: other modules count "e2e-N" namespaces with counters of their own.
        ns = f"contract-{label.rsplit('-', 1)[-1]}-{secrets.token_hex(3)}"
        cluster.create_namespace(ns, {label: "enabled"})
        probe = pod("probe", {trigger: "https://packages.example.com/probe.tar"})

        def injected() -> bool:
            status, body = cluster.request("POST", f"/api/v1/namespaces/{ns}/pods?dryRun=All", probe)
            return status == 201 and bool(body["spec"].get("initContainers"))

        cluster.wait_for(injected, timeout=30, what="the webhook configuration to take effect")
        yield ns
    finally:
        cluster.request("DELETE", f"{MWC_PATH}/{mwc['metadata']['name']}")


def create(cluster: Cluster, ns: str, manifest: dict[str, Any]) -> tuple[int, Any]:
    api = manifest["apiVersion"]
    base = "/api/v1" if api == "v1" else f"/apis/{api}"
    return cluster.request("POST", f"{base}/namespaces/{ns}/{manifest['kind'].lower()}s", manifest)


def kubectl_create(cluster: Cluster, ns: str, manifest: dict[str, Any]) -> Any:
    return cluster.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(manifest), check=False)


@pytest.fixture(scope="module")
def prefixed_hook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookProcess]:
    env = {"PACKAGE_INJECTOR_ANNOTATION_PREFIX": PREFIX}
    with running_webhook(tmp_path_factory.mktemp("prefixed"), env) as hook:
        yield hook


@pytest.fixture
def prefixed_ns(cluster: Cluster, prefixed_hook: WebhookProcess) -> Iterator[str]:
    yield from register(cluster, prefixed_hook, trigger=PREFIX + "package-url")


@pytest.fixture
def batch_ns(cluster: Cluster, webhook_server: WebhookProcess) -> Iterator[str]:
    """Jobs and CronJobs at batch/v1, the only version the supported apiservers serve."""
    yield from register(cluster, webhook_server)


@pytest.fixture
def v1beta1_ns(cluster: Cluster, webhook_server: WebhookProcess) -> Iterator[str]:
    yield from register(cluster, webhook_server, review_versions=("v1beta1",))


@pytest.fixture
def default_ns(cluster: Cluster, webhook_server: WebhookProcess) -> Iterator[str]:
    yield from register(cluster, webhook_server)


def test_prefixed_keys_with_a_slash_are_patched_and_stored(cluster: Cluster, prefixed_ns: str) -> None:
    manifest = pod("prefixed", {PREFIX + "package-url": URL, "other.io/keep-me": "yes"})
    status, body = create(cluster, prefixed_ns, manifest)
    assert status == 201, body
    annotations = body["metadata"]["annotations"]
    assert json.loads(annotations[PREFIX + "package-status"])["containers"] == ["app0"]
    assert annotations["other.io/keep-me"] == "yes"
    assert body["spec"]["initContainers"][0]["name"] == contract.INIT_CONTAINER_NAME


def test_unprefixed_key_under_a_prefix_warns_with_the_right_key(cluster: Cluster, prefixed_ns: str) -> None:
    result = kubectl_create(cluster, prefixed_ns, pod("bare", {"package-url": URL}))
    assert result.returncode == 0, result.stderr
    assert f'did you mean "{PREFIX}package-url"?' in result.stderr
    stored = cluster.request("GET", f"/api/v1/namespaces/{prefixed_ns}/pods/bare")[1]
    assert "initContainers" not in stored["spec"]


def template(annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"annotations": annotations},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "job", "image": "example.invalid/job:1"}]},
    }


def test_job_with_a_bad_template_is_rejected(cluster: Cluster, batch_ns: str) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "bad-job"},
        "spec": {"template": template({"package-url": URL, "package-init-position": "middle"})},
    }
    result = kubectl_create(cluster, batch_ns, job)
    assert result.returncode != 0
    assert 'Job spec.template: annotation "package-init-position"' in result.stderr, result.stderr


def test_cronjob_with_a_bad_template_is_rejected(cluster: Cluster, batch_ns: str) -> None:
    cron = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "bad-cron"},
        "spec": {
            "schedule": "*/5 * * * *",
            "jobTemplate": {
                "spec": {"template": template({"package-url": "http://plain.example.com/a.tar"})}
            },
        },
    }
    result = kubectl_create(cluster, batch_ns, cron)
    assert result.returncode != 0
    assert 'CronJob spec.jobTemplate.spec.template: annotation "package-url"' in result.stderr, result.stderr
    good = copy.deepcopy(cron)
    good["metadata"]["name"] = "good-cron"
    good["spec"]["jobTemplate"]["spec"]["template"] = template({"package-url": URL})
    status, body = create(cluster, batch_ns, good)
    assert status == 201, body
    stored_template = body["spec"]["jobTemplate"]["spec"]["template"]
    assert "initContainers" not in stored_template["spec"], "workloads are never mutated"


def test_secret_volume_and_size_limit_are_stored_and_the_pod_converges(
    cluster: Cluster, default_ns: str
) -> None:
    manifest = pod(
        "creds", {"package-url": URL, "package-secret": "repo-creds", "package-size-limit": "1024Mi"}
    )
    status, stored = create(cluster, default_ns, manifest)
    assert status == 201, stored
    volumes = {v["name"]: v for v in stored["spec"]["volumes"]}
    assert volumes[contract.VOLUME_NAME]["emptyDir"] == {"sizeLimit": "1Gi"}  # re-serialized by the apiserver
    assert volumes[CREDENTIALS_VOLUME]["secret"]["secretName"] == "repo-creds"
    assert volumes[CREDENTIALS_VOLUME]["secret"]["defaultMode"] == 420  # defaulted by the apiserver
    init = stored["spec"]["initContainers"][0]
    assert {"name": CREDENTIALS_VOLUME, "mountPath": contract.DEFAULT_CREDENTIALS_DIR, "readOnly": True} in (
        init["volumeMounts"]
    )
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env[contract.ENV_CREDENTIALS_DIR] == contract.DEFAULT_CREDENTIALS_DIR
    for container in stored["spec"]["containers"]:
        assert all(m["name"] != CREDENTIALS_VOLUME for m in container.get("volumeMounts", []))
    # What the apiserver stored (defaults, canonical quantities) is what the function calls converged.
    again = inject(stored, Settings(), default_ns)
    assert not again.changed, "a stored pod must not be patched again on reinvocation"


def test_a_webhook_that_only_speaks_v1beta1_gets_v1beta1_answers(cluster: Cluster, v1beta1_ns: str) -> None:
    status, stored = create(cluster, v1beta1_ns, pod("beta", {"package-url": URL}))
    assert status == 201, stored
    assert stored["spec"]["initContainers"][0]["name"] == contract.INIT_CONTAINER_NAME
    result = kubectl_create(cluster, v1beta1_ns, pod("beta-bad", {"package-url": URL, "package-sha256": "x"}))
    assert result.returncode != 0 and '"package-sha256": must be 64 hex digits' in result.stderr


def test_a_dump_of_an_injected_pod_without_package_url_is_stored_clean(
    cluster: Cluster, default_ns: str, tmp_path: Path
) -> None:
    status, stored = create(cluster, default_ns, pod("first", {"package-url": URL}))
    assert status == 201, stored
    dump = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "second", "annotations": dict(stored["metadata"]["annotations"])},
        "spec": copy.deepcopy(stored["spec"]),
    }
    del dump["metadata"]["annotations"]["package-url"]
    dump["spec"].pop("nodeName", None)
    result = kubectl_create(cluster, default_ns, dump)
    assert result.returncode == 0, result.stderr
    assert "removed what it injected before" in result.stderr
    clean = cluster.request("GET", f"/api/v1/namespaces/{default_ns}/pods/second")[1]
    assert "initContainers" not in clean["spec"]
    assert all(v["name"] != contract.VOLUME_NAME for v in clean["spec"].get("volumes", []))
    assert "package-status" not in (clean["metadata"].get("annotations") or {})
