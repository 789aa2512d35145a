"""A download as a readable, non-seekable, self-healing byte stream.

A download thread owns the socket: it reads large chunks, hashes them (hashlib
and ssl release the GIL), resumes after a dropped connection with
`Range` + `If-Range`, and hands the chunks to the consumer through a bounded
queue, so memory stays flat whatever the package size. Requests go through a
`transport.Transport`, so any source whose bytes are one HTTP resource (a plain
URL, a registry blob, an S3 object) streams the same way: `PackageStream(...,
url=blob_url, transport=Transport(..., auth=signer), expected_sha256=digest)`.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import queue
import re
import socket
import threading
import time
from types import TracebackType
from typing import Any

from initcontainer import contract, stopping
from initcontainer.config import Config
from initcontainer.errors import IntegrityError, PackageError, RestartDownload, TransportError
from initcontainer.log import Logger, Progress, redact_url
from initcontainer.transport import Retry, Transient, Transport, describe

CHUNK_SIZE = 256 * 1024
"""Bytes per socket read: large enough that per-chunk Python work is noise."""
QUEUE_DEPTH = 16
"""Chunks buffered between the download thread and the extractor (4 MiB)."""
_CONTENT_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_EOF = object()


class PackageStream:
    """Readable, non-seekable stream over one HTTP resource; hashes and counts every byte.

    `read(n)` hides dropped connections (resumed with Range/If-Range). Where the
    server cannot resume, `read` raises RestartDownload and the caller starts over.
    With `expected_sha256`, a body that hashes otherwise ends in IntegrityError
    instead of the final b"" (the package itself is checked by `main`, which
    words the error for PACKAGE_SHA256).
    """

    def __init__(
        self,
        cfg: Config,
        log: Logger,
        *,
        deadline: float | None = None,
        url: str | None = None,
        transport: Transport | None = None,
        expected_sha256: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.log = log
        self.deadline = deadline
        self.source_url = cfg.url if url is None else url
        self.url = redact_url(self.source_url)
        self.expected_sha256 = expected_sha256
        self._req = Transport(cfg, log, deadline) if transport is None else transport
        self._stop = threading.Event()
        self._retry = Retry(cfg, log, deadline, self._stop)
        self._hash = hashlib.sha256()
        self._received = 0  # bytes hashed so far (producer side)
        self._conn: http.client.HTTPConnection | None = None
        self._resp: http.client.HTTPResponse | None = None
        self._expected_end: int | None = None
        self.total: int | None = None
        self.content_type = ""
        self.validator: str | None = None
        self._validator_header = "ETag"
        self.resumes = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_DEPTH)
        self._thread: threading.Thread | None = None
        self._cur: bytes = b""
        self._pos = 0
        self._eof = False
        self._error: BaseException | None = None
        self.consumed = 0

    # ---- setup (caller's thread) -------------------------------------------------

    def open(self) -> PackageStream:
        """Make the first request (with retries) so HTTP errors surface here, then start the reader."""
        self._fresh_get()
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

    def _fresh_get(self) -> None:
        """A plain GET of the whole resource, retried; adopt its 200."""
        while True:
            try:
                conn, resp = self._req.get(self.source_url)
            except Transient as exc:
                self._retry.backoff(exc.message, exc.retry_after)
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
                    if self._stop.is_set():
                        break  # close() shut the socket down: no retry to log
                    self._resume(describe(exc, self.source_url))
                    continue
                if not chunk:
                    # A 206 may cover less than asked (RFC 9110 14.2): go on to the total.
                    expected = self.total if self.total is not None else self._expected_end
                    if expected is not None and self._received < expected:
                        self._resume(f"connection closed after {self._received} of {expected} bytes")
                        continue
                    break
                self._retry.success()
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
            self._check_digest()
            progress.finish(self._received)
            self._put(_EOF)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(exc)
        finally:
            self._close_conn()

    def _check_digest(self) -> None:
        if self.expected_sha256 is None:
            return
        digest = self._hash.hexdigest()
        if digest != self.expected_sha256:
            raise IntegrityError(
                f"{self.url}: the {self._received} bytes received hash to sha256:{digest}, "
                f"not the expected sha256:{self.expected_sha256}"
            )

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
            self._retry.backoff(reason)
            if self._received == 0:
                # Nothing delivered yet: a plain fresh request is a clean restart.
                try:
                    conn, resp = self._req.get(self.source_url)
                except Transient as exc:
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
                conn, resp = self._req.get(self.source_url, headers)
            except Transient as exc:
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
            stopping.check()  # SIGTERM with several packages: this thread is a worker's
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
