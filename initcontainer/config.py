"""The init container's configuration, read once from the environment.

Everything is validated up front so a typo fails in the first millisecond with a
message naming the variable, instead of after a 2 GB download. Secrets are read
from files of a mounted Secret (never argv) and kept out of every repr.
"""

from __future__ import annotations

import difflib
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from initcontainer import contract
from initcontainer.errors import ConfigError

if TYPE_CHECKING:
    from initcontainer.s3 import S3Config


# Kubernetes injects "service links" for every Service of the namespace, e.g. a
# Service named "package-repo" gives PACKAGE_REPO_SERVICE_HOST and
# PACKAGE_REPO_PORT_80_TCP_ADDR. They are not typos and must not stop the pod.
_SERVICE_LINK_RE = re.compile(
    r"[A-Z0-9_]+_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)?)"
)
# The webhook's own settings share the prefix; they never configure this program.
_WEBHOOK_PREFIX = "PACKAGE_INJECTOR_"


@dataclass(frozen=True)
class Credentials:
    """Basic (username+password) or bearer (token) credentials; repr never shows them."""

    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    source: str = ""

    @property
    def kind(self) -> str:
        return "bearer" if self.token is not None else "basic"

    def secrets(self) -> tuple[str, ...]:
        """The secret strings, so callers can assert they never appear in output."""
        return tuple(s for s in (self.password, self.token) if s)


@dataclass(frozen=True)
class Config:
    """Everything the run needs; built only by `load_config`."""

    url: str = field(repr=False)  # may hold a pre-signed token: use log.redact_url
    sha256: str | None
    dest: Path
    strip_components: int
    fmt: str
    allow_http: bool
    insecure_skip_tls_verify: bool
    max_download_bytes: int
    max_extracted_bytes: int
    max_files: int
    connect_timeout: float
    read_timeout: float
    total_timeout: float
    retries: int
    termination_log: Path
    log_format: str
    credentials: Credentials | None = field(default=None, repr=False)
    ca_pem: str | None = field(default=None, repr=False)
    credentials_dir: Path | None = Path(contract.DEFAULT_CREDENTIALS_DIR)
    """Where registry `.dockerconfigjson` files are looked for (oci://); None: nowhere (a named package
    without its own Secret, see `load_config`'s `secrets`)."""
    warnings: tuple[str, ...] = ()
    s3: S3Config | None = None
    """Set for s3:// URLs: bucket, key, region, endpoint and credentials."""


def _config_error(problem: contract.ValueProblem) -> ConfigError:
    return ConfigError(str(problem))


def parse_bool(name: str, raw: str) -> bool:
    try:
        return contract.parse_bool(name, raw)
    except contract.ValueProblem as exc:
        raise _config_error(exc) from None


def parse_size(name: str, raw: str) -> int:
    """Bytes, with an optional Kubernetes-style suffix (100Mi, 2G); the contract's rule."""
    try:
        return contract.parse_size(name, raw)
    except contract.ValueProblem as exc:
        raise _config_error(exc) from None


def parse_duration(name: str, raw: str) -> float:
    """Seconds, with an optional s/m/h suffix (30, 2.5s, 5m); the contract's rule."""
    try:
        return contract.parse_duration(name, raw)
    except contract.ValueProblem as exc:
        raise _config_error(exc) from None


def parse_retries(raw: str) -> int:
    try:
        return contract.parse_int(contract.ENV_RETRIES, raw, low=0, high=contract.MAX_RETRIES)
    except contract.ValueProblem as exc:
        raise _config_error(exc) from None


def tunable(name: str, raw: str) -> object:
    """A PACKAGE_* tunable parsed by the contract's rule for it (the webhook checks init_env with it too)."""
    try:
        return contract.TUNABLE_ENV[name](name, raw)
    except contract.ValueProblem as exc:
        raise _config_error(exc) from None


