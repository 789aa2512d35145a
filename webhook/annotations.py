"""The annotation contract: every `package-*` key, its default and its validation, in one place.

`parse()` turns a Pod's (or pod template's) annotations into a `PackageRequest`,
or None when no `package-url` key is present. `package-url.NAME` adds a named
package whose companion keys carry the same suffix; every package's keys are
checked by one function (`_check_package`), and the rules between packages (names
that would share a volume, mount paths that coincide or nest in one container,
`max_packages_per_pod`) follow. Every invalid value is collected, so the
user sees all problems in one denial, each naming the key and what to write
instead. Unknown keys that look like ours give a "did you mean" warning, because
a typo in an annotation key is otherwise a silent no-op.
"""

from __future__ import annotations

import difflib
import functools
import json
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

from initcontainer import contract
from webhook.annotation_keys import (
    ALL_KEYS,
    CONTAINERS,
    FAMILY_PREFIX,
    INIT_POSITION,
    INIT_RESOURCES,
    MOUNT_PATH,
    NAME_SEPARATOR,
    NAMED_KEYS,
    SECRET,
    SHA256,
    SIZE_LIMIT,
    STATUS,
    STRIP_COMPONENTS,
    URL,
    USER_KEYS,
)
from webhook.hosts import bucket_allowed, host_allowed
from webhook.quantity import parse_quantity
from webhook.settings import DNS_LABEL, Settings, is_dns_subdomain

# The keys are defined, one documented line each, in annotation_keys.py, and re-exported here.
__all__ = [
    "ALL_KEYS",
    "CONTAINERS",
    "FAMILY_PREFIX",
    "INIT_POSITION",
    "INIT_RESOURCES",
    "MESSAGE_PREFIX",
    "MOUNT_PATH",
    "NAMED_KEYS",
    "NAME_SEPARATOR",
    "POSITIONS",
    "SECRET",
    "SHA256",
    "SIZE_LIMIT",
    "STATUS",
    "STATUS_VERSION",
    "STRIP_COMPONENTS",
    "SYSTEM_PATHS",
    "SYSTEM_PATHS_EXACT",
    "URL",
    "USER_KEYS",
    "Denied",
    "NamedPackage",
    "PackageRequest",
    "Parsed",
    "Problem",
    "default_size_limit",
    "for_user",
    "init_resources",
    "is_user_key",
    "parse",
    "read_status",
    "status_value",
    "unknown_key_warnings",
    "unpinned_warning",
    "volume_suffix",
]

MESSAGE_PREFIX: Final = "package-injector: "
"""Starts every message a user sees (denials and warnings); added by `for_user` and nowhere else."""


def for_user(text: str) -> str:
    """`text` as kubectl shows it to the user: with the prefix that says which webhook is speaking."""
    return MESSAGE_PREFIX + text


POSITIONS: Final = ("first", "last")

# Mount paths that would hide the container's own system files or its service account token.
SYSTEM_PATHS: Final = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/proc",
    "/run/secrets",
    "/sbin",
    "/sys",
    "/usr",
    "/var/run/secrets",
)
# Paths that are fine to mount below but not onto.
SYSTEM_PATHS_EXACT: Final = ("/run", "/var", "/var/run", "/var/lib", "/tmp", "/root", "/home")


STATUS_VERSION: Final = 1


@dataclass(frozen=True)
class Problem:
    """One invalid annotation: the key, what is wrong, and 400 (bad input) or 403 (cluster policy)."""

    key: str
    message: str
    code: int = 400

    def __str__(self) -> str:
        return f'annotation "{self.key}": {self.message}'


class Denied(Exception):
    """The object must be refused; `message` is shown to the user by kubectl, so it says what to fix.

    `detail` is what the webhook's own log may say about it: annotation keys, container and volume names,
    never annotation values (a user may paste a token into the wrong annotation). It defaults to `reason`.
    """

    def __init__(
        self,
        text: str,
        code: int = 400,
        reason: str = "invalid-annotation",
        warnings: tuple[str, ...] = (),
        detail: str | None = None,
    ) -> None:
        self.text = text
        self.message = for_user(text)
        super().__init__(self.message)
        self.code = code
        self.reason = reason
        self.warnings = warnings
        self.detail = detail or reason

    @classmethod
    def from_problems(cls, problems: list[Problem], warnings: list[str]) -> Denied:
        """One denial listing every problem; 403 only when all of them are policy refusals."""
        code = 403 if all(p.code == 403 for p in problems) else 400
        reason = "policy" if code == 403 else "invalid-annotation"
        keys = ", ".join(dict.fromkeys(p.key for p in problems))
        return cls(
            "; ".join(str(p) for p in problems),
            code,
            reason,
            tuple(warnings),
            detail=f"invalid annotations: {keys}",
        )


