"""package-url with oci://: validated with the init container's own reference rules (contract.py)."""

from __future__ import annotations

import pytest

from initcontainer import contract
from webhook.annotations import Denied, parse
from webhook.inject import inject
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
