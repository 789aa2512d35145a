"""HTTP(S) download as a readable, non-seekable, self-healing byte stream.

Why not `urllib.request.urlopen`: it forwards Authorization across redirects to
other hosts, follows https->http downgrades, and gives no handle on Range
resumption. `http.client` lets us decide each of those explicitly.

A download thread owns the socket: it reads large chunks, hashes them (hashlib
and ssl release the GIL), resumes after a dropped connection with
`Range` + `If-Range`, and hands the chunks to the consumer through a bounded
queue, so memory stays flat whatever the package size.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import http.client
import queue
import random
import re
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from initcontainer import contract
from initcontainer.config import Config
from initcontainer.errors import HTTPClientError, IntegrityError, PackageError, TransportError
from initcontainer.log import Logger, Progress, redact_url, scrub

CHUNK_SIZE = 256 * 1024
"""Bytes per socket read: large enough that per-chunk Python work is noise."""
QUEUE_DEPTH = 16
"""Chunks buffered between the download thread and the extractor (4 MiB)."""
MAX_REDIRECTS = 10
BACKOFF_BASE = 0.5
BACKOFF_MAX = 30.0
RETRY_AFTER_MAX = 120.0
USER_AGENT = "package-injector-init/0.1"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_TRANSIENT = frozenset({408, 425, 429, 500, 502, 503, 504, 507, 509, 520, 521, 522, 523, 524})
_CONTENT_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class RestartDownload(TransportError):
    """The server cannot continue where we stopped: start over with a clean staging dir."""

    reason = "RestartDownload"


class _Transient(Exception):
    """A failure worth retrying after a pause (the server may honour Retry-After)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str
    port: int