@dataclass(frozen=True)
class NamedPackage:
    """One `package-url.NAME` package, validated: it gets its own volume, directory and mount."""

    name: str
    url: str
    sha256: str | None
    mount_path: str
    containers: tuple[str, ...] | None
    strip_components: int
    secret: str | None
    allow_http: bool


@dataclass(frozen=True)
class PackageRequest:
    """What a Pod asked for, validated and normalized.

    The fields from `url` to `allow_http` are the unnamed package's (`url` None: the Pod has only named
    packages); `packages` are the named ones, sorted by name; the rest holds for the whole Pod.
    """

    url: str | None
    sha256: str | None
    mount_path: str
    containers: tuple[str, ...] | None
    strip_components: int
    secret: str | None
    size_limit: str | None
    init_position: Literal["first", "last"]
    allow_http: bool
    init_resources: tuple[tuple[str, str, str], ...] = ()
    """(kind, resource, quantity) set by the Pod for its downloader; init_resources give the rest."""
    packages: tuple[NamedPackage, ...] = ()


@dataclass(frozen=True)
class Parsed:
    """The request (None when `package-url` is absent) and warnings for the user."""

    request: PackageRequest | None
    warnings: tuple[str, ...]


def _schemes(settings: Settings) -> str:
    """The allowed schemes as prose: "https://, oci:// or s3://"."""
    names = [f"{s}://" for s in settings.allowed_schemes]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


_URL_MESSAGES: Final = {
    contract.URL_EMPTY: "is empty; set it to the https:// URL of the package",
    contract.URL_SPACE: "contains whitespace or control characters; percent-encode them",
    contract.URL_CHARACTERS: "contains control or non-ASCII characters; percent-encode them (ä is %C3%A4)",
    contract.URL_INVALID: "is not a valid URL: an IPv6 host goes in [brackets]; or an invalid port (1-65535)",
    contract.URL_NO_HOST: "has no host name; write it as https://HOST/PATH",
}


def _check_url(
    value: str, settings: Settings, key: str, secret_key: str | None = None
) -> tuple[str | None, bool, list[Problem]]:
    """The URL and whether it is http, by the contract's rules plus the cluster's policy; the URL itself
    is never echoed (it may carry a signed token). `secret_key` is the package's `package-secret` key."""
    url, parts, kinds = contract.url_problems(value)
    if contract.is_oci_url(url) and kinds in ([], [contract.URL_OCI]):
        return _check_oci(url, settings, key)
    if url[: len(contract.S3_SCHEME) + 3].lower() == f"{contract.S3_SCHEME}://" and kinds in (
        [],
        [contract.URL_S3],
    ):
        return _check_s3(url, settings, key)
    allowed = _schemes(settings)
    problems = []
    for kind in kinds:
        if kind == contract.URL_SCHEME:
            problems.append(Problem(key, f"must be an absolute {allowed} URL"))
        elif kind == contract.URL_CREDENTIALS:
            msg = "must not contain credentials (user:password@); put them in a Secret and name it in "
            problems.append(Problem(key, msg + f'"{secret_key or settings.key(SECRET)}"'))
        else:
            problems.append(Problem(key, _URL_MESSAGES[kind]))
    if parts is None or contract.URL_SCHEME in kinds:
        return None, False, problems
    scheme = parts.scheme.lower()
    if scheme not in settings.allowed_schemes:
        problems.insert(
            0, Problem(key, f"{scheme}:// is not allowed in this cluster; use an {allowed} URL", 403)
        )
    host = parts.hostname
    if host and settings.allowed_hosts and not host_allowed(host, settings.allowed_hosts):
        hosts = ", ".join(settings.allowed_hosts)
        problems.append(Problem(key, f'host "{host}" is not in the cluster allow-list ({hosts})', 403))
    if problems:
        return None, False, problems
    return url, scheme == "http", []


def _check_oci(value: str, settings: Settings, key: str) -> tuple[str | None, bool, list[Problem]]:
    """An oci:// reference, parsed by the rules the init container uses; allow-lists apply to the registry."""
    try:
        ref = contract.parse_oci_reference(value)
    except contract.ReferenceError as exc:
        return None, False, [Problem(key, f"is not a valid oci:// reference: it {exc}")]
    problems = []
    if "oci" not in settings.allowed_schemes:
        allowed = _schemes(settings)
        problems.append(Problem(key, f"oci:// is not allowed in this cluster; use an {allowed} URL", 403))
    if settings.allowed_hosts and not host_allowed(ref.host, settings.allowed_hosts):
        hosts = ", ".join(settings.allowed_hosts)
        problems.append(
            Problem(key, f'registry "{ref.host}" is not in the cluster allow-list ({hosts})', 403)
        )
    if problems:
        return None, False, problems
    plain_http = bool(settings.plain_http_registries) and host_allowed(
        ref.host, settings.plain_http_registries
    )
    # The canonical form: Docker Hub short names spelled out, the same string the marker records.
    return str(ref), plain_http, []


