"""The pure injection: what is added, convergence, reinvocation, and every conflict."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import jsonpatch
import pytest

from initcontainer import contract
from webhook.inject import Denied, covers, inject
from webhook.settings import Settings

URL = "https://files.example.com/site.tar.gz"
DIGEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
PodFactory = Callable[..., dict[str, Any]]
SIDECAR = {"name": "istio-proxy", "image": "proxy:1", "restartPolicy": "Always"}
# The injector's pull secrets; the pods in these tests list "mirror" (or "own") themselves.
PULL = Settings(init_image_pull_secrets=["regcred", "mirror"])


def init_names(pod: dict[str, Any]) -> list[str]:
    return [c["name"] for c in pod["spec"].get("initContainers", [])]


def downloader(pod: dict[str, Any]) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        c for c in pod["spec"]["initContainers"] if c["name"] == contract.INIT_CONTAINER_NAME
    ]
    assert len(found) == 1
    return found[0]


def env(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in downloader(pod)["env"]}


def our_mounts(container: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in container.get("volumeMounts", []) if m["name"] == contract.VOLUME_NAME]


def test_pod_without_url_is_untouched(make_pod: PodFactory, settings: Settings) -> None:
    pod = make_pod({"team": "a"})
    result = inject(pod, settings)
    assert not result.requested and not result.changed and result.pod == pod


def test_input_is_not_mutated(make_pod: PodFactory, settings: Settings) -> None:
    pod = make_pod({"package-url": URL})
    before = copy.deepcopy(pod)
    inject(pod, settings)
    assert pod == before


def test_basic_injection(make_pod: PodFactory, settings: Settings) -> None:
    result = inject(make_pod({"package-url": URL, "package-sha256": DIGEST}), settings)
    pod = result.pod
    assert result.requested and result.changed and result.warnings == ()
    assert {"name": contract.VOLUME_NAME, "emptyDir": {}} in pod["spec"]["volumes"]
    init = downloader(pod)
    assert init["image"] == settings.init_image
    assert init["imagePullPolicy"] == settings.init_image_pull_policy
    assert init["resources"] == settings.init_resources
    assert init["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert init["volumeMounts"] == [{"name": contract.VOLUME_NAME, "mountPath": contract.DEFAULT_DEST}]
    assert env(pod) == {"PACKAGE_URL": URL, "PACKAGE_SHA256": DIGEST, "PACKAGE_DEST": contract.DEFAULT_DEST}
    assert our_mounts(pod["spec"]["containers"][0]) == [
        {"name": contract.VOLUME_NAME, "mountPath": "/shared-data/diff-var-files", "readOnly": True}
    ]
    status = json.loads(pod["metadata"]["annotations"]["package-status"])
    assert status == {
        "version": 1,
        "initContainer": "package-downloader",
        "volumes": ["package-shared-volume"],
        "containers": ["app"],
    }


def test_security_context_passes_pss_restricted(make_pod: PodFactory, settings: Settings) -> None:
    sc = downloader(inject(make_pod({"package-url": URL}), settings).pod)["securityContext"]
    assert sc == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsUser": 65532,
        "runAsGroup": 65532,
    }


def test_pod_uid_is_not_overridden(make_pod: PodFactory, settings: Settings) -> None:
    pod = make_pod({"package-url": URL}, securityContext={"runAsUser": 1000, "fsGroup": 2000})
    sc = downloader(inject(pod, settings).pod)["securityContext"]
    assert "runAsUser" not in sc and "runAsGroup" not in sc and sc["runAsNonRoot"] is True


def test_root_pod_gets_a_non_root_downloader_and_a_warning(make_pod: PodFactory, settings: Settings) -> None:
    pod = make_pod({"package-url": URL, "package-sha256": DIGEST}, securityContext={"runAsUser": 0})
    result = inject(pod, settings)
    assert downloader(result.pod)["securityContext"]["runAsUser"] == 65532
    assert result.warnings == (
        "package-injector: the pod runs as root (runAsUser: 0); package-downloader runs as UID 65532",
    )


def test_no_uid_setting_leaves_uid_to_the_image(make_pod: PodFactory) -> None:
    settings = Settings(init_run_as_user=None, init_run_as_group=None)
    sc = downloader(inject(make_pod({"package-url": URL}), settings).pod)["securityContext"]
    assert "runAsUser" not in sc and sc["runAsNonRoot"] is True


def test_all_options(make_pod: PodFactory) -> None:
    settings = Settings(
        allowed_schemes=["https", "http"],
        init_env={"PACKAGE_RETRIES": "3"},
        init_proxy_env={"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": ".svc"},
    )
    annotations = {
        "package-url": "http://mirror.local/site.tgz",
        "package-sha256": DIGEST,
        "package-mount-path": "/app/config",
        "package-containers": "web",
        "package-strip-components": "1",
        "package-secret": "repo-creds",
        "package-size-limit": "512Mi",
    }
    pod = inject(make_pod(annotations, containers=("web", "exporter")), settings).pod
    assert list(env(pod).items()) == [
        ("PACKAGE_URL", "http://mirror.local/site.tgz"),
        ("PACKAGE_SHA256", DIGEST),
        ("PACKAGE_DEST", contract.DEFAULT_DEST),
        ("PACKAGE_STRIP_COMPONENTS", "1"),
        ("PACKAGE_CREDENTIALS_DIR", contract.DEFAULT_CREDENTIALS_DIR),
        ("PACKAGE_ALLOW_HTTP", "true"),
        ("PACKAGE_RETRIES", "3"),
        ("HTTPS_PROXY", "http://proxy:3128"),
        ("NO_PROXY", ".svc"),
    ]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["package-shared-volume"] == {
        "name": "package-shared-volume",
        "emptyDir": {"sizeLimit": "512Mi"},
    }
    assert volumes["package-credentials"] == {
        "name": "package-credentials",
        "secret": {"secretName": "repo-creds"},
    }
    assert {
        "name": "package-credentials",
        "mountPath": contract.DEFAULT_CREDENTIALS_DIR,
        "readOnly": True,
    } in (downloader(pod)["volumeMounts"])
    web, exporter = pod["spec"]["containers"]
    assert our_mounts(web) == [{"name": contract.VOLUME_NAME, "mountPath": "/app/config", "readOnly": True}]
    assert our_mounts(exporter) == []
    # The credentials are for the downloader only.
    assert all(
        m["name"] != "package-credentials" for c in pod["spec"]["containers"] for m in c["volumeMounts"]
    )


def test_position_first_goes_after_leading_native_sidecars(make_pod: PodFactory, settings: Settings) -> None:
    inits = [
        SIDECAR,
        {"name": "migrate", "image": "m"},
        {"name": "late-sidecar", "image": "x", "restartPolicy": "Always"},
    ]
    pod = inject(make_pod({"package-url": URL}, init_containers=inits), settings).pod
    assert init_names(pod) == ["istio-proxy", "package-downloader", "migrate", "late-sidecar"]


def test_position_first_without_sidecars(make_pod: PodFactory, settings: Settings) -> None:
    pod = inject(
        make_pod({"package-url": URL}, init_containers=[{"name": "migrate", "image": "m"}]), settings
    ).pod
    assert init_names(pod) == ["package-downloader", "migrate"]


def test_position_last(make_pod: PodFactory, settings: Settings) -> None:
    pod = make_pod(
        {"package-url": URL, "package-init-position": "last"}, init_containers=[SIDECAR, {"name": "m"}]
    )
    assert init_names(inject(pod, settings).pod) == ["istio-proxy", "m", "package-downloader"]


@pytest.mark.parametrize("settings", [Settings(), PULL], ids=["defaults", "pull-secrets"])
@pytest.mark.parametrize(
    "annotations",
    [
        {"package-url": URL},
        {"package-url": URL, "package-secret": "s", "package-size-limit": "1Gi", "package-containers": "app"},
        {"package-url": URL, "package-init-position": "last", "package-mount-path": "/srv/data"},
    ],
)
def test_running_on_its_own_output_changes_nothing(
    make_pod: PodFactory, settings: Settings, annotations: dict[str, str]
) -> None:
    pod = make_pod(
        annotations, containers=("app", "b"), init_containers=[SIDECAR], imagePullSecrets=[{"name": "mirror"}]
    )
    once = inject(pod, settings)
    twice = inject(once.pod, settings)
    assert not twice.changed
    assert twice.pod == once.pod
    assert jsonpatch.make_patch(once.pod, twice.pod).patch == []


def apiserver_defaults(pod: dict[str, Any]) -> dict[str, Any]:
    """What the apiserver does to our output before a reinvocation: default fields, canonical quantities."""
    pod = copy.deepcopy(pod)
    for c in pod["spec"]["initContainers"]:
        c.setdefault("terminationMessagePath", "/dev/termination-log")
    for v in pod["spec"]["volumes"]:
        if "secret" in v:
            v["secret"].setdefault("defaultMode", 420)
        if v.get("emptyDir", {}).get("sizeLimit") == "1024Mi":
            v["emptyDir"]["sizeLimit"] = "1Gi"
    downloader(pod)["resources"]["requests"]["cpu"] = "0.05"
    return pod


def test_converges_on_apiserver_defaulted_output(make_pod: PodFactory, settings: Settings) -> None:
    pod = make_pod({"package-url": URL, "package-secret": "s", "package-size-limit": "1024Mi"})
    stored = apiserver_defaults(inject(pod, settings).pod)
    again = inject(stored, settings)
    assert not again.changed and again.pod == stored


def test_reinvocation_mounts_a_container_added_by_a_later_webhook(
    make_pod: PodFactory, settings: Settings
) -> None:
    first = inject(make_pod({"package-url": URL}), settings).pod
    later = copy.deepcopy(first)
    later["spec"]["containers"].append({"name": "log-shipper", "image": "fluent-bit"})
    later["spec"]["initContainers"].insert(0, SIDECAR)  # a mesh webhook adds its native sidecar
    again = inject(later, settings)
    assert again.changed
    shipper = again.pod["spec"]["containers"][1]
    assert our_mounts(shipper) == [
        {"name": contract.VOLUME_NAME, "mountPath": contract.DEFAULT_DEST, "readOnly": True}
    ]
    assert init_names(again.pod) == ["istio-proxy", "package-downloader"]
    status = json.loads(again.pod["metadata"]["annotations"]["package-status"])
    assert status["containers"] == ["app", "log-shipper"]
    assert not inject(again.pod, settings).changed


def test_changed_annotations_replace_what_we_injected(make_pod: PodFactory, settings: Settings) -> None:
    first = inject(make_pod({"package-url": URL, "package-secret": "s"}, containers=("a", "b")), settings).pod
    edited = copy.deepcopy(first)
    edited["metadata"]["annotations"].update({"package-url": URL + "?v=2", "package-containers": "b"})
    del edited["metadata"]["annotations"]["package-secret"]
    result = inject(edited, settings).pod
    assert env(result)["PACKAGE_URL"] == URL + "?v=2" and "PACKAGE_CREDENTIALS_DIR" not in env(result)
    assert [v["name"] for v in result["spec"]["volumes"]] == [
        "kube-api-access-x7k2p",
        "package-shared-volume",
    ]
    a, b = result["spec"]["containers"]
    assert our_mounts(a) == [] and len(our_mounts(b)) == 1
    assert init_names(result) == ["package-downloader"]


def test_legacy_identical_pieces_are_adopted(make_pod: PodFactory, settings: Settings) -> None:
    """The seed platform's volume and read-only mount, without our status annotation, are accepted."""
    pod = make_pod({"package-url": URL})
    pod["spec"]["volumes"].append({"name": contract.VOLUME_NAME, "emptyDir": {}})
    pod["spec"]["containers"][0]["volumeMounts"].append(
        {"name": contract.VOLUME_NAME, "mountPath": contract.DEFAULT_DEST, "readOnly": True}
    )
    result = inject(pod, settings).pod
    assert [v["name"] for v in result["spec"]["volumes"]].count(contract.VOLUME_NAME) == 1
    assert len(our_mounts(result["spec"]["containers"][0])) == 1


