"""The annotation contract: each key's default, every denial message, and the typo warnings."""

from __future__ import annotations

import pytest

from webhook import annotations as ann
from webhook.annotations import Denied, parse
from webhook.hosts import host_allowed
from webhook.settings import Settings, load_settings

URL = "https://files.example.com/site.tar.gz"
DIGEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def denial(annotations: dict[str, str], settings: Settings | None = None) -> Denied:
    with pytest.raises(Denied) as info:
        parse(annotations, settings or Settings())
    return info.value


def test_defaults() -> None:
    request = parse({"package-url": URL}, Settings()).request
    assert request == ann.PackageRequest(
        url=URL,
        sha256=None,
        mount_path="/shared-data/diff-var-files",
        containers=None,
        strip_components=0,
        secret=None,
        size_limit=None,
        init_position="first",
        allow_http=False,
    )


def test_no_url_means_no_request() -> None:
    assert parse({}, Settings()).request is None
    assert parse(None, Settings()).request is None


def test_all_keys_parsed_and_normalized() -> None:
    request = parse(
        {
            "package-url": f"  {URL}  ",
            "package-sha256": "SHA256:" + DIGEST.upper(),
            "package-mount-path": "/app/config/",
            "package-containers": "web, sidecar,web",
            "package-strip-components": "2",
            "package-secret": "repo-creds",
            "package-size-limit": "512Mi",
            "package-init-position": "last",
        },
        Settings(),
    ).request
    assert request is not None
    assert request.url == URL
    assert request.sha256 == DIGEST
    assert request.mount_path == "/app/config"
    assert request.containers == ("web", "sidecar")
    assert request.strip_components == 2
    assert request.secret == "repo-creds"
    assert request.size_limit == "512Mi"
    assert request.init_position == "last"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("package-url", "files.example.com/a.tgz", "must be an absolute https://, oci:// or s3:// URL"),
        (
            "package-url",
            "ftp://files.example.com/a.tgz",
            "must be an absolute https://, oci:// or s3:// URL",
        ),
        ("package-url", "", "is empty"),
        ("package-url", "https://files.example.com/a b.tgz", "whitespace or control characters"),
        ("package-url", "https://files.example.com:99999/a.tgz", "invalid port"),
        ("package-sha256", "abc", "must be 64 hex digits"),
        ("package-sha256", "md5:" + "a" * 32, "must be 64 hex digits"),
        ("package-mount-path", "relative/dir", "must be an absolute path"),
        ("package-mount-path", "/", "must not be '/'"),
        ("package-mount-path", "/data/../etc", "must not contain '..'"),
        ("package-mount-path", "/proc", "system path (/proc)"),
        ("package-mount-path", "/etc/app", "system path (/etc)"),
        ("package-mount-path", "/usr/share/nginx/html", "system path (/usr)"),
        ("package-mount-path", "/var/run/secrets/kubernetes.io", "system path (/var/run/secrets)"),
        ("package-mount-path", "/var", "system directory"),
        ("package-containers", " , ", "names no container"),
        ("package-containers", "Web_1", "is not a valid container name"),
        ("package-strip-components", "-1", "integer from 0 to 32"),
        ("package-strip-components", "33", "integer from 0 to 32"),
        ("package-strip-components", "two", "integer from 0 to 32"),
        ("package-secret", "My_Secret", "not a valid Secret name"),
        ("package-size-limit", "lots", "not a Kubernetes quantity"),
        ("package-size-limit", "0", "must be a positive quantity"),
        ("package-init-position", "middle", "must be 'first' or 'last'"),
    ],
)
def test_invalid_value_is_denied_naming_the_key(key: str, value: str, expected: str) -> None:
    annotations = {"package-url": URL, key: value}
    denied = denial(annotations)
    assert denied.code == 400
    assert denied.message.startswith(f'package-injector: annotation "{key}": ')
    assert expected in denied.message


def test_credentials_in_url_are_denied_without_echoing_them() -> None:
    denied = denial({"package-url": "https://alice:s3cr3t@files.example.com/a.tgz?X-Amz-Signature=abc"})
    assert 'put them in a Secret and name it in "package-secret"' in denied.message
    assert "s3cr3t" not in denied.message and "alice" not in denied.message
    assert "X-Amz-Signature" not in denied.message


def test_a_credential_pasted_into_package_secret_is_not_echoed() -> None:
    denied = denial({"package-url": URL, "package-secret": "ghp_Tok3nValue"})
    assert "ghp_Tok3nValue" not in denied.message and "ghp_Tok3nValue" not in denied.detail
    assert "never the credential itself" in denied.message