def _check_s3(value: str, settings: Settings, key: str) -> tuple[str | None, bool, list[Problem]]:
    """An s3:// URL by the rules the init container applies; `allowed_hosts` names buckets as `s3://BUCKET`."""
    try:
        location = contract.parse_s3_url(value)
    except contract.S3URLError as exc:
        return None, False, [Problem(key, f"is not a valid s3://BUCKET/KEY URL: {exc}")]
    problems = []
    if contract.S3_SCHEME not in settings.allowed_schemes:
        allowed = _schemes(settings)
        problems.append(Problem(key, f"s3:// is not allowed in this cluster; use an {allowed} URL", 403))
    if settings.allowed_hosts and not bucket_allowed(location.bucket, settings.allowed_hosts):
        buckets = [p for p in settings.allowed_hosts if p.startswith(f"{contract.S3_SCHEME}://")]
        listed = f" ({', '.join(buckets)})" if buckets else " (it lists no s3:// buckets)"
        problems.append(
            Problem(key, f'bucket "{location.bucket}" is not in the cluster allow-list{listed}', 403)
        )
    if problems:
        return None, False, problems
    # A cluster endpoint over plain http needs the init container's consent, as an http:// URL does.
    plain = any((e or "").startswith("http://") for e in (settings.s3_endpoint, settings.sts_endpoint))
    return value, plain, []


def _check_mount_path(value: str, key: str) -> tuple[str | None, list[Problem]]:
    path = value.strip()
    if not path.startswith("/"):
        return None, [
            Problem(key, f"must be an absolute path such as {contract.DEFAULT_DEST}, got {value!r}")
        ]
    if ".." in path.split("/") or ":" in path:
        return None, [Problem(key, f"must not contain '..' or ':', got {value!r}")]
    path = posixpath.normpath(path)
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    if path == "/":
        return None, [Problem(key, "must not be '/'; choose a directory such as " + contract.DEFAULT_DEST)]
    for system in SYSTEM_PATHS:
        if path == system or path.startswith(system + "/"):
            return None, [Problem(key, f"{path} is a system path ({system}); choose another directory")]
    if path in SYSTEM_PATHS_EXACT:
        return None, [Problem(key, f"{path} is a system directory; mount below it instead")]
    return path, []


def _check_containers(value: str, key: str) -> tuple[tuple[str, ...] | None, list[Problem]]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        return None, [Problem(key, "names no container; list main container names separated by commas")]
    bad = [n for n in names if not DNS_LABEL.match(n) or len(n) > 63]
    if bad:
        return None, [
            Problem(
                key,
                f"{', '.join(repr(b) for b in bad)} is not a valid container name; "
                "list main container names separated by commas",
            )
        ]
    return tuple(dict.fromkeys(names)), []


def _check_size(value: str, settings: Settings, key: str) -> tuple[str | None, list[Problem]]:
    text = value.strip()
    try:
        size = parse_quantity(text)
    except ValueError as exc:
        return None, [Problem(key, str(exc))]
    if size <= 0:
        return None, [Problem(key, f"must be a positive quantity, got {text!r}")]
    if settings.max_size_limit is not None and size > parse_quantity(settings.max_size_limit):
        msg = f"{text} is above the cluster maximum of {settings.max_size_limit}"
        return None, [Problem(key, msg, 403)]
    return text, []


def default_size_limit(settings: Settings) -> str | None:
    """The emptyDir sizeLimit for pods that ask for none: the default, capped by the maximum."""
    default, maximum = settings.default_size_limit, settings.max_size_limit
    if default is None:
        return maximum
    if maximum is not None and parse_quantity(default) > parse_quantity(maximum):
        return maximum
    return default


_EXAMPLES: Final = {"cpu": "100m or 1", "memory": "256Mi or 1Gi", "ephemeral-storage": "1Gi"}


def init_resources(
    overrides: tuple[tuple[str, str, str], ...], settings: Settings
) -> dict[str, dict[str, str]]:
    """The downloader's resources: the cluster's defaults with the Pod's own values put over them.

    Only the named entries change, so a Pod that raises its memory limit keeps the default requests.
    """
    merged = {kind: dict(values) for kind, values in settings.init_resources.items()}
    for kind, name, value in overrides:
        merged.setdefault(kind, {})[name] = value
    return merged


