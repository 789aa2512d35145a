"""Registry auth without I/O: WWW-Authenticate challenges, token requests and responses.

Registries answer an unauthenticated request with 401 and a challenge:
`Basic realm="..."`, or `Bearer realm="https://auth/token",service="reg",scope="..."`
(the distribution token spec). For Bearer the client asks the realm for a token
for `service` and `scope` (Basic credentials attached when it has some; the
OAuth2 refresh-token form for `identitytoken` credentials is not supported) and sends
`Authorization: Bearer TOKEN` to the registry until the token expires.

The realm is named by the registry and may be another host: that is the one
place registry credentials go besides the registry itself, as with every
registry client. A realm is refused when it would downgrade https to http.
The client (`client.py`) does the HTTP; this module builds and checks messages.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import urllib.parse
from dataclasses import dataclass, field

from initcontainer.errors import HTTPClientError
from initcontainer.oci.keyring import RegistryCredential

DEFAULT_TOKEN_SECONDS = 60
"""The token spec: `expires_in` defaults to 60 s, and tokens should never live shorter."""
EXPIRY_MARGIN = 10.0
"""Fetch a new token this long before the old one expires (a blob may take a while to start)."""
MAX_TOKEN_RESPONSE = 1 << 20
MAX_TOKEN_LENGTH = 64 * 1024

_TOKEN68_OR_PARAM = re.compile(
    r'\s*([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^,\s]*))?\s*(,|$)'
)
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True)
class Challenge:
    """One challenge of a WWW-Authenticate header: scheme (lowercase) and its parameters."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")


def parse_challenges(header: str) -> list[Challenge]:
    """All challenges in a WWW-Authenticate value (RFC 9110 11.6.1), tolerant of odd spacing.

    `Bearer realm="r",service="s", Basic realm="x"` gives two challenges. Parameter
    names are lowercased; quoted values are unescaped. Unparseable tails are dropped.
    """
    challenges: list[Challenge] = []
    pos = 0
    current: Challenge | None = None
    text = header.strip()
    while pos < len(text):
        # A scheme is a token followed by whitespace (or the end), not by '='.
        m = re.match(r"\s*([!#$%&'*+\-.^_`|~0-9A-Za-z]+)(?=\s|$|,)", text[pos:])
        if m and not re.match(r"\s*=", text[pos + m.end() :]):
            current = Challenge(m.group(1).lower())
            challenges.append(current)
            pos += m.end()
            continue
        pm = _TOKEN68_OR_PARAM.match(text, pos)
        if pm is None or pm.end() == pos:
            break
        pos = pm.end()
        if current is None:
            continue
        name, value = pm.group(1).lower(), pm.group(2)
        if value is None:
            continue
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        current.params.setdefault(name, value)
    return challenges


def basic_authorization(credential: RegistryCredential) -> str | None:
    """`Basic base64(user:password)`, or None without a username and password."""
    if credential.username is None or credential.password is None:
        return None
    raw = f"{credential.username}:{credential.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class TokenRequest:
    """The GET to send to the realm (with Basic credentials in `headers`, or none)."""

    url: str
    headers: dict[str, str] = field(repr=False)


def _internal(host: str) -> str | None:
    """What kind of internal address a literal host is (loopback, link-local, private), else None."""
    if host.lower() in ("localhost", "localhost."):
        return "loopback"
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_private:
        return "private"
    return None


def check_realm(realm: str | None, registry_scheme: str, registry_host: str) -> str:
    """The realm must be an absolute http(s) URL, https when the registry is https, and not internal
    when the registry is not: a registry on the internet naming `http://169.254.169.254/` or
    `https://10.0.0.5/` as its token endpoint would turn the init container into a request forger
    inside the cluster network."""
    if not realm:
        raise HTTPClientError("the registry asked for a Bearer token but named no realm (token endpoint)")
    try:
        parts = urllib.parse.urlsplit(realm)
        _ = parts.port
    except ValueError:
        raise HTTPClientError("the registry named a token realm that is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise HTTPClientError(f"the registry named a token realm with unsupported scheme {scheme!r}")
    if registry_scheme == "https" and scheme == "http":
        raise HTTPClientError(
            "the registry (https) named a plain-http token realm; refusing to send credentials there"
        )
    if parts.username is not None or parts.fragment:
        raise HTTPClientError("the registry named a token realm with userinfo or a fragment")
    kind = _internal(parts.hostname)
    if kind is not None and kind != _internal(registry_host) and _internal(registry_host) is None:
        raise HTTPClientError(
            f"the registry {registry_host} named a token realm on a {kind} address ({parts.hostname}); "
            "refused: only a registry on an internal address may use an internal token endpoint"
        )
    return realm


def token_request(
    challenge: Challenge,
    scope: str,
    credential: RegistryCredential | None,
    registry_scheme: str,
    registry_host: str,
) -> TokenRequest:
    """The request for a token with `scope` (`repository:NAME:pull`) from the challenge's realm."""
    realm = check_realm(challenge.realm, registry_scheme, registry_host)
    service = challenge.params.get("service")
    headers = {"Accept": "application/json"}
    query = [("scope", scope)]
    if service is not None:
        query.insert(0, ("service", service))
    if credential is not None:
        basic = basic_authorization(credential)
        if basic is not None:
            headers["Authorization"] = basic
            if credential.username is not None:
                query.append(("account", credential.username))
    parts = urllib.parse.urlsplit(realm)
    joined = "&".join(q for q in (parts.query, urllib.parse.urlencode(query)) if q)
    url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path or "/", joined, ""))
    return TokenRequest(url, headers)


@dataclass(frozen=True)
class Token:
    """A bearer token and the monotonic time after which it must not be used."""

    value: str = field(repr=False)
    expires_at: float
    margin: float = EXPIRY_MARGIN

    def fresh(self, now: float) -> bool:
        return now < self.expires_at - self.margin

    @property
    def authorization(self) -> str:
        return f"Bearer {self.value}"


def parse_token_response(body: bytes, now: float) -> Token:
    """The realm's JSON answer: `token` (or `access_token`) and `expires_in` (default 60 s)."""
    if len(body) > MAX_TOKEN_RESPONSE:
        raise HTTPClientError(f"the token endpoint answered more than {MAX_TOKEN_RESPONSE} bytes")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise HTTPClientError("the token endpoint did not answer JSON (is the realm a login page?)") from None
    if not isinstance(data, dict):
        raise HTTPClientError("the token endpoint answered JSON that is not an object")
    value = data.get("token") or data.get("access_token")
    if not isinstance(value, str) or not value:
        raise HTTPClientError("the token endpoint's answer holds no token")
    if len(value) > MAX_TOKEN_LENGTH or not _HEADER_SAFE.fullmatch(value):
        raise HTTPClientError("the token endpoint's token is too long or not header-safe")
    expires_in = data.get("expires_in", DEFAULT_TOKEN_SECONDS)
    if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)):
        expires_in = DEFAULT_TOKEN_SECONDS
    if not 0 < expires_in < 366 * 86400:  # also NaN and Infinity, which json.loads accepts
        expires_in = DEFAULT_TOKEN_SECONDS
    lifetime = float(expires_in)
    return Token(value, now + lifetime, min(EXPIRY_MARGIN, lifetime / 2))


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"
