"""The destination tree: every entry an archive creates goes through `Tree`, after its checks.

The archive is the adversary. The rules, and why:

- Names: no absolute paths, no `..` component anywhere, no NUL, at most
  MAX_DEPTH components (a deeper tree could not be removed again). Leading
  components are stripped like GNU tar (`./` counts as a component); a member
  left with no name is skipped, as tar does. Top-level names reserved for the
  init container (the marker, `.package-staging-*`) are refused.
- Parent directories are created by us. A member whose path goes through a
  symlink or a file is refused: with that rule, no write can ever follow a link,
  whatever the links point to, and no per-component `openat` dance is needed.
  Directories we created are remembered, so the common case costs no `lstat`.
- Symlinks: the target must be relative, made of `..` components followed only
  by ordinary ones (`../../lib/x` yes, `a/../../x` no: going down then up may
  pass through another link), and the `..` may not climb above the destination.
  Since every parent is a real directory, each link provably resolves inside the
  destination, and so does any chain of them.
- Hard links: only to a regular file already extracted from this archive (never
  a symlink, never an outside path).
- Modes: files 0644, or 0755 when any exec bit was set; directories 0755; no
  setuid/setgid/sticky; owners are never restored. A main container running as
  any UID can read everything. File mtimes are restored (Python checks .pyc
  files against them); directory mtimes are not.
- Duplicates: the later member wins, as with tar, by unlinking the old entry
  (never writing through it), but nothing may replace a directory.
- Bombs: `max_files` counts every entry created; `max_extracted_bytes` counts the
  bytes actually written, and a member whose header claims more than what is left
  is refused before it is read.

Links and directories also go through `tarfile.data_filter` as a second,
independent opinion (`Tree.second_opinion` says why regular files skip it).
The tree is a staging directory (`install.py`): nothing here is visible to the
application until the whole package is in and verified.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from initcontainer import contract
from initcontainer.errors import UnsafeArchiveError

MAX_DEPTH: Final = 256
"""Most path components a member may have after stripping. Linux allows far more
(PATH_MAX), but Python's tree removal (shutil.rmtree, fwalk) recurses once per
level and fails long before: a deeper tree could never be cleaned up again."""


@dataclass(frozen=True)
class Limits:
    """Bomb defences: entries created and bytes written (zip: plus its spool)."""

    max_extracted_bytes: int = contract.DEFAULT_MAX_EXTRACTED_BYTES
    max_files: int = contract.DEFAULT_MAX_FILES


@dataclass
class ExtractStats:
    """What was created; `files` counts regular files and hard links."""

    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes: int = 0

    @property
    def entries(self) -> int:
        return self.files + self.dirs + self.symlinks


class Tree:
    """The destination: every creation goes through here, after the checks."""

    def __init__(self, root: Path, limits: Limits, strip: int) -> None:
        self.root = os.path.realpath(root)
        self.limits = limits
        self.strip = strip
        self.stats = ExtractStats()
        self.reserved_bytes = 0
        self.dirs: set[str] = {""}
        self.regular: set[str] = set()
        umask = os.umask(0o022)
        os.umask(umask)
        self.umask = umask

    # -- names

    def relpath(self, raw: str, what: str = "member") -> str | None:
        """Normalized path relative to the root, or None when stripping leaves nothing."""
        if "\x00" in raw:
            raise UnsafeArchiveError(f"{what} {raw!r} has a NUL byte in its name")
        if raw.startswith("/"):
            raise UnsafeArchiveError(f"{what} {raw!r} has an absolute path")
        parts = [p for p in raw.split("/") if p]
        if ".." in parts:
            raise UnsafeArchiveError(f"{what} {raw!r} has a '..' component (path traversal)")
        parts = [p for p in parts[self.strip :] if p != "."]
        if not parts:
            return None
        if len(parts) > MAX_DEPTH:
            raise UnsafeArchiveError(f"{what} {raw[:200]!r}... is nested deeper than {MAX_DEPTH} directories")
        top = parts[0]
        if top == contract.MARKER_NAME or top.startswith(contract.STAGING_PREFIX):
            raise UnsafeArchiveError(f"{what} {raw!r} uses a name reserved for the init container")
        return "/".join(parts)

    def _path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    # -- limits

    def _count_entry(self, rel: str) -> None:
        if self.stats.entries >= self.limits.max_files:
            raise UnsafeArchiveError(
                f"decompression bomb: more than {self.limits.max_files} entries "
                f"({contract.ENV_MAX_FILES}) at {rel!r}"
            )

    def remaining_bytes(self) -> int:
        return self.limits.max_extracted_bytes - self.reserved_bytes - self.stats.bytes

    def claim(self, rel: str, size: int) -> None:
        """Refuse a member whose header alone already breaks the byte budget."""
        if size > self.remaining_bytes():
            raise UnsafeArchiveError(
                f"decompression bomb: {rel!r} claims {size} bytes, more than the "
                f"{self.limits.max_extracted_bytes} bytes allowed ({contract.ENV_MAX_EXTRACTED_BYTES})"
            )

    # -- parents

    def _ensure_parent(self, rel: str) -> None:
        parent = rel.rpartition("/")[0]
        if parent in self.dirs:
            return
        parts = parent.split("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if prefix in self.dirs:
                continue
            path = self._path(prefix)
            try:
                self._count_entry(prefix)
                os.mkdir(path, 0o755)
            except FileExistsError:
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    raise UnsafeArchiveError(
                        f"member {rel!r} goes through the symlink {prefix!r}: refused "
                        "(nothing is ever written through a link)"
                    ) from None
                if not stat.S_ISDIR(st.st_mode):
                    raise UnsafeArchiveError(
                        f"member {rel!r} needs {prefix!r} to be a directory, but it is a file"
                    ) from None
            else:
                self._fix_mode_path(path, 0o755)
                self.stats.dirs += 1
            self.dirs.add(prefix)

    def _fix_mode_path(self, path: str, perm: int) -> None:
        if perm & self.umask:
            os.chmod(path, perm, follow_symlinks=False)

    def _make_room(self, rel: str, path: str) -> None:
        """Remove an earlier non-directory entry at `path` (later member wins)."""
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            raise UnsafeArchiveError(f"member {rel!r} would replace a directory with a non-directory")
        os.unlink(path)
        self.regular.discard(rel)

    def _check_not_dir(self, rel: str) -> None:
        if rel in self.dirs:
            raise UnsafeArchiveError(f"member {rel!r} would replace a directory with a non-directory")

    # -- creations

    def add_dir(self, rel: str) -> None:
        self._count_entry(rel)
        self._ensure_parent(rel)
        if rel in self.dirs:
            return
        path = self._path(rel)
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(path)
                self.regular.discard(rel)
                os.mkdir(path, 0o755)
        self._fix_mode_path(path, 0o755)
        self.dirs.add(rel)
        self.stats.dirs += 1

    def add_file(
        self, rel: str, size: int, mode: int, mtime: float | None, fill: Callable[[int], None]
    ) -> None:
        """Create `rel` with `fill(fd)`, which writes exactly `size` bytes or raises."""
        self._count_entry(rel)
        self.claim(rel, size)
        self._ensure_parent(rel)
        self._check_not_dir(rel)
        perm = 0o755 if mode & 0o111 else 0o644
        path = self._path(rel)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, perm)
        except FileExistsError:
            self._make_room(rel, path)
            fd = os.open(path, flags, perm)
        try:
            fill(fd)
            if perm & self.umask:
                os.fchmod(fd, perm)
            if mtime is not None:
                try:  # noqa: SIM105 - contextlib.suppress costs a context manager per file
                    os.utime(fd, (mtime, mtime))
                except (OverflowError, ValueError):
                    pass
        finally:
            os.close(fd)
        self.stats.bytes += size
        self.regular.add(rel)
        self.stats.files += 1

    def check_symlink_target(self, rel: str, target: str) -> None:
        """Prove the link resolves inside the root (see the module docstring)."""
        if not target or "\x00" in target:
            raise UnsafeArchiveError(f"symlink {rel!r} has an empty or invalid target")
        if target.startswith("/"):
            raise UnsafeArchiveError(f"symlink {rel!r} -> {target!r} has an absolute target")
        parts = [p for p in target.split("/") if p and p != "."]
        ups = 0
        while ups < len(parts) and parts[ups] == "..":
            ups += 1
        if ".." in parts[ups:]:
            raise UnsafeArchiveError(
                f"symlink {rel!r} -> {target!r} goes down then up ('..' after a name), "
                "which may pass through another link: refused"
            )
        if ups > rel.count("/"):
            raise UnsafeArchiveError(f"symlink {rel!r} -> {target!r} points outside the destination")

    def add_symlink(self, rel: str, target: str) -> None:
        self._count_entry(rel)
        self.check_symlink_target(rel, target)
        self._ensure_parent(rel)
        self._check_not_dir(rel)
        path = self._path(rel)
        try:
            os.symlink(target, path)
        except FileExistsError:
            self._make_room(rel, path)
            os.symlink(target, path)
        self.regular.discard(rel)
        self.stats.symlinks += 1

    def add_hardlink(self, rel: str, target: str) -> None:
        self._count_entry(rel)
        if target not in self.regular:
            raise UnsafeArchiveError(
                f"hard link {rel!r} -> {target!r}: the target is not a regular file "
                "extracted earlier from this archive"
            )
        if target == rel:
            return
        self._ensure_parent(rel)
        self._check_not_dir(rel)
        src, dst = self._path(target), self._path(rel)
        try:
            os.link(src, dst, follow_symlinks=False)
        except FileExistsError:
            self._make_room(rel, dst)
            os.link(src, dst, follow_symlinks=False)
        self.regular.add(rel)
        self.stats.files += 1

    def second_opinion(self, info: tarfile.TarInfo) -> None:
        """`tarfile.data_filter` on the already-normalized member: defence in depth.

        Asked for links and directories, the members whose safety depends on how paths
        resolve on disk. Regular files skip it: their safety rests on checks the filter
        cannot strengthen (a normalized name with no `..`, parents that `_ensure_parent`
        made or lstat-checked as real directories, which nothing may later replace, and
        `O_CREAT|O_EXCL|O_NOFOLLOW`), while its two `realpath()` calls per member are a large
        share of the extraction time of a package of many small files (bench/FINDINGS.md).
        """
        try:
            tarfile.data_filter(info, self.root)
        except tarfile.FilterError as exc:
            raise UnsafeArchiveError(f"member {info.name!r} refused by tarfile's data filter: {exc}") from exc
        except OSError as exc:
            # Python 3.13.4+ resolves link targets strictly: a symlink loop raises ELOOP, which is not a
            # verdict (a loop resolves nowhere, so it points nowhere outside) and was no fault of the
            # volume. The lexical rules above already placed the link inside; GNU tar installs it too.
            if exc.errno != errno.ELOOP:
                raise


def synthetic(rel: str, kind: bytes, linkname: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(rel)
    info.type = kind
    info.linkname = linkname
    info.mode = mode
    return info
