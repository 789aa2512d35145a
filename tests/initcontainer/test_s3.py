"""s3:// URLs (the shared contract) and how the init container resolves region, endpoint and credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from initcontainer import contract
from initcontainer.config import load_config
from initcontainer.contract import S3Location, S3URLError, parse_s3_url
from initcontainer.errors import ConfigError
from initcontainer.s3 import object_url


@pytest.mark.parametrize(
    ("url", "bucket", "key"),
    [
        ("s3://packages/app/pkg.tar.gz", "packages", "app/pkg.tar.gz"),
        ("s3://my.dotted.bucket/p.tgz", "my.dotted.bucket", "p.tgz"),
        ("s3://abc/dir%20with%20space/p%2Bq.tar", "abc", "dir with space/p+q.tar"),
        ("s3://abc/%E1%88%B4", "abc", "\u1234"),
        ("S3://abc/a//b", "abc", "a//b"),
        ("s3://abc/v1..2/.hidden/x.", "abc", "v1..2/.hidden/x."),
    ],
)
def test_valid_urls(url: str, bucket: str, key: str) -> None:
    assert parse_s3_url(url) == S3Location(bucket, key)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("s3://ab/k", "3 to 63"),
        ("s3://" + "a" * 64 + "/k", "3 to 63"),
        ("s3://My-Bucket/k", "lowercase"),
        ("s3://under_score/k", "lowercase"),
        ("s3://-abc/k", "begin and end"),
        ("s3://abc-/k", "begin and end"),
        ("s3://a..b/k", "two dots"),
        ("s3://10.1.2.3/k", "IP address"),
        ("s3://xn--abc/k", "reserves"),
        ("s3://abc-s3alias/k", "reserves"),
        ("s3://abc", "names no object"),
        ("s3://abc/", "names no object"),
        ("s3://abc/dir/", "folder"),
        ("s3://user:pw@abc/k", "no user"),
        ("s3://abc:9000/k", "no user, password or port"),
        ("s3://abc/k?versionId=1", "no query"),
        ("s3://abc/k#frag", "no query"),
        ("s3://abc/a/../other-bucket/k", "'..' path segment"),
        ("s3://abc/./k", "'..' path segment"),
        ("s3://abc/a/%2E%2E/k", "'..' path segment"),
        ("s3://abc/%ff", "UTF-8"),
        ("s3://abc/a%0Ab", "control"),
        ("s3://abc/" + "k" * 1025, "1024"),
    ],
)
def test_invalid_urls_say_what_to_fix(url: str, words: str) -> None:
    with pytest.raises(S3URLError, match=words):
        parse_s3_url(url)


def test_object_urls() -> None:
    loc = S3Location("packages", "dir with space/p.tgz")
    assert (
        object_url(loc, "eu-west-1", None)
        == "https://packages.s3.eu-west-1.amazonaws.com/dir%20with%20space/p.tgz"
    )
    dotted = S3Location("my.bucket", "k")
    assert object_url(dotted, "eu-west-1", None) == "https://s3.eu-west-1.amazonaws.com/my.bucket/k"
    assert object_url(loc, "cn-north-1", None).endswith(".amazonaws.com.cn/dir%20with%20space/p.tgz")
    assert object_url(loc, "x", "https://minio.local:9000/prefix/") == (
        "https://minio.local:9000/prefix/packages/dir%20with%20space/p.tgz"
    )


def secret(directory: Path, **files: str) -> Path:
    directory.mkdir(exist_ok=True)
    for name, value in files.items():
        (directory / name).write_text(value + "\n")
    return directory


def cfg_env(directory: Path, **extra: str) -> dict[str, str]:
    """The init container's environment; a `directory` that does not exist stands for "no Secret"."""
    env = {contract.ENV_URL: "s3://packages/app/pkg.tar.gz", **extra}
    if directory.exists():
        env[contract.ENV_CREDENTIALS_DIR] = str(directory)
    return env


def test_secret_keys_region_and_endpoint(tmp_path: Path) -> None:
    d = secret(
        tmp_path / "s",
        AWS_ACCESS_KEY_ID="AKIAEXAMPLE",
        AWS_SECRET_ACCESS_KEY="sekrit",
        AWS_SESSION_TOKEN="sess",
        AWS_REGION="eu-central-1",
        AWS_ENDPOINT_URL_S3="https://minio.example.com:9000/",
    )
    cfg = load_config(cfg_env(d, PACKAGE_S3_REGION="us-west-2", PACKAGE_S3_ENDPOINT="https://other.example"))
    s3 = cfg.s3
    assert s3 is not None
    assert (s3.region, s3.region_source) == ("eu-central-1", "AWS_REGION in the Secret")
    assert s3.endpoint == "https://minio.example.com:9000"
    assert s3.object_url == "https://minio.example.com:9000/packages/app/pkg.tar.gz"
    assert s3.static is not None and s3.static.session_token == "sess"
    assert s3.auth_kind == "aws-session"
    assert "sekrit" not in repr(cfg) and "sess" not in repr(s3)
    assert cfg.warnings == ()