def deny(pod: dict[str, Any], settings: Settings) -> Denied:
    with pytest.raises(Denied) as info:
        inject(pod, settings)
    assert info.value.code == 400
    return info.value


def test_conflict_foreign_volume(make_pod: PodFactory, settings: Settings) -> None:
    pod = make_pod({"package-url": URL})
    pod["spec"]["volumes"].append({"name": contract.VOLUME_NAME, "hostPath": {"path": "/data"}})
    assert deny(pod, settings).message == (
        'package-injector: the pod already has a volume named "package-shared-volume" that package-injector '
        "did not add; rename that volume"
    )


def test_conflict_foreign_volume_with_extra_source(make_pod: PodFactory, settings: Settings) -> None:
    pod = make_pod({"package-url": URL})
    pod["spec"]["volumes"].append({"name": contract.VOLUME_NAME, "emptyDir": {}, "hostPath": {"path": "/x"}})
    assert "did not add" in deny(pod, settings).message


def test_conflict_foreign_credentials_volume(make_pod: PodFactory, settings: Settings) -> None:
    pod = make_pod({"package-url": URL, "package-secret": "s"})
    pod["spec"]["volumes"].append({"name": "package-credentials", "configMap": {"name": "c"}})
    assert 'volume named "package-credentials"' in deny(pod, settings).message