def _origin(url: str) -> _Origin:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    return _Origin(scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date; return seconds from now, capped."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_MAX)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)


def make_ssl_context(cfg: Config) -> ssl.SSLContext:
    """System CAs plus the Secret's ca.crt; verification off only on explicit request."""
    ctx = ssl.create_default_context()
    if cfg.ca_pem:
        ctx.load_verify_locations(cadata=cfg.ca_pem)
    if cfg.insecure_skip_tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class _Requester:
    """One GET with redirects, proxies, TLS and auth decided per hop; classifies the status."""

    def __init__(self, cfg: Config, log: Logger, deadline: float | None) -> None:
        self.cfg = cfg
        self.log = log
        self.deadline = deadline
        self.origin = _origin(cfg.url)
        self._ssl_context: ssl.SSLContext | None = None
        self.proxies = urllib.request.getproxies_environment()
        self.auth_header = self._auth_header()

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """Built on first https use (loading the system CAs costs ~70 ms): also for http->https."""
        if self._ssl_context is None:
            self._ssl_context = make_ssl_context(self.cfg)
        return self._ssl_context

    def _auth_header(self) -> str | None:
        creds = self.cfg.credentials
        if creds is None:
            return None
        if creds.token is not None:
            return f"Bearer {creds.token}"
        raw = f"{creds.username}:{creds.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def _timeout(self, base: float) -> float:
        if self.deadline is None:
            return base
        return max(0.1, min(base, self.deadline - time.monotonic()))

    def _proxy_for(self, scheme: str, host: str) -> urllib.parse.SplitResult | None:
        proxy = self.proxies.get(scheme)
        if not proxy or urllib.request.proxy_bypass(host):
            return None
        if "://" not in proxy:
            proxy = "http://" + proxy
        parts = urllib.parse.urlsplit(proxy)
        if parts.scheme.lower() != "http" or not parts.hostname:
            raise TransportError(
                f"unsupported proxy {redact_url(proxy)} for {scheme}://: only http:// proxies are supported"
            )
        return parts

    def _connect(self, url: str) -> tuple[http.client.HTTPConnection, str, dict[str, str]]:
        """Open a connection for `url`; return it, the request target and hop-by-hop proxy headers."""
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        proxy = self._proxy_for(scheme, host)
        proxy_headers: dict[str, str] = {}
        if proxy is not None and proxy.username is not None:
            raw = f"{urllib.parse.unquote(proxy.username)}:{urllib.parse.unquote(proxy.password or '')}"
            proxy_headers["Proxy-Authorization"] = "Basic " + base64.b64encode(raw.encode()).decode("ascii")
        timeout = self._timeout(self.cfg.connect_timeout)
        conn: http.client.HTTPConnection
        if scheme == "https":
            if proxy is not None:
                conn = http.client.HTTPSConnection(
                    proxy.hostname or "", proxy.port or 80, timeout=timeout, context=self.ssl_context
                )
                conn.set_tunnel(host, port, headers=proxy_headers)
                proxy_headers = {}
            else:
                conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=self.ssl_context)
        elif proxy is not None:
            conn = http.client.HTTPConnection(proxy.hostname or "", proxy.port or 80, timeout=timeout)
            target = urllib.parse.urlunsplit((scheme, parts.netloc, parts.path or "/", parts.query, ""))
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.connect()
        except ssl.SSLCertVerificationError as exc:
            conn.close()
            raise TransportError(
                f"TLS certificate of {host} not trusted ({exc.verify_message}); if the server uses a private "
                f"CA, put it as ca.crt in the Secret mounted at {contract.ENV_CREDENTIALS_DIR}"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise _Transient(f"cannot connect to {host}:{port}: {_describe(exc)}") from None
        if conn.sock is not None:
            conn.sock.settimeout(self._timeout(self.cfg.read_timeout))
        return conn, target, proxy_headers

    def get(self, extra: dict[str, str]) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """GET the package URL, following redirects; return only 200/206/416 responses."""
        url = self.cfg.url
        for _hop in range(MAX_REDIRECTS + 1):
            conn, target, headers = self._connect(url)
            headers.update({"User-Agent": USER_AGENT, "Accept": "*/*", "Accept-Encoding": "identity"})
            headers.update(extra)
            # Credentials go to the URL's own scheme+host+port only, never to a redirect target.
            sent_auth = self.auth_header is not None and _origin(url) == self.origin
            if sent_auth and self.auth_header is not None:
                headers["Authorization"] = self.auth_header
            try:
                conn.request("GET", target, headers=headers)
                resp = conn.getresponse()
            except http.client.InvalidURL as exc:
                conn.close()
                raise HTTPClientError(f"cannot request {redact_url(url)}: {_describe(exc, url)}") from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise _Transient(f"request to {redact_url(url)} failed: {_describe(exc, url)}") from None
            status = resp.status
            if status in _REDIRECTS:
                location = resp.getheader("Location")
                conn.close()
                url = self._follow(url, location, status)
                continue
            if status in (200, 206, 416):
                return conn, resp
            retry_after = parse_retry_after(resp.getheader("Retry-After"))
            conn.close()
            self._raise_for_status(status, resp.reason, url, sent_auth, retry_after)
        raise HTTPClientError(f"more than {MAX_REDIRECTS} redirects starting at {redact_url(self.cfg.url)}")

    def _follow(self, url: str, location: str | None, status: int) -> str:
        if not location:
            raise HTTPClientError(f"HTTP {status} redirect without a Location header from {redact_url(url)}")
        new = urllib.parse.urljoin(url, _requote(location.strip()))
        old_scheme = urllib.parse.urlsplit(url).scheme.lower()
        new_scheme = urllib.parse.urlsplit(new).scheme.lower()
        if new_scheme not in ("http", "https"):
            raise HTTPClientError(f"redirect to unsupported scheme {new_scheme!r} refused")
        if old_scheme == "https" and new_scheme == "http":
            raise HTTPClientError(
                f"redirect from {redact_url(url)} to plain http ({redact_url(new)}) refused: "
                "it would expose the download to tampering"
            )
        if new_scheme == "http" and not self.cfg.allow_http:
            raise HTTPClientError(f"redirect to plain http ({redact_url(new)}) refused")
        self.log.info(
            "redirect", f"HTTP {status} redirect to {redact_url(new)}", status=status, to=redact_url(new)
        )
        return new

    def _raise_for_status(
        self, status: int, reason: str, url: str, sent_auth: bool, retry_after: float | None
    ) -> None:
        where = redact_url(url)
        if status in _TRANSIENT:
            raise _Transient(f"HTTP {status} {reason} from {where}", retry_after)
        if status == 401:
            if sent_auth:
                msg = (
                    f"HTTP 401 from {where}: the server rejected the credentials; check username/password "
                    f"or token in the Secret mounted at {contract.ENV_CREDENTIALS_DIR}"
                )
            elif self.auth_header is not None:
                msg = (
                    f"HTTP 401 from {where}: credentials are only sent to the host of {contract.ENV_URL}, "
                    "not to the redirect target; point the URL at the final host"
                )
            else:
                msg = (
                    f"HTTP 401 from {where}: the server requires authentication; put username+password or "
                    f"token in a Secret mounted at {contract.ENV_CREDENTIALS_DIR}"
                )
            raise HTTPClientError(msg)
        if status == 403:
            raise HTTPClientError(
                f"HTTP 403 from {where}: access denied; the credentials lack permission, "
                "or a pre-signed URL has expired"
            )
        if status in (404, 410):
            raise HTTPClientError(
                f"HTTP {status} from {where}: the package does not exist; check {contract.ENV_URL}"
            )
        raise HTTPClientError(f"HTTP {status} {reason} from {where}")


_URL_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))


