"""One-line structured logs on stderr, URL redaction and download progress.

Logs are what users paste into issues, so nothing secret may reach them: URLs go
through `redact_url` (pre-signed URLs carry their token in the query string) and
credentials are never passed to the logger at all.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.parse
from datetime import UTC, datetime
from typing import Any, TextIO

from initcontainer import contract

LOG_FORMATS = ("json", "text")
PROGRESS_INTERVAL = 5.0
"""Seconds between progress lines: enough to see a download move, not enough to flood."""


def redact_url(url: str) -> str:
    """Return scheme://host[:port]/path: no userinfo, no query string, no fragment.

    An oci:// reference carries no secret (the parser refuses userinfo, queries and fragments) and is
    not a URL to urlsplit (`oci://nginx@sha256:...` would read `nginx` as a user): its canonical form.
    """
    if contract.is_oci_url(url):
        try:
            return str(contract.parse_oci_reference(url))
        except contract.ReferenceError:
            return "<invalid oci:// reference>"
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable URL>"
    suffix = "?<redacted>" if parts.query else ""
    return f"{parts.scheme}://{host}{port}{parts.path}{suffix}"


def scrub(text: str, url: str) -> str:
    """`text` without the query string, fragment or password of `url` (for exception texts)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return text
    secrets = [parts.query, parts.fragment, parts.password or ""]
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        for form in {secret, repr(secret)[1:-1]}:  # repr() escapes control characters
            text = text.replace(form, "<redacted>")
    return text


class Logger:
    """Thread-safe line logger: the download thread and the main thread both log."""

    def __init__(self, fmt: str = "json", stream: TextIO | None = None) -> None:
        self.fmt = fmt if fmt in LOG_FORMATS else "json"
        self._stream = stream if stream is not None else sys.stderr
        self._lock = threading.Lock()

    def log(self, level: str, event: str, msg: str, **fields: Any) -> None:
        """Write one line; `event` is a stable machine-readable name, `msg` is for humans."""
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if self.fmt == "json":
            record: dict[str, Any] = {"ts": now, "level": level, "event": event, "msg": msg}
            record.update(fields)
            line = json.dumps(record, separators=(",", ":"), default=str)
        else:
            extra = " ".join(f"{k}={v}" for k, v in fields.items())
            line = f"{now} {level.upper():7} {msg}" + (f" ({extra})" if extra else "")
        with self._lock:
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except (OSError, ValueError):
                pass  # a closed stderr must not turn a success into a failure

    def info(self, event: str, msg: str, **fields: Any) -> None:
        self.log("info", event, msg, **fields)

    def warning(self, event: str, msg: str, **fields: Any) -> None:
        self.log("warning", event, msg, **fields)

    def error(self, event: str, msg: str, **fields: Any) -> None:
        self.log("error", event, msg, **fields)


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB': for the text of progress lines (JSON fields stay exact)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def human_duration(seconds: float) -> str:
    """75 -> '1m15s': for the ETA of progress lines."""
    total = round(seconds)
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """Emits a progress line at most every `interval` seconds while bytes arrive."""

    def __init__(self, log: Logger, total: int | None, *, interval: float = PROGRESS_INTERVAL) -> None:
        self._log = log
        self.total = total
        self._interval = interval
        self._start = time.monotonic()
        self._last = self._start

    def update(self, done: int) -> None:
        """Cheap when not due: one clock read per chunk."""
        now = time.monotonic()
        if now - self._last < self._interval:
            return
        self._last = now
        self._emit("download_progress", done, now)

    def finish(self, done: int) -> None:
        self._emit("download_complete", done, time.monotonic())

    def _emit(self, event: str, done: int, now: float) -> None:
        elapsed = max(now - self._start, 1e-6)
        rate = done / elapsed
        fields: dict[str, Any] = {
            "bytes": done,
            "elapsedSeconds": round(elapsed, 2),
            "bytesPerSecond": int(rate),
        }
        text = f"{human_bytes(done)}"
        if self.total:
            percent = round(100.0 * done / self.total, 1)
            fields["totalBytes"] = self.total
            fields["percent"] = percent
            text += f" of {human_bytes(self.total)} ({percent}%)"
        text += f" at {human_bytes(rate)}/s"
        if self.total and event == "download_progress" and rate > 0 and done < self.total:
            # From the average rate so far: steadier than the last interval's, and honest about stalls.
            eta = (self.total - done) / rate
            fields["etaSeconds"] = round(eta)
            text += f", about {human_duration(eta)} left"
        verb = "downloaded" if event == "download_complete" else "downloading"
        self._log.info(event, f"{verb} {text}", **fields)