def normalise_sha256(raw: str) -> str:
    """Accept 'sha256:<hex>' or '<hex>', any case; return lowercase hex."""
    value = contract.normalise_sha256(raw)
    if value is None:
        length = len(raw.strip().lower().removeprefix("sha256:"))
        raise ConfigError(
            f"{contract.ENV_SHA256} must be 64 hex digits (optionally prefixed with 'sha256:'), "
            f"got {length} characters"
        )
    return value


_URL_MESSAGES = {
    contract.URL_EMPTY: "is required: the URL of the package to install",
    contract.URL_SPACE: "contains whitespace; percent-encode it",
    contract.URL_CHARACTERS: "contains control or non-ASCII characters; percent-encode them",
    contract.URL_INVALID: "is not a valid URL (check the host and port)",
    contract.URL_SCHEME: "must start with https://, oci:// or s3://",
    contract.URL_CREDENTIALS: (
        "contains credentials (user:password@host); remove them from the URL and put them in a Secret "
        f"mounted at {contract.ENV_CREDENTIALS_DIR} (files username and password)"
    ),
    contract.URL_NO_HOST: "has no host",
}


def check_url(raw: str, *, allow_http: bool) -> str:
    """Validate the URL by the contract's rules; never echo it in errors (it may carry a token)."""
    url, parts, problems = contract.url_problems(raw)
    if problems == [contract.URL_OCI]:
        try:
            contract.parse_oci_reference(url)
        except contract.ReferenceError as exc:
            raise ConfigError(f"{contract.ENV_URL} {exc}") from None
    if problems == [contract.URL_S3]:
        try:
            contract.parse_s3_url(url)
        except contract.S3URLError as exc:
            raise ConfigError(f"{contract.ENV_URL} is not a usable s3:// URL: {exc}") from None
    if problems:
        raise ConfigError(f"{contract.ENV_URL} {_URL_MESSAGES[problems[0]]}")
    if contract.is_oci_url(url) or url[:5].lower() == f"{contract.S3_SCHEME}://":
        return url
    assert parts is not None
    if parts.scheme.lower() == "http" and not allow_http:
        raise ConfigError(
            f"{contract.ENV_URL} uses plain http://, which anyone on the path can read and change; "
            f"use https:// or set {contract.ENV_ALLOW_HTTP}=true"
        )
    return url


def check_proxies(environ: Mapping[str, str]) -> None:
    """A proxy the transport cannot use fails now, as configuration, not later as a network error."""
    for name in sorted(contract.PROXY_ENV):
        if name.lower() != "no_proxy" and environ.get(name, "").strip():
            try:
                contract.parse_proxy(name, environ[name])
            except contract.ValueProblem as exc:
                raise _config_error(exc) from None


def check_unknown(environ: Mapping[str, str]) -> None:
    """A mistyped PACKAGE_* variable is an error, with the closest known name as a hint."""
    known = sorted(contract.KNOWN_ENV)
    for name in sorted(environ):
        if not name.startswith(contract.ENV_PREFIX) or name in contract.KNOWN_ENV:
            continue
        if name.startswith(_WEBHOOK_PREFIX) or _SERVICE_LINK_RE.fullmatch(name):
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else f"; known variables: {', '.join(known)}"
        raise ConfigError(f"unknown variable {name}{hint}")


