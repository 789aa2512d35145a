"""s3:// packages: where the object is (region, endpoint, addressing) and whose credentials sign for it.

Resolution order, most specific first, each named in messages so users can
see which one won:

- credentials: the Secret's AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ optional
  AWS_SESSION_TOKEN); else web identity (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE
  in the environment, as the EKS pod identity webhook sets them); else none, and
  requests go unsigned (public buckets only).
- region: the Secret's AWS_REGION, PACKAGE_S3_REGION (cluster setting), the
  environment's AWS_REGION / AWS_DEFAULT_REGION, then us-east-1.
- endpoint: the Secret's AWS_ENDPOINT_URL_S3, PACKAGE_S3_ENDPOINT (cluster
  setting), else AWS. A custom endpoint gets path-style URLs
  (`ENDPOINT/BUCKET/KEY`), as S3-compatible stores expect; AWS gets
  virtual-hosted ones, or path-style for bucket names with dots (which a
  `*.s3.REGION.amazonaws.com` certificate cannot match).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from initcontainer import contract
from initcontainer.awscreds import WebIdentityConfig, check_session_name, default_session_name
from initcontainer.errors import ConfigError
from initcontainer.sigv4 import AwsCredentials, header_safe

_SECRET_KEYS = (
    contract.CREDENTIAL_AWS_ACCESS_KEY_ID,
    contract.CREDENTIAL_AWS_SECRET_ACCESS_KEY,
    contract.CREDENTIAL_AWS_SESSION_TOKEN,
    contract.CREDENTIAL_AWS_REGION,
    contract.CREDENTIAL_AWS_ENDPOINT_URL_S3,
)
_OTHER_SOURCES_KEYS = (contract.CREDENTIAL_USERNAME, contract.CREDENTIAL_PASSWORD, contract.CREDENTIAL_TOKEN)


@dataclass(frozen=True)
class S3Config:
    """Everything an s3:// download needs besides the common Config."""

    location: contract.S3Location
    region: str
    region_source: str
    endpoint: str | None
    """A custom (S3-compatible) endpoint, or None for AWS."""
    object_url: str
    """The https:// (or allowed http://) URL the GET goes to."""
    static: AwsCredentials | None = field(default=None, repr=False)
    web_identity: WebIdentityConfig | None = None

    @property
    def auth_kind(self) -> str:
        if self.static is not None:
            return "aws-session" if self.static.session_token else "aws-keys"
        return "aws-web-identity" if self.web_identity is not None else "anonymous"


def _suffix(region: str) -> str:
    return "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"


def object_url(location: contract.S3Location, region: str, endpoint: str | None) -> str:
    """The URL of the object: path-style on a custom endpoint, virtual-hosted on AWS where possible."""
    key = urllib.parse.quote(location.key, safe="/~")
    if endpoint is not None:
        return f"{endpoint.rstrip('/')}/{location.bucket}/{key}"
    if "." in location.bucket:
        return f"https://s3.{region}.{_suffix(region)}/{location.bucket}/{key}"
    return f"https://{location.bucket}.s3.{region}.{_suffix(region)}/{key}"


def sts_url(environ: Mapping[str, str], region: str, allow_http: bool) -> str:
    """PACKAGE_STS_ENDPOINT, the SDKs' AWS_ENDPOINT_URL_STS, else the region's STS (not the global one)."""
    for name in (contract.ENV_STS_ENDPOINT, contract.AWS_ENV_ENDPOINT_URL_STS):
        raw = (environ.get(name) or "").strip()
        if raw:
            return check_endpoint(name, raw, allow_http)
    return f"https://sts.{region}.{_suffix(region)}/"


def check_endpoint(name: str, raw: str, allow_http: bool) -> str:
    """An endpoint is scheme://host[:port][/prefix]: no credentials, query or fragment."""
    try:
        parts = urllib.parse.urlsplit(raw.strip())
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ConfigError(f"{name} is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"{name} must be an https:// URL with a host, e.g. https://minio.example.com:9000")
    if scheme == "http" and not allow_http:
        raise ConfigError(
            f"{name} uses plain http://, which anyone on the path can read and change; "
            f"use https:// (a private CA goes in the Secret as ca.crt) or set {contract.ENV_ALLOW_HTTP}=true"
        )
    if parts.username is not None or "@" in parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"{name} must hold no user, password, query string or fragment")
    return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _region_ok(name: str, region: str) -> str:
    if not region.replace("-", "").isalnum() or not region.islower() or len(region) > 32:
        raise ConfigError(f"{name}={region!r} is not a region name like eu-west-1")
    return region