def test_secret_in_another_namespace_names_the_pods_namespace() -> None:
    with pytest.raises(Denied) as info:
        parse({"package-url": URL, "package-secret": "vault/creds"}, Settings(), namespace="shop")
    assert info.value.message == (
        'package-injector: annotation "package-secret": must name a Secret in the pod\'s namespace ("shop"): '
        "write its name without namespace/"
    )


def test_denial_detail_names_keys_but_no_values() -> None:
    denied = denial({"package-url": URL, "package-mount-path": "/etc/private-thing", "package-sha256": "zz"})
    assert denied.detail == "invalid annotations: package-sha256, package-mount-path"
    assert "private-thing" in denied.message and "private-thing" not in denied.detail


def test_every_problem_is_reported_at_once() -> None:
    denied = denial({"package-url": URL, "package-sha256": "x", "package-init-position": "middle"})
    assert '"package-sha256"' in denied.message and '"package-init-position"' in denied.message


def test_http_only_where_the_cluster_allows_it() -> None:
    denied = denial({"package-url": "http://files.example.com/a.tgz"})
    assert denied.code == 403 and "http:// is not allowed in this cluster" in denied.message
    parsed = parse({"package-url": "http://mirror.local/a.tgz"}, Settings(allowed_schemes=["https", "http"]))
    assert parsed.request is not None and parsed.request.allow_http
    (warning,) = parsed.warnings
    assert "the package is unverified (plain http: anyone on the path can alter it)" in warning


def test_host_allow_list() -> None:
    settings = Settings(allowed_hosts=["files.example.com", "*.cdn.example.com"])
    assert parse({"package-url": "https://files.example.com/a"}, settings).request is not None
    assert parse({"package-url": "https://eu.cdn.example.com/a"}, settings).request is not None
    assert parse({"package-url": "https://a.b.cdn.example.com/a"}, settings).request is not None
    for url in ("https://cdn.example.com/a", "https://evil.com/a", "https://files.example.com.evil.com/a"):
        denied = denial({"package-url": url}, settings)
        assert denied.code == 403 and "not in the cluster allow-list" in denied.message


def test_host_matching_rules() -> None:
    assert host_allowed("Files.Example.COM.", ["files.example.com"])
    assert not host_allowed("xexample.com", ["*.example.com"])
    assert host_allowed("10.0.0.5", ["10.0.0.5"])


def test_required_checksum_is_a_policy_denial() -> None:
    denied = denial({"package-url": URL}, Settings(require_checksum=True))
    assert denied.code == 403 and denied.reason == "policy"
    assert 'annotation "package-sha256": is required in this cluster' in denied.message


def test_size_limit_default_maximum_and_cap() -> None:
    capped = Settings(default_size_limit="4Gi", max_size_limit="2Gi")
    assert parse({"package-url": URL}, capped).request.size_limit == "2Gi"  # type: ignore[union-attr]
    assert parse({"package-url": URL}, Settings(max_size_limit="2Gi")).request.size_limit == "2Gi"  # type: ignore[union-attr]
    assert parse({"package-url": URL}, Settings(default_size_limit="1Gi")).request.size_limit == "1Gi"  # type: ignore[union-attr]
    denied = denial({"package-url": URL, "package-size-limit": "3Gi"}, capped)
    assert denied.code == 403 and "above the cluster maximum of 2Gi" in denied.message


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [
        ("package-sha265", "package-sha256"),
        ("package-mountpath", "package-mount-path"),
        ("package_url", "package-url"),
        ("Package-Secret", "package-secret"),
        ("pakage-url", "package-url"),
    ],
)
def test_typo_keys_get_did_you_mean(key: str, suggestion: str) -> None:
    parsed = parse({"package-url": URL, "package-sha256": DIGEST, key: "x"}, Settings())
    assert parsed.warnings == (
        f'package-injector: annotation "{key}" is not a package-injector key and is ignored; '
        f'did you mean "{suggestion}"?',
    )


def test_unknown_family_key_without_close_match_lists_the_valid_keys() -> None:
    annotations = {"package-url": URL, "package-sha256": DIGEST, "package-zzzzzz": "1"}
    (warning,) = parse(annotations, Settings()).warnings
    assert "valid keys: package-url, package-sha256" in warning


def test_unrelated_annotations_are_silent() -> None:
    annotations = {
        "package-url": URL,
        "package-sha256": DIGEST,
        "app.kubernetes.io/name": "web",
        "kubectl.kubernetes.io/restartedAt": "x",
    }
    assert parse(annotations, Settings()).warnings == ()


