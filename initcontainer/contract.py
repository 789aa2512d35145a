"""The environment contract between the webhook and the init container: names, defaults and rules.

Standard library only: the init container image ships this module, and the
webhook imports it, so both halves agree on names, defaults and what a valid
value is by construction: the webhook admits only what the init container's
configuration check accepts (tests/initcontainer/test_contract_property.py). Each side words
its own messages (an annotation for the user, a variable for the operator); the
rules live here, once. Changing a name here is a breaking change for every
running cluster.
"""

from __future__ import annotations

import ipaddress
import json
import posixpath
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

# Names kept from the shell-script init container this project replaces, so
# existing users can switch without touching their manifests.
INIT_CONTAINER_NAME: Final = "package-downloader"
VOLUME_NAME: Final = "package-shared-volume"
DEFAULT_DEST: Final = "/shared-data/diff-var-files"
DEFAULT_IMAGE_NAME: Final = "package-init-container"

# Prefix shared by every variable; an unknown PACKAGE_* variable is a typo and
# the init container refuses to start on it.
ENV_PREFIX: Final = "PACKAGE_"

ENV_URL: Final = "PACKAGE_URL"
"""Required. The package: https://, http:// when ENV_ALLOW_HTTP is true, oci:// (OCIReference) or s3://BUCKET/KEY."""
ENV_SHA256: Final = "PACKAGE_SHA256"
"""Optional. Expected SHA-256 of the downloaded bytes, 64 hex digits, `sha256:` prefix optional."""
ENV_DEST: Final = "PACKAGE_DEST"
"""Directory to fill (the shared volume's mount in the init container)."""
ENV_STRIP_COMPONENTS: Final = "PACKAGE_STRIP_COMPONENTS"
"""Leading path components to drop from every member, 0..32 (like tar --strip-components)."""
ENV_FORMAT: Final = "PACKAGE_FORMAT"
"""auto (magic bytes), tar, tar.gz, tar.bz2, tar.xz, tar.zst, zip."""
ENV_CREDENTIALS_DIR: Final = "PACKAGE_CREDENTIALS_DIR"
"""Directory holding `username`+`password` or `token`, and optionally `ca.crt` (a mounted Secret).
For oci:// it may hold `.dockerconfigjson` instead, or one `NAME/.dockerconfigjson` per image pull secret."""
ENV_ALLOW_HTTP: Final = "PACKAGE_ALLOW_HTTP"
"""true to accept plain http:// URLs (the webhook sets it only where cluster policy allows)."""
ENV_INSECURE_SKIP_TLS_VERIFY: Final = "PACKAGE_INSECURE_SKIP_TLS_VERIFY"
"""true to turn TLS verification off. Never set by the webhook."""
ENV_MAX_DOWNLOAD_BYTES: Final = "PACKAGE_MAX_DOWNLOAD_BYTES"
ENV_MAX_EXTRACTED_BYTES: Final = "PACKAGE_MAX_EXTRACTED_BYTES"
ENV_MAX_FILES: Final = "PACKAGE_MAX_FILES"
ENV_CONNECT_TIMEOUT: Final = "PACKAGE_CONNECT_TIMEOUT"
ENV_READ_TIMEOUT: Final = "PACKAGE_READ_TIMEOUT"
ENV_TOTAL_TIMEOUT: Final = "PACKAGE_TOTAL_TIMEOUT"
ENV_RETRIES: Final = "PACKAGE_RETRIES"
ENV_TERMINATION_LOG: Final = "PACKAGE_TERMINATION_LOG"
ENV_LOG_FORMAT: Final = "PACKAGE_LOG_FORMAT"
"""json (default) or text."""
ENV_S3_REGION: Final = "PACKAGE_S3_REGION"
"""s3:// only: region when the Secret names none (cluster setting s3_region)."""
ENV_S3_ENDPOINT: Final = "PACKAGE_S3_ENDPOINT"
"""s3:// only: an S3-compatible endpoint URL when the Secret names none (path-style addressing)."""
ENV_STS_ENDPOINT: Final = "PACKAGE_STS_ENDPOINT"
"""s3:// only: the STS endpoint for web identity (default: the region's AWS STS)."""
# Legacy variables of the shell-script version; still honoured, with a warning.
ENV_USERNAME: Final = "PACKAGE_USERNAME"
ENV_PASSWORD: Final = "PACKAGE_PASSWORD"  # noqa: S105 - a variable name, not a password

