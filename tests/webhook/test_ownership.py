"""What counts as ours: pieces others add to survive, foreign pieces with our names refused, `$` escaped.

The situations come from real clusters (tests/support/admission_chain.py imitates the plugins and
webhooks; tests/e2e/test_real_cluster.py runs the real apiserver). Each asserts convergence too:
injecting the result again changes nothing.
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from initcontainer import contract
from tests.support import admission_chain as chain
from tests.support.kubelet_env import container_env, expand
from tests.webhook.conftest import PodFactory
from webhook.cli import run_inject
from webhook.inject import CREDENTIALS_VOLUME, Denied, inject, kubelet_escape
from webhook.settings import Settings

URL = "https://files.example.com/site.tar.gz"
POLICIES = ("IfNeeded", "Never")


def downloader(pod: dict[str, Any]) -> dict[str, Any]:
    (init,) = [c for c in pod["spec"]["initContainers"] if c["name"] == contract.INIT_CONTAINER_NAME]
    return init


def mount_names(container: dict[str, Any]) -> list[str]:
    return [m["name"] for m in container.get("volumeMounts", [])]


def env_names(container: dict[str, Any]) -> list[str]:
    return [e["name"] for e in container.get("env", [])]


def ours(settings: Settings) -> chain.Mutator:
    return lambda pod: inject(pod, settings).pod


def assert_fixed_point(pod: dict[str, Any], settings: Settings) -> None:
    again = inject(pod, settings)
    assert not again.changed and again.pod == pod


# --- the ServiceAccount plugin and other webhooks add to our init container ----------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_annotated_pod_through_the_chain_with_the_service_account_plugin(
    make_pod: PodFactory, settings: Settings, policy: str
) -> None:
    pod = chain.admit(make_pod({"package-url": URL}), [("a-package-injector", ours(settings), policy)])
    init = downloader(pod)
    assert mount_names(init) == [contract.VOLUME_NAME, chain.TOKEN_VOLUME]
    assert_fixed_point(pod, settings)


def test_token_mount_on_our_init_container_is_ours_and_kept(make_pod: PodFactory, settings: Settings) -> None:
    """The issue's denial: after our patch the plugin mounts the token into package-downloader."""
    first = inject(make_pod({"package-url": URL}), settings).pod
    mutated = chain.service_account_plugin(first)
    result = inject(mutated, settings)
    assert not result.changed and result.pod == mutated


def test_eks_pod_identity_additions_survive_a_changed_url(make_pod: PodFactory, settings: Settings) -> None:
    injected = chain.eks_pod_identity(
        chain.service_account_plugin(inject(make_pod({"package-url": URL}), settings).pod)
    )
    assert_fixed_point(injected, settings)
    edited = copy.deepcopy(injected)
    edited["metadata"]["annotations"]["package-url"] = URL + "?v=2"
    result = inject(edited, settings).pod
    init = downloader(result)
    assert container_env(init)[contract.ENV_URL] == URL + "?v=2"
    assert env_names(init) == [
        contract.ENV_URL,
        contract.ENV_DEST,
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ]
    assert mount_names(init) == [contract.VOLUME_NAME, chain.TOKEN_VOLUME, "aws-iam-token"]
    assert {v["name"] for v in result["spec"]["volumes"]} >= {"aws-iam-token", chain.TOKEN_VOLUME}
    assert_fixed_point(result, settings)


def test_a_webhook_added_env_and_a_mount_to_our_init_container(
    make_pod: PodFactory, settings: Settings
) -> None:
    """And the operator then upgraded the init image: our fields are rewritten, theirs kept in place."""
    old = Settings(init_image="registry.example/package-init:0.9")
    theirs = chain.env_and_mount_webhook(inject(make_pod({"package-url": URL}), old).pod)
    assert_fixed_point(theirs, old)
    result = inject(theirs, settings)
    init = downloader(result.pod)
    assert result.changed and init["image"] == settings.init_image
    assert env_names(init) == [contract.ENV_URL, contract.ENV_DEST, "TRACE_AGENT"]
    assert init["envFrom"] == [{"configMapRef": {"name": "agent-env"}}]
    assert mount_names(init) == [contract.VOLUME_NAME, "agent-config"]
    assert_fixed_point(result.pod, settings)


