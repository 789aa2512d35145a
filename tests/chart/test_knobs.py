"""Chart knobs users of other injector charts expect: each renders where it must, validates strictly, and
the schema refuses what would render and then fail at start, in words where helm lets us."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from initcontainer import contract
from tests.chart.helpers import CHART, DEPLOY, REPO, SCHEMA_VERSIONS, kustomize, one, render, validate
from webhook.settings import RESERVED_INIT_ENV


def deployment(values: dict[str, Any]) -> dict[str, Any]:
    doc = one(render(values), "Deployment")
    for version in SCHEMA_VERSIONS:
        validate(doc, version)
    return doc


def pod_spec(values: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment(values)["spec"]["template"]["spec"]
    return spec


def webhooks(values: dict[str, Any]) -> list[dict[str, Any]]:
    mwc = one(render({"kubeVersionOverride": "1.34.0", **values}), "MutatingWebhookConfiguration")
    validate(mwc, "1.34")
    hooks: list[dict[str, Any]] = mwc["webhooks"]
    return hooks


def test_host_network_keeps_cluster_dns_and_one_replica_per_node() -> None:
    assert "hostNetwork" not in pod_spec({})
    spec = pod_spec({"hostNetwork": True, "containerPorts": {"https": 10250 + 1}})
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    (port,) = [p for p in spec["containers"][0]["ports"] if p["name"] == "https"]
    assert port["containerPort"] == 10251
    (term,) = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "webhook"


def test_host_network_keeps_the_users_affinity() -> None:
    node_affinity = {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["sys"]}]}
            ]
        }
    }
    spec = pod_spec({"hostNetwork": True, "affinity": {"nodeAffinity": node_affinity}})
    assert spec["affinity"]["nodeAffinity"] == node_affinity
    assert spec["affinity"]["podAntiAffinity"]


def test_extra_selector_terms_are_anded_with_the_charts() -> None:
    extra_ns = {"matchExpressions": [{"key": "team", "operator": "In", "values": ["shop"]}]}
    extra_obj = {"matchLabels": {"packages": "yes"}}
    for hook in webhooks({"webhook": {"namespaceSelector": extra_ns, "objectSelector": extra_obj}}):
        ns = hook["namespaceSelector"]["matchExpressions"]
        assert ns[0]["key"] == "kubernetes.io/metadata.name" and ns[-1] == extra_ns["matchExpressions"][0]
        assert hook["objectSelector"]["matchLabels"] == {"packages": "yes"}
        assert hook["objectSelector"]["matchExpressions"][0]["values"] == ["disabled"]


def test_match_policy() -> None:
    assert {h["matchPolicy"] for h in webhooks({})} == {"Equivalent"}
    assert {h["matchPolicy"] for h in webhooks({"webhook": {"matchPolicy": "Exact"}})} == {"Exact"}


def test_strategy_probes_env_priority_and_pod_metadata() -> None:
    doc = deployment(
        {
            "strategy": {"type": "Recreate"},
            "readinessProbe": {"periodSeconds": 2, "timeoutSeconds": 3},
            "livenessProbe": {"initialDelaySeconds": 30},
            "extraEnv": [{"name": "PACKAGE_INJECTOR_LOG_LEVEL", "value": "debug"}],
            "priorityClassName": "system-cluster-critical",
            "podAnnotations": {"example.com/owner": "platform"},
            "podLabels": {"team": "platform"},
            "topologySpreadConstraints": [
                {
                    "maxSkew": 2,
                    "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "DoNotSchedule",
                }
            ],
        }
    )
    assert doc["spec"]["strategy"] == {"type": "Recreate"}
    template = doc["spec"]["template"]
    container = template["spec"]["containers"][0]
    assert (
        container["readinessProbe"]["periodSeconds"] == 2
        and container["readinessProbe"]["timeoutSeconds"] == 3
    )
    assert container["readinessProbe"]["failureThreshold"] == 2  # defaults kept for what was not set
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["initialDelaySeconds"] == 30
    assert {"name": "PACKAGE_INJECTOR_LOG_LEVEL", "value": "debug"} in container["env"]
    assert template["spec"]["priorityClassName"] == "system-cluster-critical"
    assert template["metadata"]["annotations"]["example.com/owner"] == "platform"
    assert template["metadata"]["labels"]["team"] == "platform"
    (spread,) = template["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone" and spread["labelSelector"]["matchLabels"]


def test_the_default_strategy_never_lowers_ready_pods() -> None:
    assert deployment({})["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}


def test_init_image_is_a_plain_env_value_of_the_webhook() -> None:
    env = {
        e["name"]: e for e in pod_spec({"initContainer": {"image": {"tag": "9.9"}}})["containers"][0]["env"]
    }
    assert env["PACKAGE_INJECTOR_INIT_IMAGE"] == {
        "name": "PACKAGE_INJECTOR_INIT_IMAGE",
        "value": "ghcr.io/package-injector/package-init-container:9.9",
    }


def test_kustomize_images_entry_changes_the_injected_image(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(DEPLOY / "base", tmp_path)],
                "images": [
                    {
                        "name": "ghcr.io/package-injector/package-init-container",
                        "newName": "registry.corp.example.com/platform/package-init-container",
                        "newTag": "0.1.1",
                    },
                    {
                        "name": "ghcr.io/package-injector/package-injector",
                        "newName": "registry.corp.example.com/platform/package-injector",
                    },
                ],
            }
        )
    )
    container = one(kustomize(tmp_path), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (
        env["PACKAGE_INJECTOR_INIT_IMAGE"]
        == "registry.corp.example.com/platform/package-init-container:0.1.1"
    )
    assert env["PACKAGE_INJECTOR_CONFIG_FILE"] == "/etc/package-injector/config/config.yaml"  # untouched
    assert container["image"] == "registry.corp.example.com/platform/package-injector:0.1.0"


# --- the schema ---------------------------------------------------------------------------------------


def test_schema_init_env_names_are_the_init_containers_own() -> None:
    """Generated from initcontainer/contract.py: what the init container reads, minus what webhook sets."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    names = schema["properties"]["initContainer"]["properties"]["env"]["propertyNames"]["enum"]
    assert names == sorted(contract.KNOWN_ENV - RESERVED_INIT_ENV)


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"initContainer": {"env": {"PACKAGE_RETRY": "3"}}}, "PACKAGE_RETRIES"),  # the list of valid names
        ({"initContainer": {"env": {"PACKAGE_URL": "https://x/p.tgz"}}}, "PACKAGE_RETRIES"),
        ({"webhook": {"matchPolicy": "Loose"}}, "Equivalent"),
        ({"readinessProbe": {"httpGet": {"path": "/"}}}, "httpGet"),
        (
            {"webhook": {"objectSelector": {"matchExpressions": [{"key": "a", "operator": "Has"}]}}},
            "DoesNotExist",
        ),
        ({"extraEnv": [{"value": "x"}]}, "name"),
        ({"hostNetwork": "yes"}, "boolean"),
    ],
)
def test_schema_refuses_what_would_fail_at_start(values: dict[str, Any], words: str) -> None:
    with pytest.raises(helm.HelmError, match=words):
        render(values)


@pytest.mark.parametrize("bundle", ["not a certificate", "LS0tLS1CRUdJTiBQVUJMSUMgS0VZLS0tLS0K"])
def test_a_ca_bundle_that_is_not_a_pem_certificate_is_refused_in_words(bundle: str) -> None:
    with pytest.raises(helm.HelmError, match=r"tls\.secret\.caBundle must be the PEM of the CA certificate"):
        render({"tls": {"mode": "secret", "secret": {"name": "my-tls", "caBundle": bundle}}})


def test_schema_descriptions_are_the_values_yaml_comments() -> None:
    """values.yaml's `# --` comments are the schema's descriptions (scripts/schema-descriptions.py)."""
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "schema-descriptions.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert "EKS" in schema["properties"]["hostNetwork"]["description"]
