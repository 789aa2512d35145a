"""Several packages in one init container: PACKAGE_LIST (and the unnamed PACKAGE_URL) installed concurrently.

Each package goes through exactly the single-package path (`main.run`: its own staging directory, checksum,
atomic promote, idempotent re-run), so a failing package never leaves part of itself visible, and packages
already promoted stay whole. Every package's config is built by `load_config` from the shared variables
plus its own, so one set of rules validates them all before any download starts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from initcontainer import contract, stopping
from initcontainer.config import Config, load_config
from initcontainer.errors import ConfigError, PackageError, Terminated
from initcontainer.log import Logger, redact_url

UNNAMED = "(unnamed)"
"""How the package of PACKAGE_URL is named in logs and the termination message."""

_PER_PACKAGE = (
    contract.ENV_URL,
    contract.ENV_SHA256,
    contract.ENV_DEST,
    contract.ENV_STRIP_COMPONENTS,
    contract.ENV_CREDENTIALS_DIR,
    contract.ENV_USERNAME,
    contract.ENV_PASSWORD,
)


class NamedLogger(Logger):
    """The shared logger (one lock, one stream) with the package's name on every line."""

    def __init__(self, base: Logger, name: str) -> None:
        self.fmt, self._stream, self._lock = base.fmt, base._stream, base._lock
        self._name = name

    def log(self, level: str, event: str, msg: str, **fields: Any) -> None:
        super().log(level, event, f"{self._name}: {msg}", package=self._name, **fields)


def load_all(environ: Mapping[str, str]) -> tuple[list[tuple[str, Config]], int]:
    """Every package's Config (the unnamed one first) and the concurrency; ConfigError names the package."""
    shared = {
        k: v for k, v in environ.items() if k not in (contract.ENV_PACKAGE_LIST, contract.ENV_CONCURRENCY)
    }
    has_unnamed = bool(environ.get(contract.ENV_URL, "").strip())
    unnamed_dest = (environ.get(contract.ENV_DEST) or contract.DEFAULT_DEST) if has_unnamed else None
    try:
        entries = contract.parse_package_list(environ.get(contract.ENV_PACKAGE_LIST, ""), unnamed_dest)
        raw = environ.get(contract.ENV_CONCURRENCY, "").strip()
        concurrency = contract.parse_concurrency(raw) if raw else contract.DEFAULT_CONCURRENCY
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    configs: list[tuple[str, Config]] = []
    if has_unnamed:
        configs.append((UNNAMED, load_config(shared)))
    base = {k: v for k, v in shared.items() if k not in _PER_PACKAGE}
    for entry in entries:
        own = {contract.ENV_URL: entry.url, contract.ENV_DEST: entry.dest}
        if entry.sha256:
            own[contract.ENV_SHA256] = entry.sha256
        if entry.strip_components:
            own[contract.ENV_STRIP_COMPONENTS] = str(entry.strip_components)
        if entry.credentials_dir:
            own[contract.ENV_CREDENTIALS_DIR] = entry.credentials_dir
        try:
            # Without its own Secret a package reads none: never the unnamed package's (the default
            # directory), neither its username/password nor a registry keyring nor AWS keys.
            cfg = load_config({**base, **own}, secrets=bool(entry.credentials_dir))
        except ConfigError as exc:
            raise ConfigError(f"package {entry.name!r}: {exc.message}") from None
        configs.append((entry.name, cfg))
    return configs, concurrency


class PackageFailed(PackageError):
    """One package failed: its class's exit code and reason, its name first in the message."""

    def __init__(self, name: str, error: PackageError) -> None:
        super().__init__(f"package {name!r}: {error.message}")
        self.exit_code, self.reason, self.package = error.exit_code, error.reason, name


GRACE_SECONDS = 5.0
"""After SIGTERM, how long the run waits for its workers to unwind (remove their staging) before it exits
anyway: a worker blocked in a connect or a stalled read notices only when that returns."""


def run_all(configs: list[tuple[str, Config]], log: Logger, concurrency: int) -> list[tuple[str, Any]]:
    """Install every package, at most `concurrency` at once; raise PackageFailed for the first that failed.

    Once a package fails, the packages still queued are not started (the run fails anyway); those already
    downloading run to their end, so their work counts on the restart (a pinned package promoted now is
    skipped then). SIGTERM (`initcontainer.stopping`) stops them all: each worker removes its staging, and
    the run raises Terminated after at most GRACE_SECONDS. Workers are daemon threads, so a worker still
    blocked then does not keep the process alive; it leaves only hidden staging, which the next run removes.
    """
    from initcontainer.main import run

    started = time.monotonic()
    queued = list(configs)
    lock = threading.Lock()
    failed = threading.Event()
    results: dict[str, Any] = {}
    failures: list[tuple[str, BaseException]] = []
    not_started: list[str] = []
    running = [min(concurrency, len(configs))]
    all_done = threading.Event()

    def one(name: str, cfg: Config) -> Any:
        named = NamedLogger(log, name)
        named.info("start", f"installing {redact_url(cfg.url)} into {cfg.dest}", url=redact_url(cfg.url))
        marker = run(cfg, named)
        if marker is not None:
            named.info(
                "installed",
                f"installed {marker['files']} files ({marker['extractedBytes']} bytes)",
                files=marker["files"],
                seconds=round(time.monotonic() - started, 2),
            )
        return marker

    def work() -> None:
        while True:
            with lock:
                if not queued:
                    return
                name, cfg = queued.pop(0)
                if failed.is_set() or stopping.requested():
                    not_started.append(name)
                    continue
            try:
                stopping.check()
                marker = one(name, cfg)
            except BaseException as exc:  # any: the main thread reports it
                with lock:
                    failures.append((name, exc))
                failed.set()
            else:
                with lock:
                    results[name] = marker

    def worker() -> None:
        try:
            work()
        finally:
            with lock:
                running[0] -= 1
                if running[0] == 0:
                    all_done.set()

    workers = [
        threading.Thread(target=worker, name=f"package-{i}", daemon=True)
        for i in range(min(concurrency, len(configs)))
    ]
    for thread in workers:
        thread.start()
    # Waiting on an Event, never Thread.join: a signal handler's exception that interrupts join() makes
    # CPython (3.11, bpo-45274's cleanup) release the running thread's lock and mark it stopped, so every
    # later join() returns at once and the process would exit under its workers.
    try:
        while not all_done.wait(0.5):  # short waits: the signal handler runs in this thread between them
            pass
    except Terminated as exc:
        stopping.request(exc.message)
        all_done.wait(GRACE_SECONDS)
        raise
    for name, error in failures:
        log.error("package_failed", f"{name}: {error}", package=name)
    if failures:
        name, error = failures[0]
        if not_started:
            log.warning(
                "not_started",
                f"not started because {name!r} failed: {', '.join(not_started)}",
                packages=not_started,
            )
        if isinstance(error, PackageError):
            raise PackageFailed(name, error)
        raise PackageFailed(name, PackageError(f"{error.__class__.__name__}: {error}"))
    return [(name, results[name]) for name, _ in configs]