def _check_init_resources(
    get: Callable[[str], str | None], settings: Settings
) -> tuple[tuple[tuple[str, str, str], ...], list[Problem]]:
    """Per-Pod resources of the downloader: quantities, at most the cluster's caps, requests within limits."""
    problems: list[Problem] = []
    given: list[tuple[str, str, str]] = []
    for short, (kind, name) in INIT_RESOURCES.items():
        raw = get(short)
        if raw is None:
            continue
        key, text = settings.key(short), raw.strip()
        try:
            value = parse_quantity(text)
        except ValueError:
            problems.append(Problem(key, f"is not a Kubernetes quantity; write e.g. {_EXAMPLES[name]}"))
            continue
        if value <= 0:
            problems.append(Problem(key, f"must be a positive quantity, got {text!r}"))
            continue
        cap = settings.max_init_resources.get(name)
        if cap is not None and value > parse_quantity(cap):
            problems.append(Problem(key, f"{text} is above the cluster maximum of {cap} for {name}", 403))
            continue
        given.append((kind, name, text))
    if problems or not given:
        return tuple(given), problems
    merged = init_resources(tuple(given), settings)
    for name, request in merged.get("requests", {}).items():
        limit = merged.get("limits", {}).get(name)
        if limit is None or parse_quantity(request) <= parse_quantity(limit):
            continue
        set_request = ("requests", name, request) in given
        set_limit = ("limits", name, limit) in given
        if not (set_request or set_limit):
            continue  # both the cluster's: settings are checked when they load
        where = "" if set_limit else " (the cluster default)"
        if set_request:
            key = settings.key(f"package-init-requests-{name}")
            fix = "" if set_limit else f'; raise "{settings.key(f"package-init-limits-{name}")}" too'
            problems.append(Problem(key, f"{request} is above the {name} limit {limit}{where}{fix}"))
        else:
            key = settings.key(f"package-init-limits-{name}")
            msg = f"{limit} is below the {name} request {request} (the cluster default); "
            problems.append(
                Problem(key, msg + f'lower "{settings.key(f"package-init-requests-{name}")}" too')
            )
    return tuple(given), problems


_TAILS: Final = {k[len(FAMILY_PREFIX) :]: k for k in USER_KEYS}
# difflib's ratio is 2*matches/(len(a)+len(b)): a word more than this long cannot reach the cutoff against
# any key of ours, so it gets no hint without running difflib and never enters the cache (entries stay small).
_HINT_MAX_LEN: Final = 2 * max(len(k) for k in USER_KEYS)


def _close_key(word: str, ours: bool) -> str | None:
    """The user key `word` is closest to, if close enough."""
    if len(word) > _HINT_MAX_LEN:
        return None
    return _close_key_cached(word, ours)


@functools.lru_cache(maxsize=1024)
def _close_key_cached(word: str, ours: bool) -> str | None:
    """Cached, because difflib is slow (a quarter of a review's time) and the same annotation keys come with
    every pod of a workload; bounded in entries (LRU) and in entry size (`_close_key`)."""
    if ours:
        # Compare what follows "package-": the shared prefix would make any key look close.
        close = difflib.get_close_matches(word, _TAILS, n=1, cutoff=0.6)
        return _TAILS[close[0]] if close else None
    close = difflib.get_close_matches(word, USER_KEYS, n=1, cutoff=0.85)
    return close[0] if close else None


@functools.lru_cache(maxsize=16)
def _known_keys(prefix: str) -> frozenset[str]:
    return frozenset(prefix + k for k in ALL_KEYS)


_MAX_NAME_HINTS: Final = 16
"""Orphan companion keys that get a closest-name hint per review: difflib is slow, and a Pod is denied past
`max_packages_per_pod` anyway (the warnings come first), so an annotation flood costs a bounded time."""


def _named_hint(settings: Settings, base: str, name: str, names: list[str], hint: bool) -> str | None:
    """For `BASE.NAME` where BASE is one of NAMED_KEYS: None when `package-url.NAME` exists (a valid key),
    else why it is ignored, with the closest of the Pod's package `names` when `hint`."""
    if base == URL or name in names:
        return None
    key = _named_key(settings, base, name)
    close = difflib.get_close_matches(name, names[:64], n=1, cutoff=0.6) if hint else []
    if close:
        fix = f'did you mean "{_named_key(settings, base, close[0])}"?'
    else:
        fix = f'add "{_named_key(settings, URL, name)}" or remove it'
    url_key = _named_key(settings, URL, name)
    return f'annotation "{key}" names no package: there is no "{url_key}", so it is ignored; {fix}'


