"""Several packages per Pod in `inject`: each package's volumes, mounts and PACKAGE_LIST entry, its status
record, convergence, and the ownership rules extended to every package (removing one package's key
removes exactly its pieces)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from initcontainer import contract
from tests.webhook.conftest import PodFactory
from webhook.inject import Denied, inject
from webhook.settings import Settings

URL = "https://files.example.com/site.tar.gz"
TOOLS = "https://files.example.com/tools.tar.gz"
DIGEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
TWO = {
    "package-url.tools": TOOLS,
    "package-sha256.tools": DIGEST,
    "package-secret.tools": "tools-reader",
    "package-url.data": URL,
    "package-mount-path.data": "/app/data",
    "package-containers.data": "app",
}


def init_of(pod: dict[str, Any]) -> dict[str, Any]:
    (init,) = [c for c in pod["spec"]["initContainers"] if c["name"] == contract.INIT_CONTAINER_NAME]
    return init


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in init_of(pod)["env"]}


def mounts_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in container.get("volumeMounts", [])}


def volumes_of(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in pod["spec"]["volumes"]}


def test_named_packages_get_their_own_volume_directory_mount_and_list_entry(make_pod: PodFactory) -> None:
    pod = inject(make_pod(TWO, containers=("app", "sidecar")), Settings()).pod
    env = env_of(pod)
    assert contract.ENV_URL not in env and contract.ENV_DEST not in env
    assert json.loads(env[contract.ENV_PACKAGE_LIST]) == [
        {"name": "data", "url": URL, "dest": "/shared-data/packages/data"},
        {
            "name": "tools",
            "url": TOOLS,
            "dest": "/shared-data/packages/tools",
            "sha256": DIGEST,
            "credentialsDir": "/var/run/secrets/package-injector/credentials-tools",
        },
    ]
    volumes = volumes_of(pod)
    assert volumes["package-shared-volume-data"] == {"name": "package-shared-volume-data", "emptyDir": {}}
    assert volumes["package-credentials-tools"]["secret"] == {"secretName": "tools-reader"}
    assert contract.VOLUME_NAME not in volumes and "package-credentials" not in volumes
    assert [m for m in init_of(pod)["volumeMounts"]] == [
        {"name": "package-shared-volume-data", "mountPath": "/shared-data/packages/data"},
        {"name": "package-shared-volume-tools", "mountPath": "/shared-data/packages/tools"},
        {
            "name": "package-credentials-tools",
            "mountPath": "/var/run/secrets/package-injector/credentials-tools",
            "readOnly": True,
        },
    ]
    app, sidecar = pod["spec"]["containers"]
    assert mounts_of(app)["package-shared-volume-data"] == {
        "name": "package-shared-volume-data",
        "mountPath": "/app/data",
        "readOnly": True,
    }
    assert mounts_of(app)["package-shared-volume-tools"]["mountPath"] == "/shared-data/packages/tools"
    assert "package-shared-volume-data" not in mounts_of(sidecar)
    assert mounts_of(sidecar)["package-shared-volume-tools"]["readOnly"] is True
    status = json.loads(pod["metadata"]["annotations"]["package-status"])
    assert status["containers"] == []
    assert status["packages"] == [
        {"name": "data", "volume": "package-shared-volume-data", "containers": ["app"]},
        {"name": "tools", "volume": "package-shared-volume-tools", "containers": ["app", "sidecar"]},
    ]


def test_unnamed_and_named_together(make_pod: PodFactory) -> None:
    alone = inject(make_pod({"package-url": URL, "package-sha256": DIGEST}), Settings()).pod
    both = inject(make_pod({"package-url": URL, "package-sha256": DIGEST, **TWO}), Settings()).pod
    env_alone, env_both = init_of(alone)["env"], init_of(both)["env"]
    # The unnamed package's variables are as they always were, PACKAGE_LIST follows them.
    assert env_both[: len(env_alone)] == env_alone
    assert env_both[len(env_alone)]["name"] == contract.ENV_PACKAGE_LIST
    assert list(volumes_of(both))[:2] == ["kube-api-access-x7k2p", contract.VOLUME_NAME]


def test_the_pods_size_limit_applies_to_every_package(make_pod: PodFactory) -> None:
    pod = inject(make_pod({"package-url": URL, **TWO, "package-size-limit": "1Gi"}), Settings()).pod
    for name in (contract.VOLUME_NAME, "package-shared-volume-data", "package-shared-volume-tools"):
        assert volumes_of(pod)[name]["emptyDir"] == {"sizeLimit": "1Gi"}


def test_schemes_set_the_shared_variables(make_pod: PodFactory) -> None:
    settings = Settings(allowed_schemes=["https", "http", "s3"], s3_region="eu-west-1")
    pod = inject(
        make_pod(
            {
                "package-url": URL,
                "package-url.m": "http://mirror.local/a.tgz",
                "package-url.s": "s3://bucket/k.tgz",
            }
        ),
        settings,
    ).pod
    env = env_of(pod)
    assert env[contract.ENV_ALLOW_HTTP] == "true" and env[contract.ENV_S3_REGION] == "eu-west-1"


def test_converges(make_pod: PodFactory) -> None:
    first = inject(make_pod({"package-url": URL, **TWO}, containers=("app", "sidecar")), Settings())
    again = inject(first.pod, Settings())
    assert not again.changed and again.pod == first.pod


def without(annotations: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in annotations.items() if not k.endswith(f".{name}")}


def test_removing_one_packages_key_removes_exactly_its_pieces(make_pod: PodFactory) -> None:
    injected = inject(make_pod({"package-url": URL, **TWO}, containers=("app", "sidecar")), Settings()).pod
    injected["metadata"]["annotations"] = {
        **without(injected["metadata"]["annotations"], "tools"),
    }
    result = inject(injected, Settings())
    pod = result.pod
    assert result.changed
    volumes = volumes_of(pod)
    assert "package-shared-volume-tools" not in volumes and "package-credentials-tools" not in volumes
    assert {contract.VOLUME_NAME, "package-shared-volume-data"} <= volumes.keys()
    assert [p["name"] for p in json.loads(env_of(pod)[contract.ENV_PACKAGE_LIST])] == ["data"]
    init_mounts = {m["name"] for m in init_of(pod)["volumeMounts"]}
    assert init_mounts == {contract.VOLUME_NAME, "package-shared-volume-data"}
    for container in pod["spec"]["containers"]:
        assert "package-shared-volume-tools" not in mounts_of(container)
        assert contract.VOLUME_NAME in mounts_of(container)
    assert [p["name"] for p in json.loads(pod["metadata"]["annotations"]["package-status"])["packages"]] == [
        "data"
    ]
    # And then it is stable.
    assert not inject(pod, Settings()).changed


def test_removing_the_unnamed_package_keeps_the_named_ones(make_pod: PodFactory) -> None:
    injected = inject(make_pod({"package-url": URL, **TWO}), Settings()).pod
    del injected["metadata"]["annotations"]["package-url"]
    pod = inject(injected, Settings()).pod
    assert contract.VOLUME_NAME not in volumes_of(pod)
    assert contract.ENV_URL not in env_of(pod) and contract.ENV_PACKAGE_LIST in env_of(pod)
    assert contract.VOLUME_NAME not in mounts_of(pod["spec"]["containers"][0])
    assert contract.VOLUME_NAME not in {m["name"] for m in init_of(pod)["volumeMounts"]}


def test_removing_every_package_removes_everything(make_pod: PodFactory) -> None:
    original = make_pod({"keep": "me"})
    annotated = make_pod({"keep": "me", "package-url": URL, **TWO})
    injected = inject(annotated, Settings()).pod
    injected["metadata"]["annotations"] = {
        k: v
        for k, v in injected["metadata"]["annotations"].items()
        if not k.startswith("package-url")
        and not k.startswith(("package-sha256", "package-secret", "package-mount-path", "package-containers"))
    }
    result = inject(injected, Settings())
    assert not result.requested
    assert (
        result.pod["spec"] == {**original["spec"], "initContainers": []}
        or result.pod["spec"] == original["spec"]
    )
    assert result.pod["metadata"]["annotations"] == {"keep": "me"}


def test_a_foreign_volume_with_a_packages_name_is_a_conflict(make_pod: PodFactory) -> None:
    pod = make_pod({"package-url.tools": TOOLS})
    pod["spec"]["volumes"].append({"name": "package-shared-volume-tools", "hostPath": {"path": "/srv"}})
    with pytest.raises(
        Denied, match='volume named "package-shared-volume-tools" that package-injector did not add'
    ):
        inject(pod, Settings())


def test_a_missing_container_is_named_with_the_packages_key(make_pod: PodFactory) -> None:
    with pytest.raises(Denied) as info:
        inject(make_pod({"package-url.tools": TOOLS, "package-containers.tools": "web"}), Settings())
    assert (
        "annotation \"package-containers.tools\": the pod has no container 'web' (it has: app)"
        in info.value.message
    )


def test_another_volume_at_a_packages_path_names_its_key(make_pod: PodFactory) -> None:
    pod = make_pod({"package-url.tools": TOOLS, "package-mount-path.tools": "/cache"})
    pod["spec"]["containers"][0]["volumeMounts"].append({"name": "cache", "mountPath": "/cache"})
    pod["spec"]["volumes"].append({"name": "cache", "emptyDir": {}})
    with pytest.raises(
        Denied, match=r"set the \"package-mount-path\.tools\" annotation to another directory"
    ):
        inject(pod, Settings())


def test_a_hand_written_status_cannot_claim_a_users_mount(make_pod: PodFactory) -> None:
    status = json.dumps(
        {
            "version": 1,
            "initContainer": contract.INIT_CONTAINER_NAME,
            "volumes": ["package-shared-volume-tools"],
            "containers": [],
            "packages": [{"name": "tools", "volume": "package-shared-volume-tools", "containers": ["app"]}],
        }
    )
    pod = make_pod({"package-status": status})
    # The user's own writable mount of a volume with that name: not our shape, so never removed.
    pod["spec"]["containers"][0]["volumeMounts"].append(
        {"name": "package-shared-volume-tools", "mountPath": "/x"}
    )
    pod["spec"]["volumes"].append({"name": "package-shared-volume-tools", "hostPath": {"path": "/srv"}})
    result = inject(pod, Settings())
    assert any(m["mountPath"] == "/x" for m in result.pod["spec"]["containers"][0]["volumeMounts"])
    assert "package-shared-volume-tools" in volumes_of(result.pod)


def test_a_users_volume_with_our_prefix_at_a_packages_path_is_not_skipped(make_pod: PodFactory) -> None:
    pod = make_pod({"package-url.tools": TOOLS})
    pod["spec"]["containers"][0]["volumeMounts"].append(
        {"name": "package-shared-volume-mine", "mountPath": "/shared-data/packages/tools"}
    )
    pod["spec"]["volumes"].append({"name": "package-shared-volume-mine", "emptyDir": {}})
    with pytest.raises(Denied) as info:
        inject(pod, Settings())
    assert 'already mounts volume "package-shared-volume-mine" at /shared-data/packages/tools' in (
        info.value.message
    )


@pytest.mark.parametrize("with_url", [False, True], ids=["removal", "injection"])
def test_a_hand_written_status_cannot_claim_a_users_read_only_mount_of_another_volume(
    make_pod: PodFactory, with_url: bool
) -> None:
    # attack-multi: a `packages` record naming the user's own volume made its read-only mount "ours".
    status = json.dumps(
        {
            "version": 1,
            "initContainer": contract.INIT_CONTAINER_NAME,
            "volumes": [],
            "containers": [],
            "packages": [{"name": "tools", "volume": "config", "containers": ["app"]}],
        }
    )
    pod = make_pod({"package-status": status, **({"package-url.tools": TOOLS} if with_url else {})})
    mine = {"name": "config", "mountPath": "/etc/app", "readOnly": True}
    pod["spec"]["containers"][0]["volumeMounts"].append(mine)
    pod["spec"]["volumes"].append({"name": "config", "configMap": {"name": "app-config"}})
    result = inject(pod, Settings())
    assert mine in result.pod["spec"]["containers"][0]["volumeMounts"]
    assert "config" in volumes_of(result.pod)
