"""Render the chart over a matrix of values; validate every object; check what each value must change."""

from __future__ import annotations

import base64
import sys
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from tests.chart.helpers import (
    CHART,
    NAMESPACE,
    RELEASE,
    SCHEMA_VERSIONS,
    SYSTEM_NAMESPACES,
    all_of,
    hooks,
    namespace_labels,
    notes,
    one,
    release_objects,
    render,
    selector_matches,
    validate,
    validate_all,
)
from webhook.inject import inject
from webhook.settings import Settings, load_settings

OLDEST = {"kubeVersionOverride": "1.34.0"}
MATRIX: dict[str, dict[str, Any]] = {
    "defaults": {},
    "single-replica": {"replicaCount": 1},
    "cert-manager": {"tls": {"mode": "certManager"}},
    "cert-manager-cluster-issuer": {
        "tls": {
            "mode": "certManager",
            "certManager": {
                "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
            },
        }
    },
    "existing-secret": {
        "tls": {
            "mode": "secret",
            "secret": {
                "name": "my-tls",
                "caBundle": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            },
        }
    },
    "match-conditions-off": {"webhook": {"matchConditions": False}},
    "oldest-supported": OLDEST,
    "prefix": {"policy": {"annotationPrefix": "example.com/"}},
    "opt-in": {"webhook": {"optIn": True, "excludeNamespaces": ["batch-jobs"]}},
    "monitoring-and-netpol": {
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
        "networkPolicy": {
            "enabled": True,
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
        },
    },
    "priority-and-mesh-uid": {
        "priorityClassName": "system-cluster-critical",
        "initContainer": {"securityContext": {"runAsUser": 1337}},
        "image": {"registry": "registry.example.com/platform", "digest": "sha256:" + "a" * 64},
    },
    "workloads-off-ignore": {"webhook": {"workloads": {"enabled": False}, "failurePolicy": "Ignore"}},
    "corporate-proxy-private-registry": {
        "initContainer": {
            "image": {"registry": "registry.corp.example.com/platform"},
            "proxyEnv": {"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": ".svc,.cluster.local"},
            "imagePullSecrets": ["corp-registry", "mirror.pull"],
        }
    },
}


def mwc(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "MutatingWebhookConfiguration")


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment")["spec"]["template"]["spec"]