@pytest.mark.parametrize("theirs", POLICIES)
@pytest.mark.parametrize("order", ["before", "after"])
@pytest.mark.parametrize("policy", POLICIES)
def test_env_and_mount_webhook_before_or_after_ours(
    make_pod: PodFactory, settings: Settings, order: str, policy: str, theirs: str
) -> None:
    """Their additions reach our init container when they run after ours, or are called again after it."""
    name = "0-agent" if order == "before" else "z-agent"
    hooks = [("a-package-injector", ours(settings), policy), (name, chain.env_and_mount_webhook, theirs)]
    pod = chain.admit(make_pod({"package-url": URL}), hooks)
    for container in pod["spec"]["containers"]:
        assert "agent-config" in mount_names(container) and "TRACE_AGENT" in env_names(container)
        assert contract.VOLUME_NAME in mount_names(container)
    init = downloader(pod)
    reached = order == "after" or theirs == "IfNeeded"
    assert ("agent-config" in mount_names(init)) is reached and ("TRACE_AGENT" in env_names(init)) is reached
    assert_fixed_point(pod, settings)


def test_defaults_resources_and_duplicates_of_our_env(make_pod: PodFactory) -> None:
    """LimitRanger and apiserver defaults are kept; a second PACKAGE_URL someone appended is ours: fixed."""
    settings = Settings(init_resources={"requests": {"cpu": "50m"}})
    pod = inject(make_pod({"package-url": URL}), settings).pod
    init = downloader(pod)
    init["resources"]["limits"] = {"cpu": "1", "memory": "512Mi"}
    init["terminationMessagePath"] = "/dev/termination-log"
    assert_fixed_point(pod, settings)
    init["env"].append({"name": contract.ENV_URL, "value": "https://evil.example/x.tar"})
    fixed = inject(pod, settings).pod
    assert [e for e in downloader(fixed)["env"] if e["name"] == contract.ENV_URL] == [
        {"name": contract.ENV_URL, "value": URL}
    ]
    assert downloader(fixed)["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}


def test_our_resources_put_back_keep_what_limit_ranger_added(make_pod: PodFactory) -> None:
    """A policy webhook after ours changed our memory limit; LimitRanger had given our container its CPU
    limit. On reinvocation we put our values back and keep that CPU limit: LimitRanger does not run again
    after that round, and a quota on limits.cpu would deny the pod (tests/e2e/test_namespace_policies.py)."""
    settings = Settings()
    pod = inject(make_pod({"package-url": URL}), settings).pod
    init = downloader(pod)
    init["resources"]["limits"] = {"cpu": "300m", "memory": "300Mi"}  # LimitRanger's cpu, the policy's memory
    init["resources"]["requests"]["ephemeral-storage"] = "1Gi"
    fixed = inject(pod, settings).pod
    assert downloader(fixed)["resources"] == {
        "requests": {"cpu": "50m", "memory": "64Mi", "ephemeral-storage": "1Gi"},
        "limits": {"cpu": "300m", "memory": "256Mi"},
    }
    assert_fixed_point(fixed, settings)


@pytest.mark.parametrize("policy", POLICIES)
def test_a_container_appended_after_ours_gets_the_mount_only_when_reinvoked(
    make_pod: PodFactory, settings: Settings, policy: str
) -> None:
    def sidecar(pod: dict[str, Any]) -> dict[str, Any]:
        pod = copy.deepcopy(pod)
        if all(c["name"] != "sidecar" for c in pod["spec"]["containers"]):
            pod["spec"]["containers"].append({"name": "sidecar", "image": "mesh:1"})
        return pod

    hooks = [("a-package-injector", ours(settings), policy), ("z-mesh", sidecar, "Never")]
    pod = chain.admit(make_pod({"package-url": URL}), hooks)
    mounted = contract.VOLUME_NAME in mount_names(pod["spec"]["containers"][-1])
    assert mounted is (policy == "IfNeeded")


# --- offline `inject -f` output, then the apiserver --------------------------------------------------


def offline(manifest: dict[str, Any], settings: Settings) -> dict[str, Any]:
    out, err = io.StringIO(), io.StringIO()
    assert run_inject(io.StringIO(yaml.safe_dump(manifest)), out, err, settings, None) == 0, err.getvalue()
    result = yaml.safe_load(out.getvalue())
    assert isinstance(result, dict)
    return result


def pod_from_deployment(deployment: dict[str, Any]) -> dict[str, Any]:
    """What the ReplicaSet controller sends: the template's metadata and spec, as a Pod."""
    template = copy.deepcopy(deployment["spec"]["template"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": template["metadata"], "spec": template["spec"]}


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("kind", ["Pod", "Deployment"])
def test_offline_injected_manifest_is_admitted(settings: Settings, policy: str, kind: str) -> None:
    spec = {"containers": [{"name": "app", "image": "app:1"}]}
    meta = {"name": "web", "annotations": {"package-url": URL}}
    if kind == "Pod":
        manifest: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
        pod = offline(manifest, settings)
    else:
        template = {"metadata": {"labels": {"app": "web"}, "annotations": meta["annotations"]}, "spec": spec}
        manifest = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"template": template},
        }
        pod = pod_from_deployment(offline(manifest, settings))
    admitted = chain.admit(pod, [("a-package-injector", ours(settings), policy)])
    assert mount_names(downloader(admitted)) == [contract.VOLUME_NAME, chain.TOKEN_VOLUME]
    # Nothing of ours changed: the in-tree plugin's token mount is the only difference.
    assert admitted == chain.service_account_plugin(pod)


# --- an earlier injection's emptyDir and the size limit configured now -------------------------------


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        (Settings(default_size_limit="1Gi"), {"sizeLimit": "1Gi"}),
        (Settings(max_size_limit="2Gi"), {"sizeLimit": "2Gi"}),
        (Settings(default_size_limit="4Gi", max_size_limit="2Gi"), {"sizeLimit": "2Gi"}),
    ],
)
@pytest.mark.parametrize("with_status", [True, False], ids=["status", "no-status"])
def test_earlier_injection_emptydir_gets_the_size_limit_configured_now(
    make_pod: PodFactory, configured: Settings, expected: dict[str, str], with_status: bool
) -> None:
    earlier = chain.service_account_plugin(inject(make_pod({"package-url": URL}), Settings()).pod)
    if not with_status:  # a hand-written volume and mount, as the seed platform's docs said
        del earlier["metadata"]["annotations"]["package-status"]
        earlier["spec"]["initContainers"] = []
    result = inject(earlier, configured).pod
    (volume,) = [v for v in result["spec"]["volumes"] if v["name"] == contract.VOLUME_NAME]
    assert volume == {"name": contract.VOLUME_NAME, "emptyDir": expected}
    assert_fixed_point(result, configured)