DEFAULT_CREDENTIALS_DIR: Final = "/var/run/secrets/package-injector/credentials"
CREDENTIAL_USERNAME: Final = "username"
CREDENTIAL_PASSWORD: Final = "password"  # noqa: S105 - a file name
CREDENTIAL_TOKEN: Final = "token"  # noqa: S105 - a file name
CREDENTIAL_CA: Final = "ca.crt"
CREDENTIAL_DOCKERCONFIG: Final = ".dockerconfigjson"
"""The key of a `kubernetes.io/dockerconfigjson` Secret: registry credentials for oci:// URLs."""
# s3:// URLs: Secret keys named like the AWS SDK's environment variables.
CREDENTIAL_AWS_ACCESS_KEY_ID: Final = "AWS_ACCESS_KEY_ID"
CREDENTIAL_AWS_SECRET_ACCESS_KEY: Final = "AWS_SECRET_ACCESS_KEY"  # noqa: S105 - a file name
CREDENTIAL_AWS_SESSION_TOKEN: Final = "AWS_SESSION_TOKEN"  # noqa: S105 - a file name
CREDENTIAL_AWS_REGION: Final = "AWS_REGION"
CREDENTIAL_AWS_ENDPOINT_URL_S3: Final = "AWS_ENDPOINT_URL_S3"
# Web identity: what the EKS pod identity webhook sets in every container of a Pod whose
# ServiceAccount has the eks.amazonaws.com/role-arn annotation (no PACKAGE_ prefix: not ours).
AWS_ENV_ROLE_ARN: Final = "AWS_ROLE_ARN"
AWS_ENV_WEB_IDENTITY_TOKEN_FILE: Final = "AWS_WEB_IDENTITY_TOKEN_FILE"  # noqa: S105 - a variable name
AWS_ENV_ROLE_SESSION_NAME: Final = "AWS_ROLE_SESSION_NAME"
AWS_ENV_REGION: Final = "AWS_REGION"
AWS_ENV_DEFAULT_REGION: Final = "AWS_DEFAULT_REGION"
AWS_ENV_ENDPOINT_URL_STS: Final = "AWS_ENDPOINT_URL_STS"
DEFAULT_S3_REGION: Final = "us-east-1"

DEFAULT_FORMAT: Final = "auto"
FORMATS: Final = ("auto", "tar", "tar.gz", "tar.bz2", "tar.xz", "tar.zst", "zip")
MAX_STRIP_COMPONENTS: Final = 32
DEFAULT_MAX_DOWNLOAD_BYTES: Final = 4 * 1024**3
DEFAULT_MAX_EXTRACTED_BYTES: Final = 16 * 1024**3
DEFAULT_MAX_FILES: Final = 200_000
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
DEFAULT_READ_TIMEOUT: Final = 30.0
DEFAULT_TOTAL_TIMEOUT: Final = 1800.0
DEFAULT_RETRIES: Final = 5
DEFAULT_TERMINATION_LOG: Final = "/dev/termination-log"

# What the init container leaves in DEST. Hidden names, so `ls` in the app shows
# only the package. The marker is written last: its presence means "complete".
MARKER_NAME: Final = ".package-injector.json"
STAGING_PREFIX: Final = ".package-staging-"

# Exit codes by failure class, so `kubectl describe pod` and alerts can tell
# "fix your URL" from "the server is down" without reading logs.
EXIT_OK: Final = 0
EXIT_CONFIG: Final = 2
EXIT_TRANSPORT: Final = 3
EXIT_HTTP_CLIENT: Final = 4
EXIT_INTEGRITY: Final = 5
EXIT_UNSAFE_ARCHIVE: Final = 6
EXIT_LOCAL_IO: Final = 7

# --- several packages per Pod (issue 13, part 2) -----------------------------------------------------------
#
# The unnamed package keeps the variables above (PACKAGE_URL, PACKAGE_SHA256, PACKAGE_DEST,
# PACKAGE_STRIP_COMPONENTS, PACKAGE_CREDENTIALS_DIR), so every Pod injected before keeps its exact env.
# Named packages (annotations `package-url.NAME` and companions) travel in ONE variable, PACKAGE_LIST: a
# JSON array, one object per package, in the order the webhook sorted them (by name):
#
#   [{"name": "tools", "url": "https://...", "sha256": "<64 hex>", "dest": "/shared-data/packages/tools",
#     "stripComponents": 1, "credentialsDir": "/var/run/secrets/package-injector/credentials-tools"}]
#
# Only "name", "url" and "dest" are required. One variable rather than PACKAGE_URL_1..N: one value to
# validate whole (an unknown field or a duplicate is refused before any download), no gaps in an index,
# and the webhook owns it as one env entry. Secrets never appear in it: each package's Secret is a volume
# mounted read-only at its credentialsDir, as for the unnamed package; the URL is in the Pod spec anyway.
# Each package's dest is its own volume's mount in the init container; no dest may be inside another.
# PACKAGE_CONCURRENCY bounds how many packages download at once (initcontainer.several runs them).

