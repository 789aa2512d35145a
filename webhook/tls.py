"""Serving certificate hot reload: rotated cert files are used by new handshakes, with no restart.

uvicorn binds its listening socket to one `ssl.SSLContext` for the life of the server. We give it a
*listener* context whose `sni_callback` runs at the start of every handshake (with or without SNI: the
apiserver dialling `https://10.0.0.1` sends none) and points the connection at the current *serving* context.
Reloading builds a fresh serving context from the files and swaps one reference; handshakes already done
keep theirs, so no request fails during a rotation (linkerd2#5888 is the bug this designs out).

Kubernetes updates Secret volumes by swapping a `..data` symlink, which leaves the paths the same and changes
what they resolve to, so the watcher compares file *content*, not names or mtimes. A new pair is validated
(parseable, key matches certificate, both files stable while loading) before the swap; a broken pair is
logged and the previous certificate keeps serving. Every swap and every distinct failure is reported to
`on_result` (the server counts them in `package_injector_certificate_reloads_total{result}`), so a
rotation that keeps failing can be alerted on before the old certificate expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

log = logging.getLogger(__name__)

ALPN: Final = ["http/1.1"]


class CertificateError(Exception):
    """The cert/key files cannot be used (missing, unparseable, mismatched, changing)."""


@dataclass(frozen=True)
class CertInfo:
    """What operators and probes need to know about the loaded serving certificate."""

    subject: str
    not_before: datetime
    not_after: datetime
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    sha256: str = field(repr=False)

    def valid_at(self, now: datetime | None = None) -> bool:
        """Inside the validity window (a peer would accept it now)."""
        now = now or datetime.now(UTC)
        return self.not_before <= now <= self.not_after


def _public_der(key: object) -> bytes:
    public_bytes = getattr(key, "public_bytes", None)
    if public_bytes is None:
        raise CertificateError("unsupported key type")
    data: bytes = public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return data


def inspect_pair(cert_pem: bytes, key_pem: bytes) -> CertInfo:
    """Parse the leaf (the first certificate of the chain) and check that the key belongs to it."""
    try:
        leaf = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise CertificateError(f"certificate is not a PEM certificate: {exc}") from exc
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        # Never include the key material in the message.
        raise CertificateError(f"key is not an unencrypted PEM private key ({type(exc).__name__})") from None
    if _public_der(key.public_key()) != _public_der(leaf.public_key()):
        raise CertificateError("key does not match the certificate")
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(san.get_values_for_type(x509.DNSName))
        ips = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns, ips = (), ()
    return CertInfo(
        subject=leaf.subject.rfc4514_string(),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        dns_names=dns,
        ip_addresses=ips,
        sha256=hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest(),
    )


def _server_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(ALPN)
    return ctx


def _read(cert_file: Path, key_file: Path) -> tuple[bytes, bytes]:
    try:
        return cert_file.read_bytes(), key_file.read_bytes()
    except OSError as exc:
        raise CertificateError(f"cannot read {exc.filename}: {exc.strerror}") from None


def load_pair(cert_file: Path, key_file: Path) -> tuple[ssl.SSLContext, CertInfo, str]:
    """A serving context for the files, their CertInfo, and a digest of their content.

    `ssl` only loads from paths, so the files are read before and after `load_cert_chain`; if they
    changed in between (a writer that is not atomic), the load is refused and retried at the next poll.
    """
    cert_pem, key_pem = _read(cert_file, key_file)
    info = inspect_pair(cert_pem, key_pem)
    ctx = _server_context()
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as exc:
        raise CertificateError(f"cannot load the pair: {exc}") from None
    if _read(cert_file, key_file) != (cert_pem, key_pem):
        raise CertificateError("the files changed while loading; will retry")
    return ctx, info, _digest(cert_pem, key_pem)


def _digest(cert_pem: bytes, key_pem: bytes) -> str:
    return hashlib.sha256(cert_pem + b"\0" + key_pem).hexdigest()


class ReloadingCertificate:
    """The serving certificate of the admission port, reloaded from its files when they change."""

    def __init__(
        self,
        cert_file: Path,
        key_file: Path,
        *,
        on_change: Callable[[CertInfo], None] | None = None,
        on_result: Callable[[bool], None] | None = None,
    ) -> None:
        self.cert_file = Path(cert_file)
        self.key_file = Path(key_file)
        self._on_change = on_change
        self._on_result = on_result
        self._last_failure: tuple[str | None, str] | None = None
        self._current: ssl.SSLContext | None = None
        self._digest: str | None = None
        self._failed_digest: str | None = None
        self.info: CertInfo | None = None
        self.last_error: str | None = None
        self.reloads = 0
        self.listener = _server_context()
        self.listener.sni_callback = self._select

    def _select(
        self, conn: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        """Runs in every handshake: serve the current certificate (None aborts the handshake)."""
        current = self._current
        if current is not None:
            conn.context = current

    def reload(self) -> bool:
        """Load the files if their content changed; True when a new certificate was swapped in."""
        try:
            cert_pem, key_pem = _read(self.cert_file, self.key_file)
        except CertificateError as exc:
            self._failed(str(exc), None)
            return False
        digest = _digest(cert_pem, key_pem)
        if digest in (self._digest, self._failed_digest):
            return False
        try:
            ctx, info, digest = load_pair(self.cert_file, self.key_file)
        except CertificateError as exc:
            # Remember the broken content so the error is logged once, not at every poll.
            self._failed(str(exc), digest)
            return False
        first = self._current is None
        self._current, self._digest, self.info = ctx, digest, info
        self._failed_digest, self.last_error, self._last_failure = None, None, None
        self.reloads += 0 if first else 1
        log.info(
            "serving certificate loaded" if first else "serving certificate reloaded",
            extra={
                "cert_subject": info.subject,
                "cert_not_after": info.not_after.isoformat(),
                "cert_sha256": info.sha256,
            },
        )
        if not info.valid_at():
            log.error(
                "serving certificate is not valid now",
                extra={
                    "cert_not_before": info.not_before.isoformat(),
                    "cert_not_after": info.not_after.isoformat(),
                },
            )
        if self._on_change is not None:
            self._on_change(info)
        if self._on_result is not None:
            self._on_result(True)
        return True

    def _failed(self, error: str, digest: str | None) -> None:
        self._failed_digest = digest
        self.last_error = error
        if self._last_failure == (digest, error):
            return  # the same failure as at the last poll (e.g. a file still missing): said once
        self._last_failure = (digest, error)
        if self._on_result is not None:
            self._on_result(False)
        keeping = "keeping the previous certificate" if self._current else "no certificate loaded yet"
        log.error(
            f"cannot load the serving certificate: {error}; {keeping}",
            extra={"cert_file": str(self.cert_file), "key_file": str(self.key_file)},
        )

    def ready(self, now: datetime | None = None) -> bool:
        """A certificate is loaded and valid now: the only state in which handshakes can succeed."""
        return self.info is not None and self.info.valid_at(now)

    async def watch(self, interval: float, stop: asyncio.Event) -> None:
        """Poll the files every `interval` seconds until `stop` is set."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
            if not stop.is_set():
                self.reload()