def test_conflict_foreign_init_container(make_pod: PodFactory, settings: Settings) -> None:
    pod = make_pod({"package-url": URL}, init_containers=[{"name": "package-downloader", "image": "wget"}])
    denied = deny(pod, settings)
    assert denied.reason == "conflict"
    assert (
        'already has an init container named "package-downloader" that package-injector did not inject'
        in (denied.message)
    )


def test_conflict_main_container_with_our_name(make_pod: PodFactory, settings: Settings) -> None:
    assert (
        'container named "package-downloader"'
        in deny(make_pod({"package-url": URL}, containers=("package-downloader",)), settings).message
    )


def test_conflict_other_volume_at_mount_path(make_pod: PodFactory, settings: Settings) -> None:
    pod = make_pod({"package-url": URL, "package-mount-path": "/srv/data"})
    pod["spec"]["volumes"].append({"name": "data", "emptyDir": {}})
    pod["spec"]["containers"][0]["volumeMounts"].append({"name": "data", "mountPath": "/srv/data/"})
    assert deny(pod, settings).message == (
        'package-injector: container "app" already mounts volume "data" at /srv/data; '
        'set the "package-mount-path" annotation to another directory'
    )


def test_conflict_other_volume_at_mount_path_only_in_target_containers(
    make_pod: PodFactory, settings: Settings
) -> None:
    pod = make_pod({"package-url": URL, "package-containers": "app"}, containers=("app", "other"))
    pod["spec"]["containers"][1]["volumeMounts"].append({"name": "data", "mountPath": contract.DEFAULT_DEST})
    assert inject(pod, settings).changed