def is_user_key(key: str, settings: Settings) -> bool:
    """Whether `key` is one users may set: a key of USER_KEYS, or one of NAMED_KEYS with a `.NAME` suffix."""
    if not key.startswith(settings.annotation_prefix):
        return False
    short = key[len(settings.annotation_prefix) :]
    base, sep, name = short.partition(NAME_SEPARATOR)
    return short in USER_KEYS or (bool(sep) and bool(name) and base in NAMED_KEYS)


def unknown_key_warnings(annotations: Mapping[str, Any], settings: Settings) -> list[str]:
    """A "did you mean" warning for every key that looks like ours but is not one of ours.

    `package-url.NAME` and its companions are ours; a companion whose package has no `package-url.NAME`
    is ignored, and the warning says so (with the closest package name)."""
    known_full = _known_keys(settings.annotation_prefix)
    family = settings.key(FAMILY_PREFIX)
    warnings = []
    names: list[str] | None = None  # the Pod's package names, found at the first named key
    hints = 0
    for key in annotations:
        if not isinstance(key, str) or key in known_full:
            continue
        ours = key.startswith(family)
        word = key[len(settings.annotation_prefix) :] if ours else key.rsplit("/", 1)[-1]
        base, sep, name = word.partition(NAME_SEPARATOR)
        if ours and sep and base in NAMED_KEYS:
            names = _package_names(annotations, settings) if names is None else names
            text = _named_hint(settings, base, name, names, hints < _MAX_NAME_HINTS)
            if text is not None:
                hints += 1
                warnings.append(for_user(text))
            continue
        # Also catch package_url, Package-URL, a missing or wrong prefix, and near misses (pakage-url).
        if ours:
            close = _close_key(base[len(FAMILY_PREFIX) :].lower().replace("_", "-"), True)
        else:
            close = _close_key(base.lower().replace("_", "-"), False)
        if not ours and not close:
            continue
        if close is None:
            hint = ""
        elif not sep:
            hint = f'; did you mean "{settings.key(close)}"?'
        elif close in NAMED_KEYS:
            hint = f'; did you mean "{_named_key(settings, close, name)}"?'
        else:
            whole = "it holds for the whole Pod and takes no package name"
            hint = f'; did you mean "{settings.key(close)}"? ({whole})'
        valid = ", ".join(settings.key(k) for k in USER_KEYS)
        tail = hint or f" (valid keys: {valid}; named packages: {', '.join(NAMED_KEYS)} with .NAME)"
        warnings.append(for_user(f'annotation "{key}" is not a package-injector key and is ignored{tail}'))
    return warnings


def _check_secret(value: str, key: str, namespace: str | None) -> tuple[str, list[Problem]]:
    secret = value.strip()
    if is_dns_subdomain(secret):
        return secret, []
    # The value is not echoed: a user who confuses the Secret's name with its content pastes a token.
    where = f' ("{namespace}")' if namespace else ""
    if "/" in secret:
        msg = f"must name a Secret in the pod's namespace{where}: write its name without namespace/"
    else:
        msg = (
            f"is not a valid Secret name; write the name of a Secret in the pod's namespace{where} "
            "(lowercase letters, digits, '-' and '.'), never the credential itself"
        )
    return secret, [Problem(key, msg)]


