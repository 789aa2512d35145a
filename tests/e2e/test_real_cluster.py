"""The issue-10 matrix: what real clusters do around our webhook, under both reinvocation policies.

The apiserver here runs every default admission plugin, the ServiceAccount plugin included (it mounts the
token into every container, ours too, and runs again after a webhook's patch), and the controller-manager
makes default ServiceAccounts, tokens, ReplicaSets and Pods. Webhooks are ordered by configuration name:
`0-...` before ours (`m-package-injector-...`), `z-...` after.

What each policy yields for a container another webhook appends after ours: with `IfNeeded` we are called
again and mount the package into it; with `Never` we are not, and it has no package mount (the Pod is still
admitted). The chart's default is IfNeeded.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from initcontainer import contract
from tests.e2e.conftest import namespace_for, pod, webhook_configuration
from tests.e2e.test_admission import assert_injected, deployment
from tests.support import other_webhook
from tests.support.kube import Cluster
from tests.support.kubelet_env import container_env
from tests.support.webhook import WebhookProcess, running_webhook
from webhook import check
from webhook.inject import inject
from webhook.settings import Settings

pytestmark = pytest.mark.e2e

MWC_PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
URL = "https://packages.example.com/app/config-1.4.tar.gz"
TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
POLICIES = ["IfNeeded", "Never"]


def ours(hook: WebhookProcess, label: str, policy: str) -> dict[str, Any]:
    return webhook_configuration(
        f"m-package-injector-{label}", hook.url, hook.ca_bundle_b64, label, reinvocation=policy
    )


def theirs(name: str, hook: other_webhook.OtherWebhook, label: str, policy: str) -> dict[str, Any]:
    mwc = webhook_configuration(name, hook.url, hook.ca_bundle_b64, label, reinvocation=policy)
    mwc["webhooks"] = mwc["webhooks"][:1]
    mwc["webhooks"][0]["name"] = f"{name}.other.example"
    return mwc


@contextlib.contextmanager
def configured(cluster: Cluster, label: str, *configs: dict[str, Any]) -> Iterator[str]:
    """Register the configurations; yield a namespace they select once a dry-run shows all are active."""
    for mwc in configs:
        status, body = cluster.request("POST", MWC_PATH, mwc)
        assert status == 201, body
    try:
        ns = namespace_for(cluster, label)
        probe = pod("probe", {"package-url": URL})

        def active() -> bool:
            status, body = cluster.request("POST", f"/api/v1/namespaces/{ns}/pods?dryRun=All", probe)
            return status == 201 and bool(body["spec"].get("initContainers"))

        cluster.wait_for(active, timeout=30, what="the webhook configurations to take effect")
        yield ns
    finally:
        for mwc in configs:
            cluster.request("DELETE", f"{MWC_PATH}/{mwc['metadata']['name']}")


def wait_others_active(cluster: Cluster, ns: str, hook: other_webhook.OtherWebhook) -> None:
    def called() -> bool:
        before = len(hook.calls)
        cluster.request(
            "POST", f"/api/v1/namespaces/{ns}/pods?dryRun=All", pod("probe2", {"package-url": URL})
        )
        return len(hook.calls) > before

    cluster.wait_for(called, timeout=30, what="the other webhook to take effect")


def new_label() -> str:
    return f"rc-{secrets.token_hex(4)}"


def create(cluster: Cluster, ns: str, manifest: dict[str, Any]) -> dict[str, Any]:
    api = manifest["apiVersion"]
    base = "/api/v1" if api == "v1" else f"/apis/{api}"
    status, body = cluster.request("POST", f"{base}/namespaces/{ns}/{manifest['kind'].lower()}s", manifest)
    assert status == 201, body
    assert isinstance(body, dict)
    return body


def downloader(obj: dict[str, Any]) -> dict[str, Any]:
    (init,) = [c for c in obj["spec"]["initContainers"] if c["name"] == contract.INIT_CONTAINER_NAME]
    return init


def mount_paths(container: dict[str, Any]) -> list[str]:
    return [m["mountPath"] for m in container.get("volumeMounts") or []]


def assert_real_and_converged(stored: dict[str, Any]) -> None:
    """Injected, the token mounted in our init container by the real plugin, and a fixed point for us."""
    assert_injected(stored)
    assert TOKEN_PATH in mount_paths(downloader(stored)), "the ServiceAccount plugin must be on"
    again = inject(stored, Settings())
    assert not again.changed, "what the apiserver stored must be a fixed point of inject"


def controller_pods(cluster: Cluster, ns: str, count: int) -> list[dict[str, Any]]:
    def pods() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = cluster.request("GET", f"/api/v1/namespaces/{ns}/pods")[1]["items"]
        return items if len(items) == count else []

    made: list[dict[str, Any]] = cluster.wait_for(
        pods, timeout=60, what=f"the controllers to create {count} pods"
    )
    replicasets = cluster.request("GET", f"/apis/apps/v1/namespaces/{ns}/replicasets")[1]["items"]
    assert len(replicasets) == 1 and replicasets[0]["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    return made


def offline(manifest: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """`package-injector inject -f` as a user runs it."""
    path = tmp_path / f"{manifest['kind']}.yaml"
    path.write_text(yaml.safe_dump(manifest))
    out = subprocess.run(
        [sys.executable, "-m", "webhook", "inject", "-f", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = yaml.safe_load(out.stdout)
    assert isinstance(result, dict)
    return result


@pytest.mark.parametrize("policy", POLICIES)
def test_annotated_pod(cluster: Cluster, webhook_server: WebhookProcess, policy: str) -> None:
    label = new_label()
    with configured(cluster, label, ours(webhook_server, label, policy)) as ns:
        stored = create(cluster, ns, pod("web", {"package-url": URL}, containers=2))
        assert_real_and_converged(stored)
        for container in stored["spec"]["containers"]:
            assert TOKEN_PATH in mount_paths(container)


@pytest.mark.parametrize("policy", POLICIES)
def test_annotated_deployment_gets_injected_pods(
    cluster: Cluster, webhook_server: WebhookProcess, policy: str
) -> None:
    label = new_label()
    with configured(cluster, label, ours(webhook_server, label, policy)) as ns:
        create(cluster, ns, deployment("web", {"package-url": URL}))
        for made in controller_pods(cluster, ns, 2):
            assert made["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
            assert_real_and_converged(made)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("kind", ["Pod", "Deployment"])
def test_offline_injected_manifest_is_admitted(
    cluster: Cluster, webhook_server: WebhookProcess, tmp_path: Path, policy: str, kind: str
) -> None:
    manifest = pod("web", {"package-url": URL}) if kind == "Pod" else deployment("web", {"package-url": URL})
    injected = offline(manifest, tmp_path)
    label = new_label()
    with configured(cluster, label, ours(webhook_server, label, policy)) as ns:
        result = cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(injected), check=False)
        assert result.returncode == 0, result.stderr
        if kind == "Pod":
            made = [cluster.request("GET", f"/api/v1/namespaces/{ns}/pods/web")[1]]
            mine = injected["spec"]
        else:
            made = controller_pods(cluster, ns, 2)
            mine = injected["spec"]["template"]["spec"]
        for stored in made:
            assert_real_and_converged(stored)
            init, offline_init = downloader(stored), downloader({"spec": mine})
            for field in ("image", "env", "securityContext", "resources"):
                assert init[field] == offline_init[field], field
            assert init["volumeMounts"][:1] == offline_init["volumeMounts"]


@pytest.mark.parametrize("policy", POLICIES)
def test_container_appended_by_a_later_webhook(
    cluster: Cluster, webhook_server: WebhookProcess, tmp_path: Path, policy: str
) -> None:
    label = new_label()
    with (
        other_webhook.running_other_webhook(
            tmp_path, other_webhook.append_container("sidecar", "mesh:1")
        ) as mesh,
        configured(
            cluster,
            label,
            ours(webhook_server, label, policy),
            theirs(f"z-mesh-{label}", mesh, label, "Never"),
        ) as ns,
    ):
        wait_others_active(cluster, ns, mesh)
        stored = create(cluster, ns, pod("meshed", {"package-url": URL}))
        containers = {c["name"]: c for c in stored["spec"]["containers"]}
        assert set(containers) == {"app0", "sidecar"}
        assert TOKEN_PATH in mount_paths(containers["sidecar"])
        status = json.loads(stored["metadata"]["annotations"]["package-status"])
        if policy == "IfNeeded":
            assert_real_and_converged(stored)
            assert status["containers"] == ["app0", "sidecar"]
        else:  # Never: we are not called again, so the sidecar has no package (documented)
            assert contract.DEFAULT_DEST not in mount_paths(containers["sidecar"])
            assert contract.DEFAULT_DEST in mount_paths(containers["app0"])
            assert status["containers"] == ["app0"]


@pytest.mark.parametrize("order", ["before", "after"])
@pytest.mark.parametrize("policy", POLICIES)
def test_webhook_adding_env_and_a_mount_everywhere(
    cluster: Cluster, webhook_server: WebhookProcess, tmp_path: Path, policy: str, order: str
) -> None:
    """Both webhooks with the same policy. Their additions reach our init container when they run after
    ours, or (IfNeeded) are called again after our patch; ours are intact either way."""
    label = new_label()
    agent = other_webhook.env_and_mount_everywhere(
        {"TRACE_AGENT": "$(NODE_IP):4317"}, "agent-config", "/etc/agent"
    )
    name = f"0-agent-{label}" if order == "before" else f"z-agent-{label}"
    with (
        other_webhook.running_other_webhook(tmp_path, agent) as hook,
        configured(
            cluster, label, ours(webhook_server, label, policy), theirs(name, hook, label, policy)
        ) as ns,
    ):
        wait_others_active(cluster, ns, hook)
        stored = create(cluster, ns, pod("traced", {"package-url": URL}, containers=2))
        assert_real_and_converged(stored)
        for container in stored["spec"]["containers"]:
            assert "/etc/agent" in mount_paths(container)
        init = downloader(stored)
        reached = order == "after" or policy == "IfNeeded"
        assert ("/etc/agent" in mount_paths(init)) is reached
        assert ("TRACE_AGENT" in container_env(init)) is reached


@pytest.mark.parametrize("policy", POLICIES)
def test_earlier_injection_gets_the_size_limit_configured_now(
    cluster: Cluster, tmp_path: Path, policy: str
) -> None:
    earlier = offline(pod("old", {"package-url": URL}), tmp_path)
    (volume,) = [v for v in earlier["spec"]["volumes"] if v["name"] == contract.VOLUME_NAME]
    assert volume["emptyDir"] == {}
    label = new_label()
    with (
        running_webhook(tmp_path / "limited", {"PACKAGE_INJECTOR_DEFAULT_SIZE_LIMIT": "1Gi"}) as hook,
        configured(cluster, label, ours(hook, label, policy)) as ns,
    ):
        stored = create(cluster, ns, earlier)
        (volume,) = [v for v in stored["spec"]["volumes"] if v["name"] == contract.VOLUME_NAME]
        assert volume["emptyDir"] == {"sizeLimit": "1Gi"}
        assert TOKEN_PATH in mount_paths(downloader(stored))
        assert not inject(stored, Settings(default_size_limit="1Gi")).changed


@pytest.mark.parametrize("policy", POLICIES)
def test_check_commands_own_pod_with_the_token_automounted(
    cluster: Cluster, webhook_server: WebhookProcess, policy: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    label = new_label()
    mwc = ours(webhook_server, label, policy)
    with configured(cluster, label, mwc) as ns:
        probe = check.probe_pod(mwc["webhooks"], "", URL)
        assert "automountServiceAccountToken" not in probe["spec"]
        status, body = cluster.request("POST", f"/api/v1/namespaces/{ns}/pods?dryRun=All", probe)
        assert status == 201, body
        assert TOKEN_PATH in mount_paths(downloader(body))
        parser = argparse.ArgumentParser()
        check.add_arguments(parser)
        args = ["--kubeconfig", str(cluster.kubeconfig), "--name", mwc["metadata"]["name"], "--namespace", ns]
        code = check.run(parser.parse_args(args))
        out = capsys.readouterr().out
        assert code == 0, out
        assert any(line.startswith("PASS  dry-run injection") for line in out.splitlines())


@pytest.mark.parametrize("policy", POLICIES)
def test_dollar_in_the_url_is_handed_over_unchanged(
    cluster: Cluster, webhook_server: WebhookProcess, policy: str
) -> None:
    url = "https://packages.example.com/a$$b/$(PACKAGE_DEST).tar?sig=$(HOME)$"
    label = new_label()
    with configured(cluster, label, ours(webhook_server, label, policy)) as ns:
        stored = create(cluster, ns, pod("dollar", {"package-url": url}))
        init = downloader(stored)
        written = {e["name"]: e["value"] for e in init["env"]}
        assert written[contract.ENV_URL] == url.replace("$", "$$")
        # What the kubelet hands the process (its rule as a stand-in: this cluster has no kubelet).
        assert container_env(init)[contract.ENV_URL] == url
        assert not inject(stored, Settings()).changed