def test_conflict_foreign_mount_of_our_volume(make_pod: PodFactory, settings: Settings) -> None:
    pod = make_pod({"package-url": URL})
    pod["spec"]["containers"][0]["volumeMounts"].append(
        {"name": contract.VOLUME_NAME, "mountPath": "/elsewhere"}
    )
    assert 'already mounts "package-shared-volume" differently' in deny(pod, settings).message


def test_unknown_container_in_package_containers(make_pod: PodFactory, settings: Settings) -> None:
    pod = make_pod({"package-url": URL, "package-containers": "app,web"}, containers=("app", "sidecar"))
    assert deny(pod, settings).message == (
        "package-injector: annotation \"package-containers\": the pod has no container 'web' "
        "(it has: app, sidecar)"
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"containers": []}, "the pod has no containers"),
        ({"containers": "app"}, "spec.containers must be a list of objects"),
        ({"containers": [{"name": "a"}], "volumes": {"a": 1}}, "spec.volumes must be a list of objects"),
    ],
)
def test_malformed_pods_are_denied(spec: dict[str, Any], expected: str, settings: Settings) -> None:
    pod = {"metadata": {"annotations": {"package-url": URL}}, "spec": spec}
    assert expected in deny(pod, settings).message


def test_covers_allows_defaulted_extras_but_not_missing_fields() -> None:
    assert covers({"a": 1, "b": 2}, {"a": 1})
    assert not covers({"a": 1}, {"a": 1, "b": 2})
    assert not covers([1, 2], [1])
    assert not covers({"x": True}, {"x": 1})
    assert covers(
        {"resources": {"limits": {"memory": "1Gi"}}}, {"resources": {"limits": {"memory": "1024Mi"}}}
    )
    assert not covers({"env": "1Gi"}, {"env": "1024Mi"})


def test_pure_same_input_same_output(make_pod: PodFactory, settings: Settings) -> None:
    pod = make_pod({"package-url": URL, "package-secret": "s"})
    assert inject(pod, settings).pod == inject(pod, settings).pod


# --- nested mount paths ---------------------------------------------------------------------------------


def test_another_volume_inside_the_mount_path_is_denied(make_pod: PodFactory, settings: Settings) -> None:
    pod = make_pod({"package-url": URL, "package-mount-path": "/srv/data"})
    pod["spec"]["containers"][0]["volumeMounts"].append({"name": "conf", "mountPath": "/srv/data/conf/"})
    denied = deny(pod, settings)
    assert denied.reason == "conflict"
    assert denied.message == (
        'package-injector: container "app" mounts volume "conf" at /srv/data/conf, inside the package mount '
        "path /srv/data, where it would hide package files; move that volumeMount out of /srv/data or set "
        'the "package-mount-path" annotation to another directory'
    )