def _check_package(
    get: Callable[[str], str | None],
    key: Callable[[str], str],
    raw_url: str,
    settings: Settings,
    namespace: str | None,
    default_mount_path: str,
) -> tuple[NamedPackage | None, list[Problem], list[str]]:
    """One package's keys (`key(SHA256)` is `package-sha256` or `package-sha256.NAME`), by the same rules
    for the unnamed package and every named one (named "" here: the caller names it); the warnings count
    only when nothing is denied."""
    problems: list[Problem] = []
    url, is_http, found = _check_url(raw_url, settings, key(URL), key(SECRET))
    problems += found

    sha256: str | None = None
    raw_sha = get(SHA256)
    oci = url is not None and contract.is_oci_url(url)
    if oci and raw_sha is not None:
        msg = (
            "does not apply to oci:// packages: pin the manifest digest in the URL instead, "
            "oci://HOST/REPO@sha256:... (`crane digest` or `oras resolve` prints it)"
        )
        problems.append(Problem(key(SHA256), msg))
    elif oci:
        if settings.require_checksum and "@sha256:" not in (url or ""):
            msg = "must pin a digest in this cluster: write it as oci://HOST/REPO@sha256:..."
            problems.append(Problem(key(URL), msg, 403))
    elif raw_sha is not None:
        sha256 = contract.normalise_sha256(raw_sha)
        if sha256 is None:
            problems.append(Problem(key(SHA256), "must be 64 hex digits (sha256sum output)"))
    elif settings.require_checksum:
        msg = "is required in this cluster: add the SHA-256 of the package (sha256sum output)"
        problems.append(Problem(key(SHA256), msg, 403))

    mount_path: str | None = default_mount_path
    raw_mount = get(MOUNT_PATH)
    if raw_mount is not None:
        mount_path, found = _check_mount_path(raw_mount, key(MOUNT_PATH))
        problems += found

    containers: tuple[str, ...] | None = None
    raw_containers = get(CONTAINERS)
    if raw_containers is not None:
        containers, found = _check_containers(raw_containers, key(CONTAINERS))
        problems += found

    strip = 0
    raw_strip = get(STRIP_COMPONENTS)
    if raw_strip is not None:
        try:
            strip = contract.parse_strip_components(raw_strip)
        except contract.ValueProblem:
            msg = f"must be an integer from 0 to {contract.MAX_STRIP_COMPONENTS}, got {raw_strip!r}"
            problems.append(Problem(key(STRIP_COMPONENTS), msg))

    secret = get(SECRET)
    if secret is not None:
        secret, found = _check_secret(secret, key(SECRET), namespace)
        problems += found

    if problems or url is None or mount_path is None:
        return None, problems, []
    unpinned = unpinned_warning(url, sha256, is_http, settings, key(URL), key(SHA256))
    warnings = [unpinned] if unpinned is not None else []
    return NamedPackage("", url, sha256, mount_path, containers, strip, secret, is_http), [], warnings


def unpinned_warning(
    url: str,
    sha256: str | None,
    is_http: bool,
    settings: Settings,
    url_key: str | None = None,
    sha_key: str | None = None,
) -> str | None:
    """The one warning for a package nothing pins (no `package-sha256`, or an oci:// tag without a digest).

    One warning per cause: plain http only makes the same cause worse, so it is a clause of this warning,
    not a second one. With `require_checksum` such a Pod is denied before this is reached. What it says is
    what the init container does: only a pinned package is recognised as already installed (its marker
    records the pin), so an unpinned one is fetched again whenever the Pod's init containers run again.
    `url_key` and `sha_key` name a named package's keys (`package-url.NAME`); the bare keys by default.
    """
    url_key, sha_key = url_key or settings.key(URL), sha_key or settings.key(SHA256)
    if contract.is_oci_url(url):
        if "@sha256:" in url:
            return None
        return _whole(
            f'"{url_key}" names a tag without a digest: the Pod gets whatever the tag points to when its '
            "init containers run, and a re-run installs new content if the tag moved; "
            "pin it with @sha256:...",
            f'"{url_key}" names a tag without a digest: a re-run installs new content if the tag moved; '
            "pin it with @sha256:...",
        )
    if sha256 is not None:
        return None
    plain = short = ""
    if is_http:
        short = "plain-http S3 endpoint" if url[:5].lower() == "s3://" else "plain http"
        plain, short = f" ({short}: anyone on the path can alter it)", f" ({short})"
    return _whole(
        f'"{url_key}" has no "{sha_key}": the package is unverified{plain} and is downloaded again, '
        "not kept, each time the Pod's init containers re-run (a new Pod sandbox); add the SHA-256",
        f'"{url_key}" is unverified{short} and fetched again on every init re-run: add "{sha_key}"',
        f'"{url_key}" is unverified and fetched again on every init re-run: add "{sha_key}"',
    )


WARNING_RUNES: Final = 256
"""The apiserver cuts each warning to this many characters once a response's warnings pass 4096 in all."""


def _whole(*texts: str) -> str:
    """The first of `texts` (longest first) that the apiserver never cuts: the fix is at their end, and a
    named package's keys (up to 38 characters of NAME, twice) can push the full text past the cut."""
    for text in texts:
        if len(for_user(text)) <= WARNING_RUNES:
            return for_user(text)
    return for_user(texts[-1])


def volume_suffix(name: str) -> str:
    """What a package's name adds to its volumes' names (`package-shared-volume-SUFFIX`): a DNS label part,
    so lowercase, with `_` and `.` as `-`. Two names with one suffix are denied (`_name_problems`)."""
    return name.lower().replace("_", "-").replace(".", "-")


def _named_key(settings: Settings, short: str, name: str) -> str:
    return f"{settings.key(short)}{NAME_SEPARATOR}{name}"