ENV_PACKAGE_LIST: Final = "PACKAGE_LIST"
"""JSON array of the named packages (see above); the unnamed package stays in PACKAGE_URL etc."""
ENV_CONCURRENCY: Final = "PACKAGE_CONCURRENCY"
"""How many packages download at once, 1..16."""
DEFAULT_CONCURRENCY: Final = 4
MAX_CONCURRENCY: Final = 16
NAMED_DEST_ROOT: Final = "/shared-data/packages"
"""Named packages default to NAMED_DEST_ROOT/NAME: beside DEFAULT_DEST, never inside it or each other."""

KNOWN_ENV: Final = frozenset(
    {
        ENV_URL,
        ENV_SHA256,
        ENV_DEST,
        ENV_STRIP_COMPONENTS,
        ENV_FORMAT,
        ENV_CREDENTIALS_DIR,
        ENV_ALLOW_HTTP,
        ENV_INSECURE_SKIP_TLS_VERIFY,
        ENV_MAX_DOWNLOAD_BYTES,
        ENV_MAX_EXTRACTED_BYTES,
        ENV_MAX_FILES,
        ENV_CONNECT_TIMEOUT,
        ENV_READ_TIMEOUT,
        ENV_TOTAL_TIMEOUT,
        ENV_RETRIES,
        ENV_TERMINATION_LOG,
        ENV_LOG_FORMAT,
        ENV_S3_REGION,
        ENV_S3_ENDPOINT,
        ENV_STS_ENDPOINT,
        ENV_USERNAME,
        ENV_PASSWORD,
        ENV_PACKAGE_LIST,
        ENV_CONCURRENCY,
    }
)


# ---------------------------------------------------------------- oci:// references
#
# The grammar of distribution's reference package (the one Docker, containerd and
# the kubelet parse image names with), restricted to what a pin needs: tags, and
# sha256 digests. Docker Hub short names are normalised as the kubelet does:
# `nginx` is `docker.io/library/nginx`, `team/app` is `docker.io/team/app`.

OCI_SCHEME: Final = "oci"
DOCKER_HUB: Final = "docker.io"
DOCKER_HUB_API_HOST: Final = "registry-1.docker.io"
"""Where Docker Hub's registry API answers; `docker.io` itself only redirects."""
_DOCKER_HUB_ALIASES: Final = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
DEFAULT_TAG: Final = "latest"
MAX_REPOSITORY_NAME: Final = 255
"""distribution limits the whole name (registry + repository) to 255 characters."""

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE: Final = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::([0-9]{{1,5}}))?"
)
_PATH_COMPONENT_RE: Final = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_SHA256_DIGEST_RE: Final = re.compile(r"sha256:[0-9a-f]{64}")


class ReferenceError(ValueError):
    """An oci:// reference that cannot be parsed; the message says what to fix."""


@dataclass(frozen=True)
class OCIReference:
    """A parsed `oci://` package reference: which registry, repository and manifest.

    `registry` is `host[:port]` as written (lowercase), with Docker Hub names
    normalised to `docker.io`; `digest` (`sha256:...`) pins the manifest, and
    wins over `tag` when both are given (the tag is then only informative).
    """

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def host(self) -> str:
        """Host name without port or brackets: what `allowed_hosts` matches."""
        host = self.registry.rsplit(":", 1)[0] if _has_port(self.registry) else self.registry
        return host.strip("[]")

    @property
    def api_host(self) -> str:
        """`host[:port]` to connect to (Docker Hub's API lives on another name)."""
        return DOCKER_HUB_API_HOST if self.registry == DOCKER_HUB else self.registry

    @property
    def manifest_ref(self) -> str:
        """What goes after `/manifests/`: the digest when pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def name(self) -> str:
        """`registry/repository`, the form credential keys are matched against."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{OCI_SCHEME}://{self.name}{tag}{digest}"


def _has_port(registry: str) -> bool:
    return registry.rsplit("]", 1)[-1].count(":") == 1


def is_oci_url(url: str) -> bool:
    return url[:6].lower() == f"{OCI_SCHEME}://"