def test_emptydir_keeps_its_medium_and_a_limit_when_none_is_configured(make_pod: PodFactory) -> None:
    pod = inject(make_pod({"package-url": URL}), Settings()).pod
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == contract.VOLUME_NAME]
    volume["emptyDir"] = {"medium": "Memory", "sizeLimit": "64Mi"}
    assert_fixed_point(pod, Settings())
    limited = inject(pod, Settings(max_size_limit="32Mi")).pod
    (volume,) = [v for v in limited["spec"]["volumes"] if v["name"] == contract.VOLUME_NAME]
    assert volume["emptyDir"] == {"medium": "Memory", "sizeLimit": "32Mi"}


# --- foreign pieces with our names are still refused --------------------------------------------------


def forged_status(containers: list[str] | None = None) -> str:
    return json.dumps(
        {
            "version": 1,
            "initContainer": contract.INIT_CONTAINER_NAME,
            "volumes": [contract.VOLUME_NAME, CREDENTIALS_VOLUME],
            "containers": containers or ["app"],
        }
    )


def our_like_init(**fields: Any) -> dict[str, Any]:
    container = {
        "name": contract.INIT_CONTAINER_NAME,
        "image": "busybox:1",
        "env": [{"name": contract.ENV_URL, "value": URL}],
        "volumeMounts": [{"name": contract.VOLUME_NAME, "mountPath": contract.DEFAULT_DEST}],
    }
    container.update(fields)
    return {k: v for k, v in container.items() if v is not None}