@pytest.mark.parametrize("other", ["/srv", "/srv/", "/srv/dat", "/srv/data-old", "/srv/database/x"])
def test_a_volume_above_or_beside_the_mount_path_is_allowed(
    make_pod: PodFactory, settings: Settings, other: str
) -> None:
    """Kubernetes nests mounts: the package hides only /srv/data of a volume at /srv."""
    pod = make_pod({"package-url": URL, "package-mount-path": "/srv/data"})
    pod["spec"]["containers"][0]["volumeMounts"].append({"name": "work", "mountPath": other})
    mounts = inject(pod, settings).pod["spec"]["containers"][0]["volumeMounts"]
    assert {"name": contract.VOLUME_NAME, "mountPath": "/srv/data", "readOnly": True} in mounts


def test_nested_mounts_in_non_target_containers_are_not_our_business(
    make_pod: PodFactory, settings: Settings
) -> None:
    pod = make_pod({"package-url": URL, "package-containers": "app"}, containers=("app", "other"))
    pod["spec"]["containers"][1]["volumeMounts"].append(
        {"name": "x", "mountPath": contract.DEFAULT_DEST + "/x"}
    )
    assert inject(pod, settings).changed


def test_conflict_messages_use_the_prefixed_key(make_pod: PodFactory) -> None:
    settings = Settings(annotation_prefix="example.com/")
    pod = make_pod({"example.com/package-url": URL})
    pod["spec"]["containers"][0]["volumeMounts"].append({"name": "d", "mountPath": contract.DEFAULT_DEST})
    assert '"example.com/package-mount-path" annotation' in deny(pod, settings).message


# --- package-url removed from an injected pod -----------------------------------------------------------


def test_removing_package_url_removes_what_was_injected(make_pod: PodFactory, settings: Settings) -> None:
    original = make_pod(
        {"package-url": URL, "package-secret": "creds", "team": "a"},
        containers=("app", "b"),
        init_containers=[SIDECAR],
    )
    injected = inject(original, settings).pod
    edited = copy.deepcopy(injected)
    del edited["metadata"]["annotations"]["package-url"]
    result = inject(edited, settings)
    assert result.changed and not result.requested
    expected = copy.deepcopy(original)
    del expected["metadata"]["annotations"]["package-url"]
    assert result.pod == expected
    assert result.warnings[-1].startswith(
        'package-injector: "package-url" is not set but "package-status" is; package-injector removed'
    )
    again = inject(result.pod, settings)
    assert not again.changed and again.pod == result.pod
    assert again.warnings == result.warnings[:-1]  # "package-secret set without package-url" stays


def test_removal_drops_lists_that_become_empty(make_pod: PodFactory, settings: Settings) -> None:
    bare = {
        "metadata": {"name": "p", "annotations": {"package-url": URL}},
        "spec": {"containers": [{"name": "a"}]},
    }
    injected = inject(bare, settings).pod
    del injected["metadata"]["annotations"]["package-url"]
    assert inject(injected, settings).pod == {
        "metadata": {"name": "p", "annotations": {}},
        "spec": {"containers": [{"name": "a"}]},
    }


def test_removal_keeps_foreign_pieces(make_pod: PodFactory, settings: Settings) -> None:
    """Only pieces with our shape go; a hand-made init container with our name stays."""
    pod = make_pod({"package-status": ann_status(["app"])})
    foreign = {"name": contract.INIT_CONTAINER_NAME, "image": "wget", "command": ["wget", "x"]}
    pod["spec"]["initContainers"] = [foreign]
    pod["spec"]["volumes"].append({"name": contract.VOLUME_NAME, "hostPath": {"path": "/data"}})
    result = inject(pod, settings).pod
    assert result["spec"]["initContainers"] == [foreign]
    assert {"name": contract.VOLUME_NAME, "hostPath": {"path": "/data"}} in result["spec"]["volumes"]
    assert "package-status" not in result["metadata"]["annotations"]


# --- image pull secrets (init_image_pull_secrets) ------------------------------------------------------


def pull_names(pod: dict[str, Any]) -> list[str]:
    return [e["name"] for e in pod["spec"].get("imagePullSecrets", [])]