def parse_oci_reference(url: str) -> OCIReference:
    """Parse `oci://[HOST[:PORT]/]REPO[:TAG][@sha256:HEX]`; raise ReferenceError saying what is wrong.

    The first path component is the registry when it holds a `.` or a `:` or is
    `localhost` (Docker's rule); otherwise the name is on Docker Hub, and a
    one-component name gets `library/` in front of it.
    """
    if not is_oci_url(url):
        raise ReferenceError("must start with oci://")
    rest = url[len(OCI_SCHEME) + 3 :]
    if not rest:
        raise ReferenceError("names no repository: use oci://HOST/REPOSITORY:TAG or @sha256:DIGEST")
    if not rest.isascii() or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in rest):
        raise ReferenceError("contains whitespace, control or non-ASCII characters")
    if "?" in rest or "#" in rest:
        raise ReferenceError("must not carry a query or fragment: oci://HOST/REPOSITORY:TAG@sha256:DIGEST")
    name, digest = rest, None
    if "@" in rest:
        name, digest = rest.split("@", 1)
        if "/" in digest or "@" in digest:
            raise ReferenceError(
                "contains credentials (user:password@host); remove them and put them in a Secret"
            )
        if not _SHA256_DIGEST_RE.fullmatch(digest):
            raise ReferenceError(
                "has a digest that is not sha256:<64 lowercase hex digits> (the form `crane digest` prints)"
            )
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last and (name.count("/") > 0 or not _looks_like_host_port(name)):
        name, tag = name.rsplit(":", 1)
        if not _TAG_RE.fullmatch(tag):
            raise ReferenceError(
                f"has an invalid tag {tag[:40]!r}: letters, digits, _ . - only, at most 128, "
                "not starting with . or -"
            )
    registry, path = _split_registry(name)
    components = path.split("/")
    for component in components:
        if not _PATH_COMPONENT_RE.fullmatch(component):
            shown = component[:60]
            hint = " (repository names are lowercase)" if component.lower() != component else ""
            raise ReferenceError(
                f"has an invalid repository component {shown!r}{hint}: lowercase letters and digits "
                "separated by . _ __ or -"
            )
    if len(registry) + 1 + len(path) > MAX_REPOSITORY_NAME:
        raise ReferenceError(f"names a repository longer than {MAX_REPOSITORY_NAME} characters")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return OCIReference(registry=registry, repository=path, tag=tag, digest=digest)


def _looks_like_host_port(name: str) -> bool:
    """`oci://host:5000` alone: a registry with no repository, not a repository with a tag."""
    return "." in name.split(":", 1)[0] or name.split(":", 1)[0] == "localhost"


def _split_registry(name: str) -> tuple[str, str]:
    first, sep, remainder = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        m = _DOMAIN_RE.fullmatch(first)
        if m is None:
            raise ReferenceError(f"has an invalid registry host {first[:60]!r}")
        if m.group(1) is not None and not 0 < int(m.group(1)) < 65536:
            raise ReferenceError(f"has an invalid registry port in {first[:60]!r}")
        registry = first.lower()
        if registry in _DOCKER_HUB_ALIASES:
            registry = DOCKER_HUB
        path = remainder
    else:
        if not sep and _looks_like_host_port(name):
            raise ReferenceError("names a registry but no repository: use oci://HOST/REPOSITORY:TAG")
        registry, path = DOCKER_HUB, name
    if not path:
        raise ReferenceError("names a registry but no repository: use oci://HOST/REPOSITORY:TAG")
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    return registry, path


# ---------------------------------------------------------------- s3:// URLs
#
# s3://BUCKET/KEY as the AWS CLI writes it. The key is the rest of the path,
# percent-decoded (write a space as %20, a literal % as %25), so the URL stays a
# valid URL; the webhook denies what the init container would refuse.

S3_SCHEME: Final = "s3"
MAX_S3_KEY_BYTES: Final = 1024
_BUCKET_RE: Final = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_BUCKET_RESERVED_PREFIXES: Final = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_RESERVED_SUFFIXES: Final = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


class S3URLError(ValueError):
    """An s3:// URL that cannot name an object; the message says what to fix."""


@dataclass(frozen=True)
class S3Location:
    """Bucket and object key of an s3:// URL (the key decoded)."""

    bucket: str
    key: str

    def __str__(self) -> str:
        return f"{S3_SCHEME}://{self.bucket}/{urllib.parse.quote(self.key, safe='/~')}"


def s3_bucket_problem(bucket: str) -> str | None:
    """What breaks S3's bucket naming rules, or None for a valid name."""
    if not 3 <= len(bucket) <= 63:
        return f"bucket name {bucket!r} must be 3 to 63 characters long"
    if not _BUCKET_RE.fullmatch(bucket):
        return (
            f"bucket name {bucket!r} may hold only lowercase letters, digits, dots and hyphens, "
            "and must begin and end with a letter or digit"
        )
    if ".." in bucket:
        return f"bucket name {bucket!r} must not have two dots side by side"
    try:
        ipaddress.IPv4Address(bucket)
    except ValueError:
        pass
    else:
        return f"bucket name {bucket!r} must not look like an IP address"
    if bucket.startswith(_BUCKET_RESERVED_PREFIXES) or bucket.endswith(_BUCKET_RESERVED_SUFFIXES):
        return f"bucket name {bucket!r} uses a prefix or suffix that S3 reserves"
    return None


