"""The Helm chart and deploy/ against the real kube-apiserver (tests/support/kube.py: 1.37 by default).

- every rendered object passes `kubectl apply --dry-run=server`;
- the rendered MutatingWebhookConfiguration, with clientConfig switched to the test webhook on 127.0.0.1,
  injects as rendered: namespace exclusions and the object selector work;
- the rendered configuration's matchConditions are evaluated by the apiserver: an unannotated Pod never
  reaches the webhook;
- a real `helm install` (helm-python-sdk) detects the server's version (matchConditions, policy/v1 PDB),
  an upgrade keeps the generated CA (lookup), and uninstall removes the configuration.

Every configuration here selects only namespaces carrying a label unique to the test (webhook.optIn), so
the other tests sharing the apiserver never see it, and the service-mode configuration of the real
install never makes the apiserver dial a ClusterIP.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.chart.helpers import CHART, DEPLOY, HOOK, kustomize, render
from tests.e2e.conftest import pod
from tests.support.kube import Cluster
from tests.support.webhook import WebhookProcess
from webhook import certs

pytestmark = pytest.mark.e2e

MWC_PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
URL = "https://packages.example.com/app/config-1.4.tar.gz"
_ids = itertools.count()


def _apply_dry_run(cluster: Cluster, docs: list[dict[str, Any]]) -> str:
    text = yaml.safe_dump_all(docs)
    out = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=text, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _label_namespace(cluster: Cluster, name: str, labels: dict[str, str]) -> None:
    cluster.create_namespace(name)
    patch = {"metadata": {"labels": labels}}
    out = cluster.kubectl("patch", "namespace", name, "--type=merge", "-p", json.dumps(patch), check=False)
    assert out.returncode == 0, out.stderr


def _dry_run_pod(cluster: Cluster, ns: str, manifest: dict[str, Any]) -> dict[str, Any]:
    status, body = cluster.request("POST", f"/api/v1/namespaces/{ns}/pods?dryRun=All", manifest)
    assert status == 201, body
    return body


def _injected(stored: dict[str, Any]) -> bool:
    return any(c["name"] == "package-downloader" for c in stored["spec"].get("initContainers", []))


def test_rendered_chart_passes_server_side_dry_run(cluster: Cluster) -> None:
    ns = f"chart-dry-run-{next(_ids)}"
    cluster.create_namespace(ns)
    for values in [
        {},
        {"replicaCount": 1, "networkPolicy": {"enabled": True}},
        {
            # A real CA's PEM: the chart refuses a caBundle that is not one.
            "tls": {"mode": "secret", "secret": {"name": "x", "caBundle": certs.new_ca("x")[0].decode()}},
        },
    ]:
        docs = render({**values, "webhook": {"optIn": True}}, namespace=ns)
        # The ServiceAccount plugin wants a Pod's ServiceAccount to exist, and a dry-run creates none; Helm
        # installs the release's ServiceAccounts before `helm test` creates the check Pod: so do we.
        accounts = [d for d in docs if d["kind"] == "ServiceAccount"]
        created = cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(accounts), check=False)
        assert created.returncode == 0, created.stderr
        out = _apply_dry_run(cluster, docs)
        assert "mutatingwebhookconfiguration.admissionregistration.k8s.io/" in out
        assert "deployment.apps/" in out


def test_kustomize_base_passes_server_side_dry_run(cluster: Cluster, tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(DEPLOY / "base", tmp_path)],
            }
        )
    )
    cluster.create_namespace("package-injector")  # a dry-run Namespace does not make room for the rest
    out = _apply_dry_run(cluster, kustomize(tmp_path))
    assert "mutatingwebhookconfiguration.admissionregistration.k8s.io/package-injector" in out


@pytest.fixture
def rendered_registration(cluster: Cluster, webhook_server: WebhookProcess) -> Iterator[dict[str, Any]]:
    """The chart's configuration, as rendered, pointed at the test webhook on 127.0.0.1."""
    n = next(_ids)
    label = f"chart-e2e-{n}.example.com/injection"
    release_ns = f"chart-release-{n}"
    docs = render(
        {"webhook": {"optIn": True, "namespaceLabel": label}},
        namespace=release_ns,
    )
    mwc = next(d for d in docs if d["kind"] == "MutatingWebhookConfiguration")
    mwc["metadata"]["name"] = f"chart-e2e-{n}"
    for webhook in mwc["webhooks"]:
        assert webhook["clientConfig"]["service"]["path"] == "/mutate"
        webhook["clientConfig"] = {
            "url": f"{webhook_server.url}/mutate",
            "caBundle": webhook_server.ca_bundle_b64,
        }
    status, body = cluster.request("POST", MWC_PATH, mwc)
    assert status == 201, body
    enabled = {label: "enabled"}
    selected = f"chart-apps-{n}"
    _label_namespace(cluster, selected, enabled)
    probe = pod("probe", {"package-url": URL})
    cluster.wait_for(
        lambda: _injected(_dry_run_pod(cluster, selected, probe)), timeout=30, what="the configuration"
    )
    try:
        yield {"label": label, "release_ns": release_ns, "selected": selected, "docs": docs, "n": n}
    finally:
        cluster.request("DELETE", f"{MWC_PATH}/{mwc['metadata']['name']}")