def test_cluster_defaults_then_eks_environment_then_us_east_1(tmp_path: Path) -> None:
    d = secret(tmp_path / "s", AWS_ACCESS_KEY_ID="AKIA", AWS_SECRET_ACCESS_KEY="x")
    s3 = load_config(cfg_env(d, PACKAGE_S3_REGION="us-west-2", AWS_REGION="eu-west-3")).s3
    assert s3 is not None and (s3.region, s3.region_source) == ("us-west-2", contract.ENV_S3_REGION)
    assert s3.object_url == "https://packages.s3.us-west-2.amazonaws.com/app/pkg.tar.gz"
    s3 = load_config(cfg_env(d, AWS_DEFAULT_REGION="ap-south-1")).s3
    assert s3 is not None and s3.region == "ap-south-1"
    s3 = load_config(cfg_env(d, PACKAGE_S3_ENDPOINT="https://ceph.example")).s3
    assert s3 is not None and s3.region == "us-east-1"
    assert s3.object_url == "https://ceph.example/packages/app/pkg.tar.gz"


def test_web_identity_from_the_eks_environment(tmp_path: Path) -> None:
    env = cfg_env(
        tmp_path / "none",
        AWS_ROLE_ARN="arn:aws:iam::123456789012:role/reader",
        AWS_WEB_IDENTITY_TOKEN_FILE="/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
        AWS_REGION="eu-west-1",
        HOSTNAME="app-abc12",
    )
    s3 = load_config(env).s3
    assert s3 is not None and s3.web_identity is not None
    assert s3.auth_kind == "aws-web-identity"
    assert s3.web_identity.sts_url == "https://sts.eu-west-1.amazonaws.com/"
    assert s3.web_identity.session_name == "package-injector-app-abc12"
    env[contract.ENV_STS_ENDPOINT] = "https://sts.internal.example:8443/"
    s3 = load_config(env).s3
    assert s3 is not None and s3.web_identity is not None
    assert s3.web_identity.sts_url == "https://sts.internal.example:8443"


def test_the_secret_wins_over_web_identity(tmp_path: Path) -> None:
    d = secret(tmp_path / "s", AWS_ACCESS_KEY_ID="AKIA", AWS_SECRET_ACCESS_KEY="x")
    s3 = load_config(cfg_env(d, AWS_ROLE_ARN="arn:aws:iam::1:role/r", AWS_WEB_IDENTITY_TOKEN_FILE="/t")).s3
    assert s3 is not None and s3.auth_kind == "aws-keys" and s3.web_identity is None


def test_no_credentials_is_anonymous_with_a_warning(tmp_path: Path) -> None:
    cfg = load_config(cfg_env(tmp_path / "none"))
    assert cfg.s3 is not None and cfg.s3.auth_kind == "anonymous"
    assert any("unsigned" in w for w in cfg.warnings)


@pytest.mark.parametrize(
    ("files", "extra", "words"),
    [
        ({"AWS_ACCESS_KEY_ID": "AKIA"}, {}, "lacks AWS_SECRET_ACCESS_KEY"),
        ({"AWS_SECRET_ACCESS_KEY": "x"}, {}, "lacks AWS_ACCESS_KEY_ID"),
        ({"AWS_SESSION_TOKEN": "x"}, {}, "lacks"),
        ({"username": "u", "password": "p"}, {}, "does not use"),
        ({"AWS_ENDPOINT_URL_S3": "http://minio:9000"}, {}, "plain http"),
        ({"AWS_ENDPOINT_URL_S3": "https://u:p@minio:9000"}, {}, "no user"),
        ({"AWS_ENDPOINT_URL_S3": "ftp://minio"}, {}, "https:// URL"),
        ({"AWS_REGION": "EU West"}, {}, "not a region"),
        ({}, {"AWS_ROLE_ARN": "arn:aws:iam::1:role/r"}, "AWS_WEB_IDENTITY_TOKEN_FILE"),
        ({}, {"AWS_WEB_IDENTITY_TOKEN_FILE": "/t"}, "AWS_ROLE_ARN"),
        ({}, {"AWS_ROLE_ARN": "reader", "AWS_WEB_IDENTITY_TOKEN_FILE": "/t"}, "not a role ARN"),
        ({}, {"PACKAGE_URL": "s3://Bad_Bucket/k"}, "lowercase"),
    ],
)
def test_config_errors(tmp_path: Path, files: dict[str, str], extra: dict[str, str], words: str) -> None:
    d = secret(tmp_path / "s", **files)
    with pytest.raises(ConfigError, match=words):
        load_config(cfg_env(d, **extra))


def test_http_endpoint_only_when_allowed(tmp_path: Path) -> None:
    d = secret(tmp_path / "s", AWS_ENDPOINT_URL_S3="http://127.0.0.1:9000")
    s3 = load_config(cfg_env(d, PACKAGE_ALLOW_HTTP="true")).s3
    assert s3 is not None and s3.object_url == "http://127.0.0.1:9000/packages/app/pkg.tar.gz"