def parse_s3_url(url: str) -> S3Location:
    """Bucket and key of `s3://BUCKET/KEY`; S3URLError names what is wrong."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
    except ValueError as exc:
        raise S3URLError(f"not a valid URL: {exc}") from None
    if parts.scheme.lower() != S3_SCHEME:
        raise S3URLError("an S3 URL starts with s3://")
    if "@" in parts.netloc or ":" in parts.netloc:
        raise S3URLError(
            "write s3://BUCKET/KEY with no user, password or port; credentials go in the Secret "
            "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), an endpoint in AWS_ENDPOINT_URL_S3"
        )
    if parts.query or parts.fragment or url.rstrip().endswith(("?", "#")):
        raise S3URLError("an s3:// URL takes no query string or fragment; percent-encode ? and # in the key")
    bucket = parts.netloc
    problem = s3_bucket_problem(bucket)
    if problem:
        raise S3URLError(problem)
    try:
        key = urllib.parse.unquote(parts.path[1:], errors="strict") if parts.path.startswith("/") else ""
    except UnicodeDecodeError:
        raise S3URLError("the key is not UTF-8 once percent-decoded") from None
    if not key:
        raise S3URLError(
            f"s3://{bucket}/ names no object: add the key, e.g. s3://{bucket}/app/package.tar.gz"
        )
    if key.endswith("/"):
        raise S3URLError("the key ends with '/', which names a folder, not a package file")
    if len(key.encode()) > MAX_S3_KEY_BYTES:
        raise S3URLError(f"the key is longer than S3's {MAX_S3_KEY_BYTES} bytes")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise S3URLError("the key contains control characters")
    if any(segment in (".", "..") for segment in key.split("/")):
        # S3 takes them literally, but proxies and path-style endpoints may resolve them into another
        # bucket's path, past the bucket the webhook allowed.
        raise S3URLError(
            "the key has a '.' or '..' path segment, which proxies may resolve; rename the object"
        )
    return S3Location(bucket, key)


# One line per variable, for `package-init --help` (the full reference is docs/init-container.md).
ENV_SUMMARY: Final = {
    ENV_URL: "the package to fetch (required; https://, or http:// with PACKAGE_ALLOW_HTTP=true)",
    ENV_SHA256: "expected SHA-256 of the download (64 hex digits, sha256: prefix optional)",
    ENV_DEST: f"directory to fill (default {DEFAULT_DEST})",
    ENV_STRIP_COMPONENTS: f"leading path components to drop, 0..{MAX_STRIP_COMPONENTS} (default 0)",
    ENV_FORMAT: f"{', '.join(FORMATS)} (default {DEFAULT_FORMAT}: from the first bytes)",
    ENV_CREDENTIALS_DIR: f"a mounted Secret: username+password or token, optional ca.crt "
    f"(default {DEFAULT_CREDENTIALS_DIR})",
    ENV_ALLOW_HTTP: "true to accept http:// URLs (default false)",
    ENV_INSECURE_SKIP_TLS_VERIFY: "true turns TLS verification off (default false; never set by the webhook)",
    ENV_MAX_DOWNLOAD_BYTES: "largest download, e.g. 4Gi (default 4Gi)",
    ENV_MAX_EXTRACTED_BYTES: "largest extracted total (default 16Gi)",
    ENV_MAX_FILES: f"most archive entries (default {DEFAULT_MAX_FILES})",
    ENV_CONNECT_TIMEOUT: f"seconds to connect, or 10s/1m (default {DEFAULT_CONNECT_TIMEOUT:g})",
    ENV_READ_TIMEOUT: f"seconds without a byte before the link is lost (default {DEFAULT_READ_TIMEOUT:g})",
    ENV_TOTAL_TIMEOUT: f"deadline of the whole run, retries included (default {DEFAULT_TOTAL_TIMEOUT:g})",
    ENV_RETRIES: f"consecutive transient failures tolerated (default {DEFAULT_RETRIES})",
    ENV_TERMINATION_LOG: f"file for the JSON failure reason (default {DEFAULT_TERMINATION_LOG} if it exists)",
    ENV_LOG_FORMAT: "json (default) or text",
    ENV_USERNAME: "legacy basic-auth user (prefer a Secret in PACKAGE_CREDENTIALS_DIR)",
    ENV_PASSWORD: "legacy basic-auth password (visible in the pod spec: prefer a Secret)",
    ENV_S3_REGION: "s3:// only: the region when the Secret has no AWS_REGION (default us-east-1)",
    ENV_S3_ENDPOINT: "s3:// only: an S3-compatible endpoint when the Secret has no AWS_ENDPOINT_URL_S3",
    ENV_STS_ENDPOINT: "s3:// web identity only: the STS endpoint (default https://sts.REGION.amazonaws.com)",
    ENV_PACKAGE_LIST: "JSON array of named packages (name, url, dest, optional sha256, stripComponents, "
    "credentialsDir)",
    ENV_CONCURRENCY: f"named packages fetched at once, 1..{MAX_CONCURRENCY} (default {DEFAULT_CONCURRENCY})",
}
EXIT_SUMMARY: Final = {
    EXIT_OK: "installed, or already installed",
    1: "internal error (a bug: please report it with the log)",
    EXIT_CONFIG: "configuration: a PACKAGE_* variable is missing, unknown or invalid",
    EXIT_TRANSPORT: "transport: DNS, connection, TLS, timeout, retries used up",
    EXIT_HTTP_CLIENT: "HTTP 4xx: wrong URL, credentials or permissions",
    EXIT_INTEGRITY: "integrity: checksum mismatch, not an archive, truncated, too large",
    EXIT_UNSAFE_ARCHIVE: "unsafe archive: absolute or .. paths, links out of the tree, devices, bombs",
    EXIT_LOCAL_IO: "local I/O: the volume is full or not writable",
}


# --- rules ----------------------------------------------------------------------------------------------


class ValueProblem(ValueError):
    """A value the contract refuses; the message names the variable and says what to write."""


PROXY_ENV: Final = frozenset(
    {"HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy"}
)

_TRUE: Final = frozenset({"true", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "off", ""})
_SIZE_UNITS: Final = {
    "": 1,
    "k": 1000,
    "m": 1000**2,
    "g": 1000**3,
    "t": 1000**4,
    "ki": 1024,
    "mi": 1024**2,
    "gi": 1024**3,
    "ti": 1024**4,
}
_DURATION_UNITS: Final = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}
_SHA256: Final = re.compile(r"[0-9a-f]{64}")
MAX_RETRIES: Final = 100


def parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueProblem(f"{name}={raw!r} is not a boolean: use true or false")


def parse_size(name: str, raw: str) -> int:
    """Bytes, with an optional Kubernetes-style suffix (100Mi, 2G)."""
    m = re.fullmatch(r"\s*([0-9]+)\s*([kmgtKMGT]i?)?\s*", raw, re.ASCII)
    if not m:
        raise ValueProblem(f"{name}={raw!r} is not a size: use bytes, optionally with Ki/Mi/Gi or k/M/G")
    value = int(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower()]
    if value <= 0:
        raise ValueProblem(f"{name} must be greater than 0")
    return value


def parse_duration(name: str, raw: str) -> float:
    """Seconds, with an optional s/m/h suffix (30, 2.5s, 5m)."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smh]?)\s*", raw, re.ASCII)
    if not m:
        raise ValueProblem(f"{name}={raw!r} is not a duration: use seconds, e.g. 30 or 30s or 5m")
    value = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if value <= 0:
        raise ValueProblem(f"{name} must be greater than 0")
    return value


