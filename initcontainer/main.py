"""The run: config, idempotency check, download + extract in one pass, verify, promote.

Nothing becomes visible in PACKAGE_DEST before the checksum is verified: the
archive is extracted into a hidden staging directory while it downloads, and
only `promote` (which writes the completion marker last) makes it visible.
Every failure removes the staging directory, exits with the code of its class
and writes a one-line JSON reason to the termination message file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sys
import tarfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from initcontainer import contract, stopping
from initcontainer.config import Config, load_config
from initcontainer.download import PackageStream, open_package
from initcontainer.errors import (
    ConfigError,
    IntegrityError,
    LocalIOError,
    PackageError,
    RestartDownload,
    Terminated,
)
from initcontainer.log import Logger, redact_url

MAX_RESTARTS = 3
"""Clean restarts allowed when the server cannot resume (each one re-downloads from byte 0)."""
TERMINATION_MESSAGE_MAX = 4096
"""Kubernetes keeps at most 4096 bytes of the termination message."""
MARKER_VERSION = 1


def check_python() -> None:
    """Refuse to run without tarfile's extraction filters (CPython < 3.11.4, e.g. Debian 12's 3.11.2)."""
    if not hasattr(tarfile, "data_filter"):
        version = ".".join(map(str, sys.version_info[:3]))
        raise ConfigError(
            f"this Python ({version}) lacks tarfile extraction filters (added in 3.11.4/3.12); "
            "use an image with a newer Python"
        )


def url_hash(url: str) -> str:
    """Identifies the exact URL in the marker without storing a token it may carry."""
    return "sha256:" + hashlib.sha256(url.encode()).hexdigest()


def already_installed(cfg: Config, marker: Mapping[str, Any] | None) -> bool:
    """Same URL (redacted form), same pinned digest and same layout: nothing to do.

    The redacted form is compared, so a pre-signed URL whose signature rotates on
    every deployment still matches; the pinned digest is what proves the bytes.
    Without PACKAGE_SHA256 nothing proves the remote file is unchanged: re-download.
    """
    if cfg.sha256 is None or not marker:
        return False
    return (
        marker.get("url") == redact_url(cfg.url)
        and marker.get("sha256") == cfg.sha256
        and marker.get("stripComponents", 0) == cfg.strip_components
    )


def write_termination_message(path: Path, payload: Mapping[str, Any], create: bool = True) -> None:
    """One JSON line for `kubectl describe pod`; best effort.

    In a container the kubelet provides the file; `create=False` (the default path, not chosen by the
    user) writes only to a file that exists, so a run outside a container, even as root, leaves no
    /dev/termination-log behind."""
    text = json.dumps(payload, separators=(",", ":"))
    if len(text.encode()) > TERMINATION_MESSAGE_MAX:
        trimmed = dict(payload)
        trimmed["message"] = str(payload.get("message", ""))[:3000] + "..."
        text = json.dumps(trimmed, separators=(",", ":"))[:TERMINATION_MESSAGE_MAX]
    flags = os.O_WRONLY | os.O_TRUNC | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError:
        return
    with contextlib.suppress(OSError), open(fd, "w", encoding="utf-8") as f:
        f.write(text + "\n")


def _open_source(cfg: Config, log: Logger, deadline: float) -> PackageStream:
    """The package's byte stream, from the source its URL's scheme names."""
    if cfg.s3 is not None:
        from initcontainer.s3source import open_s3_object

        return open_s3_object(cfg, log, deadline=deadline)
    return open_package(cfg, log, deadline=deadline)


def _install_once(cfg: Config, log: Logger, deadline: float) -> dict[str, Any]:
    """One download+extract attempt into a fresh staging dir; promote on success."""
    from initcontainer.extract import Limits, extract
    from initcontainer.formats import HEAD_BYTES, detect_format
    from initcontainer.install import discard, prepare_staging, promote

    staging = prepare_staging(cfg.dest)  # also removes what a crashed run left
    try:
        with _open_source(cfg, log, deadline) as stream:
            head = stream.peek(HEAD_BYTES)
            try:
                fmt = detect_format(head, cfg.fmt)
            except IntegrityError as exc:
                ctype = stream.content_type or "none"
                raise IntegrityError(f"{exc.message} (Content-Type: {ctype})") from None
            log.info("format", f"package format {fmt} (from its first bytes)", format=fmt)
            limits = Limits(max_extracted_bytes=cfg.max_extracted_bytes, max_files=cfg.max_files)
            stats = extract(stream, staging, fmt=fmt, limits=limits, strip_components=cfg.strip_components)
            trailing = stream.drain()
            digest = stream.hexdigest()
            size = stream.size
            resumes = stream.resumes
        if cfg.sha256 is not None and digest != cfg.sha256:
            raise IntegrityError(
                f"checksum mismatch: {contract.ENV_SHA256} is {cfg.sha256} but the downloaded "
                f"{size} bytes hash to {digest}; the file changed or the pin is wrong"
            )
        if stats.files == 0:
            raise IntegrityError("the package is empty: the archive holds no files")
        marker: dict[str, Any] = {
            "version": MARKER_VERSION,
            "url": redact_url(cfg.url),
            "urlHash": url_hash(cfg.url),
            "sha256": digest,
            "sha256Pinned": cfg.sha256 is not None,
            "size": size,
            "format": fmt,
            "files": stats.files,
            "extractedBytes": stats.bytes,
            "stripComponents": cfg.strip_components,
            "installedAt": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
        promote(staging, cfg.dest, marker)
        marker["trailingBytes"] = trailing
        marker["resumes"] = resumes
        return marker
    finally:
        discard(staging)  # no-op after a successful promote


def run(cfg: Config, log: Logger) -> dict[str, Any] | None:
    """Install the package unless already there; return the marker written (None if skipped)."""
    from initcontainer.install import installed_marker, remove_leftovers

    check_python()
    try:
        marker = installed_marker(cfg.dest)
    except OSError as exc:
        raise LocalIOError(f"cannot read {cfg.dest}: {exc.strerror or exc}") from None
    if contract.is_oci_url(cfg.url):
        return _run_oci(cfg, log, marker)
    if already_installed(cfg, marker):
        remove_leftovers(cfg.dest)  # of a run killed while switching to another package
        log.info(
            "already_installed",
            f"{redact_url(cfg.url)} (sha256 {cfg.sha256}) is already installed in {cfg.dest}; nothing to do",
            url=redact_url(cfg.url),
            sha256=cfg.sha256,
        )
        return None
    if cfg.sha256 is None:
        log.warning(
            "no_checksum",
            f"{contract.ENV_SHA256} is not set: the package is not verified and is downloaded on every start",
        )
    deadline = time.monotonic() + cfg.total_timeout
    for restart in range(MAX_RESTARTS + 1):
        try:
            return _install_once(cfg, log, deadline)
        except RestartDownload as exc:
            if restart == MAX_RESTARTS:
                raise
            log.warning("restart", f"starting the download over: {exc.message}", restart=restart + 1)
    return None  # pragma: no cover - the loop returns or raises


def _run_oci(cfg: Config, log: Logger, marker: dict[str, Any] | None) -> dict[str, Any] | None:
    """oci:// packages: the same restarts and deadline; idempotency keyed by the manifest digest."""
    from initcontainer.oci.source import install_once

    if "@sha256:" not in cfg.url:
        log.warning(
            "no_checksum",
            f"{redact_url(cfg.url)} names a tag without a digest: the content is whatever the tag points "
            "to now; pin it with @sha256:...",
        )
    deadline = time.monotonic() + cfg.total_timeout
    for restart in range(MAX_RESTARTS + 1):
        try:
            return install_once(cfg, log, deadline, marker)
        except RestartDownload as exc:
            if restart == MAX_RESTARTS:
                raise
            log.warning("restart", f"starting the download over: {exc.message}", restart=restart + 1)
    return None  # pragma: no cover - the loop returns or raises


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    message = f"stopped by signal {signal.Signals(signum).name}"
    stopping.request(message)  # the worker threads of several packages see this, not the exception
    raise Terminated(message)


