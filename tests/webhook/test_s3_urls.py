"""s3:// package URLs in the webhook: validation shared with the init container, allow-list, settings, env."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from initcontainer import contract
from initcontainer.config import load_config
from initcontainer.errors import ConfigError
from tests.webhook.conftest import PodFactory
from tests.webhook.test_inject import env
from webhook.annotations import Denied, parse
from webhook.inject import inject
from webhook.settings import Settings

URL = "s3://packages/releases/app%201.0/pkg.tar.gz"


def denial(url: str, settings: Settings | None = None) -> Denied:
    with pytest.raises(Denied) as info:
        parse({"package-url": url}, settings or Settings())
    return info.value


def test_s3_urls_are_accepted_by_default() -> None:
    request = parse({"package-url": URL, "package-secret": "s3-reader"}, Settings()).request
    assert request is not None
    assert (request.url, request.secret, request.allow_http) == (URL, "s3-reader", False)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("s3://Bad_Bucket/k.tgz", "lowercase letters, digits, dots and hyphens"),
        ("s3://ab/k.tgz", "3 to 63 characters"),
        ("s3://packages", "names no object"),
        ("s3://packages/dir/", "folder"),
        ("s3://AKIA:secret@packages/k.tgz", "no user, password or port"),
        ("s3://packages/k.tgz?versionId=3", "no query string"),
        ("s3://10.0.0.1/k.tgz", "IP address"),
    ],
)
def test_bad_s3_urls_are_denied_with_what_to_fix(url: str, words: str) -> None:
    denied = denial(url)
    assert denied.code == 400
    assert 'annotation "package-url": is not a valid s3://BUCKET/KEY URL' in denied.message
    assert words in denied.message
    assert "secret" not in denied.message.split("no user")[0]  # the URL's userinfo is never echoed


def test_the_webhook_denies_exactly_what_the_init_container_refuses() -> None:
    urls = [
        URL,
        "s3://my.dotted.bucket/a/b.tgz",
        "s3://abc/%E1%88%B4.tar",
        "s3://Bad_Bucket/k",
        "s3://abc",
        "s3://abc/k#frag",
        "s3://abc/a/../b",
        "s3://a..b/k",
        "s3://abc/%ff",
        "s3://abc/" + "k" * 1025,
        "s3://xn--abc/k",
    ]
    for url in urls:
        try:
            parse({"package-url": url}, Settings())
            webhook_ok = True
        except Denied:
            webhook_ok = False
        try:
            load_config({contract.ENV_URL: url})
            init_ok = True
        except ConfigError:
            init_ok = False
        assert webhook_ok == init_ok, url


def test_scheme_policy() -> None:
    denied = denial(URL, Settings(allowed_schemes=["https"]))
    assert denied.code == 403
    assert "s3:// is not allowed in this cluster; use an https:// URL" in denied.message


def test_allowed_hosts_list_buckets_as_s3_entries() -> None:
    settings = Settings(allowed_hosts=["files.example.com", "s3://packages"])
    assert parse({"package-url": URL}, settings).request is not None
    denied = denial("s3://other-bucket/k.tgz", settings)
    assert denied.code == 403
    assert 'bucket "other-bucket" is not in the cluster allow-list (s3://packages)' in denied.message
    # A host entry never admits a bucket of the same name.
    denied = denial("s3://files.example.com/k.tgz", Settings(allowed_hosts=["files.example.com"]))
    assert "(it lists no s3:// buckets)" in denied.message
    assert parse({"package-url": "s3://any-bucket/k"}, Settings(allowed_hosts=["s3://*"])).request


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"allowed_hosts": ["s3://Bad_Bucket"]}, "lowercase"),
        ({"allowed_hosts": ["s3://"]}, "3 to 63"),
        ({"s3_region": "EU West"}, "not a region"),
        ({"s3_endpoint": "minio:9000"}, "https:// URL"),
        ({"s3_endpoint": "https://u:p@minio"}, "no user"),
        ({"s3_endpoint": "https://minio:99999"}, "invalid port"),
        ({"sts_endpoint": "ftp://sts"}, "https:// URL"),
        ({"s3_endpoint": "http://minio:9000"}, "add http to allowed_schemes"),
        ({"sts_endpoint": "http://sts:8080"}, "sts_endpoint uses plain http"),
    ],
)
def test_settings_are_checked_when_they_load(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        Settings(**fields)


def test_init_env_cannot_set_what_the_s3_settings_set() -> None:
    with pytest.raises(ValidationError, match="remove it from init_env"):
        Settings(init_env={"PACKAGE_S3_REGION": "eu-west-1"})


def test_cluster_s3_settings_reach_the_init_container_of_s3_packages_only(make_pod: PodFactory) -> None:
    settings = Settings(
        s3_region="eu-central-1",
        s3_endpoint="https://minio.storage.svc:9000/",
        sts_endpoint="https://sts.internal.example",
    )
    pod = inject(make_pod({"package-url": URL, "package-secret": "s3-reader"}), settings).pod
    assert list(env(pod).items()) == [
        ("PACKAGE_URL", URL),
        ("PACKAGE_DEST", contract.DEFAULT_DEST),
        ("PACKAGE_CREDENTIALS_DIR", contract.DEFAULT_CREDENTIALS_DIR),
        ("PACKAGE_S3_REGION", "eu-central-1"),
        ("PACKAGE_S3_ENDPOINT", "https://minio.storage.svc:9000"),
        ("PACKAGE_STS_ENDPOINT", "https://sts.internal.example"),
    ]
    https_pod = inject(make_pod({"package-url": "https://files.example.com/a.tgz"}), settings).pod
    assert not any(k.startswith("PACKAGE_S") and k != "PACKAGE_SHA256" for k in env(https_pod))


def test_plain_http_cluster_endpoint_allows_http_in_the_init_container(make_pod: PodFactory) -> None:
    settings = Settings(allowed_schemes=["https", "http", "s3"], s3_endpoint="http://minio.storage.svc:9000")
    result = inject(make_pod({"package-url": URL, "package-sha256": "ab" * 32}), settings)
    assert env(result.pod)["PACKAGE_ALLOW_HTTP"] == "true"