@pytest.mark.parametrize(
    "foreign",
    [
        our_like_init(command=["sh", "-c", "wget -O- $PACKAGE_URL | tar x"]),
        our_like_init(args=["--evil"]),
        our_like_init(restartPolicy="Always"),
        our_like_init(ports=[{"containerPort": 80}]),
        our_like_init(env=[{"name": "URL", "value": URL}]),
        our_like_init(
            env=[{"name": contract.ENV_URL, "valueFrom": {"secretKeyRef": {"name": "s", "key": "u"}}}]
        ),
        our_like_init(volumeMounts=[{"name": "data", "mountPath": "/data"}]),
        {"name": contract.INIT_CONTAINER_NAME, "image": "wget"},
    ],
    ids=["command", "args", "sidecar", "ports", "no-url-env", "url-from-secret", "no-shared-mount", "bare"],
)
@pytest.mark.parametrize("with_status", [True, False], ids=["forged-status", "no-status"])
def test_foreign_init_container_with_our_name_is_refused(
    make_pod: PodFactory, settings: Settings, foreign: dict[str, Any], with_status: bool
) -> None:
    annotations = {"package-url": URL}
    if with_status:
        annotations["package-status"] = forged_status()
    pod = make_pod(annotations, init_containers=[foreign])
    with pytest.raises(Denied, match="did not inject; rename it"):
        inject(pod, settings)


def test_forged_status_adopts_only_what_looks_like_an_earlier_injection(
    make_pod: PodFactory, settings: Settings
) -> None:
    """Same name, no command, our env and mount: indistinguishable from an injection by an older version.
    Adopting it rewrites every field we own, so it runs exactly the configured image and env."""
    pod = make_pod({"package-url": URL, "package-status": forged_status()}, init_containers=[our_like_init()])
    init = downloader(inject(pod, settings).pod)
    assert init["image"] == settings.init_image
    assert (
        init["securityContext"]["runAsNonRoot"] is True and init["securityContext"]["readOnlyRootFilesystem"]
    )


@pytest.mark.parametrize(
    "volume",
    [
        {"name": contract.VOLUME_NAME, "hostPath": {"path": "/var/lib/data"}},
        {"name": contract.VOLUME_NAME, "emptyDir": {}, "hostPath": {"path": "/x"}},
        {"name": contract.VOLUME_NAME, "persistentVolumeClaim": {"claimName": "data"}},
        {"name": contract.VOLUME_NAME, "emptyDir": "not-an-object"},
    ],
    ids=["hostPath", "two-sources", "pvc", "malformed"],
)
def test_foreign_volume_with_our_name_is_refused_even_with_a_forged_status(
    make_pod: PodFactory, settings: Settings, volume: dict[str, Any]
) -> None:
    pod = make_pod({"package-url": URL, "package-status": forged_status()})
    pod["spec"]["volumes"].append(volume)
    with pytest.raises(Denied, match="did not add; rename that volume"):
        inject(pod, Settings(default_size_limit="1Gi"))


def test_user_secret_volume_with_our_credentials_name_is_refused_without_status(
    make_pod: PodFactory, settings: Settings
) -> None:
    pod = make_pod({"package-url": URL, "package-secret": "pkg"})
    pod["spec"]["volumes"].append({"name": CREDENTIALS_VOLUME, "secret": {"secretName": "tls"}})
    with pytest.raises(Denied, match="did not add"):
        inject(pod, settings)


