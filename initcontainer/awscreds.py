"""Credentials for s3:// packages: keys from the mounted Secret, or web identity through STS.

Web identity is what EKS (IAM Roles for Service Accounts) and other OIDC setups
give a Pod: a projected ServiceAccount token in a file, and a role to assume
with it. `AssumeRoleWithWebIdentity` is an unsigned call (the token is the
proof), answered with temporary credentials that expire; `WebIdentity.get`
re-reads the token file (the kubelet rotates it) and assumes the role again
shortly before they do, so a download longer than the credentials' lifetime
keeps going.

STS answers in XML. Only the fields we need are read, the body is capped, and
the server's error text reaches messages only after scrubbing (a broken or
hostile endpoint could echo the token back).
"""

from __future__ import annotations

import re
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from initcontainer import contract
from initcontainer.errors import ConfigError, HTTPClientError, TransportError
from initcontainer.sigv4 import AwsCredentials, header_safe

STS_VERSION = "2011-06-15"
SESSION_SECONDS = 3600
"""Lifetime asked of STS; the role's maximum session duration caps it (1 h is every role's minimum)."""
REFRESH_MARGIN = 300.0
"""Assume the role again this many seconds before the credentials expire."""
MAX_RESPONSE_BYTES = 64 * 1024
MAX_TOKEN_BYTES = 64 * 1024
_CODE_RE = re.compile(r"[A-Za-z][A-Za-z0-9.]{0,63}")
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}")
_SESSION_NAME_RE = re.compile(r"[\w+=,.@-]{2,64}")
_RETRYABLE_CODES = frozenset({"IDPCommunicationError", "Throttling", "ServiceUnavailable", "InternalFailure"})

Post = Callable[[str, bytes], tuple[int, bytes]]
"""POST a form body to a URL; return the status and at most MAX_RESPONSE_BYTES of the body."""


@dataclass(frozen=True)
class WebIdentityConfig:
    """The role to assume and where the token is; read from the EKS-style environment."""

    role_arn: str
    token_file: Path
    session_name: str
    sts_url: str