def load_s3_config(
    environ: Mapping[str, str],
    location: contract.S3Location,
    directory: Path | None,
    *,
    allow_http: bool,
    warnings: list[str],
) -> S3Config:
    """Resolve region, endpoint and credentials; ConfigError says which file or variable is wrong."""
    from initcontainer.config import read_secret_file

    secret: dict[str, str] = {}
    if directory is not None and directory.is_dir():
        for name in _SECRET_KEYS:
            if (directory / name).is_file():
                secret[name] = read_secret_file(directory / name)
        stray = [n for n in _OTHER_SOURCES_KEYS if (directory / n).is_file()]
        if stray and contract.CREDENTIAL_AWS_ACCESS_KEY_ID not in secret:
            raise ConfigError(
                f"the Secret in {directory} holds {', '.join(stray)}, which s3:// does not use; give it "
                f"{contract.CREDENTIAL_AWS_ACCESS_KEY_ID} and {contract.CREDENTIAL_AWS_SECRET_ACCESS_KEY}"
            )

    region_choices = [
        (f"{contract.CREDENTIAL_AWS_REGION} in the Secret", secret.get(contract.CREDENTIAL_AWS_REGION)),
        (contract.ENV_S3_REGION, environ.get(contract.ENV_S3_REGION)),
        (contract.AWS_ENV_REGION, environ.get(contract.AWS_ENV_REGION)),
        (contract.AWS_ENV_DEFAULT_REGION, environ.get(contract.AWS_ENV_DEFAULT_REGION)),
    ]
    region, region_source = contract.DEFAULT_S3_REGION, "default"
    for source, value in region_choices:
        if value and value.strip():
            region, region_source = _region_ok(source, value.strip()), source
            break

    endpoint: str | None = None
    if contract.CREDENTIAL_AWS_ENDPOINT_URL_S3 in secret:
        endpoint = check_endpoint(
            f"{contract.CREDENTIAL_AWS_ENDPOINT_URL_S3} in the Secret",
            secret[contract.CREDENTIAL_AWS_ENDPOINT_URL_S3],
            allow_http,
        )
    elif (environ.get(contract.ENV_S3_ENDPOINT) or "").strip():
        endpoint = check_endpoint(contract.ENV_S3_ENDPOINT, environ[contract.ENV_S3_ENDPOINT], allow_http)

    key_id = secret.get(contract.CREDENTIAL_AWS_ACCESS_KEY_ID)
    secret_key = secret.get(contract.CREDENTIAL_AWS_SECRET_ACCESS_KEY)
    session = secret.get(contract.CREDENTIAL_AWS_SESSION_TOKEN)
    static: AwsCredentials | None = None
    if key_id or secret_key or session:
        if not key_id or not secret_key:
            missing = (
                contract.CREDENTIAL_AWS_SECRET_ACCESS_KEY if key_id else contract.CREDENTIAL_AWS_ACCESS_KEY_ID
            )
            raise ConfigError(f"the Secret in {directory} lacks {missing}")
        for name, value in (
            (contract.CREDENTIAL_AWS_ACCESS_KEY_ID, key_id),
            (contract.CREDENTIAL_AWS_SESSION_TOKEN, session),
        ):
            if value is not None and not header_safe(value):
                raise ConfigError(f"{name} in the Secret in {directory} holds spaces or non-ASCII characters")
        static = AwsCredentials(key_id, secret_key, session_token=session, source=f"Secret in {directory}")

    web: WebIdentityConfig | None = None
    role = (environ.get(contract.AWS_ENV_ROLE_ARN) or "").strip()
    token_file = (environ.get(contract.AWS_ENV_WEB_IDENTITY_TOKEN_FILE) or "").strip()
    if static is None and (role or token_file):
        if not role or not token_file:
            missing = contract.AWS_ENV_WEB_IDENTITY_TOKEN_FILE if role else contract.AWS_ENV_ROLE_ARN
            raise ConfigError(f"web identity needs both {contract.AWS_ENV_ROLE_ARN} and {missing}")
        if not role.startswith("arn:") or role.count(":") < 5:
            raise ConfigError(
                f"{contract.AWS_ENV_ROLE_ARN} is not a role ARN (arn:aws:iam::ACCOUNT:role/NAME)"
            )
        raw_name = (environ.get(contract.AWS_ENV_ROLE_SESSION_NAME) or "").strip()
        web = WebIdentityConfig(
            role_arn=role,
            token_file=Path(token_file),
            session_name=check_session_name(raw_name)
            if raw_name
            else default_session_name(environ.get("HOSTNAME")),
            sts_url=sts_url(environ, region, allow_http),
        )
    if static is None and web is None:
        warnings.append(
            "no AWS credentials (no Secret with AWS_ACCESS_KEY_ID, no web identity): requests are unsigned "
            "and only a public object can be read"
        )
    return S3Config(
        location=location,
        region=region,
        region_source=region_source,
        endpoint=endpoint,
        object_url=object_url(location, region, endpoint),
        static=static,
        web_identity=web,
    )