# --- `$` in values: what the init container sees is what was validated ----------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # The kubelet's own expansion table (third_party/forked/golang/expansion tests), VAR_A=A, VAR_B=B.
        ("$(VAR_A)", "A"),
        ("___$(VAR_B)___", "___B___"),
        ("$(VAR_A)-$(VAR_B)", "A-B"),
        ("$$(VAR_A)", "$(VAR_A)"),
        ("$$$(VAR_A)", "$A"),
        ("$$$$(VAR_A)", "$$(VAR_A)"),
        ("f000-$$VAR_A", "f000-$VAR_A"),
        ("$(VAR_DNE)", "$(VAR_DNE)"),
        ("$(VAR_A", "$(VAR_A"),
        ("$VAR_A", "$VAR_A"),
        ("$", "$"),
        ("$$", "$"),
        ("foo$", "foo$"),
        ("$()", "$()"),
    ],
)
def test_kubelet_stand_in_expands_like_the_kubelet(value: str, expected: str) -> None:
    assert expand(value, {"VAR_A": "A", "VAR_B": "B"}.get) == expected


TRICKY = [
    "https://files.example.com/a.tar?sig=$(PACKAGE_DEST)",
    "https://files.example.com/a$$b.tar",
    "https://files.example.com/a.tar?x=$",
    "https://files.example.com/$(HOME)/$$(PACKAGE_URL)/$$$(X)$(",
]


@pytest.mark.parametrize("url", TRICKY)
def test_env_values_are_escaped_so_the_kubelet_hands_over_the_validated_value(
    make_pod: PodFactory, url: str
) -> None:
    # Values the init container accepts (the contract refuses e.g. PACKAGE_RETRIES="$(X)" at settings load).
    settings = Settings(
        init_env={"PACKAGE_TERMINATION_LOG": "/tmp/$(PACKAGE_URL)"},
        init_proxy_env={"HTTPS_PROXY": "http://p$$:3128"},
    )
    pod = inject(make_pod({"package-url": url}), settings).pod
    init = downloader(pod)
    written = {e["name"]: e["value"] for e in init["env"]}
    assert written[contract.ENV_URL] == kubelet_escape(url) == url.replace("$", "$$")
    seen = container_env(init)
    assert seen[contract.ENV_URL] == url
    assert (
        seen["PACKAGE_TERMINATION_LOG"] == "/tmp/$(PACKAGE_URL)" and seen["HTTPS_PROXY"] == "http://p$$:3128"
    )
    assert_fixed_point(pod, settings)
    assert_fixed_point(chain.service_account_plugin(pod), settings)


def test_unescaped_value_of_an_older_version_is_rewritten(make_pod: PodFactory, settings: Settings) -> None:
    url = TRICKY[0]
    pod = inject(make_pod({"package-url": url}), settings).pod
    for entry in downloader(pod)["env"]:
        entry["value"] = entry["value"].replace("$$", "$")  # what a version without escaping wrote
    fixed = inject(pod, settings)
    assert fixed.changed and container_env(downloader(fixed.pod))[contract.ENV_URL] == url


def test_golden_service_account_case_is_a_fixed_point() -> None:
    """golden/pod-service-account-token: what the apiserver stores is accepted exactly as it is."""
    golden = Path(__file__).parent / "golden"
    stored = yaml.safe_load((golden / "pod-service-account-token.in.yaml").read_text())
    assert yaml.safe_load((golden / "pod-service-account-token.out.yaml").read_text()) == stored
    assert mount_names(downloader(stored)) == [contract.VOLUME_NAME, chain.TOKEN_VOLUME]


def test_a_webhook_that_sorts_env_and_mounts_causes_no_rewrite(
    make_pod: PodFactory, settings: Settings
) -> None:
    """Two webhooks must not fight: reordering our entries is not a difference."""
    pod = chain.service_account_plugin(
        inject(make_pod({"package-url": URL, "package-secret": "s"}), settings).pod
    )
    init = downloader(pod)
    before = env_names(init)
    init["env"].sort(key=lambda e: e["name"])
    init["volumeMounts"].reverse()
    assert env_names(init) != before
    assert_fixed_point(pod, settings)