def settings_of(docs: list[dict[str, Any]], tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The webhook settings exactly as `package-injector serve` loads them in the rendered Pod: the
    ConfigMap's file, then the container's PACKAGE_INJECTOR_* variables."""
    config = tmp_path / "config.yaml"
    config.write_text(one(docs, "ConfigMap")["data"]["config.yaml"])
    for var in pod_spec(docs)["containers"][0]["env"]:
        if var["name"] != "PACKAGE_INJECTOR_CONFIG_FILE":
            monkeypatch.setenv(var["name"], var["value"])
    return load_settings(config)


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_every_object_validates_strictly(case: str) -> None:
    assert validate_all(render(MATRIX[case]), case) >= 8 * len(SCHEMA_VERSIONS)


def test_strict_validation_catches_a_typo() -> None:
    """The validation above can fail: an unknown field is an error."""
    deployment = one(render(), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment, "1.30")


@pytest.mark.parametrize("kube_version", ["v1.34.0", "v1.35.0", "v1.36.0", "v1.37.0"])
@pytest.mark.parametrize(
    "case", ["defaults", "cert-manager", "existing-secret", "opt-in", "monitoring-and-netpol"]
)
def test_lint_strict_is_clean(kube_version: str, case: str) -> None:
    report = helm.lint(str(CHART), MATRIX[case], strict=True, kube_version=kube_version, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not problems, report


# --- the MutatingWebhookConfiguration -------------------------------------------------------------


def test_webhooks_cover_pods_and_workloads_on_mutate() -> None:
    hooks_ = {w["name"]: w for w in mwc(render())["webhooks"]}
    assert set(hooks_) == {
        "pods.package-injector.dev",
        "workloads.package-injector.dev",
        "cronjobs.package-injector.dev",
    }
    pods = hooks_["pods.package-injector.dev"]
    assert pods["rules"] == [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "operations": ["CREATE"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    assert pods["reinvocationPolicy"] == "IfNeeded"
    resources = {
        (g, r)
        for w in hooks_.values()
        if w is not pods
        for rule in w["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert resources == {
        ("apps", "deployments"),
        ("apps", "statefulsets"),
        ("apps", "daemonsets"),
        ("apps", "replicasets"),
        ("batch", "jobs"),
        ("batch", "cronjobs"),
    }
    for w in hooks_.values():
        ops = {op for rule in w["rules"] for op in rule["operations"]}
        assert ops <= {"CREATE", "UPDATE"}, "object is null for DELETE/CONNECT: the CEL would fail"
        assert w["clientConfig"]["service"] == {
            "name": RELEASE,
            "namespace": NAMESPACE,
            "path": "/mutate",
            "port": 443,
        }
        assert w["failurePolicy"] == "Fail"
        assert w["sideEffects"] == "None"
        assert w["admissionReviewVersions"] == ["v1", "v1beta1"]
        assert 1 <= w["timeoutSeconds"] <= 30


@pytest.mark.parametrize("case", ["defaults", "opt-in", "prefix"])
def test_system_and_release_namespaces_are_never_mutated(case: str) -> None:
    for w in mwc(render(MATRIX[case]))["webhooks"]:
        selector = w["namespaceSelector"]
        for ns in [*SYSTEM_NAMESPACES, NAMESPACE]:
            assert not selector_matches(
                selector, namespace_labels(ns, {"package-injector.dev/injection": "enabled"})
            )
        assert not selector_matches(
            selector, namespace_labels("apps", {"package-injector.dev/injection": "disabled"})
        )


def test_other_namespaces_are_mutated_unless_opt_in() -> None:
    default = mwc(render())["webhooks"][0]["namespaceSelector"]
    assert selector_matches(default, namespace_labels("apps"))
    opt_in = mwc(render(MATRIX["opt-in"]))["webhooks"][0]["namespaceSelector"]
    assert not selector_matches(opt_in, namespace_labels("apps"))
    assert selector_matches(opt_in, namespace_labels("apps", {"package-injector.dev/injection": "enabled"}))
    assert not selector_matches(
        opt_in, namespace_labels("batch-jobs", {"package-injector.dev/injection": "enabled"})
    )


def test_release_namespace_follows_the_release() -> None:
    selector = mwc(render(namespace="platform"))["webhooks"][0]["namespaceSelector"]
    assert not selector_matches(selector, namespace_labels("platform"))
    assert selector_matches(selector, namespace_labels(NAMESPACE))


def test_object_selector_excludes_the_webhooks_own_pods() -> None:
    docs = render()
    own_pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    test_pod_labels = one(docs, "Pod")["metadata"]["labels"]
    for w in mwc(docs)["webhooks"]:
        assert not selector_matches(w["objectSelector"], own_pod_labels)
        assert not selector_matches(w["objectSelector"], test_pod_labels)
        assert selector_matches(w["objectSelector"], {"app": "shop"})


def test_failure_policy_values() -> None:
    ignore = mwc(render(MATRIX["workloads-off-ignore"]))["webhooks"]
    assert [w["name"] for w in ignore] == ["pods.package-injector.dev"]
    assert ignore[0]["failurePolicy"] == "Ignore"
    split = mwc(render({"webhook": {"workloads": {"failurePolicy": "Ignore"}}}))["webhooks"]
    assert {w["name"]: w["failurePolicy"] for w in split} == {
        "pods.package-injector.dev": "Fail",
        "workloads.package-injector.dev": "Ignore",
        "cronjobs.package-injector.dev": "Ignore",
    }


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, True),  # helm-python-sdk renders as Kubernetes 1.36
        (OLDEST, True),
        ({"kubeVersionOverride": "v1.35.3-gke.100"}, True),
        ({"webhook": {"matchConditions": "auto"}}, True),
        ({"webhook": {"matchConditions": False}}, False),
        ({"webhook": {"matchConditions": "false"}}, False),
        ({"webhook": {"matchConditions": True}, **OLDEST}, True),
    ],
)
def test_match_conditions_are_on_unless_switched_off(values: dict[str, Any], expected: bool) -> None:
    for w in mwc(render(values))["webhooks"]:
        assert ("matchConditions" in w) is expected, w["name"]


@pytest.mark.parametrize("version", ["1.33.9", "v1.28.0", "1.20.2"])
def test_versions_below_the_supported_range_are_refused(version: str) -> None:
    """Chart.yaml's kubeVersion checks what Helm detects; the override (helm template, Argo CD) too."""
    with pytest.raises(helm.HelmError, match=f"Kubernetes {version} is not supported"):
        render({"kubeVersionOverride": version})


@pytest.mark.parametrize(
    ("prefix", "key"), [("", "package-url"), ("example.com/", "example.com/package-url")]
)
def test_match_conditions_test_the_prefixed_trigger(prefix: str, key: str) -> None:
    for w in mwc(render({"policy": {"annotationPrefix": prefix}}))["webhooks"]:
        (condition,) = w["matchConditions"]
        assert f"'{key}' in " in condition["expression"]
        if prefix:
            assert "'package-url'" not in condition["expression"]


def _cel(expression: str, obj: dict[str, Any]) -> Any:
    import celpy

    limit = sys.getrecursionlimit()  # celpy raises it process-wide; the TLS fuzz test depends on the default
    try:
        env = celpy.Environment()
        return env.program(env.compile(expression)).evaluate({"object": celpy.json_to_cel(obj)})
    finally:
        sys.setrecursionlimit(limit)


def _template(annotations: dict[str, str] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"labels": {"app": "x"}}
    if annotations is not None:
        meta["annotations"] = annotations
    return {"metadata": meta, "spec": {"containers": [{"name": "a", "image": "a"}]}}


def test_the_pods_match_condition_matches_our_status_alone() -> None:
    """attack-multi: a Pod carrying our status and pieces but no package-url (made from a template that
    holds `inject`'s output after its keys were removed) skipped the webhook from 1.28 on (matchConditions)
    and kept downloading the removed packages; before 1.28 the webhook took them out. Now both do."""
    webhooks = {
        w["name"]: w["matchConditions"][0]["expression"] for w in mwc(render(MATRIX["prefix"]))["webhooks"]
    }
    pods = webhooks["pods.package-injector.dev"]
    assert _cel(pods, {"metadata": {"annotations": {"example.com/package-status": '{"version":1}'}}})
    assert not _cel(pods, {"metadata": {"annotations": {"package-status": "x"}}})
    assert not _cel(pods, {"metadata": {}})


def test_match_conditions_evaluate_as_intended() -> None:
    """Evaluate the rendered CEL (cel-python) on the objects the apiserver would pass."""
    webhooks = {
        w["name"]: w["matchConditions"][0]["expression"] for w in mwc(render(MATRIX["prefix"]))["webhooks"]
    }
    key = "example.com/package-url"
    pods = webhooks["pods.package-injector.dev"]
    assert _cel(pods, {"metadata": {"annotations": {key: "https://x/p.tar"}}})
    assert not _cel(pods, {"metadata": {}})  # no annotations at all: false, not an error
    assert not _cel(pods, {"metadata": {"annotations": {"package-url": "https://x/p.tar"}}})
    workloads = webhooks["workloads.package-injector.dev"]
    deployment = {"metadata": {"name": "d"}, "spec": {"template": _template({key: "u"})}}
    assert _cel(workloads, deployment)
    assert _cel(workloads, {"metadata": {"annotations": {key: "u"}}, "spec": {"template": _template(None)}})
    assert not _cel(workloads, {"metadata": {}, "spec": {"template": _template({"other": "u"})}})
    assert not _cel(workloads, {"metadata": {}, "spec": {}})  # malformed: false, not an error
    cron = webhooks["cronjobs.package-injector.dev"]
    cronjob = {"metadata": {}, "spec": {"jobTemplate": {"spec": {"template": _template({key: "u"})}}}}
    assert _cel(cron, cronjob)
    assert not _cel(cron, {"metadata": {}, "spec": {"jobTemplate": {"spec": {"template": _template(None)}}}})


# --- the webhook pods ----------------------------------------------------------------------------


def _restricted(ctx: dict[str, Any], pod_ctx: dict[str, Any]) -> None:
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True
    assert ctx.get("runAsUser", pod_ctx.get("runAsUser")) != 0
    profile = ctx.get("seccompProfile", pod_ctx.get("seccompProfile"))
    assert profile["type"] in ("RuntimeDefault", "Localhost")


@pytest.mark.parametrize("case", ["defaults", "priority-and-mesh-uid"])
def test_webhook_and_test_pods_meet_the_restricted_standard(case: str) -> None:
    docs = render(MATRIX[case])
    spec = pod_spec(docs)
    for container in spec["containers"]:
        _restricted(container["securityContext"], spec["securityContext"])
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["automountServiceAccountToken"] is False, "no API calls on the admission path"
    assert "hostNetwork" not in spec and "hostPath" not in str(spec["volumes"])
    test_pod = one(docs, "Pod")["spec"]
    for container in test_pod["containers"]:
        _restricted(container["securityContext"], test_pod["securityContext"])


def test_probes_ports_and_graceful_stop(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render()
    spec = pod_spec(docs)
    (container,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"https": 8443, "metrics": 8080}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    # Graceful stop: keep serving while endpoints update, then finish in-flight reviews, within the grace.
    settings = settings_of(docs, tmp_path, monkeypatch)
    assert settings.shutdown_delay > 0 and "lifecycle" not in container  # the image has no shell to sleep
    assert spec["terminationGracePeriodSeconds"] > settings.shutdown_delay + settings.shutdown_timeout
    assert settings.shutdown_timeout >= mwc(docs)["webhooks"][0]["timeoutSeconds"]
    with pytest.raises(helm.HelmError, match="terminationGracePeriodSeconds"):
        render({"terminationGracePeriodSeconds": 10})
    service = one(docs, "Service")
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        "https": (443, "https"),
        "metrics": (8080, "metrics"),
    }
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selector_matches({"matchLabels": service["spec"]["selector"]}, pod_labels)
    strategy = one(docs, "Deployment")["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0


def test_tls_and_config_are_mounted_where_the_settings_look(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = render()
    settings = settings_of(docs, tmp_path, monkeypatch)
    (container,) = pod_spec(docs)["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert str(settings.tls_cert_file.parent) == mounts["tls"]
    assert str(settings.tls_key_file.parent) == mounts["tls"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["PACKAGE_INJECTOR_CONFIG_FILE"].startswith(mounts["config"] + "/")
    assert settings.port == 8443 and settings.metrics_port == 8080
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == f"{RELEASE}-tls"
    assert volumes["config"]["configMap"]["name"] == one(docs, "ConfigMap")["metadata"]["name"]


def test_pdb_only_with_more_than_one_replica() -> None:
    pdb = one(render(), "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1" and pdb["spec"]["maxUnavailable"] == 1
    assert selector_matches(
        pdb["spec"]["selector"], one(render(), "Deployment")["spec"]["template"]["metadata"]["labels"]
    )
    assert not all_of(render(MATRIX["single-replica"]), "PodDisruptionBudget")


def test_topology_spread_priority_and_images() -> None:
    docs = render(MATRIX["priority-and-mesh-uid"])
    spec = pod_spec(docs)
    assert spec["priorityClassName"] == "system-cluster-critical"
    (constraint,) = spec["topologySpreadConstraints"]
    assert constraint["topologyKey"] == "kubernetes.io/hostname"
    assert selector_matches(
        constraint["labelSelector"], one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    )
    assert (
        spec["containers"][0]["image"] == "registry.example.com/platform/package-injector@sha256:" + "a" * 64
    )
    assert "priorityClassName" not in pod_spec(render())
    assert pod_spec(render())["containers"][0]["image"] == "ghcr.io/package-injector/package-injector:0.1.0"


def test_settings_carry_the_cluster_policy(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "policy": {
            "annotationPrefix": "example.com/",
            "allowedSchemes": ["https", "http"],
            "allowedHosts": ["*.example.com", "packages.internal"],
            "requireChecksum": True,
            "maxSizeLimit": "2Gi",
            "defaultSizeLimit": "512Mi",
            "defaultMountPath": "/opt/package",
            "maxInitResources": {"cpu": "1", "memory": "8Gi"},
            "maxPackagesPerPod": 3,
        },
        "initContainer": {
            "image": {"registry": "registry.example.com", "tag": "0.1.1", "pullPolicy": "Always"},
            "securityContext": {"runAsUser": 1337, "runAsGroup": 1337},
            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "1Gi"}},
            "env": {"PACKAGE_TOTAL_TIMEOUT": "600"},
            "proxyEnv": {"HTTPS_PROXY": "http://proxy.corp:3128", "no_proxy": ".svc"},
            "imagePullSecrets": ["corp-registry", "mirror.pull"],
        },
        "logLevel": "debug",
    }
    s = settings_of(render(values), tmp_path, monkeypatch)
    assert s.key("package-url") == "example.com/package-url"
    assert s.allowed_schemes == ["https", "http"]
    assert s.allowed_hosts == ["*.example.com", "packages.internal"]
    assert s.require_checksum is True
    assert s.max_packages_per_pod == 3
    assert (s.max_size_limit, s.default_size_limit, s.default_mount_path) == ("2Gi", "512Mi", "/opt/package")
    assert s.init_image == "registry.example.com/package-init-container:0.1.1"
    assert s.init_image_pull_policy == "Always"
    assert (s.init_run_as_user, s.init_run_as_group) == (1337, 1337)
    assert s.init_resources["limits"] == {"memory": "1Gi"}
    assert s.max_init_resources == {"cpu": "1", "memory": "8Gi", "ephemeral-storage": "20Gi"}
    assert s.init_env == {"PACKAGE_TOTAL_TIMEOUT": "600"}
    assert s.init_proxy_env == {"HTTPS_PROXY": "http://proxy.corp:3128", "no_proxy": ".svc"}
    assert s.init_image_pull_secrets == ["corp-registry", "mirror.pull"]
    assert s.log_level == "debug"
    defaults = settings_of(render(), tmp_path, monkeypatch)
    assert defaults.init_image == "ghcr.io/package-injector/package-init-container:0.1.0"
    assert defaults.max_size_limit is None and defaults.annotation_prefix == ""
    assert defaults.max_init_resources == Settings().max_init_resources
    assert defaults.init_proxy_env == {} and defaults.init_image_pull_secrets == []


def test_proxy_and_pull_secrets_reach_the_injected_pod(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From values to what the webhook behind the rendered Deployment injects into a pod."""
    docs = render(MATRIX["corporate-proxy-private-registry"])
    settings = settings_of(docs, tmp_path, monkeypatch)
    pod = {
        "metadata": {"annotations": {"package-url": "https://files.example.com/a.tgz"}},
        "spec": {"containers": [{"name": "app", "image": "app:1"}], "imagePullSecrets": [{"name": "own"}]},
    }
    injected = inject(pod, settings).pod["spec"]
    (init,) = injected["initContainers"]
    assert init["image"].startswith("registry.corp.example.com/platform/package-init-container:")
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env["HTTPS_PROXY"] == "http://proxy.corp:3128" and env["NO_PROXY"] == ".svc,.cluster.local"
    assert [e["name"] for e in injected["imagePullSecrets"]] == ["own", "corp-registry", "mirror.pull"]
    # The webhook's own pods pull with imagePullSecrets, not with the init container's.
    assert "imagePullSecrets" not in pod_spec(docs)


def test_policy_change_rolls_the_pods_but_a_rerender_does_not() -> None:
    def checksum(values: dict[str, Any]) -> str:
        return str(
            one(render(values), "Deployment")["spec"]["template"]["metadata"]["annotations"][
                "checksum/config"
            ]
        )

    assert checksum({}) == checksum({})
    assert checksum({}) != checksum({"policy": {"requireChecksum": True}})
    assert checksum({}) != checksum({"initContainer": {"proxyEnv": {"HTTPS_PROXY": "http://p:3128"}}})
    assert checksum({}) != checksum({"initContainer": {"imagePullSecrets": ["corp-registry"]}})


def test_service_monitor_and_network_policy_only_when_enabled() -> None:
    assert not all_of(render(), "ServiceMonitor") and not all_of(render(), "NetworkPolicy")
    docs = render(MATRIX["monitoring-and-netpol"])
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert selector_matches(monitor["spec"]["selector"], one(docs, "Service")["metadata"]["labels"])
    policy = one(docs, "NetworkPolicy")
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selector_matches(policy["spec"]["podSelector"], pod_labels)
    https, metrics = policy["spec"]["ingress"]
    assert https["ports"] == [{"port": "https", "protocol": "TCP"}] and "from" not in https
    assert metrics["from"] == MATRIX["monitoring-and-netpol"]["networkPolicy"]["metricsFrom"]
    assert policy["spec"]["egress"] == [] and "Egress" in policy["spec"]["policyTypes"]


# --- helm test ------------------------------------------------------------------------------------


def test_helm_test_hook_and_its_permissions() -> None:
    docs = render()
    test_objects = hooks(docs)
    assert {d["kind"] for d in test_objects} == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Pod",
    }
    for d in test_objects:
        annotations = d["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "test"
        assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"]
    pod = one(test_objects, "Pod")
    assert int(pod["metadata"]["annotations"]["helm.sh/hook-weight"]) > max(
        int(d["metadata"]["annotations"]["helm.sh/hook-weight"]) for d in test_objects if d["kind"] != "Pod"
    ), "RBAC exists before the test pod starts"
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["package-injector"] and container["args"][0] == "check"
    assert f"--name={RELEASE}" in container["args"] and "--namespace=default" in container["args"]
    assert pod["spec"]["restartPolicy"] == "Never"
    cluster_role = one(test_objects, "ClusterRole")
    assert cluster_role["rules"] == [
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["mutatingwebhookconfigurations"],
            "resourceNames": [RELEASE],
            "verbs": ["get"],
        }
    ]
    role = one(test_objects, "Role", f"{RELEASE}-test")
    assert role["metadata"]["namespace"] == "default"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}]
    endpoints = one(test_objects, "Role", f"{RELEASE}-test-endpoints")
    assert endpoints["metadata"]["namespace"] == NAMESPACE
    assert endpoints["rules"] == [
        {"apiGroups": [""], "resources": ["endpoints"], "resourceNames": [RELEASE], "verbs": ["get"]}
    ]
    bindings = [*all_of(test_objects, "RoleBinding"), one(test_objects, "ClusterRoleBinding")]
    assert {b["roleRef"]["name"] for b in bindings} == {f"{RELEASE}-test", f"{RELEASE}-test-endpoints"}
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": f"{RELEASE}-test", "namespace": NAMESPACE}
        ]
    # The webhook itself gets no permissions at all.
    kinds = {d["kind"] for d in release_objects(docs)}
    assert not kinds & {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
    assert not hooks(render({"tests": {"enabled": False}}))


def test_notes_tell_how_to_annotate_a_pod() -> None:
    text = notes(MATRIX["prefix"])
    assert "example.com/package-url:" in text and "helm test" in text
    assert "kubernetes.io/metadata.name" not in notes(OLDEST)  # no labelling hint: Kubernetes sets it


# --- values.schema.json ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {"unknownTopLevel": 1},
        {"webhook": {"failurePolicy": "Sometimes"}},
        {"webhook": {"reinvocationPolicy": "Always"}},
        {"webhook": {"matchConditions": "maybe"}},
        {"webhook": {"timeoutSeconds": 31}},
        {"webhook": {"surprise": True}},
        {"tls": {"mode": "letsencrypt"}},
        {"initContainer": {"securityContext": {"runAsUser": 0}}},
        {"initContainer": {"env": {"HTTP_PROXY": "x"}}},
        {"initContainer": {"proxyEnv": {"LD_PRELOAD": "x"}}},
        {"initContainer": {"proxyEnv": {"ALL_PROXY": "socks5://p:1080"}}},
        {"initContainer": {"proxyEnv": {"PACKAGE_RETRIES": "3"}}},
        {"initContainer": {"proxyEnv": {"HTTPS_PROXY": 3128}}},
        {"initContainer": {"imagePullSecrets": ["Corp_Registry"]}},
        {"initContainer": {"imagePullSecrets": ["infra/corp-registry"]}},
        {"initContainer": {"imagePullSecrets": [{"name": "corp-registry"}]}},
        {"initContainer": {"imagePullSecrets": ["corp-registry", "corp-registry"]}},
        {"initContainer": {"imagePullSecrets": "corp-registry"}},
        {"policy": {"annotationPrefix": "example.com"}},
        {"policy": {"allowedSchemes": ["ftp"]}},
        {"policy": {"maxSizeLimit": "two gigs"}},
        {"policy": {"maxPackagesPerPod": 0}},
        {"policy": {"maxPackagesPerPod": 65}},
        {"policy": {"maxPackagesPerPod": "8"}},
        {"policy": {"maxInitResources": {"memory": "lots"}}},
        {"policy": {"maxInitResources": {"gpu": "1"}}},
        {"image": {"pullPolicy": "Sometimes"}},
        {"replicaCount": 0},
    ],
)
def test_schema_rejects_bad_values(values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmError):
        render(values)


def test_secret_mode_requires_its_inputs() -> None:
    with pytest.raises(helm.HelmError, match=r"tls\.secret\.name"):
        render({"tls": {"mode": "secret", "secret": {"caBundle": "x"}}})
    with pytest.raises(helm.HelmError, match=r"tls\.secret\.caBundle"):
        render({"tls": {"mode": "secret", "secret": {"name": "my-tls"}}})


def test_values_yaml_matches_its_schema() -> None:
    helm.Chart.load(CHART).validate_schema(yaml.safe_load((CHART / "values.yaml").read_text()))


def test_existing_secret_mode() -> None:
    docs = render(MATRIX["existing-secret"])
    assert not all_of(docs, "Secret")
    pem = MATRIX["existing-secret"]["tls"]["secret"]["caBundle"]
    for w in mwc(docs)["webhooks"]:
        assert base64.b64decode(w["clientConfig"]["caBundle"]).decode() == pem
    assert {v["name"]: v for v in pod_spec(docs)["volumes"]}["tls"]["secret"]["secretName"] == "my-tls"
    already_b64 = base64.b64encode(pem.encode()).decode()
    docs = render({"tls": {"mode": "secret", "secret": {"name": "my-tls", "caBundle": already_b64}}})
    assert mwc(docs)["webhooks"][0]["clientConfig"]["caBundle"] == already_b64


def test_helm_test_passes_the_package_url_when_hosts_are_restricted() -> None:
    default_pod = one(hooks(render()), "Pod")
    assert not [a for a in default_pod["spec"]["containers"][0]["args"] if a.startswith("--package-url")]
    url = "https://files.example.com/probe.tar"
    pod = one(hooks(render({"tests": {"packageUrl": url}})), "Pod")
    assert f"--package-url={url}" in pod["spec"]["containers"][0]["args"]