def status_of(pod: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(pod["metadata"]["annotations"]["package-status"])
    return result


def test_pull_secrets_are_appended_after_the_pods_own(make_pod: PodFactory) -> None:
    own = [{"name": "own"}, {"name": "mirror"}]
    pod = make_pod({"package-url": URL}, imagePullSecrets=own)
    result = inject(pod, PULL).pod
    assert result["spec"]["imagePullSecrets"] == [*own, {"name": "regcred"}]
    assert status_of(result)["imagePullSecrets"] == ["regcred"], "the pod's own 'mirror' is not ours"


def test_pull_secrets_on_a_pod_without_any(make_pod: PodFactory) -> None:
    result = inject(make_pod({"package-url": URL}), PULL).pod
    assert pull_names(result) == ["regcred", "mirror"]
    assert status_of(result)["imagePullSecrets"] == ["regcred", "mirror"]


def test_without_pull_secrets_the_pods_list_and_the_status_are_unchanged(
    make_pod: PodFactory, settings: Settings
) -> None:
    pod = make_pod({"package-url": URL}, imagePullSecrets=[{"name": "own"}])
    result = inject(pod, settings).pod
    assert result["spec"]["imagePullSecrets"] is pod["spec"]["imagePullSecrets"]
    assert "imagePullSecrets" not in status_of(result)
    assert "imagePullSecrets" not in inject(make_pod({"package-url": URL}), settings).pod["spec"]


@pytest.mark.parametrize("own", [[], [{"name": "own"}], [{"name": "own"}, {"name": "mirror"}]])
def test_removing_package_url_removes_only_the_pull_secrets_we_added(
    make_pod: PodFactory, own: list[dict[str, str]]
) -> None:
    original = make_pod({"package-url": URL, "team": "a"}, **({"imagePullSecrets": own} if own else {}))
    edited = copy.deepcopy(inject(original, PULL).pod)
    del edited["metadata"]["annotations"]["package-url"]
    result = inject(edited, PULL)
    expected = copy.deepcopy(original)
    del expected["metadata"]["annotations"]["package-url"]
    assert result.pod == expected, "the pod's own entries stay, ours go, an emptied list goes"
    assert "image pull secrets" in result.warnings[-1]
    assert not inject(result.pod, PULL).changed


def test_reinvocation_keeps_pull_secrets_a_later_webhook_added(make_pod: PodFactory) -> None:
    first = inject(make_pod({"package-url": URL}, imagePullSecrets=[{"name": "own"}]), PULL).pod
    later = copy.deepcopy(first)
    later["spec"]["imagePullSecrets"].append({"name": "mesh-pull"})
    later["spec"]["containers"].append({"name": "log-shipper", "image": "fluent-bit"})
    again = inject(later, PULL)
    assert again.changed  # the new container's mount
    assert pull_names(again.pod) == ["own", "regcred", "mirror", "mesh-pull"]
    assert status_of(again.pod)["imagePullSecrets"] == ["regcred", "mirror"]
    assert not inject(again.pod, PULL).changed
    removed = copy.deepcopy(again.pod)
    del removed["metadata"]["annotations"]["package-url"]
    assert pull_names(inject(removed, PULL).pod) == ["own", "mesh-pull"]


def test_pull_secrets_no_longer_configured_are_dropped_but_the_pods_own_stay(make_pod: PodFactory) -> None:
    """Like a new init image: what an older configuration added is ours to update."""
    first = inject(make_pod({"package-url": URL}, imagePullSecrets=[{"name": "mirror"}]), PULL).pod
    assert pull_names(first) == ["mirror", "regcred"]
    result = inject(first, Settings())
    assert result.changed
    assert pull_names(result.pod) == ["mirror"]
    assert "imagePullSecrets" not in status_of(result.pod)
    assert not inject(result.pod, Settings()).changed
    moved = inject(first, Settings(init_image_pull_secrets=["other"])).pod
    assert pull_names(moved) == ["mirror", "other"] and status_of(moved)["imagePullSecrets"] == ["other"]


def test_a_pull_secret_the_pod_lists_is_never_duplicated(make_pod: PodFactory) -> None:
    pod = make_pod({"package-url": URL}, imagePullSecrets=[{"name": "regcred"}, {"name": "mirror"}])
    result = inject(pod, PULL)
    assert result.pod["spec"]["imagePullSecrets"] == pod["spec"]["imagePullSecrets"]
    assert "imagePullSecrets" not in status_of(result.pod)


def test_malformed_image_pull_secrets_are_denied_when_we_add_to_them(
    make_pod: PodFactory, settings: Settings
) -> None:
    pod = make_pod({"package-url": URL}, imagePullSecrets=["regcred"])
    assert "spec.imagePullSecrets must be a list of objects" in deny(pod, PULL).message
    assert inject(pod, settings).changed, "without pull secrets configured the list is not ours to judge"


def test_status_with_malformed_pull_secrets_owns_nothing(make_pod: PodFactory) -> None:
    forged = json.loads(ann_status(["app"]))
    forged["imagePullSecrets"] = "regcred"
    pod = make_pod({"package-status": json.dumps(forged)}, imagePullSecrets=[{"name": "regcred"}])
    result = inject(pod, PULL).pod
    assert pull_names(result) == ["regcred"]
    assert "package-status" not in result["metadata"]["annotations"]


# --- a hand-written status annotation -------------------------------------------------------------------


def ann_status(containers: list[str], volumes: tuple[str, ...] = (contract.VOLUME_NAME,)) -> str:
    return json.dumps(
        {
            "version": 1,
            "initContainer": contract.INIT_CONTAINER_NAME,
            "volumes": list(volumes),
            "containers": containers,
        }
    )


def test_forged_status_does_not_make_a_foreign_volume_ours(make_pod: PodFactory, settings: Settings) -> None:
    pod = make_pod({"package-url": URL, "package-status": ann_status(["app"])})
    pod["spec"]["volumes"].append({"name": contract.VOLUME_NAME, "hostPath": {"path": "/data"}})
    assert "did not add" in deny(pod, settings).message


def test_forged_status_does_not_make_a_foreign_init_container_ours(
    make_pod: PodFactory, settings: Settings
) -> None:
    foreign = {"name": contract.INIT_CONTAINER_NAME, "image": "wget", "command": ["sh", "-c", "wget $URL"]}
    pod = make_pod({"package-url": URL, "package-status": ann_status(["app"])}, init_containers=[foreign])
    assert "did not inject" in deny(pod, settings).message


def test_forged_status_does_not_make_a_foreign_mount_ours(make_pod: PodFactory, settings: Settings) -> None:
    pod = make_pod({"package-url": URL, "package-status": ann_status(["app"])})
    pod["spec"]["containers"][0]["volumeMounts"].append(
        {"name": contract.VOLUME_NAME, "mountPath": "/data", "subPath": "x"}
    )
    assert "differently" in deny(pod, settings).message


def test_our_own_output_with_an_old_image_is_still_ours(make_pod: PodFactory, settings: Settings) -> None:
    """An upgrade of the webhook (new image, new resources) replaces what the old version injected."""
    old = inject(make_pod({"package-url": URL}), Settings(init_image="old:1")).pod
    new = inject(old, settings)
    assert new.changed and downloader(new.pod)["image"] == settings.init_image


# --- Pod Security Standards "restricted" with pod-level settings ----------------------------------------


def restricted_violations(spec: dict[str, Any], container: dict[str, Any]) -> list[str]:
    """The container-level checks of PSS restricted (v1.25+), pod-level fields applied as the kubelet does."""
    pod_sc, sc = spec.get("securityContext") or {}, container.get("securityContext") or {}
    problems = []
    if sc.get("privileged"):
        problems.append("privileged")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation")
    caps = sc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []) or set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
        problems.append("capabilities")
    if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
        problems.append("runAsNonRoot")
    if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
        problems.append("runAsUser")
    seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        problems.append("seccompProfile")
    return problems