def _package_names(annotations: Mapping[str, Any], settings: Settings) -> list[str]:
    """The NAME of every `package-url.NAME` key, valid or not, sorted."""
    head = settings.key(URL) + NAME_SEPARATOR
    return sorted(k[len(head) :] for k in annotations if isinstance(k, str) and k.startswith(head))


@dataclass(frozen=True)
class _Placed:
    """A package as the conflict rules see it: how messages name it, where it is mounted, for whom."""

    label: str
    mount_key: str
    mount_path: str
    containers: tuple[str, ...] | None


def _overlap_problems(placed: list[_Placed]) -> list[Problem]:
    """Two packages seen by one container (no `package-containers`: all of them) on one path or nested.

    Each package is named once, against the first it clashes with: n packages on one path make n-1
    problems, not n^2/2 (the caller runs this only within `max_packages_per_pod`)."""
    problems = []
    for i, b in enumerate(placed):
        for a in placed[:i]:
            shared = a.containers is None or b.containers is None or set(a.containers) & set(b.containers)
            if not shared or not (
                contract.is_inside(a.mount_path, b.mount_path)
                or contract.is_inside(b.mount_path, a.mount_path)
            ):
                continue
            how = "are both mounted at" if a.mount_path == b.mount_path else "nest:"
            where = a.mount_path if a.mount_path == b.mount_path else f"{a.mount_path} and {b.mount_path}"
            problems.append(
                Problem(
                    b.mount_key,
                    f"{a.label} and {b.label} {how} {where} in the same container; give each package its "
                    "own directory, none inside another (or mount them into different containers)",
                )
            )
            break
    return problems


def _parse_named(
    names: list[str],
    read: Callable[[str], str | None],
    settings: Settings,
    namespace: str | None,
) -> tuple[list[NamedPackage], list[Problem], list[str]]:
    """Every `package-url.NAME` package: its name by the annotation-name rules, its keys by `_check_package`,
    and no two names sharing a volume."""
    packages: list[NamedPackage] = []
    problems: list[Problem] = []
    warnings: list[str] = []
    suffixes: dict[str, str] = {}
    for name in names:
        url_key = _named_key(settings, URL, name)
        problem = contract.package_name_problem(name)
        if problem:
            msg = f'the package name after "{settings.key(URL)}{NAME_SEPARATOR}" {problem}'
            problems.append(Problem(url_key, msg))
            continue
        suffix = volume_suffix(name)
        if suffix in suffixes:
            other = suffixes[suffix]
            problems.append(
                Problem(
                    url_key,
                    f'packages "{other}" and "{name}" would share the volume '
                    f'"{contract.VOLUME_NAME}-{suffix}" (volume names are lowercase, "_" and "." '
                    'become "-"); rename one of them',
                )
            )
            continue
        suffixes[suffix] = name
        raw_url = read(url_key)
        if raw_url is None:
            continue  # not a string: read() said so

        def key(short: str, name: str = name) -> str:
            return _named_key(settings, short, name)

        def get(short: str, key: Callable[[str], str] = key) -> str | None:
            return read(key(short))

        checked, found, more = _check_package(
            get, key, raw_url, settings, namespace, contract.named_dest(name)
        )
        problems += found
        warnings += more
        if checked is not None:
            packages.append(replace(checked, name=name))
    return packages, problems, warnings