def test_prefix_applies_to_every_key_and_bare_keys_are_flagged() -> None:
    settings = Settings(annotation_prefix="packages.example.com/")
    parsed = parse({"packages.example.com/package-url": URL, "package-sha256": DIGEST}, settings)
    assert parsed.request is not None and parsed.request.sha256 is None
    assert parsed.warnings[0].endswith('did you mean "packages.example.com/package-sha256"?')
    assert parse({"package-url": URL}, settings).request is None


def test_keys_without_url_warn_that_nothing_happens() -> None:
    parsed = parse({"package-sha256": DIGEST}, Settings())
    assert parsed.request is None
    assert parsed.warnings == (
        'package-injector: package-sha256 set without "package-url", so nothing is injected; '
        'add "package-url"',
    )


def test_denial_carries_typo_warnings() -> None:
    denied = denial({"package-url": "nope", "package-sha265": "x"})
    assert any("did you mean" in w for w in denied.warnings)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("init_env", {"PACKAGE_URL": "x"}, "set per pod from annotations"),
        ("init_env", {"PACKAGE_INSECURE_SKIP_TLS_VERIFY": "true"}, "or is unsafe"),
        ("init_env", {"PACKAGE_RETRYS": "3"}, "not a variable of the init container"),
        ("init_proxy_env", {"LD_PRELOAD": "x"}, "not a proxy variable"),
        ("init_image_pull_secrets", ["Registry_Creds"], "not a valid Secret name"),
        ("init_image_pull_secrets", ["infra/regcred"], "not a valid Secret name"),
        ("init_image_pull_secrets", ["a" * 254], "not a valid Secret name"),
        ("init_image_pull_secrets", ["regcred", "regcred"], "listed more than once"),
        ("max_size_limit", "big", "not a Kubernetes quantity"),
        ("allowed_hosts", ["https://files.example.com"], "not a host name"),
        ("default_mount_path", "data", "absolute directory path"),
    ],
)
def test_bad_settings_fail_at_startup(field: str, value: object, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        Settings.model_validate({field: value})


def test_pull_secret_names_load_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PACKAGE_INJECTOR_CONFIG_FILE", raising=False)
    monkeypatch.setenv("PACKAGE_INJECTOR_INIT_IMAGE_PULL_SECRETS", '["regcred", "mirror.pull"]')
    assert load_settings().init_image_pull_secrets == ["regcred", "mirror.pull"]


UNPINNED = (
    'package-injector: "package-url" has no "package-sha256": the package is unverified and is downloaded '
    "again, not kept, each time the Pod's init containers re-run (a new Pod sandbox); add the SHA-256"
)


def test_a_package_without_sha256_is_warned_once_with_what_the_init_container_does() -> None:
    assert parse({"package-url": URL}, Settings()).warnings == (UNPINNED,)
    assert parse({"package-url": URL, "package-sha256": DIGEST}, Settings()).warnings == ()
    # kubectl shows it whole: the apiserver may cut a warning after 256 characters.
    assert len(UNPINNED) <= 256


@pytest.mark.parametrize(
    ("url", "settings", "clause"),
    [
        ("http://mirror.local/a.tgz", {"allowed_schemes": ["https", "http"]}, "(plain http: "),
        (
            "s3://bucket/a.tgz",
            {"allowed_schemes": ["https", "http", "s3"], "s3_endpoint": "http://minio:9000"},
            "(plain-http S3 endpoint: ",
        ),
        ("s3://bucket/a.tgz", {"allowed_schemes": ["https", "s3"]}, None),
    ],
)
def test_plain_http_is_a_clause_of_the_one_warning_not_a_second(
    url: str, settings: dict[str, object], clause: str | None
) -> None:
    (warning,) = parse({"package-url": url}, Settings(**settings)).warnings  # type: ignore[arg-type]
    assert warning.startswith(UNPINNED.split(" and is downloaded")[0])
    assert (clause in warning) if clause else ("plain" not in warning)
    assert warning.endswith("(a new Pod sandbox); add the SHA-256") and len(warning) <= 256


def test_the_warning_names_the_keys_with_the_cluster_prefix() -> None:
    settings = Settings(annotation_prefix="packages.example.com/")
    (warning,) = parse({"packages.example.com/package-url": URL}, settings).warnings
    assert '"packages.example.com/package-url" has no "packages.example.com/package-sha256"' in warning


def test_a_required_checksum_denies_instead_of_warning() -> None:
    denied = denial({"package-url": URL}, Settings(require_checksum=True))
    assert denied.warnings == ()