@pytest.mark.parametrize("bad", [{"name": ["PACKAGE_URL"]}, {"name": {"a": 1}}, "PACKAGE_URL", None, 7])
def test_malformed_entries_in_our_init_container_are_a_clear_denial(
    make_pod: PodFactory, settings: Settings, bad: Any
) -> None:
    pod = chain.service_account_plugin(inject(make_pod({"package-url": URL}), settings).pod)
    downloader(pod)["env"].append(bad)
    downloader(pod)["volumeMounts"].append(bad)
    with pytest.raises(Denied) as denied:  # never a TypeError (an internal error)
        inject(pod, settings)
    assert denied.value.code == 400 and denied.value.reason == "malformed-object"
    assert "spec.initContainers[0]." in denied.value.message


# --- others' changes to fields we own that must not be undone by reinvocation ------------------------------


def assert_init_fixed(pod: dict[str, Any], settings: Settings) -> None:
    """Our init container is a fixed point (with Never the mesh's sidecar still lacks its mount)."""
    assert downloader(inject(pod, settings).pod) == downloader(pod)


def mesh(pod: dict[str, Any]) -> dict[str, Any]:
    """A webhook after ours that changes the pod, so ours is called again under IfNeeded."""
    pod = copy.deepcopy(pod)
    if all(c["name"] != "sidecar" for c in pod["spec"]["containers"]):
        pod["spec"]["containers"].append({"name": "sidecar", "image": "mesh:1"})
    return pod


@pytest.mark.parametrize("policy", POLICIES)
def test_always_pull_images_is_not_undone_on_reinvocation(
    make_pod: PodFactory, settings: Settings, policy: str
) -> None:
    hooks = [("a-package-injector", ours(settings), policy), ("z-mesh", mesh, "Never")]
    in_tree = (chain.service_account_plugin, chain.always_pull_images)
    pod = chain.admit(make_pod({"package-url": URL}), hooks, in_tree)
    assert downloader(pod)["imagePullPolicy"] == "Always", (
        "the plugin's validation would refuse anything else"
    )
    assert_init_fixed(pod, settings)


@pytest.mark.parametrize(
    "rewrite", [chain.image_mirror, chain.digest_pin, lambda p: chain.digest_pin(chain.image_mirror(p))]
)
@pytest.mark.parametrize("policy", POLICIES)
def test_a_mirror_or_digest_pin_of_our_image_is_kept(
    make_pod: PodFactory, settings: Settings, policy: str, rewrite: chain.Mutator
) -> None:
    hooks = [
        ("a-package-injector", ours(settings), policy),
        ("y-images", rewrite, "Never"),
        ("z-mesh", mesh, "Never"),
    ]
    pod = chain.admit(make_pod({"package-url": URL}), hooks)
    assert (
        downloader(pod)["image"]
        == rewrite({"spec": {"containers": [{"image": settings.init_image}]}})["spec"]["containers"][0][
            "image"
        ]
    )
    assert_init_fixed(pod, settings)


def uid_policy(pod: dict[str, Any]) -> dict[str, Any]:
    """A policy engine's mutation (Gatekeeper Assign, Kyverno): every container runs as UID/GID 1000 with a
    Localhost seccomp profile and drops NET_RAW too; its validating side then refuses any other UID."""
    pod = copy.deepcopy(pod)
    for container in chain._all_containers(pod["spec"]):
        sc = container.setdefault("securityContext", {})
        sc.update(runAsUser=1000, runAsGroup=1000)
        sc["seccompProfile"] = {"type": "Localhost", "localhostProfile": "profiles/strict.json"}
        sc["capabilities"] = {"drop": ["ALL", "NET_RAW"]}
    return pod


@pytest.mark.parametrize("policy", POLICIES)
def test_a_policy_engine_making_our_security_context_stricter_is_not_undone(
    make_pod: PodFactory, settings: Settings, policy: str
) -> None:
    hooks = [
        ("a-package-injector", ours(settings), policy),
        ("y-policy", uid_policy, "Never"),
        ("z-mesh", mesh, "Never"),
    ]
    pod = chain.admit(make_pod({"package-url": URL}), hooks)
    assert (
        downloader(pod)["securityContext"] == uid_policy(pod)["spec"]["initContainers"][0]["securityContext"]
    )
    assert_init_fixed(pod, settings)