def parse_int(name: str, raw: str, *, low: int, high: int) -> int:
    """A decimal integer in ASCII digits (int() alone would take '1_0' or Arabic-Indic digits)."""
    text = raw.strip()
    if not re.fullmatch(r"[-+]?[0-9]+", text, re.ASCII):
        raise ValueProblem(f"{name}={raw!r} is not an integer")
    value = int(text)
    if not low <= value <= high:
        raise ValueProblem(f"{name}={value} is out of range {low}..{high}")
    return value


def normalise_sha256(raw: str) -> str | None:
    """'sha256:<hex>' or '<hex>', any case, surrounding space ignored -> lowercase hex; None if not 64 hex."""
    value = raw.strip().lower()
    if value.startswith("sha256:"):
        value = value[len("sha256:") :]
    return value if _SHA256.fullmatch(value) else None


def parse_strip_components(raw: str) -> int:
    """0..MAX_STRIP_COMPONENTS."""
    return parse_int(ENV_STRIP_COMPONENTS, raw, low=0, high=MAX_STRIP_COMPONENTS)


# What is wrong with a URL, by kind; each side adds its own words (annotation or variable, what to do).
URL_EMPTY: Final = "empty"
URL_SPACE: Final = "whitespace"
URL_CHARACTERS: Final = "characters"
URL_INVALID: Final = "invalid"
URL_SCHEME: Final = "scheme"
URL_CREDENTIALS: Final = "credentials"
URL_NO_HOST: Final = "no-host"
URL_OCI: Final = "oci-reference"
"""An oci:// reference parse_oci_reference refuses (its ReferenceError says why)."""
URL_S3: Final = "s3-url"
"""An s3:// URL parse_s3_url refuses (its S3URLError says why)."""


