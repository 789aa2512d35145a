"""package-url with oci://: validated with the init container's own reference rules (contract.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from initcontainer import contract
from webhook.annotations import Denied, parse
from webhook.inject import PULL_SECRETS_VOLUME, inject
from webhook.settings import Settings

DIGEST = "sha256:" + "ab" * 32


def denial(annotations: dict[str, str], settings: Settings | None = None) -> Denied:
    with pytest.raises(Denied) as info:
        parse(annotations, settings or Settings())
    return info.value


def test_oci_is_allowed_by_default_and_normalised() -> None:
    parsed = parse({"package-url": " oci://nginx:1.25 "}, Settings())
    assert parsed.request is not None
    assert parsed.request.url == "oci://docker.io/library/nginx:1.25"
    assert parsed.request.allow_http is False
    pinned = parse({"package-url": f"oci://ghcr.io/team/site:v1@{DIGEST}"}, Settings())
    assert pinned.request is not None and pinned.request.url == f"oci://ghcr.io/team/site:v1@{DIGEST}"
    assert pinned.warnings == ()


def test_a_tag_without_digest_warns_when_checksums_are_optional() -> None:
    parsed = parse({"package-url": "oci://ghcr.io/team/site:v1"}, Settings())
    assert len(parsed.warnings) == 1 and "tag without a digest" in parsed.warnings[0]
    assert "@sha256:" in parsed.warnings[0]
    # The one cause (nothing pins the content) gets one warning: not a second one about package-sha256,
    # which does not apply to oci://; and what a re-run does is what the init container does.
    assert parsed.warnings[0].startswith('package-injector: "package-url" names a tag without a digest')
    assert "a re-run installs new content if the tag moved" in parsed.warnings[0]
    plain = Settings(plain_http_registries=["registry.local"])
    (warning,) = parse({"package-url": "oci://registry.local:5000/team/site:v1"}, plain).warnings
    assert "tag without a digest" in warning and "package-sha256" not in warning
    pinned = parse({"package-url": f"oci://registry.local:5000/team/site@{DIGEST}"}, plain)
    assert pinned.request is not None and pinned.request.allow_http and pinned.warnings == ()


def test_require_checksum_is_satisfied_by_the_digest_only() -> None:
    strict = Settings(require_checksum=True)
    assert parse({"package-url": f"oci://ghcr.io/team/site@{DIGEST}"}, strict).request is not None
    denied = denial({"package-url": "oci://ghcr.io/team/site:v1"}, strict)
    assert denied.code == 403
    assert "must pin a digest in this cluster: write it as oci://HOST/REPO@sha256:" in denied.message


def test_package_sha256_with_oci_points_at_the_digest_form() -> None:
    denied = denial({"package-url": "oci://ghcr.io/team/site:v1", "package-sha256": "a" * 64})
    assert denied.code == 400
    assert '"package-sha256": does not apply to oci:// packages' in denied.message
    assert "oci://HOST/REPO@sha256:" in denied.message


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("oci://ghcr.io/Team/site", "lowercase"),
        ("oci://ghcr.io/team/site@sha256:abc", "sha256:<64"),
        ("oci://ghcr.io:5000", "no repository"),
        ("oci://user:pw@ghcr.io/team/site", "credentials"),
    ],
)
def test_bad_references_are_denied_with_the_reason(url: str, fragment: str) -> None:
    denied = denial({"package-url": url})
    assert denied.code == 400
    assert 'annotation "package-url": is not a valid oci:// reference' in denied.message
    assert fragment in denied.message
    assert "pw" not in denied.message


def test_policy_scheme_and_registry_hosts() -> None:
    denied = denial({"package-url": "oci://ghcr.io/team/site"}, Settings(allowed_schemes=["https"]))
    assert denied.code == 403 and "oci:// is not allowed in this cluster" in denied.message
    hosts = Settings(allowed_hosts=["*.corp.example", "ghcr.io"])
    assert parse({"package-url": "oci://reg.corp.example:5000/team/site"}, hosts).request is not None
    assert parse({"package-url": "oci://ghcr.io/team/site"}, hosts).request is not None
    denied = denial({"package-url": "oci://nginx"}, hosts)
    assert denied.code == 403 and 'registry "docker.io" is not in the cluster allow-list' in denied.message


def test_plain_http_registries_get_allow_http() -> None:
    settings = Settings(plain_http_registries=["registry.local"])
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "annotations": {"package-url": "oci://registry.local:5000/team/site:v1"}},
        "spec": {"containers": [{"name": "app", "image": "app"}]},
    }
    result = inject(pod, settings, "default")
    init = result.pod["spec"]["initContainers"][0]
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env[contract.ENV_URL] == "oci://registry.local:5000/team/site:v1"
    assert env[contract.ENV_ALLOW_HTTP] == "true"
    other = dict(pod, metadata={"name": "p", "annotations": {"package-url": "oci://ghcr.io/team/site:v1"}})
    env = {
        e["name"]: e["value"]
        for e in inject(other, settings, "default").pod["spec"]["initContainers"][0]["env"]
    }
    assert contract.ENV_ALLOW_HTTP not in env


# --------------------------------------------------------------------------- the Pod's own pull secrets


def oci_pod(url: str = f"oci://ghcr.io/team/site@{DIGEST}", **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "annotations": {"package-url": url, **annotations}},
        "spec": {
            "containers": [{"name": "app", "image": "ghcr.io/team/app:1"}],
            "imagePullSecrets": [
                {"name": "ghcr"},
                {"name": "mirror"},
                {"name": "ghcr"},
                {"name": "init-pull"},
            ],
        },
    }


def init_of(pod: dict[str, Any]) -> dict[str, Any]:
    return dict(pod["spec"]["initContainers"][0])


def test_the_pods_pull_secrets_are_projected_for_the_init_container_only() -> None:
    settings = Settings(init_image_pull_secrets=["init-pull"])
    result = inject(oci_pod(), settings, "default")
    pod = result.pod
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == PULL_SECRETS_VOLUME]
    assert volume["projected"]["sources"] == [
        {
            "secret": {
                "name": name,
                "items": [{"key": ".dockerconfigjson", "path": f"{name}/.dockerconfigjson"}],
                "optional": True,
            }
        }
        for name in ("ghcr", "mirror")
    ]
    init = init_of(pod)
    assert {
        "name": PULL_SECRETS_VOLUME,
        "mountPath": contract.DEFAULT_CREDENTIALS_DIR,
        "readOnly": True,
    } in init["volumeMounts"]
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env[contract.ENV_CREDENTIALS_DIR] == contract.DEFAULT_CREDENTIALS_DIR
    app_mounts = [m["name"] for m in pod["spec"]["containers"][0].get("volumeMounts", [])]
    assert PULL_SECRETS_VOLUME not in app_mounts
    # Reinvocation changes nothing; removing package-url removes the volume with the rest.
    again = inject(pod, settings, "default")
    assert again.changed is False
    gone = json.loads(json.dumps(pod))
    del gone["metadata"]["annotations"]["package-url"]
    removed = inject(gone, settings, "default").pod
    assert all(v["name"] != PULL_SECRETS_VOLUME for v in removed["spec"].get("volumes", []))
    assert removed["spec"]["imagePullSecrets"] == pod["spec"]["imagePullSecrets"]


def test_package_secret_or_https_means_no_projection() -> None:
    with_secret = inject(oci_pod(**{"package-secret": "reg-creds"}), Settings(), "default").pod
    names = {v["name"] for v in with_secret["spec"]["volumes"]}
    assert PULL_SECRETS_VOLUME not in names and "package-credentials" in names
    https = inject(oci_pod("https://files.example.com/a.tgz"), Settings(), "default").pod
    assert PULL_SECRETS_VOLUME not in {v["name"] for v in https["spec"]["volumes"]}
    assert contract.ENV_CREDENTIALS_DIR not in {e["name"] for e in init_of(https)["env"]}
    no_secrets = oci_pod()
    del no_secrets["spec"]["imagePullSecrets"]
    plain = inject(no_secrets, Settings(), "default").pod
    assert PULL_SECRETS_VOLUME not in {v["name"] for v in plain["spec"]["volumes"]}


def test_switching_from_pull_secrets_to_package_secret_drops_the_projection() -> None:
    first = inject(oci_pod(), Settings(), "default").pod
    first["metadata"]["annotations"]["package-secret"] = "reg-creds"
    second = inject(first, Settings(), "default").pod
    names = [v["name"] for v in second["spec"]["volumes"]]
    assert PULL_SECRETS_VOLUME not in names and "package-credentials" in names
    assert {m["name"] for m in init_of(second)["volumeMounts"]} == {
        contract.VOLUME_NAME,
        "package-credentials",
    }


def test_a_foreign_volume_named_like_ours_is_a_conflict() -> None:
    pod = oci_pod()
    pod["spec"]["volumes"] = [{"name": PULL_SECRETS_VOLUME, "emptyDir": {}}]
    with pytest.raises(Denied) as info:
        inject(pod, Settings(), "default")
    assert PULL_SECRETS_VOLUME in info.value.message