def read_secret_file(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read credentials file {path}: {exc.__class__.__name__}") from None
    # `kubectl create secret --from-file` keeps the editor's trailing newline.
    value = text.strip("\r\n")
    if not value:
        raise ConfigError(f"credentials file {path} is empty")
    if any(c in value for c in "\r\n"):
        raise ConfigError(f"credentials file {path} has more than one line")
    return value


def load_credentials(
    environ: Mapping[str, str], warnings: list[str]
) -> tuple[Credentials | None, str | None]:
    """Credentials and CA from the Secret directory, falling back to the legacy env vars."""
    explicit = contract.ENV_CREDENTIALS_DIR in environ
    directory = Path(environ.get(contract.ENV_CREDENTIALS_DIR, contract.DEFAULT_CREDENTIALS_DIR))
    creds: Credentials | None = None
    ca_pem: str | None = None
    if directory.is_dir():
        files = {
            n: directory / n
            for n in (
                contract.CREDENTIAL_USERNAME,
                contract.CREDENTIAL_PASSWORD,
                contract.CREDENTIAL_TOKEN,
                contract.CREDENTIAL_CA,
            )
        }
        present = {n for n, p in files.items() if p.is_file()}
        has_user = contract.CREDENTIAL_USERNAME in present
        has_pass = contract.CREDENTIAL_PASSWORD in present
        has_token = contract.CREDENTIAL_TOKEN in present
        if has_token and (has_user or has_pass):
            raise ConfigError(
                f"credentials directory {directory} holds both a token and username/password; keep one"
            )
        if has_user != has_pass:
            missing = contract.CREDENTIAL_PASSWORD if has_user else contract.CREDENTIAL_USERNAME
            raise ConfigError(f"credentials directory {directory} lacks the file {missing!r}")
        if has_token:
            creds = Credentials(
                token=read_secret_file(files[contract.CREDENTIAL_TOKEN]), source=str(directory)
            )
        elif has_user:
            creds = Credentials(
                username=read_secret_file(files[contract.CREDENTIAL_USERNAME]),
                password=read_secret_file(files[contract.CREDENTIAL_PASSWORD]),
                source=str(directory),
            )
        if contract.CREDENTIAL_CA in present:
            ca_pem = _load_ca(files[contract.CREDENTIAL_CA])
    elif explicit:
        raise ConfigError(f"{contract.ENV_CREDENTIALS_DIR}={directory} is not a directory")

    legacy_user = environ.get(contract.ENV_USERNAME)
    legacy_pass = environ.get(contract.ENV_PASSWORD)
    if legacy_user is not None or legacy_pass is not None:
        if creds is not None:
            warnings.append(
                f"{contract.ENV_USERNAME}/{contract.ENV_PASSWORD} are ignored: the Secret in {directory} wins"
            )
        elif not legacy_user or not legacy_pass:
            raise ConfigError(f"set both {contract.ENV_USERNAME} and {contract.ENV_PASSWORD}, or neither")
        else:
            warnings.append(
                f"{contract.ENV_USERNAME}/{contract.ENV_PASSWORD} are deprecated: anyone who can read the "
                "pod spec sees them; put username and password in a Secret mounted at "
                f"{contract.ENV_CREDENTIALS_DIR}"
            )
            creds = Credentials(username=legacy_user, password=legacy_pass, source="environment")
    if creds is not None and creds.username is not None and ":" in creds.username:
        raise ConfigError("the username must not contain ':' (HTTP basic auth cannot carry it)")
    return creds, ca_pem


def _load_ca(path: Path) -> str:
    """Read and check the CA bundle now: a bad ca.crt is a config error, not a TLS failure later."""
    try:
        pem = path.read_text(encoding="ascii")
        ssl.create_default_context().load_verify_locations(cadata=pem)
    except (OSError, UnicodeDecodeError, ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"{path} is not a PEM CA certificate bundle: {exc.__class__.__name__}") from None
    return pem


def load_config(environ: Mapping[str, str], *, secrets: bool = True) -> Config:
    """Build the Config from the environment only; raise ConfigError with a fix-it message.

    `secrets=False` reads no credentials directory at all (not even DEFAULT_CREDENTIALS_DIR, where the
    unnamed package's Secret or the Pod's pull secrets are mounted): a named package without its own."""
    check_unknown(environ)
    warnings: list[str] = []

    def get(name: str) -> str | None:
        value = environ.get(name)
        return None if value is None or value.strip() == "" else value

    allow_http = parse_bool(contract.ENV_ALLOW_HTTP, environ.get(contract.ENV_ALLOW_HTTP, "false"))
    url = check_url(environ.get(contract.ENV_URL, ""), allow_http=allow_http)
    check_proxies(environ)
    raw_sha = get(contract.ENV_SHA256)
    fmt = str(tunable(contract.ENV_FORMAT, get(contract.ENV_FORMAT) or contract.DEFAULT_FORMAT))
    dest = Path(get(contract.ENV_DEST) or contract.DEFAULT_DEST)
    if not dest.is_absolute():
        raise ConfigError(f"{contract.ENV_DEST} must be an absolute path")
    log_format = str(tunable(contract.ENV_LOG_FORMAT, get(contract.ENV_LOG_FORMAT) or "json"))
    insecure = parse_bool(
        contract.ENV_INSECURE_SKIP_TLS_VERIFY, environ.get(contract.ENV_INSECURE_SKIP_TLS_VERIFY, "false")
    )
    if insecure:
        warnings.append(
            f"{contract.ENV_INSECURE_SKIP_TLS_VERIFY}=true: the server's certificate is not checked; "
            f"pin {contract.ENV_SHA256} or provide ca.crt instead"
        )
    credentials, ca_pem = load_credentials(environ, warnings) if secrets else (None, None)
    oci_http = contract.is_oci_url(url) and allow_http
    if credentials is not None and (url.lower().startswith("http://") or oci_http):
        warnings.append("credentials are sent over plain http://; anyone on the path can read them")

    def size(name: str, default: int) -> int:
        raw = get(name)
        return default if raw is None else int(str(tunable(name, raw)))

    def duration(name: str, default: float) -> float:
        raw = get(name)
        return default if raw is None else float(str(tunable(name, raw)))

    s3_config = None
    if url.lower().startswith(f"{contract.S3_SCHEME}://"):
        from initcontainer.s3 import load_s3_config

        directory = (
            Path(environ.get(contract.ENV_CREDENTIALS_DIR, contract.DEFAULT_CREDENTIALS_DIR))
            if secrets
            else None
        )
        s3_config = load_s3_config(
            environ, contract.parse_s3_url(url), directory, allow_http=allow_http, warnings=warnings
        )

    raw_strip = get(contract.ENV_STRIP_COMPONENTS)
    raw_retries = get(contract.ENV_RETRIES)
    try:
        strip = 0 if raw_strip is None else contract.parse_strip_components(raw_strip)
    except contract.ValueProblem as exc:
        raise _config_error(exc) from None
    return Config(
        url=url,
        sha256=normalise_sha256(raw_sha) if raw_sha is not None else None,
        dest=dest,
        strip_components=strip,
        fmt=fmt,
        allow_http=allow_http,
        insecure_skip_tls_verify=insecure,
        max_download_bytes=size(contract.ENV_MAX_DOWNLOAD_BYTES, contract.DEFAULT_MAX_DOWNLOAD_BYTES),
        max_extracted_bytes=size(contract.ENV_MAX_EXTRACTED_BYTES, contract.DEFAULT_MAX_EXTRACTED_BYTES),
        max_files=size(contract.ENV_MAX_FILES, contract.DEFAULT_MAX_FILES),
        connect_timeout=duration(contract.ENV_CONNECT_TIMEOUT, contract.DEFAULT_CONNECT_TIMEOUT),
        read_timeout=duration(contract.ENV_READ_TIMEOUT, contract.DEFAULT_READ_TIMEOUT),
        total_timeout=duration(contract.ENV_TOTAL_TIMEOUT, contract.DEFAULT_TOTAL_TIMEOUT),
        retries=contract.DEFAULT_RETRIES if raw_retries is None else parse_retries(raw_retries),
        termination_log=Path(get(contract.ENV_TERMINATION_LOG) or contract.DEFAULT_TERMINATION_LOG),
        log_format=log_format,
        credentials=credentials,
        ca_pem=ca_pem,
        credentials_dir=(
            Path(environ.get(contract.ENV_CREDENTIALS_DIR) or contract.DEFAULT_CREDENTIALS_DIR)
            if secrets
            else None
        ),
        warnings=tuple(warnings),
        s3=s3_config,
    )