@pytest.mark.parametrize(
    ("pod_sc", "uid", "gid"),
    [
        ({}, 65532, 65532),
        ({"runAsUser": 1000}, 1000, None),
        ({"runAsUser": 1000, "runAsGroup": 3000}, 1000, 3000),
        ({"runAsGroup": 3000}, 65532, 3000),
        ({"runAsNonRoot": True}, 65532, 65532),
        ({"runAsNonRoot": False}, 65532, 65532),
        ({"fsGroup": 2000}, 65532, 65532),
        (
            {
                "runAsUser": 1000,
                "runAsNonRoot": True,
                "fsGroup": 2000,
                "seccompProfile": {"type": "Localhost"},
            },
            1000,
            None,
        ),
        ({"seccompProfile": {"type": "Unconfined"}}, 65532, 65532),
        ({"runAsUser": 0, "runAsGroup": 0}, 65532, 65532),
    ],
)
def test_downloader_passes_restricted_and_keeps_the_pods_identity(
    make_pod: PodFactory, settings: Settings, pod_sc: dict[str, Any], uid: int, gid: int | None
) -> None:
    pod = inject(make_pod({"package-url": URL}, securityContext=pod_sc), settings).pod
    init = downloader(pod)
    assert restricted_violations(pod["spec"], init) == []
    sc, effective = init["securityContext"], pod["spec"]["securityContext"]
    assert sc.get("runAsUser", effective.get("runAsUser")) == uid
    assert sc.get("runAsGroup", effective.get("runAsGroup")) == gid
    assert pod["spec"]["securityContext"] == pod_sc, "the pod's own securityContext is never changed"