def test_rendered_configuration_injects_in_selected_namespaces(
    cluster: Cluster, rendered_registration: dict[str, Any]
) -> None:
    r = rendered_registration
    stored = _dry_run_pod(cluster, r["selected"], pod("app", {"package-url": URL}))
    assert _injected(stored)
    assert not _injected(_dry_run_pod(cluster, r["selected"], pod("plain")))
    # The controllers' path: a Deployment's annotated pod template gives injected pods.
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "shop"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "shop"}},
            "template": {
                "metadata": {"labels": {"app": "shop"}, "annotations": {"package-url": URL}},
                "spec": pod("x")["spec"],
            },
        },
    }
    status, body = cluster.request(
        "POST", f"/apis/apps/v1/namespaces/{r['selected']}/deployments", deployment
    )
    assert status == 201, body

    def shop_pod() -> dict[str, Any] | None:
        _, pods = cluster.request("GET", f"/api/v1/namespaces/{r['selected']}/pods?labelSelector=app%3Dshop")
        return next(iter(pods.get("items", [])), None)

    assert _injected(cluster.wait_for(shop_pod, timeout=60, what="the Deployment's pod"))


def test_a_pod_with_only_our_status_reaches_the_webhook_and_loses_what_was_injected(
    cluster: Cluster, rendered_registration: dict[str, Any]
) -> None:
    """attack-multi: an injected Pod whose package-url keys were removed (a template holding `inject`'s
    output) skipped the webhook under matchConditions and kept its init container; now the apiserver
    sends it, and the stored Pod has none of our pieces."""
    r = rendered_registration
    injected = _dry_run_pod(cluster, r["selected"], pod("dump", {"package-url": URL}))
    assert _injected(injected)
    dump = pod("dump")
    dump["metadata"]["annotations"] = {
        "package-status": injected["metadata"]["annotations"]["package-status"]
    }
    dump["spec"] = {k: v for k, v in injected["spec"].items() if k != "nodeName"}
    stored = _dry_run_pod(cluster, r["selected"], dump)
    assert not _injected(stored) and "package-status" not in stored["metadata"].get("annotations", {})


def test_rendered_configuration_skips_system_and_release_namespaces(
    cluster: Cluster, rendered_registration: dict[str, Any]
) -> None:
    r = rendered_registration
    enabled = {r["label"]: "enabled"}
    # Even when labelled for injection, the excluded namespaces are matched out by name.
    for ns in ["kube-system", "kube-public", "kube-node-lease", r["release_ns"]]:
        _label_namespace(cluster, ns, enabled)
        assert not _injected(_dry_run_pod(cluster, ns, pod(f"app-{r['n']}", {"package-url": URL}))), ns
    # Not labelled: not selected (opt-in).
    other = f"chart-other-{r['n']}"
    _label_namespace(cluster, other, {})
    assert not _injected(_dry_run_pod(cluster, other, pod("app", {"package-url": URL})))