def url_problems(raw: str) -> tuple[str, urllib.parse.SplitResult | None, list[str]]:
    """The stripped URL, its parts (None when unparseable) and the kinds of problem it has.

    The policy (which schemes, which hosts) is the caller's; this is what no package URL may be: empty,
    with whitespace, control or non-ASCII characters (http.client refuses them, quoting the whole target,
    token included), unparseable, not http(s), oci:// or s3://, with user:password@, or without a host;
    an oci:// reference or s3:// URL that its parser refuses (the parser's message says why). An oci://
    reference is no URL (`oci://nginx:latest` has no port): its parts are None when it is valid.
    """
    url = raw.strip()
    if not url:
        return url, None, [URL_EMPTY]
    if any(c.isspace() for c in url):
        return url, None, [URL_SPACE]
    if not url.isascii() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return url, None, [URL_CHARACTERS]
    if is_oci_url(url):
        try:
            parse_oci_reference(url)
        except ReferenceError:
            return url, None, [URL_OCI]
        return url, None, []
    if url[: len(S3_SCHEME) + 3].lower() == f"{S3_SCHEME}://":
        try:
            parse_s3_url(url)
        except S3URLError:
            return url, None, [URL_S3]
        return url, urllib.parse.urlsplit(url), []
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return url, None, [URL_INVALID]
    if parts.scheme.lower() not in ("http", "https"):
        return url, parts, [URL_SCHEME]
    problems = []
    if "@" in parts.netloc:
        problems.append(URL_CREDENTIALS)
    if not parts.hostname:
        problems.append(URL_NO_HOST)
    return url, parts, problems


def parse_proxy(name: str, raw: str) -> urllib.parse.SplitResult:
    """An HTTP(S)_PROXY value: http://host[:port] (scheme optional); the init container speaks to
    proxies in plain HTTP only (CONNECT for https targets)."""
    proxy = raw.strip()
    if "://" not in proxy:
        proxy = "http://" + proxy
    try:
        parts = urllib.parse.urlsplit(proxy)
        parts.port  # noqa: B018
    except ValueError:
        raise ValueProblem(f"{name} is not a valid proxy URL") from None
    if parts.scheme.lower() != "http":
        raise ValueProblem(
            f"{name} uses {parts.scheme}://: only http:// proxies are supported (https:// targets go "
            "through them with CONNECT, still encrypted end to end)"
        )
    if not parts.hostname or any(c.isspace() for c in proxy) or not proxy.isascii():
        raise ValueProblem(f"{name} must be http://HOST[:PORT]")
    return parts