def test_status_with_volumes_that_are_not_a_list_owns_nothing(
    make_pod: PodFactory, settings: Settings
) -> None:
    forged = json.dumps(
        {
            "version": 1,
            "initContainer": contract.INIT_CONTAINER_NAME,
            "volumes": "package-credentials-x",
            "containers": [],
        }
    )
    pod = make_pod({"package-url": URL, "package-status": forged, "package-secret": "new"})
    pod["spec"]["volumes"].append({"name": "package-credentials", "secret": {"secretName": "old"}})
    assert "did not add" in deny(pod, settings).message
    # With a well-formed status listing it the same volume is ours and gets the new Secret.
    pod["metadata"]["annotations"]["package-status"] = ann_status(
        [], (contract.VOLUME_NAME, "package-credentials")
    )
    volumes = {v["name"]: v for v in inject(pod, settings).pod["spec"]["volumes"]}
    assert volumes["package-credentials"] == {"name": "package-credentials", "secret": {"secretName": "new"}}


# --- purity: the result shares untouched subtrees with the input, which must never change -------------


def _purity_cases(settings: Settings) -> dict[str, dict[str, Any]]:
    from tests.webhook.conftest import build_pod

    injected = inject(build_pod({"package-url": URL}, containers=("app", "log")), settings).pod
    removed = json.loads(json.dumps(injected))
    del removed["metadata"]["annotations"]["package-url"]
    retarget = json.loads(json.dumps(injected))
    retarget["metadata"]["annotations"]["package-containers"] = "log"
    retarget["metadata"]["annotations"]["package-init-position"] = "last"
    retarget["spec"]["initContainers"].append({"name": "migrate", "image": "m"})
    reinvoked = json.loads(json.dumps(injected))
    reinvoked["spec"]["containers"].append({"name": "late", "image": "x"})
    secret_dropped = inject(build_pod({"package-url": URL, "package-secret": "s"}), settings).pod
    secret_dropped = json.loads(json.dumps(secret_dropped))
    del secret_dropped["metadata"]["annotations"]["package-secret"]
    return {
        "fresh": build_pod({"package-url": URL, "package-secret": "s"}, containers=("a", "b")),
        "no-annotations-key": build_pod(None),
        "removal": removed,
        "retarget-and-move": retarget,
        "reinvocation": reinvoked,
        "secret-dropped": secret_dropped,
    }


@pytest.mark.parametrize(
    "case", ["fresh", "no-annotations-key", "removal", "retarget-and-move", "reinvocation", "secret-dropped"]
)
def test_inject_never_changes_its_input(case: str, settings: Settings) -> None:
    pod = _purity_cases(settings)[case]
    before = json.dumps(pod, sort_keys=True)
    result = inject(pod, settings)
    assert json.dumps(pod, sort_keys=True) == before
    again = inject(json.loads(before), settings)
    assert json.dumps(result.pod, sort_keys=True) == json.dumps(again.pod, sort_keys=True)


def _pull_secret_purity_cases() -> dict[str, tuple[dict[str, Any], Settings]]:
    from tests.webhook.conftest import build_pod

    own = {"imagePullSecrets": [{"name": "own"}, {"name": "mirror"}]}
    injected = inject(build_pod({"package-url": URL}, **own), PULL).pod
    removed = json.loads(json.dumps(injected))
    del removed["metadata"]["annotations"]["package-url"]
    reinvoked = json.loads(json.dumps(injected))
    reinvoked["spec"]["imagePullSecrets"].append({"name": "mesh-pull"})
    reinvoked["spec"]["containers"].append({"name": "late", "image": "x"})
    return {
        "fresh": (build_pod({"package-url": URL}, **own), PULL),
        "fresh-no-list": (build_pod({"package-url": URL}), PULL),
        "removal": (removed, PULL),
        "reinvocation": (reinvoked, PULL),
        "no-longer-configured": (json.loads(json.dumps(injected)), Settings()),
        "emptied": (inject(build_pod({"package-url": URL}), PULL).pod, Settings()),
    }


@pytest.mark.parametrize(
    "case", ["fresh", "fresh-no-list", "removal", "reinvocation", "no-longer-configured", "emptied"]
)
def test_inject_never_changes_its_input_with_pull_secrets(case: str) -> None:
    pod, settings = _pull_secret_purity_cases()[case]
    before = json.dumps(pod, sort_keys=True)
    result = inject(pod, settings)
    assert result.changed
    assert json.dumps(pod, sort_keys=True) == before
    again = inject(json.loads(before), settings)
    assert json.dumps(result.pod, sort_keys=True) == json.dumps(again.pod, sort_keys=True)
