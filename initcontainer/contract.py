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

import re
import urllib.parse
from collections.abc import Callable
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
"""Required. The package to fetch (https://, or http:// when ENV_ALLOW_HTTP is true)."""
ENV_SHA256: Final = "PACKAGE_SHA256"
"""Optional. Expected SHA-256 of the downloaded bytes, 64 hex digits, `sha256:` prefix optional."""
ENV_DEST: Final = "PACKAGE_DEST"
"""Directory to fill (the shared volume's mount in the init container)."""
ENV_STRIP_COMPONENTS: Final = "PACKAGE_STRIP_COMPONENTS"
"""Leading path components to drop from every member, 0..32 (like tar --strip-components)."""
ENV_FORMAT: Final = "PACKAGE_FORMAT"
"""auto (magic bytes), tar, tar.gz, tar.bz2, tar.xz, tar.zst, zip."""
ENV_CREDENTIALS_DIR: Final = "PACKAGE_CREDENTIALS_DIR"
"""Directory holding `username`+`password` or `token`, and optionally `ca.crt` (a mounted Secret)."""
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
# Legacy variables of the shell-script version; still honoured, with a warning.
ENV_USERNAME: Final = "PACKAGE_USERNAME"
ENV_PASSWORD: Final = "PACKAGE_PASSWORD"  # noqa: S105 - a variable name, not a password

DEFAULT_CREDENTIALS_DIR: Final = "/var/run/secrets/package-injector/credentials"
CREDENTIAL_USERNAME: Final = "username"
CREDENTIAL_PASSWORD: Final = "password"  # noqa: S105 - a file name
CREDENTIAL_TOKEN: Final = "token"  # noqa: S105 - a file name
CREDENTIAL_CA: Final = "ca.crt"

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
        ENV_USERNAME,
        ENV_PASSWORD,
    }
)

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


def url_problems(raw: str) -> tuple[str, urllib.parse.SplitResult | None, list[str]]:
    """The stripped URL, its parts (None when unparseable) and the kinds of problem it has.

    The policy (which schemes, which hosts) is the caller's; this is what no package URL may be: empty,
    with whitespace, control or non-ASCII characters (http.client refuses them, quoting the whole target,
    token included), unparseable, not http(s), with user:password@, or without a host.
    """
    url = raw.strip()
    if not url:
        return url, None, [URL_EMPTY]
    if any(c.isspace() for c in url):
        return url, None, [URL_SPACE]
    if not url.isascii() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return url, None, [URL_CHARACTERS]
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
}


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