def _choice(options: tuple[str, ...]) -> Callable[[str, str], object]:
    def check(name: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            choices = f"{', '.join(options[:-1])} or {options[-1]}"
            raise ValueProblem(f"{name}={raw!r} is not one of {choices}")
        return value

    return check


# The parser of every variable an operator may set for all Pods (the webhook's init_env).
TUNABLE_ENV: Final[dict[str, Callable[[str, str], object]]] = {
    ENV_FORMAT: _choice(FORMATS),
    ENV_LOG_FORMAT: _choice(("json", "text")),
    ENV_MAX_DOWNLOAD_BYTES: parse_size,
    ENV_MAX_EXTRACTED_BYTES: parse_size,
    ENV_MAX_FILES: parse_size,
    ENV_CONNECT_TIMEOUT: parse_duration,
    ENV_READ_TIMEOUT: parse_duration,
    ENV_TOTAL_TIMEOUT: parse_duration,
    ENV_RETRIES: lambda name, raw: parse_int(name, raw, low=0, high=MAX_RETRIES),
    ENV_TERMINATION_LOG: lambda name, raw: raw.strip(),
    ENV_CONCURRENCY: lambda name, raw: _concurrency(raw),
}


def _concurrency(raw: str) -> int:
    """parse_concurrency (the init program's own rule), as a ValueProblem."""
    try:
        return parse_concurrency(raw)
    except ValueError as exc:
        raise ValueProblem(str(exc)) from None


def env_value_problem(name: str, raw: str) -> str | None:
    """Why the init container would refuse `name=raw` at start, or None (for TUNABLE_ENV and proxies)."""
    try:
        if name in PROXY_ENV:
            if name.lower() != "no_proxy":
                parse_proxy(name, raw)
        elif name in TUNABLE_ENV:
            TUNABLE_ENV[name](name, raw)
    except ValueProblem as exc:
        return str(exc)
    return None


# --- several packages per Pod: PACKAGE_LIST's entries (the variables are defined above KNOWN_ENV) -------

MAX_PACKAGE_NAME: Final = 38
"""An annotation key's name part is at most 63 characters; `package-strip-components.` leaves 38."""

_PACKAGE_NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
_ENTRY_FIELDS: Final = frozenset({"name", "url", "sha256", "dest", "stripComponents", "credentialsDir"})
_HEX: Final = frozenset("0123456789abcdef")


def package_name_problem(name: str) -> str | None:
    """Why `name` cannot follow `package-url.` in an annotation key (Kubernetes' name-part rules), or None."""
    if not name:
        return "is empty"
    if len(name) > MAX_PACKAGE_NAME:
        return f"is longer than {MAX_PACKAGE_NAME} characters"
    if not set(name) <= _PACKAGE_NAME_CHARS or not (name[0].isalnum() and name[-1].isalnum()):
        return "must be letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
    return None


@dataclass(frozen=True)
class PackageEntry:
    """One named package of PACKAGE_LIST."""

    name: str
    url: str
    dest: str
    sha256: str | None = None
    strip_components: int = 0
    credentials_dir: str | None = None


def is_inside(path: str, parent: str) -> bool:
    """`path` is `parent` or below it (not merely sharing a prefix: /p/tools-2 is not inside /p/tools)."""
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def named_dest(name: str) -> str:
    """Where a named package is unpacked in the init container (and, by default, mounted in the app)."""
    return f"{NAMED_DEST_ROOT}/{name}"


def named_credentials_dir(name: str) -> str:
    """Where a named package's `package-secret.NAME` Secret is mounted: beside DEFAULT_CREDENTIALS_DIR."""
    return f"{DEFAULT_CREDENTIALS_DIR}-{name}"


def _absolute_dir(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.startswith("/") or value.rstrip("/") == "":
        raise ValueError(f"{what} must be an absolute directory other than '/'")
    if ".." in value.split("/") or "\x00" in value:
        raise ValueError(f"{what} must not contain '..'")
    return _normal_dir(value)


def _normal_dir(value: str) -> str:
    """One spelling per directory (`/p//x/.` is `/p/x`), so the overlap rule compares directories."""
    return "/" + posixpath.normpath(value).lstrip("/")


def _entry(item: object, index: int) -> PackageEntry:
    where = f"{ENV_PACKAGE_LIST}[{index}]"
    if not isinstance(item, dict):
        raise ValueError(f"{where} must be an object")
    unknown = sorted(str(k) for k in item if k not in _ENTRY_FIELDS)
    if unknown:
        raise ValueError(
            f"{where} has unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(_ENTRY_FIELDS))}"
        )
    name = item.get("name")
    if not isinstance(name, str) or package_name_problem(name):
        problem = package_name_problem(name) if isinstance(name, str) else "is missing"
        raise ValueError(f"{where}.name {problem}")
    where = f"{ENV_PACKAGE_LIST} package {name!r}"
    url = item.get("url")
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"{where}: url is missing")
    sha256 = item.get("sha256")
    if sha256 is not None:
        if not isinstance(sha256, str):
            raise ValueError(f"{where}: sha256 must be 64 hex digits")
        digest = sha256.lower().removeprefix("sha256:")
        if len(digest) != 64 or not set(digest) <= _HEX:
            raise ValueError(f"{where}: sha256 must be 64 hex digits")
        sha256 = digest
    strip = item.get("stripComponents", 0)
    if type(strip) is not int or not 0 <= strip <= MAX_STRIP_COMPONENTS:
        raise ValueError(f"{where}: stripComponents must be an integer from 0 to {MAX_STRIP_COMPONENTS}")
    credentials = item.get("credentialsDir")
    return PackageEntry(
        name=name,
        url=url.strip(),
        dest=_absolute_dir(item.get("dest"), f"{where}: dest"),
        sha256=sha256,
        strip_components=strip,
        credentials_dir=None
        if credentials is None
        else _absolute_dir(credentials, f"{where}: credentialsDir"),
    )


def parse_package_list(text: str, unnamed_dest: str | None = None) -> tuple[PackageEntry, ...]:
    """PACKAGE_LIST validated whole, so a bad entry stops the init container before any download.

    `unnamed_dest` is PACKAGE_DEST when PACKAGE_URL is set too: no named package may share it or nest with it.
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{ENV_PACKAGE_LIST} is not valid JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(value, list) or not value:
        raise ValueError(f"{ENV_PACKAGE_LIST} must be a non-empty JSON array of package objects")
    entries = tuple(_entry(item, i) for i, item in enumerate(value))
    names = [e.name for e in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{ENV_PACKAGE_LIST} names {', '.join(map(repr, duplicates))} more than once")
    dests = [(e.name, e.dest) for e in entries]
    if unnamed_dest is not None:
        dests.append(("the unnamed package", _normal_dir(unnamed_dest)))
    for i, (a_name, a_dest) in enumerate(dests):
        for b_name, b_dest in dests[i + 1 :]:
            if is_inside(a_dest, b_dest) or is_inside(b_dest, a_dest):
                raise ValueError(
                    f"{ENV_PACKAGE_LIST}: the dest of {a_name!r} ({a_dest}) and of {b_name!r} ({b_dest}) "
                    "overlap; each package needs its own directory, none inside another"
                )
    return entries


def parse_concurrency(text: str) -> int:
    """PACKAGE_CONCURRENCY: 1..MAX_CONCURRENCY."""
    value = text.strip()
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_CONCURRENCY:
        raise ValueError(f"{ENV_CONCURRENCY} must be an integer from 1 to {MAX_CONCURRENCY}, got {text!r}")
    return int(value)
