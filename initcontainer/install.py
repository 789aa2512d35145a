"""Atomic, idempotent installation into the shared volume.

`dest` is the emptyDir mount: it cannot be renamed or replaced, so the package
is extracted into a hidden staging directory inside it and its top-level
entries are renamed into place once the checksum has been verified. The
completion marker is written last. Every crash therefore leaves one of:

- no marker: the next run removes everything (staging leftovers and any
  half-promoted content) and starts clean;
- a marker: the install is complete.

Durability: nothing is fsynced except the marker. A container crash (OOM kill,
eviction of the container, not the pod) keeps the page cache, so what the next
run sees is exactly what was written. Only a node crash can lose unsynced data,
and an emptyDir survives that only if the pod is restarted on the same node
after the reboot; for that case the marker records the kernel boot id, and an
install made under another boot counts as absent (the package is fetched again).
This avoids one fsync per file, which costs minutes on packages with thousands
of small files. Where the boot id cannot be read, `os.sync()` runs once before
the marker is written.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import stat
from pathlib import Path
from typing import Any, Final

from initcontainer import contract, hints, stopping
from initcontainer.errors import LocalIOError
from initcontainer.unzip import SPOOL_SUFFIX

BOOT_ID_PATH: Final = "/proc/sys/kernel/random/boot_id"
BOOT_ID_KEY: Final = "bootId"
_MARKER_TMP: Final = f"{contract.STAGING_PREFIX}marker.tmp"


def boot_id() -> str | None:
    """The kernel's id for this boot, or None where /proc does not tell."""
    try:
        with open(BOOT_ID_PATH, encoding="ascii") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _io_error(action: str, exc: OSError, dest: Path | None = None) -> LocalIOError:
    if dest is not None and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return LocalIOError(hints.full_volume(exc, dest))
    where = f" {exc.filename}" if exc.filename else ""
    return LocalIOError(f"cannot {action}{where}: {exc.strerror or exc}")


def _remove(path: Path) -> None:
    """Remove a file, link or tree without following links (shutil.rmtree is fd-based)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        try:
            shutil.rmtree(path)
        except RecursionError:
            # shutil.rmtree recurses once per level (Python < 3.14); a tree deeper than
            # the recursion limit would otherwise stay forever and fail every restart.
            _remove_deep(path)
    else:
        path.unlink()


def _remove_deep(top: Path) -> None:
    """Iterative, depth-unlimited tree removal; never follows a link (lstat-based)."""
    stack = [os.fspath(top)]
    while stack:
        current = stack[-1]
        subdirs: list[str] = []
        with os.scandir(current) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.path)
                else:
                    os.unlink(entry.path)
        if subdirs:
            stack.extend(subdirs)
        else:
            os.rmdir(current)
            stack.pop()


def _is_ours(name: str) -> bool:
    return name == contract.MARKER_NAME or name.startswith(contract.STAGING_PREFIX)


def _check_dest(dest: Path) -> None:
    if os.path.realpath(dest) == "/":
        raise LocalIOError("refusing to install into / (check PACKAGE_DEST)")


def installed_marker(dest: Path) -> dict[str, Any] | None:
    """The marker of a complete install in `dest`, or None.

    None also when the marker is unreadable or was written under another boot
    (its content may not have reached the disk before a node crash).
    """
    try:
        with open(dest / contract.MARKER_NAME, encoding="utf-8") as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict):
        return None
    written_under = marker.get(BOOT_ID_KEY)
    if written_under is not None and written_under != boot_id():
        return None
    return marker


def prepare_staging(dest: Path) -> Path:
    """Create a fresh private staging directory in `dest` and return it.

    First removes what crashed runs left: every staging entry, and, when there
    is no marker, all other content too (a promote that died half-way).
    """
    _check_dest(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        complete = installed_marker(dest) is not None
        for entry in os.scandir(dest):
            if entry.name.startswith(contract.STAGING_PREFIX) or (
                not complete and entry.name != contract.MARKER_NAME
            ):
                _remove(Path(entry.path))
        if not complete:
            _remove(dest / contract.MARKER_NAME)
        staging = dest / f"{contract.STAGING_PREFIX}{secrets.token_hex(8)}"
        staging.mkdir(mode=0o700)
    except OSError as exc:
        raise _io_error("prepare the destination", exc, dest) from exc
    return staging


def remove_leftovers(dest: Path) -> None:
    """Remove what crashed runs left (staging dirs, zip spools, marker temp files) and nothing else.

    For the already-installed path: a run killed while replacing this package with
    another one leaves a staging directory next to the complete install.
    """
    try:
        for entry in os.scandir(dest):
            if entry.name.startswith(contract.STAGING_PREFIX):
                _remove(Path(entry.path))
    except OSError as exc:
        raise _io_error("clean the destination", exc) from exc


def discard(staging: Path) -> None:
    """Remove a staging directory and its zip spool; never raises for missing ones."""
    for path in (staging, staging.parent / f"{staging.name}{SPOOL_SUFFIX}"):
        # On failure the next run's prepare_staging retries; never hide the original error.
        with contextlib.suppress(OSError):
            _remove(path)


def _write_marker(dest: Path, marker: dict[str, Any]) -> None:
    tmp = dest / _MARKER_TMP
    data = json.dumps(marker, sort_keys=True, indent=2).encode() + b"\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
        os.fchmod(fd, 0o644)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, dest / contract.MARKER_NAME)
    dir_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def promote(staging: Path, dest: Path, marker: dict[str, Any]) -> None:
    """Make the staged package the content of `dest`, then write `marker` last.

    Order: drop the old marker, remove all old content, rename each staged
    top-level entry into `dest`, remove staging, write the marker atomically.
    """
    stopping.check()  # a worker stopped by SIGTERM promotes nothing more
    _check_dest(dest)
    try:
        _remove(dest / contract.MARKER_NAME)
        for entry in os.scandir(dest):
            if not _is_ours(entry.name):
                _remove(Path(entry.path))
        for entry in os.scandir(staging):
            os.rename(entry.path, dest / entry.name)
        staging.rmdir()
        # The mount point itself must let any UID in; kubelet makes it 0777,
        # but a PACKAGE_DEST below the mount is ours to fix.
        mode = stat.S_IMODE(dest.stat().st_mode)
        if mode & 0o055 != 0o055:
            with contextlib.suppress(PermissionError):
                dest.chmod(mode | 0o755)
        record = dict(marker)
        current = boot_id()
        if current is None:
            os.sync()
        else:
            record[BOOT_ID_KEY] = current
        _write_marker(dest, record)
    except OSError as exc:
        raise _io_error("install the package into the destination", exc, dest) from exc
