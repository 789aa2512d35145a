"""Several packages in one init container: PACKAGE_LIST (and the unnamed PACKAGE_URL) installed concurrently.

Each package goes through exactly the single-package path (`main.run`: its own staging directory, checksum,
atomic promote, idempotent re-run), so a failing package never leaves part of itself visible, and packages
already promoted stay whole. Every package's config is built by `load_config` from the shared variables
plus its own, so one set of rules validates them all before any download starts.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from initcontainer import contract
from initcontainer.config import Config, load_config
from initcontainer.errors import ConfigError, PackageError
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
            cfg = load_config({**base, **own})
        except ConfigError as exc:
            raise ConfigError(f"package {entry.name!r}: {exc.message}") from None
        if not entry.credentials_dir:
            # Without its own Secret a package gets none: never the unnamed package's (the default directory).
            cfg = dataclasses.replace(cfg, credentials=None, ca_pem=None)
        configs.append((entry.name, cfg))
    return configs, concurrency


class PackageFailed(PackageError):
    """One package failed: its class's exit code and reason, its name first in the message."""

    def __init__(self, name: str, error: PackageError) -> None:
        super().__init__(f"package {name!r}: {error.message}")
        self.exit_code, self.reason, self.package = error.exit_code, error.reason, name


def run_all(configs: list[tuple[str, Config]], log: Logger, concurrency: int) -> list[tuple[str, Any]]:
    """Install every package, at most `concurrency` at once; raise PackageFailed for the first that failed.

    All packages run to their end (a thread cannot be stopped half-way without leaving its staging behind;
    `run` discards it on failure), so the others are either promoted whole or not visible at all.
    """
    from initcontainer.main import run

    started = time.monotonic()

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

    with ThreadPoolExecutor(max_workers=min(concurrency, len(configs)), thread_name_prefix="package") as pool:
        futures = [(name, pool.submit(one, name, cfg)) for name, cfg in configs]
    results: list[tuple[str, Any]] = []
    failures: list[tuple[str, BaseException]] = []
    for name, future in futures:
        error = future.exception()
        if error is None:
            results.append((name, future.result()))
        else:
            failures.append((name, error))
    for name, error in failures:
        log.error("package_failed", f"{name}: {error}", package=name)
    if failures:
        name, error = failures[0]
        if isinstance(error, PackageError):
            raise PackageFailed(name, error)
        raise PackageFailed(name, PackageError(f"{error.__class__.__name__}: {error}"))
    return results
