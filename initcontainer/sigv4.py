"""AWS Signature Version 4 for S3 requests, standard library only.

Why our own: the init container image carries no third-party packages, and a
GET of one object needs a few dozen lines of the algorithm, not an SDK. Only
header-based signing is done (no pre-signed URLs, no chunked uploads).

S3 differs from the other AWS services in two ways that matter here: the path
is neither normalised nor encoded twice, and the payload hash is sent in the
`x-amz-content-sha256` header and signed. The functions below follow S3's rules.

Nothing secret leaves this module except inside the Authorization header; the
credentials' repr hides the secret and the session token.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
"""Payload hash of a request without a body (every GET)."""

_SIGNED_ALWAYS = frozenset({"host", "range", "if-range", "content-type", "content-md5"})
"""Headers signed besides the x-amz-* ones; the rest (User-Agent, Accept...) may be changed by proxies."""


@dataclass(frozen=True)
class AwsCredentials:
    """An access key, its secret and the session token of temporary credentials; repr hides secrets."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    expires_at: float | None = None
    """Unix time after which temporary credentials stop working (None: long-lived keys)."""
    source: str = ""

    def secrets(self) -> tuple[str, ...]:
        """The secret strings, so tests and the redaction check can look for them in output."""
        return tuple(s for s in (self.secret_access_key, self.session_token) if s)


def header_safe(value: str) -> bool:
    """Printable ASCII without spaces: what a key id or session token must be to go in a header.

    http.client refuses other values with an error that quotes them, which
    would put a session token in the termination message.
    """
    return bool(value) and all(0x21 <= ord(c) < 0x7F for c in value)


def uri_encode(text: str, *, keep_slash: bool) -> str:
    """Percent-encode every byte of UTF-8 `text` except RFC 3986 unreserved ones (and '/' if asked)."""
    return urllib.parse.quote(text, safe="/~" if keep_slash else "~")


def canonical_path(path: str) -> str:
    """S3's canonical URI: the path as sent, decoded once and encoded once, never normalised.

    Decoding first makes `/a%20b` and `/a b` sign the same way, which is what
    a server that decodes the request target recomputes.
    """
    return uri_encode(urllib.parse.unquote(path or "/"), keep_slash=True)


def canonical_query(query: str) -> str:
    """Parameters decoded, encoded again by SigV4's rules and sorted by name, then value."""
    if not query:
        return ""
    pairs = []
    for item in query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append(
            (
                uri_encode(urllib.parse.unquote(name), keep_slash=False),
                uri_encode(urllib.parse.unquote(value), keep_slash=False),
            )
        )
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))


def canonical_headers(headers: Mapping[str, str]) -> tuple[str, str]:
    """The canonical header block and the SignedHeaders list: lowercase names, trimmed values, sorted."""
    merged: dict[str, list[str]] = {}
    for name, value in headers.items():
        merged.setdefault(name.strip().lower(), []).append(" ".join(value.split()))
    names = sorted(merged)
    block = "".join(f"{n}:{','.join(merged[n])}\n" for n in names)
    return block, ";".join(names)


def canonical_request(
    method: str, path: str, query: str, headers: Mapping[str, str], payload_hash: str
) -> tuple[str, str]:
    """The canonical request and its SignedHeaders list."""
    block, signed = canonical_headers(headers)
    text = "\n".join(
        [method.upper(), canonical_path(path), canonical_query(query), block, signed, payload_hash]
    )
    return text, signed


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """HMAC chain over date, region, service and the terminator, keyed by the secret."""
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    return "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])


def amz_date(now: float) -> str:
    """ISO 8601 basic format in UTC, as x-amz-date wants it."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))


def host_header(url: str) -> str:
    """The Host header http.client would send: host, plus the port unless it is the scheme's default."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parts.scheme.lower() == "https" else 80
    return host if parts.port in (None, default) else f"{host}:{parts.port}"


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    creds: AwsCredentials,
    *,
    region: str,
    service: str = "s3",
    now: float | None = None,
    payload_hash: str = EMPTY_SHA256,
) -> dict[str, str]:
    """Headers to add to the request so it carries a valid signature.

    `url` is the URL as it goes on the wire (path percent-encoded); `headers` the
    request's other headers, of which Host, Range, If-Range and x-amz-* are
    signed. The result sets Host explicitly, so what http.client sends is what
    was signed.
    """
    stamp = amz_date(time.time() if now is None else now)
    parts = urllib.parse.urlsplit(url)
    added = {
        "Host": host_header(url),
        "x-amz-date": stamp,
        "x-amz-content-sha256": payload_hash,
    }
    if creds.session_token:
        added["x-amz-security-token"] = creds.session_token
    replaced = {k.lower() for k in added}
    merged = {k: v for k, v in headers.items() if k.lower() not in replaced} | added
    to_sign = {
        k: v for k, v in merged.items() if k.lower() in _SIGNED_ALWAYS or k.lower().startswith("x-amz-")
    }
    canonical, signed = canonical_request(method, parts.path, parts.query, to_sign, payload_hash)
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    key = signing_key(creds.secret_access_key, stamp[:8], region, service)
    signature = hmac.new(key, string_to_sign(stamp, scope, canonical).encode(), hashlib.sha256).hexdigest()
    added["Authorization"] = (
        f"{ALGORITHM} Credential={creds.access_key_id}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    return added