class WebIdentity:
    """Temporary credentials for `cfg.role_arn`, assumed on first use and again before they expire."""

    def __init__(self, cfg: WebIdentityConfig, post: Post, *, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self._post = post
        self._clock = clock
        self._lock = threading.Lock()
        self._creds: AwsCredentials | None = None
        self.assumed = 0

    def get(self) -> AwsCredentials:
        """Valid credentials for at least REFRESH_MARGIN more seconds (the download thread calls it too)."""
        with self._lock:
            creds = self._creds
            if creds is None or (
                creds.expires_at is not None and creds.expires_at - self._clock() < REFRESH_MARGIN
            ):
                creds = self._creds = self._assume()
            return creds

    def _assume(self) -> AwsCredentials:
        token = read_token(self.cfg.token_file)
        body = urllib.parse.urlencode(
            {
                "Action": "AssumeRoleWithWebIdentity",
                "Version": STS_VERSION,
                "RoleArn": self.cfg.role_arn,
                "RoleSessionName": self.cfg.session_name,
                "WebIdentityToken": token,
                "DurationSeconds": str(SESSION_SECONDS),
            }
        ).encode()
        status, payload = self._post(self.cfg.sts_url, body)
        creds = parse_assume_role_response(status, payload, role_arn=self.cfg.role_arn, token=token)
        self.assumed += 1
        return creds


def read_token(path: Path) -> str:
    """The projected ServiceAccount token, read fresh each time (the kubelet rotates it)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_TOKEN_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            f"cannot read the web identity token {path} ({contract.AWS_ENV_WEB_IDENTITY_TOKEN_FILE}): "
            f"{exc.strerror or exc.__class__.__name__}"
        ) from None
    if len(raw) > MAX_TOKEN_BYTES:
        raise ConfigError(f"the web identity token {path} is larger than {MAX_TOKEN_BYTES} bytes")
    token = raw.decode("ascii", "replace").strip()
    if not token or any(c.isspace() or not c.isprintable() for c in token):
        raise ConfigError(f"the web identity token {path} is empty or not a single-line token")
    return token


def default_session_name(environ_hostname: str | None) -> str:
    """`package-injector-<pod name>` (HOSTNAME is the Pod's name): CloudTrail then says which Pod it was."""
    name = f"package-injector-{environ_hostname or 'pod'}"
    name = re.sub(r"[^\w+=,.@-]", "-", name)[:64]
    return name if _SESSION_NAME_RE.fullmatch(name) else "package-injector"


def check_session_name(name: str) -> str:
    if not _SESSION_NAME_RE.fullmatch(name):
        raise ConfigError(
            f"{contract.AWS_ENV_ROLE_SESSION_NAME} must be 2 to 64 characters of letters, digits and +=,.@_-"
        )
    return name


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(root: ET.Element, name: str) -> ET.Element | None:
    for el in root.iter():
        if _local(el.tag) == name:
            return el
    return None


def _text(root: ET.Element, name: str) -> str | None:
    el = _find(root, name)
    return el.text.strip() if el is not None and el.text else None


def server_message(text: str | None, *secrets: str) -> str:
    """The server's own error text, safe to show: printable, short, with nothing of ours echoed back."""
    if not text:
        return ""
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())[:200]
    for secret in secrets:
        if secret and (secret in text or secret[:16] in text):
            return ""
    return _JWT_RE.sub("<redacted>", text)


def parse_error_code(body: bytes) -> tuple[str | None, str | None]:
    """Code and Message of an AWS XML error body (S3's <Error> or STS's <ErrorResponse>)."""
    try:
        root = ET.fromstring(body[:MAX_RESPONSE_BYTES])  # noqa: S314 - bounded, entity-free answer
    except ET.ParseError:
        return None, None
    code = _text(root, "Code")
    if code is not None and not _CODE_RE.fullmatch(code):
        code = None
    return code, _text(root, "Message")


def parse_assume_role_response(status: int, body: bytes, *, role_arn: str, token: str) -> AwsCredentials:
    """Temporary credentials from a 200 answer; else the error class and a message saying what to fix."""
    if status == 200:
        try:
            root = ET.fromstring(body[:MAX_RESPONSE_BYTES])  # noqa: S314 - bounded, entity-free answer
        except ET.ParseError:
            raise TransportError("STS answered 200 with a body that is not XML", retryable=True) from None
        key, secret, session = (_text(root, n) for n in ("AccessKeyId", "SecretAccessKey", "SessionToken"))
        if not key or not secret or not session:
            raise TransportError("STS answered 200 without AccessKeyId, SecretAccessKey and SessionToken")
        if not header_safe(key) or not header_safe(session):
            raise TransportError("STS answered an access key or session token that no HTTP header can carry")
        return AwsCredentials(
            key,
            secret,
            session_token=session,
            expires_at=_expiration(_text(root, "Expiration")),
            source=f"web identity ({role_arn})",
        )
    code, message = parse_error_code(body)
    detail = server_message(message, token)
    said = f"STS said {code or f'HTTP {status}'}" + (f": {detail}" if detail else "")
    if status >= 500 or status == 429 or code in _RETRYABLE_CODES:
        raise TransportError(f"AssumeRoleWithWebIdentity failed ({said})", retryable=True)
    fix = {
        "AccessDenied": (
            f"the trust policy of {role_arn} must allow sts:AssumeRoleWithWebIdentity for the cluster's "
            "OIDC provider and this Pod's ServiceAccount (condition on the token's sub and aud)"
        ),
        "InvalidIdentityToken": (
            "the token's issuer must be registered as an IAM OIDC provider and its audience accepted "
            "(EKS: audience sts.amazonaws.com)"
        ),
        "ExpiredTokenException": "the ServiceAccount token expired; the kubelet should have rotated it",
        "IDPRejectedClaim": "the identity provider rejected the token's claims",
    }.get(code or "", f"check {contract.AWS_ENV_ROLE_ARN} and the role's trust policy")
    raise HTTPClientError(f"AssumeRoleWithWebIdentity failed ({said}); {fix}")


def _expiration(text: str | None) -> float | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when.timestamp() if when.tzinfo is not None else None


@dataclass(frozen=True)
class StaticSource:
    """Keys from the Secret: long-lived, or temporary with a session token the user refreshes."""

    creds: AwsCredentials = field(repr=False)

    def get(self) -> AwsCredentials:
        return self.creds