def parse(annotations: Mapping[str, Any] | None, settings: Settings, namespace: str | None = None) -> Parsed:
    """Validate the annotations; raise Denied listing every invalid value.

    `namespace` is the admission request's namespace (or `inject -n`); it only appears in messages.
    """
    annotations = annotations or {}
    warnings = unknown_key_warnings(annotations, settings)
    problems: list[Problem] = []

    def read(key: str) -> str | None:
        value = annotations.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            problems.append(Problem(key, "must be a string; quote the value in YAML"))
            return None
        return value

    def get(short: str) -> str | None:
        return read(settings.key(short))

    names = _package_names(annotations, settings)
    raw_url = get(URL)
    if raw_url is None and not names:
        present = [settings.key(k) for k in USER_KEYS if settings.key(k) in annotations]
        if present:
            warnings.append(
                for_user(
                    f"{', '.join(present)} set without "
                    f'"{settings.key(URL)}", so nothing is injected; add "{settings.key(URL)}"'
                )
            )
        if problems:
            raise Denied.from_problems(problems, warnings)
        return Parsed(None, tuple(warnings))

    unnamed: NamedPackage | None = None
    late_warnings: list[str] = []
    if raw_url is not None:
        unnamed, found, late_warnings = _check_package(
            get, settings.key, raw_url, settings, namespace, settings.default_mount_path
        )
        problems += found
    else:
        present = [settings.key(k) for k in NAMED_KEYS if settings.key(k) in annotations]
        if present:
            warnings.append(
                for_user(
                    f'{", ".join(present)} set without "{settings.key(URL)}": they describe the unnamed '
                    f'package, which this Pod does not have, and are ignored; add "{settings.key(URL)}" or '
                    f'put them on a package\'s name, e.g. "{_named_key(settings, SHA256, names[0])}"'
                )
            )

    named, found, named_warnings = _parse_named(names, read, settings, namespace)
    problems += found
    late_warnings += named_warnings

    size_limit = default_size_limit(settings)
    raw_size = get(SIZE_LIMIT)
    if raw_size is not None:
        size_limit, found = _check_size(raw_size, settings, settings.key(SIZE_LIMIT))
        problems += found

    position: Literal["first", "last"] = "first"
    raw_position = get(INIT_POSITION)
    if raw_position is not None:
        if raw_position.strip() == "last":
            position = "last"
        elif raw_position.strip() != "first":
            msg = f"must be 'first' or 'last', got {raw_position!r}"
            problems.append(Problem(settings.key(INIT_POSITION), msg))

    resources, found = _check_init_resources(get, settings)
    problems += found

    count = len(names) + (raw_url is not None)
    if count > settings.max_packages_per_pod:
        problems.append(
            Problem(
                _named_key(settings, URL, "NAME"),
                f"the Pod asks for {count} packages, more than this cluster's maximum of "
                f"{settings.max_packages_per_pod} per Pod (setting max_packages_per_pod); remove packages "
                "or combine them into fewer archives",
                403,
            )
        )
    placed = [
        _Placed(f'package "{p.name}"', _named_key(settings, MOUNT_PATH, p.name), p.mount_path, p.containers)
        for p in named
    ]
    if unnamed is not None:
        placed.insert(
            0,
            _Placed("the unnamed package", settings.key(MOUNT_PATH), unnamed.mount_path, unnamed.containers),
        )
    if (
        count <= settings.max_packages_per_pod
    ):  # over it the Pod is denied anyway: pairing hundreds costs seconds
        problems += _overlap_problems(placed)

    if problems:
        raise Denied.from_problems(problems, warnings)
    warnings += late_warnings
    return Parsed(
        PackageRequest(
            url=unnamed.url if unnamed else None,
            sha256=unnamed.sha256 if unnamed else None,
            mount_path=unnamed.mount_path if unnamed else settings.default_mount_path,
            containers=unnamed.containers if unnamed else None,
            strip_components=unnamed.strip_components if unnamed else 0,
            secret=unnamed.secret if unnamed else None,
            size_limit=size_limit,
            init_position=position,
            allow_http=unnamed.allow_http if unnamed else False,
            init_resources=resources,
            packages=tuple(named),
        ),
        tuple(warnings),
    )


def status_value(
    containers: list[str],
    volumes: list[str],
    pull_secrets: list[str] | None = None,
    packages: list[dict[str, Any]] | None = None,
) -> str:
    """The status annotation's value: what was injected, so the next run can recognise it as ours.

    `pull_secrets` are the imagePullSecrets entries we added (not those the pod listed itself); the key is
    left out when there are none, so pods injected without pull secrets keep their status unchanged.
    `containers` are those that mount the unnamed package; `packages` records each named package (name,
    volume, the containers that mount it) and is left out when there are none, for the same reason.
    """
    value: dict[str, Any] = {
        "version": STATUS_VERSION,
        "initContainer": contract.INIT_CONTAINER_NAME,
        "volumes": volumes,
        "containers": containers,
    }
    if pull_secrets:
        value["imagePullSecrets"] = pull_secrets
    if packages:
        value["packages"] = packages
    return json.dumps(value, separators=(",", ":"))


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(n, str) for n in value)


def read_status(annotations: Mapping[str, Any] | None, settings: Settings) -> dict[str, Any] | None:
    """The status a previous injection left, or None when absent or unreadable (then nothing is ours)."""
    raw = (annotations or {}).get(settings.key(STATUS))
    if not isinstance(raw, str):
        return None
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict) or value.get("version") != STATUS_VERSION:
        return None
    for field in ("containers", "volumes", "imagePullSecrets"):
        names = value.get(field, []) if field == "imagePullSecrets" else value.get(field)
        if not _strings(names):
            return None
    packages = value.get("packages", [])
    if not isinstance(packages, list) or not all(
        isinstance(p, dict)
        and isinstance(p.get("name"), str)
        and isinstance(p.get("volume"), str)
        and _strings(p.get("containers"))
        for p in packages
    ):
        return None
    return value
