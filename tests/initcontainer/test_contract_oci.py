"""oci:// reference parsing and Docker Hub normalisation (initcontainer.contract, shared with the webhook)."""

from __future__ import annotations

import pytest

from initcontainer.contract import OCIReference, ReferenceError, is_oci_url, parse_oci_reference
from initcontainer.log import redact_url

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("url", "registry", "repository", "tag", "digest"),
    [
        ("oci://nginx", "docker.io", "library/nginx", "latest", None),
        ("oci://nginx:1.25", "docker.io", "library/nginx", "1.25", None),
        ("oci://team/app:v1", "docker.io", "team/app", "v1", None),
        ("oci://docker.io/nginx", "docker.io", "library/nginx", "latest", None),
        ("oci://index.docker.io/team/app", "docker.io", "team/app", "latest", None),
        ("oci://registry-1.docker.io/library/x:y", "docker.io", "library/x", "y", None),
        ("oci://ghcr.io/org/pkg:1.0", "ghcr.io", "org/pkg", "1.0", None),
        ("oci://GHCR.io/org/pkg:1.0", "ghcr.io", "org/pkg", "1.0", None),
        (f"oci://127.0.0.1:5000/a/b/c@{D}", "127.0.0.1:5000", "a/b/c", None, D),
        (f"oci://reg.example:443/app:v2@{D}", "reg.example:443", "app", "v2", D),
        ("oci://localhost/app", "localhost", "app", "latest", None),
        ("oci://localhost:5000/app:Tag_1.x-2", "localhost:5000", "app", "Tag_1.x-2", None),
        ("oci://[::1]:5000/app", "[::1]:5000", "app", "latest", None),
        ("oci://reg.io/a__b/c.d/e-f--g", "reg.io", "a__b/c.d/e-f--g", "latest", None),
        ("OCI://reg.io/app", "reg.io", "app", "latest", None),
    ],
)
def test_valid_references(
    url: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_oci_reference(url)
    assert ref == OCIReference(registry, repository, tag, digest)


def test_properties() -> None:
    hub = parse_oci_reference("oci://nginx:1")
    assert (hub.host, hub.api_host, hub.name, hub.manifest_ref) == (
        "docker.io",
        "registry-1.docker.io",
        "docker.io/library/nginx",
        "1",
    )
    pinned = parse_oci_reference(f"oci://127.0.0.1:5000/app:v1@{D}")
    assert (pinned.host, pinned.api_host, pinned.manifest_ref) == ("127.0.0.1", "127.0.0.1:5000", D)
    assert str(pinned) == f"oci://127.0.0.1:5000/app:v1@{D}"
    assert parse_oci_reference("oci://[::1]:5000/app").host == "::1"
    assert parse_oci_reference("oci://[::1]/app").host == "::1"
    assert is_oci_url("OCI://x") and not is_oci_url("https://x")


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("https://reg.io/app", "must start with oci://"),
        ("oci://", "names no repository"),
        ("oci://reg.io:5000", "no repository"),
        ("oci://reg.io/", "no repository"),
        ("oci://reg.io/App", "lowercase"),
        ("oci://reg.io/a//b", "invalid repository component"),
        ("oci://reg.io/a/../b", "invalid repository component"),
        ("oci://reg.io/-a", "invalid repository component"),
        ("oci://reg.io/a:.tag", "invalid tag"),
        ("oci://reg.io/a:" + "t" * 129, "invalid tag"),
        ("oci://reg.io/a@sha256:abc", "sha256:<64 lowercase hex"),
        ("oci://reg.io/a@sha512:" + "a" * 128, "sha256:<64"),
        ("oci://reg.io/a@sha256:" + "A" * 64, "sha256:<64"),
        ("oci://user:pw@reg.io/app", "credentials"),
        ("oci://reg.io/app?x=1", "query"),
        ("oci://reg.io/app#x", "query or fragment"),
        ("oci://reg.io/a b", "whitespace"),
        ("oci://reg.io/\u00e4", "non-ASCII"),
        ("oci://-bad-.io/app", "invalid registry host"),
        ("oci://reg.io:99999/app", "invalid registry port"),
        ("oci://reg.io/" + "a" * 250, "longer than 255"),
    ],
)
def test_invalid_references(url: str, fragment: str) -> None:
    with pytest.raises(ReferenceError, match=None) as info:
        parse_oci_reference(url)
    assert fragment in str(info.value)


def test_logs_show_the_canonical_reference() -> None:
    assert redact_url(f"oci://nginx@{D}") == f"oci://docker.io/library/nginx@{D}"
    assert redact_url("oci://Bad/Ref") == "<invalid oci:// reference>"