def _main_several(env: Mapping[str, str], log: Logger, termination: Path) -> int:
    """PACKAGE_LIST set: every package at once (initcontainer.several); the failure names its package."""
    from initcontainer.several import PackageFailed, load_all, run_all

    started = time.monotonic()
    try:
        configs, concurrency = load_all(env)
        log = Logger(configs[0][1].log_format)
        termination = configs[0][1].termination_log
        for name, cfg in configs:
            for warning in cfg.warnings:
                log.warning("config", f"{name}: {warning}", package=name)
        names = [name for name, _ in configs]
        log.info("start", f"installing {len(configs)} packages, {concurrency} at a time", packages=names)
        run_all(configs, log, concurrency)
        log.info(
            "installed", f"all {len(configs)} packages in place", seconds=round(time.monotonic() - started, 2)
        )
        return contract.EXIT_OK
    except PackageError as exc:
        code, reason, message = exc.exit_code, exc.reason, exc.message
        package = exc.package if isinstance(exc, PackageFailed) else None
    except Exception as exc:  # a bug: still say why
        code, reason, message, package = 1, "InternalError", f"{exc.__class__.__name__}: {exc}", None
    payload: dict[str, Any] = {"reason": reason, "exitCode": code, "message": message}
    if package is not None:
        payload["package"] = package
    write_termination_message(termination, payload)
    log.error("failed", message, reason=reason, exitCode=code, seconds=round(time.monotonic() - started, 2))
    return code