def _requote(location: str) -> str:
    """Percent-encode spaces, controls and raw non-ASCII bytes of a Location header, as browsers do.

    http.client decodes header bytes as latin-1 and refuses such characters in the
    request line with an error that quotes the whole target (query token included).
    """
    if all(0x21 <= ord(c) < 0x7F for c in location):
        return location
    return urllib.parse.quote(location.encode("latin-1", "replace"), safe=_URL_SAFE)


def _describe(exc: BaseException, url: str | None = None) -> str:
    """Class and text of an exception, without the query string or userinfo of `url`.

    Some exceptions quote the request target (http.client.InvalidURL does), and a
    pre-signed URL carries its token there.
    """
    text = scrub(str(exc), url) if url else str(exc)
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


_EOF = object()


class PackageStream:
    """Readable, non-seekable stream over the package body; hashes and counts every byte.

    `read(n)` hides dropped connections (resumed with Range/If-Range). Where the
    server cannot resume, `read` raises RestartDownload and the caller starts over.
    """

    def __init__(self, cfg: Config, log: Logger, *, deadline: float | None = None) -> None:
        self.cfg = cfg
        self.log = log
        self.deadline = deadline
        self.url = redact_url(cfg.url)
        self._req = _Requester(cfg, log, deadline)
        self._hash = hashlib.sha256()
        self._received = 0  # bytes hashed so far (producer side)
        self._failures = 0  # consecutive failures without progress
        self._conn: http.client.HTTPConnection | None = None
        self._resp: http.client.HTTPResponse | None = None
        self._expected_end: int | None = None
        self.total: int | None = None
        self.content_type = ""
        self.validator: str | None = None
        self._validator_header = "ETag"
        self.resumes = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_DEPTH)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cur: bytes = b""
        self._pos = 0
        self._eof = False
        self._error: BaseException | None = None
        self.consumed = 0

    # ---- setup (caller's thread) -------------------------------------------------

    def open(self) -> PackageStream:
        """Make the first request (with retries) so HTTP errors surface here, then start the reader."""
        self._first_response()
        self.log.info(
            "download_start",
            f"downloading {self.url}",
            url=self.url,
            contentLength=self.total,
            contentType=self.content_type or None,
        )
        self._thread = threading.Thread(target=self._produce, name="package-download", daemon=True)
        self._thread.start()
        return self

    def _first_response(self) -> None:
        while True:
            try:
                conn, resp = self._req.get({})
            except _Transient as exc:
                self._backoff(exc.message, exc.retry_after)
                continue
            if resp.status != 200:
                conn.close()
                raise TransportError(f"unexpected HTTP {resp.status} to a plain GET of {self.url}")
            self._adopt(conn, resp)
            return

    def _adopt(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        """Take a fresh 200 response: record length, validator and type; check the size limit."""
        self._conn, self._resp = conn, resp
        self.content_type = resp.getheader("Content-Type", "") or ""
        length = resp.getheader("Content-Length")
        self.total = int(length) if length and length.strip().isdigit() else None
        self._expected_end = self.total
        etag = resp.getheader("ETag")
        # A weak ETag cannot be used with If-Range (RFC 9110 13.1.5); fall back to the date.
        strong = bool(etag) and not (etag or "").startswith("W/")
        self._validator_header = "ETag" if strong else "Last-Modified"
        self.validator = resp.getheader(self._validator_header)
        if self.total == 0:
            self._close_conn()
            raise IntegrityError(f"the server returned an empty body (Content-Length: 0) for {self.url}")
        if self.total is not None and self.total > self.cfg.max_download_bytes:
            self._close_conn()
            raise IntegrityError(
                f"the package is {self.total} bytes, more than {contract.ENV_MAX_DOWNLOAD_BYTES}="
                f"{self.cfg.max_download_bytes}; raise the limit if this size is expected"
            )

    def _backoff(self, reason: str, retry_after: float | None = None) -> None:
        """Count a failure; give up past the retry budget, else sleep with jittered backoff."""
        self._failures += 1
        if self._failures > self.cfg.retries:
            attempts = self._failures
            raise TransportError(f"giving up after {attempts} attempt(s): {reason}")
        if retry_after is not None:
            delay = retry_after
        else:
            delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (self._failures - 1))
            delay *= random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto
        if self.deadline is not None and time.monotonic() + delay > self.deadline:
            raise TransportError(
                f"{contract.ENV_TOTAL_TIMEOUT}={self.cfg.total_timeout:g}s would be exceeded while "
                f"waiting to retry: {reason}"
            )
        self.log.warning(
            "retry",
            f"{reason}; retry {self._failures}/{self.cfg.retries} in {delay:.1f}s",
            attempt=self._failures,
            delaySeconds=round(delay, 2),
        )
        if self._stop.wait(delay):
            raise TransportError("download cancelled")

    # ---- download thread ---------------------------------------------------------

    def _produce(self) -> None:
        progress = Progress(self.log, self.total)
        try:
            while not self._stop.is_set():
                if self.deadline is not None and time.monotonic() > self.deadline:
                    raise TransportError(
                        f"download exceeded {contract.ENV_TOTAL_TIMEOUT}={self.cfg.total_timeout:g}s "
                        f"after {self._received} bytes"
                    )
                assert self._resp is not None
                try:
                    chunk = self._resp.read(CHUNK_SIZE)
                except (OSError, http.client.HTTPException) as exc:
                    self._resume(_describe(exc, self.cfg.url))
                    continue
                if not chunk:
                    # A 206 may cover less than asked (RFC 9110 14.2): go on to the total.
                    expected = self.total if self.total is not None else self._expected_end
                    if expected is not None and self._received < expected:
                        self._resume(f"connection closed after {self._received} of {expected} bytes")
                        continue
                    break
                self._failures = 0
                self._hash.update(chunk)
                self._received += len(chunk)
                if self._received > self.cfg.max_download_bytes:
                    raise IntegrityError(
                        f"the package is larger than {contract.ENV_MAX_DOWNLOAD_BYTES}="
                        f"{self.cfg.max_download_bytes} bytes; raise the limit if this size is expected"
                    )
                progress.total = self.total
                progress.update(self._received)
                self._put(chunk)
            if self._stop.is_set():
                return
            if self._received == 0:
                raise IntegrityError(f"the server returned an empty body for {self.url}")
            progress.finish(self._received)
            self._put(_EOF)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(exc)
        finally:
            self._close_conn()

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def _resume(self, reason: str) -> None:
        """Continue after a drop: Range from the byte reached, guarded by If-Range."""
        self._close_conn()
        while True:
            self._backoff(reason)
            if self._received == 0:
                # Nothing delivered yet: a plain fresh request is a clean restart.
                try:
                    conn, resp = self._req.get({})
                except _Transient as exc:
                    reason = exc.message
                    continue
                if resp.status != 200:
                    conn.close()
                    raise TransportError(f"unexpected HTTP {resp.status} to a plain GET of {self.url}")
                self._adopt(conn, resp)
                return
            if not self.validator:
                raise RestartDownload(
                    f"{reason}; the server sent neither ETag nor Last-Modified, so the download "
                    "cannot be resumed safely"
                )
            headers = {"Range": f"bytes={self._received}-", "If-Range": self.validator}
            try:
                conn, resp = self._req.get(headers)
            except _Transient as exc:
                reason = exc.message
                continue
            if resp.status == 206:
                self._check_content_range(resp.getheader("Content-Range"), conn)
                self._check_validator(resp, conn)
                self._conn, self._resp = conn, resp
                self.resumes += 1
                self.log.info(
                    "download_resumed",
                    f"resumed at byte {self._received} after: {reason}",
                    offset=self._received,
                )
                return
            conn.close()
            if resp.status == 200:
                raise RestartDownload(
                    f"{reason}; the server answered the Range request with the whole file "
                    "(changed since, or no Range support)"
                )
            raise RestartDownload(f"{reason}; the server refused to resume (HTTP {resp.status})")

    def _check_validator(self, resp: http.client.HTTPResponse, conn: http.client.HTTPConnection) -> None:
        """A 206 must be a part of the same file: servers and caches that ignore If-Range exist."""
        now = resp.getheader(self._validator_header)
        if now is not None and now != self.validator:
            conn.close()
            raise RestartDownload(
                f"the file changed during the download (validator {self.validator!r} -> {now!r}); "
                "the server sent a part of the new version despite If-Range"
            )

    def _check_content_range(self, header: str | None, conn: http.client.HTTPConnection) -> None:
        m = _CONTENT_RANGE_RE.fullmatch((header or "").strip())
        start = int(m.group(1)) if m else -1
        if m is None or start != self._received:
            conn.close()
            raise RestartDownload(
                f"the server resumed at the wrong place (Content-Range {header!r}, "
                f"expected byte {self._received})"
            )
        end = int(m.group(2))
        total = None if m.group(3) == "*" else int(m.group(3))
        if total is not None and self.total is not None and total != self.total:
            conn.close()
            raise RestartDownload(f"the file changed size during the download ({self.total} -> {total})")
        if total is not None:
            self.total = total
        self._expected_end = end + 1

    # ---- consumer side (caller's thread) ----------------------------------------

    def _next(self) -> bool:
        """Load the next chunk into the read buffer; False at end of stream."""
        if self._error is not None:
            raise self._error
        if self._eof:
            return False
        while True:
            try:
                item = self._queue.get(timeout=1.0)
                break
            except queue.Empty:
                if self._thread is not None and not self._thread.is_alive() and self._queue.empty():
                    raise TransportError("download thread ended unexpectedly") from None
        if item is _EOF:
            self._eof = True
            return False
        if isinstance(item, BaseException):
            self._error = item
            raise item
        self._cur = self._cur[self._pos :] + item if self._pos < len(self._cur) else item
        self._pos = 0
        return True

    def read(self, n: int = -1) -> bytes:
        """Up to n bytes (all remaining if n < 0); b'' only at the verified end of the body."""
        if n is None or n < 0:
            parts: list[bytes] = []
            while True:
                block = self.read(CHUNK_SIZE)
                if not block:
                    return b"".join(parts)
                parts.append(block)
        if n == 0:
            return b""
        if self._pos >= len(self._cur) and not self._next():
            return b""
        start = self._pos
        # Whole chunk: hand it over without a copy.
        out = self._cur if start == 0 and n >= len(self._cur) else self._cur[start : start + n]
        self._pos = start + len(out)
        self.consumed += len(out)
        return out

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def peek(self, n: int) -> bytes:
        """The next n bytes (fewer only at end of stream) without consuming them: for magic bytes."""
        while len(self._cur) - self._pos < n and self._next():
            pass
        return self._cur[self._pos : self._pos + n]

    def drain(self) -> int:
        """Read to the end (trailing padding after the archive) so the digest covers the whole file."""
        total = 0
        while True:
            block = self.read(CHUNK_SIZE)
            if not block:
                return total
            total += len(block)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def hexdigest(self) -> str:
        """SHA-256 of every byte received; complete only after read() returned b''."""
        if not self._eof:
            raise PackageError("digest requested before the end of the download")
        return self._hash.hexdigest()

    @property
    def size(self) -> int:
        return self._received

    def close(self) -> None:
        """Stop the download thread and release the connection."""
        self._stop.set()
        conn = self._conn
        if conn is not None and conn.sock is not None:
            # Wakes a read blocked on a stalled server now, not after PACKAGE_READ_TIMEOUT.
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        else:
            self._close_conn()

    def __enter__(self) -> PackageStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_package(cfg: Config, log: Logger, *, deadline: float | None = None) -> PackageStream:
    """Start downloading cfg.url; HTTP errors before the body are raised here."""
    return PackageStream(cfg, log, deadline=deadline).open()