@pytest.mark.parametrize(
    "weaker",
    [
        {"runAsUser": 0},
        {"runAsNonRoot": False},
        {"privileged": True},
        {"allowPrivilegeEscalation": True},
        {"seccompProfile": {"type": "Unconfined"}},
        {"capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]}},
        {"capabilities": {"drop": ["NET_RAW"]}},
        {"readOnlyRootFilesystem": False},
        {"procMount": "Unmasked"},
    ],
)
def test_a_weaker_security_context_is_rewritten(
    make_pod: PodFactory, settings: Settings, weaker: dict[str, Any]
) -> None:
    pod = inject(make_pod({"package-url": URL}), settings).pod
    downloader(pod)["securityContext"].update(weaker)
    fixed = downloader(inject(pod, settings).pod)["securityContext"]
    assert fixed == downloader(inject(make_pod({"package-url": URL}), settings).pod)["securityContext"]


def registry_swap(pod: dict[str, Any]) -> dict[str, Any]:
    """A registry-mirror webhook that moves images to its own registry and project (Harbor's proxy cache)."""
    pod = copy.deepcopy(pod)
    for container in chain._all_containers(pod["spec"]):
        container["image"] = container["image"].replace("ghcr.io/platform/", "mirror.example/ghcr-proxy/")
    return pod


@pytest.mark.parametrize("policy", POLICIES)
def test_a_mirror_that_swaps_the_registry_is_not_undone_on_reinvocation(
    make_pod: PodFactory, policy: str
) -> None:
    """Reinvoked after a mirror with reinvocationPolicy Never, we must not put back the registry the cluster
    cannot pull from: the same name and tag under another registry or project is the same image."""
    settings = Settings(init_image="ghcr.io/platform/package-init-container:0.1.0")
    hooks = [
        ("a-package-injector", ours(settings), policy),
        ("y-images", registry_swap, "Never"),
        ("z-mesh", mesh, "Never"),
    ]
    pod = chain.admit(make_pod({"package-url": URL}), hooks)
    assert downloader(pod)["image"] == "mirror.example/ghcr-proxy/package-init-container:0.1.0"
    assert_init_fixed(pod, settings)
    downloader(pod)["image"] = "mirror.example/ghcr-proxy/package-init-container:0.0.9"  # an upgrade since
    assert downloader(inject(pod, settings).pod)["image"] == settings.init_image


@pytest.mark.parametrize(
    "image",
    [
        "package-init-container:0.0.9",
        "evil.example/other:0.1.0",
        "package-init-container:0.1.0-evil",
        "mirror.example/package-init-container:0.0.9@sha256:" + "ab" * 32,
    ],
)
def test_another_image_is_rewritten(make_pod: PodFactory, settings: Settings, image: str) -> None:
    pod = inject(make_pod({"package-url": URL}), settings).pod
    downloader(pod)["image"] = image
    assert downloader(inject(pod, settings).pod)["image"] == settings.init_image


def test_removing_package_url_takes_out_our_container_with_its_additions_and_keeps_theirs(
    make_pod: PodFactory, settings: Settings
) -> None:
    pod = chain.eks_pod_identity(
        chain.service_account_plugin(inject(make_pod({"package-url": URL}), settings).pod)
    )
    del pod["metadata"]["annotations"]["package-url"]
    result = inject(pod, settings)
    spec = result.pod["spec"]
    assert "initContainers" not in spec
    assert [v["name"] for v in spec["volumes"]] == [
        "kube-api-access-x7k2p",
        chain.TOKEN_VOLUME,
        "aws-iam-token",
    ]
    assert contract.VOLUME_NAME not in mount_names(spec["containers"][0])
    assert "aws-iam-token" in mount_names(spec["containers"][0])
    assert_fixed_point(result.pod, settings)