def test_rendered_configuration_skips_the_webhooks_own_pods(
    cluster: Cluster, rendered_registration: dict[str, Any]
) -> None:
    r = rendered_registration
    deployment = next(d for d in r["docs"] if d["kind"] == "Deployment")
    own = pod("webhook-like", {"package-url": URL})
    own["metadata"]["labels"] = deployment["spec"]["template"]["metadata"]["labels"]
    assert not _injected(_dry_run_pod(cluster, r["selected"], own))
    test_pod = next(d for d in r["docs"] if d["kind"] == "Pod" and HOOK in d["metadata"]["annotations"])
    hook_like = pod("check-like", {"package-url": URL})
    hook_like["metadata"]["labels"] = test_pod["metadata"]["labels"]
    assert not _injected(_dry_run_pod(cluster, r["selected"], hook_like))


def test_helm_install_upgrade_uninstall(cluster: Cluster) -> None:
    n = next(_ids)
    ns = f"chart-helm-{n}"
    cluster.create_namespace(ns)
    values = {"webhook": {"optIn": True, "namespaceLabel": f"chart-helm-{n}.example.com/injection"}}
    mwc_name = f"pi-{n}-package-injector"
    config = helm.Config(kubeconfig_path=str(cluster.kubeconfig), namespace=ns)
    try:
        config.install(str(CHART), f"pi-{n}", values, namespace=ns, timeout=120)
        status, mwc = cluster.request("GET", f"{MWC_PATH}/{mwc_name}")
        assert status == 200, mwc
        # Detected from the server, stored as rendered: every webhook filters with matchConditions.
        assert all(w["matchConditions"][0]["name"] == "has-package-url" for w in mwc["webhooks"]), mwc
        status, pdb = cluster.request(
            "GET", f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/{mwc_name}"
        )
        assert status == 200, pdb
        bundle = mwc["webhooks"][0]["clientConfig"]["caBundle"]
        _, ca_secret = cluster.request("GET", f"/api/v1/namespaces/{ns}/secrets/{mwc_name}-ca")
        _, tls_secret = cluster.request("GET", f"/api/v1/namespaces/{ns}/secrets/{mwc_name}-tls")
        assert ca_secret["data"]["tls.crt"] == bundle == tls_secret["data"]["ca.crt"]

        # An upgrade with a policy change keeps the CA and the serving certificate (lookup).
        config.upgrade(
            str(CHART), f"pi-{n}", {**values, "policy": {"requireChecksum": True}}, namespace=ns, timeout=120
        )
        _, mwc2 = cluster.request("GET", f"{MWC_PATH}/{mwc_name}")
        _, tls2 = cluster.request("GET", f"/api/v1/namespaces/{ns}/secrets/{mwc_name}-tls")
        assert mwc2["webhooks"][0]["clientConfig"]["caBundle"] == bundle
        assert tls2["data"]["tls.crt"] == tls_secret["data"]["tls.crt"]
        _, cm = cluster.request("GET", f"/api/v1/namespaces/{ns}/configmaps/{mwc_name}")
        assert "require_checksum: true" in cm["data"]["config.yaml"]

        # Near expiry (renewBeforeDays beyond the validity): re-issued by the same CA, caBundle unchanged.
        config.upgrade(
            str(CHART),
            f"pi-{n}",
            {**values, "tls": {"auto": {"renewBeforeDays": 400}}},
            namespace=ns,
            timeout=120,
        )
        _, mwc3 = cluster.request("GET", f"{MWC_PATH}/{mwc_name}")
        _, tls3 = cluster.request("GET", f"/api/v1/namespaces/{ns}/secrets/{mwc_name}-tls")
        assert mwc3["webhooks"][0]["clientConfig"]["caBundle"] == bundle
        assert tls3["data"]["tls.crt"] != tls_secret["data"]["tls.crt"]
        _verify_chain(bundle, tls3["data"]["tls.crt"])
    finally:
        config.uninstall(f"pi-{n}", ignore_not_found=True, timeout=120)
    status, _ = cluster.request("GET", f"{MWC_PATH}/{mwc_name}")
    assert status == 404, "uninstall must remove the configuration (no orphan blocking pods)"


def _verify_chain(ca_b64: str, cert_b64: str) -> None:
    code = (
        "import base64,sys;from cryptography import x509;"
        "ca=x509.load_pem_x509_certificate(base64.b64decode(sys.argv[1]));"
        "x509.load_pem_x509_certificate(base64.b64decode(sys.argv[2])).verify_directly_issued_by(ca)"
    )
    subprocess.run([sys.executable, "-c", code, ca_b64, cert_b64], check=True)