def main(environ: Mapping[str, str] | None = None) -> int:
    """Entry point of `python -m initcontainer` and `package-init`; returns the exit code."""
    env = os.environ if environ is None else environ
    log = Logger(env.get(contract.ENV_LOG_FORMAT, "json").strip().lower())
    termination = Path(env.get(contract.ENV_TERMINATION_LOG) or contract.DEFAULT_TERMINATION_LOG)
    url_for_report: str | None = None
    started = time.monotonic()
    stopping.reset()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(ValueError):  # not the main thread (tests calling main())
            signal.signal(sig, _on_signal)
    try:
        if contract.ENV_PACKAGE_LIST in env:
            return _main_several(env, log, termination)
        cfg = load_config(env)
        log = Logger(cfg.log_format)
        termination = cfg.termination_log
        url_for_report = redact_url(cfg.url)
        for warning in cfg.warnings:
            log.warning("config", warning)
        log.info(
            "start",
            f"installing {url_for_report} into {cfg.dest}",
            url=url_for_report,
            dest=str(cfg.dest),
            sha256=cfg.sha256,
            auth=cfg.s3.auth_kind if cfg.s3 else cfg.credentials.kind if cfg.credentials else None,
            customCA=cfg.ca_pem is not None,
        )
        marker = run(cfg, log)
        if marker is not None:
            log.info(
                "installed",
                f"installed {marker['files']} files ({marker['extractedBytes']} bytes) from {url_for_report}",
                url=url_for_report,
                sha256=marker["sha256"],
                size=marker["size"],
                files=marker["files"],
                extractedBytes=marker["extractedBytes"],
                resumes=marker["resumes"],
                seconds=round(time.monotonic() - started, 2),
            )
        return contract.EXIT_OK
    except PackageError as exc:
        code, reason, message = exc.exit_code, exc.reason, exc.message
    except Exception as exc:  # a bug: still clean up, still say why
        code, reason, message = 1, "InternalError", f"{exc.__class__.__name__}: {exc}"
    payload: dict[str, Any] = {"reason": reason, "exitCode": code, "message": message}
    if url_for_report:
        payload["url"] = url_for_report
    write_termination_message(termination, payload, create=bool(env.get(contract.ENV_TERMINATION_LOG)))
    log.error("failed", message, reason=reason, exitCode=code, seconds=round(time.monotonic() - started, 2))
    return code
