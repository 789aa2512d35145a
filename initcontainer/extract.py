"""Safe, streaming extraction of tar (plain, gz, bz2, xz, zst) and zip packages.

The archive is the adversary. Every member goes through our own checks first
(`_Tree`); links and directories then also through `tarfile.data_filter` as a
second, independent opinion (see `_Tree.second_opinion` for why regular files
skip it); only then does anything touch the disk. The rules, and why:

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
- Devices, FIFOs, sockets and unknown member types: refused.
- Modes: files 0644, or 0755 when any exec bit was set; directories 0755; no
  setuid/setgid/sticky; owners are never restored. A main container running as
  any UID can read everything. File mtimes are restored (Python checks .pyc
  files against them); directory mtimes are not.
- Duplicates: the later member wins, as with tar, by unlinking the old entry
  (never writing through it), but nothing may replace a directory.
- Bombs: `max_files` counts every entry created; `max_extracted_bytes` counts the
  bytes actually written, and a member whose header claims more than what is left
  is refused before it is read. The decompressed tar stream as a whole is capped
  too (data + 4 KiB per allowed entry + 64 MiB), which bounds the time spent on
  members that are skipped, and pax/GNU long-name headers are capped at 1 MiB
  (all the headers of one member, sparse maps included, at 2 MiB; at most 16
  chained headers; global pax headers at 128 keywords and 1 MiB in all, since the
  parser copies them into every later member).
- Truncation: a compressed stream must reach its end marker (gzip also checks
  its CRC), and a tar stream must reach its end-of-archive block; otherwise
  IntegrityError, even when the cut falls on a member boundary.

Zip needs its central directory at the end of the file, so a zip is spooled to a
hidden file next to the staging directory (`<staging>-spool.zip`, removed
afterwards; a crash leaves it under the staging prefix for the next run to
clean). This is the one exception to "no copy of the archive on disk", and the
spool counts against `max_extracted_bytes` because it shares the volume.

Durability: nothing is fsynced here; see `install.py` for why none is needed.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import lzma
import os
import stat
import struct
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, cast

from initcontainer import contract, formats
from initcontainer.errors import (
    ConfigError,
    IntegrityError,
    LocalIOError,
    PackageError,
    UnsafeArchiveError,
)

COPY_CHUNK: Final = 1 << 20
"""Read and write size for file data: large copies keep Python out of the hot path."""
INPUT_CHUNK: Final = 256 << 10
"""Compressed bytes pulled from the source at a time."""
META_HEADER_LIMIT: Final = 1 << 20
"""Largest pax or GNU long-name header accepted (the parser holds them in memory)."""
MEMBER_HEADERS_LIMIT: Final = 2 * META_HEADER_LIMIT
"""All the header bytes of one member together: pax and long-name headers, GNU sparse extension
blocks and pax 1.0 sparse maps (read 512 bytes at a time, so the per-read cap never sees them)."""
MAX_CHAINED_HEADERS: Final = 16
"""Headers the parser may chain before a member (`g`, `x`, `L`, `K`...): it recurses once per header."""
GLOBAL_PAX_KEYWORDS: Final = 128
"""Distinct keywords of global pax headers: the parser copies them into every later member."""
SYMLINK_TARGET_LIMIT: Final = 4096
MAX_DEPTH: Final = 256
"""Most path components a member may have after stripping. Linux allows ~2000
(PATH_MAX), but Python's tree removal (shutil.rmtree, fwalk) recurses once per
level and fails past ~1000: a deeper tree could never be cleaned up again."""
SPOOL_SUFFIX: Final = "-spool.zip"
_STREAM_OVERHEAD_PER_ENTRY: Final = 4096
_STREAM_OVERHEAD: Final = 64 << 20
_GNU_VOLUME_LABEL: Final = b"V"


class Readable(Protocol):
    """What `extract` needs from the source: sequential reads, nothing else."""

    def read(self, size: int, /) -> bytes: ...


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


class _SourceError(Exception):
    """Wraps an exception raised by the caller's stream, so it is re-raised untouched
    instead of being mistaken for a disk error (both can be OSError)."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


def require_data_filter() -> None:
    """Refuse to run on a Python whose tarfile has no extraction filters (< 3.11.4)."""
    if not hasattr(tarfile, "data_filter"):
        raise ConfigError(
            "this Python's tarfile has no data_filter (needs Python 3.11.4+ or 3.12+); "
            "refusing to extract without it"
        )


def extract(
    stream: Readable,
    staging: Path,
    *,
    fmt: str,
    limits: Limits | None = None,
    strip_components: int = 0,
) -> ExtractStats:
    """Extract the archive read from `stream` into the existing directory `staging`.

    `fmt` is what `formats.detect_format` returned for the stream's first bytes
    (those bytes must still be readable from `stream`). The stream is read
    sequentially and only as far as the archive goes (plus read-ahead of at most
    ~1 MiB); the caller drains and hashes the rest. Exceptions raised by
    `stream.read` propagate unchanged. Raises UnsafeArchiveError, IntegrityError,
    LocalIOError or ConfigError; on error, `staging` holds a partial tree for the
    caller to discard.
    """
    require_data_filter()
    limits = limits or Limits()
    if not 0 <= strip_components <= contract.MAX_STRIP_COMPONENTS:
        raise ConfigError(f"strip_components must be 0..{contract.MAX_STRIP_COMPONENTS}")
    tree = _Tree(staging, limits, strip_components)
    try:
        if fmt == formats.ZIP:
            _extract_zip(stream, tree, staging)
        else:
            _extract_tar(_TarSource(stream, fmt, limits), tree)
    except _SourceError as exc:
        raise exc.original from None
    except OSError as exc:
        raise _local_io_error(exc) from exc
    if tree.stats.files == 0:
        raise IntegrityError("the package is empty: the archive holds no regular file")
    return tree.stats


def _local_io_error(exc: OSError) -> PackageError:
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.ENAMETOOLONG, errno.EILSEQ):
        return UnsafeArchiveError(f"the archive holds a name this filesystem cannot store{where}: {exc}")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return LocalIOError(
            f"the destination volume is full{where}: raise the emptyDir sizeLimit or the node's disk"
        )
    return LocalIOError(f"cannot write the destination{where}: {exc.strerror or exc}")


# --------------------------------------------------------------------------- tree


class _Tree:
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
                with contextlib.suppress(OverflowError, ValueError):
                    os.utime(fd, (mtime, mtime))
        finally:
            os.close(fd)
        self.stats.bytes += size
        self.regular.add(rel)
        self.stats.files += 1

    def copy_stream(self, rel: str, src: Any, fd: int, size: int) -> None:
        """Copy a member whose data only `src.read` knows (zip): count, and check the declared size."""
        written = 0
        budget = self.remaining_bytes()
        while True:
            try:
                chunk = src.read(COPY_CHUNK)
            except (PackageError, _SourceError):
                raise
            except Exception as exc:
                raise IntegrityError(f"corrupt data in member {rel!r}: {exc}") from exc
            if not chunk:
                break
            written += len(chunk)
            if written > budget:
                raise UnsafeArchiveError(
                    f"decompression bomb: extracting {rel!r} goes past the "
                    f"{self.limits.max_extracted_bytes} bytes allowed ({contract.ENV_MAX_EXTRACTED_BYTES})"
                )
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        if written != size:
            raise IntegrityError(f"member {rel!r} declares {size} bytes but holds {written}")

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
        `O_CREAT|O_EXCL|O_NOFOLLOW`), while its two `realpath()` calls per member cost
        about 40% of the extraction time of a package of many small files (bench/FINDINGS.md).
        """
        try:
            tarfile.data_filter(info, self.root)
        except tarfile.FilterError as exc:
            raise UnsafeArchiveError(f"member {info.name!r} refused by tarfile's data filter: {exc}") from exc


def _synthetic(rel: str, kind: bytes, linkname: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(rel)
    info.type = kind
    info.linkname = linkname
    info.mode = mode
    return info


# --------------------------------------------------------------------------- tar


class _Codec(Protocol):
    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    @property
    def needs_input(self) -> bool: ...

    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes: ...


class _GzipCodec:
    """zlib's gzip decoder with the needs_input/eof interface of bz2 and lzma."""

    def __init__(self) -> None:
        self._d = zlib.decompressobj(wbits=31)
        self._tail = b""
        self._full = False

    @property
    def eof(self) -> bool:
        return self._d.eof

    @property
    def unused_data(self) -> bytes:
        return self._d.unused_data

    @property
    def needs_input(self) -> bool:
        return not self._tail and not self._full

    def decompress(self, data: bytes, max_length: int = -1, /) -> bytes:
        out = self._d.decompress(self._tail + data if self._tail else data, max(max_length, 0))
        self._tail = self._d.unconsumed_tail
        self._full = 0 < max_length == len(out)
        return out


def _codec_factory(fmt: str) -> Callable[[], _Codec] | None:
    if fmt == formats.TAR:
        return None
    if fmt == formats.TAR_GZ:
        return _GzipCodec
    if fmt == formats.TAR_BZ2:
        return bz2.BZ2Decompressor
    if fmt == formats.TAR_XZ:
        return lambda: lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    if fmt == formats.TAR_ZST:
        module = formats.zstd_module()
        if module is None:
            raise ConfigError("the package is zstd-compressed but this Python cannot read zstd")
        factory: Callable[[], _Codec] = module.ZstdDecompressor
        return factory
    raise ConfigError(f"unknown archive format {fmt!r}")


class _TarSource:
    """The decompressed tar byte stream, with truncation detection and a size cap.

    Decompression is done here rather than by tarfile's `r|gz` so that a cut
    stream is always detected (tarfile's stream mode does not check the gzip
    trailer), multi-member gzip/bz2/xz/zstd files (pigz, pbzip2) work, and zstd
    works on any Python that has a zstd module.
    """

    def __init__(self, raw: Readable, fmt: str, limits: Limits) -> None:
        self._raw = raw
        self._fmt = fmt
        self._factory = _codec_factory(fmt)
        self._codec = self._factory() if self._factory else None
        self._count = 0
        self._cap = (
            limits.max_extracted_bytes + _STREAM_OVERHEAD_PER_ENTRY * limits.max_files + _STREAM_OVERHEAD
        )

    def _raw_read(self, size: int) -> bytes:
        try:
            return self._raw.read(size)
        except PackageError:
            raise
        except Exception as exc:
            raise _SourceError(exc) from exc

    def _counted(self, data: bytes) -> bytes:
        self._count += len(data)
        if self._count > self._cap:
            raise UnsafeArchiveError(
                f"decompression bomb: the tar stream expands past {self._cap} bytes "
                f"(from {contract.ENV_MAX_EXTRACTED_BYTES} and {contract.ENV_MAX_FILES})"
            )
        return data

    def _step(self, codec: _Codec, size: int) -> bytes:
        try:
            if codec.needs_input:
                data = self._raw_read(INPUT_CHUNK)
                if not data:
                    raise IntegrityError(
                        f"the {self._fmt} stream is truncated: it ends before its end marker"
                    )
                return codec.decompress(data, size)
            return codec.decompress(b"", size)
        except (PackageError, _SourceError):
            raise
        except Exception as exc:
            raise IntegrityError(f"corrupt {self._fmt} data: {exc}") from exc

    def read(self, size: int = -1, /) -> bytes:
        """Up to `size` bytes of tar data (b"" at the end); what `_TarReader` pulls."""
        if size is None or size < 0:
            size = COPY_CHUNK
        if self._codec is None:
            return self._counted(self._raw_read(size))
        while True:
            if self._codec.eof:
                leftover = self._codec.unused_data or self._raw_read(INPUT_CHUNK)
                if not leftover:
                    return b""
                assert self._factory is not None
                self._codec = self._factory()
                out = self._step_with(leftover, size)
            else:
                out = self._step(self._codec, size)
            if out:
                return self._counted(out)

    def _step_with(self, data: bytes, size: int) -> bytes:
        assert self._codec is not None
        try:
            return self._codec.decompress(data, size)
        except Exception as exc:
            raise IntegrityError(f"corrupt {self._fmt} data after the first member: {exc}") from exc

    def finish(self) -> None:
        """After the tar end marker: run the current compressed member to its end.

        That checks the gzip CRC and catches a stream cut after the last tar
        block. Trailing data after that member is left to the caller.
        """
        codec = self._codec
        if codec is None:
            return
        while not codec.eof:
            self._counted(self._step(codec, COPY_CHUNK))


_HEADER_ERRORS: Final = {  # tarfile's header errors, by name: typeshed does not list these classes
    "EmptyHeaderError": "the data ends without the tar end-of-archive block (truncated)",
    "TruncatedHeaderError": "the data ends inside a tar header (truncated)",
    "InvalidHeaderError": "a member header is corrupt (a size field may be lying)",
}


def _count_chained(archive: Any) -> None:
    reader = cast(_TarReader, archive)
    reader.chained += 1
    if reader.chained > MAX_CHAINED_HEADERS:
        raise IntegrityError(f"more than {MAX_CHAINED_HEADERS} tar headers chained before one member")


class _TarInfo(tarfile.TarInfo):
    """Counts the headers tarfile's parser chains for one member (it recurses once per header).

    Pythons with the 2025 tarfile fixes (3.13.4+, the image's) recurse through the private
    `_fromtarfile` instead of `fromtarfile`, so both are counted there (the first header twice).
    """

    @classmethod
    def fromtarfile(cls, archive: tarfile.TarFile) -> _TarInfo:
        _count_chained(archive)
        return super().fromtarfile(archive)

    if hasattr(tarfile.TarInfo, "_fromtarfile"):

        @classmethod
        def _fromtarfile(cls, archive: tarfile.TarFile, **kwargs: Any) -> _TarInfo:
            _count_chained(archive)
            result: _TarInfo = super()._fromtarfile(archive, **kwargs)  # type: ignore[misc]
            return result


class _GlobalPaxHeaders(dict[str, str]):
    """tarfile's global pax keywords (`g` headers): the parser copies them into every later member,
    so their number and size are bounded (it sets them one by one with `[]=`)."""

    def __init__(self) -> None:
        super().__init__()
        self.size = 0

    def __setitem__(self, key: str, value: str) -> None:
        old = self.get(key)
        if old is None and len(self) >= GLOBAL_PAX_KEYWORDS:
            raise UnsafeArchiveError(f"the global pax headers hold more than {GLOBAL_PAX_KEYWORDS} keywords")
        self.size += len(value) - (len(old) if old is not None else -len(key))
        if self.size > META_HEADER_LIMIT:
            raise UnsafeArchiveError(f"the global pax headers hold more than {META_HEADER_LIMIT} bytes")
        super().__setitem__(key, value)


class _TarReader:
    """The tar stream as headers and member data, served straight from the source's chunks.

    Headers are still parsed by the standard library (`TarInfo.fromtarfile`, which
    handles pax, GNU long names and sparse maps and says where the next header
    starts); this class stands in for the `TarFile` it reads from (`fileobj`,
    `encoding`, `errors`, `pax_headers`, `offset` are what that parser uses). Member
    data goes from the chunks to the file as memoryview slices: tarfile's stream
    mode copied every byte twice and ran a Python loop per 64 KiB (bench/FINDINGS.md).
    """

    def __init__(self, source: _TarSource) -> None:
        self._source = source
        self._buf = b""
        self._pos = 0
        self._base = 0  # stream offset of self._buf[0]
        self.fileobj = self
        self.encoding = tarfile.ENCODING
        self.errors = "surrogateescape"
        self.pax_headers: dict[str, str] = _GlobalPaxHeaders()
        self.offset = 0  # set by the parser: where the next header starts
        self.chained = 0  # headers parsed for the current member (see _TarInfo)
        self._header_bytes = 0  # bytes read by the parser for the current member

    def tell(self) -> int:
        return self._base + self._pos

    def _advance(self) -> bool:
        """Replace the exhausted buffer with the next chunk; False at the end of the stream."""
        chunk = self._source.read(COPY_CHUNK)
        self._base += len(self._buf)
        self._buf, self._pos = chunk, 0
        return bool(chunk)

    def read(self, size: int) -> bytes:
        """Up to `size` bytes (fewer only at the end): what the header parser reads."""
        if size > META_HEADER_LIMIT:
            # Only headers are read this way; tarfile would hold a pax or long-name header in memory.
            raise UnsafeArchiveError(f"a tar metadata header claims {size} bytes (limit {META_HEADER_LIMIT})")
        if size < 0:  # a base-256 size: the parser would move backwards, and could loop forever
            raise IntegrityError(f"a tar metadata header declares {size} bytes")
        self._header_bytes += size
        if self._header_bytes > MEMBER_HEADERS_LIMIT:
            raise UnsafeArchiveError(
                f"the headers of one tar member take more than {MEMBER_HEADERS_LIMIT} bytes "
                "(pax, long-name or sparse-map headers)"
            )
        end = self._pos + size
        if end <= len(self._buf):
            self._pos = end
            return self._buf[end - size : end]
        parts = [self._buf[self._pos :]]
        missing = size - len(parts[0])
        self._pos = len(self._buf)
        while missing and self._advance():
            take = min(missing, len(self._buf))
            parts.append(self._buf[:take])
            self._pos = take
            missing -= take
        return b"".join(parts)

    def copy_to(self, fd: int, size: int, rel: str) -> None:
        """Write the next `size` bytes of member data to `fd`."""
        while size:
            if self._pos == len(self._buf) and not self._advance():
                raise IntegrityError(f"the tar archive is truncated inside member {rel!r}")
            take = min(size, len(self._buf) - self._pos)
            view = memoryview(self._buf)[self._pos : self._pos + take]
            while view:
                view = view[os.write(fd, view) :]
            self._pos += take
            size -= take

    def skip_to(self, offset: int, rel: str) -> None:
        """Discard data up to stream offset `offset` (padding, members not extracted)."""
        while True:
            missing = offset - self.tell()
            if missing < 0:
                raise IntegrityError(f"the tar headers around {rel!r} are inconsistent")
            left = len(self._buf) - self._pos
            if missing <= left:
                self._pos += missing
                return
            self._pos = len(self._buf)
            if not self._advance():
                raise IntegrityError(f"the tar archive is truncated after member {rel!r}")

    def next(self) -> tarfile.TarInfo | None:
        """The next member, None at the end-of-archive block; IntegrityError for anything else."""
        first = self.tell() == 0
        self.chained = self._header_bytes = 0
        try:
            # The parser only needs the attributes this class provides (see the class docstring).
            return _TarInfo.fromtarfile(self)  # type: ignore[arg-type]
        except tarfile.TarError as exc:
            if type(exc).__name__ == "EOFHeaderError":  # the end-of-archive block: complete
                return None
            if first:
                raise IntegrityError(f"not a valid tar archive, or corrupt/truncated: {exc}") from exc
            detail = _HEADER_ERRORS.get(type(exc).__name__, str(exc))
            raise IntegrityError(f"the tar archive is incomplete or corrupt: {detail}") from exc
        except (PackageError, _SourceError, MemoryError):
            raise
        except Exception as exc:
            # The parser trusts some fields: int() of pax sparse records, buf[504] of a short GNU
            # sparse block, unpacking a pax 1.0 map line... Whatever it trips on is the archive's fault.
            raise IntegrityError(f"a tar member header is corrupt: {type(exc).__name__}: {exc}") from exc


def _extract_tar(source: _TarSource, tree: _Tree) -> None:
    reader = _TarReader(source)
    while (member := reader.next()) is not None:
        if reader.tell() != member.offset_data:
            raise IntegrityError(f"the tar headers of member {member.name!r} are inconsistent")
        _tar_member(reader, member, tree)
        reader.skip_to(reader.offset, member.name)
    source.finish()


def _tar_member(reader: _TarReader, member: tarfile.TarInfo, tree: _Tree) -> None:
    if member.size < 0:  # base-256 size fields can be negative
        raise IntegrityError(f"member {member.name!r} declares {member.size} bytes")
    if member.type == _GNU_VOLUME_LABEL:
        return
    if member.ischr() or member.isblk():
        raise UnsafeArchiveError(f"member {member.name!r} is a device file: refused")
    if member.isfifo():
        raise UnsafeArchiveError(f"member {member.name!r} is a FIFO: refused")
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafeArchiveError(f"member {member.name!r} has an unsupported type {member.type!r}: refused")
    rel = tree.relpath(member.name)
    if member.islnk():
        target = tree.relpath(member.linkname, "hard link target")
        if rel is None:
            return
        if target is None:
            raise IntegrityError(
                f"hard link {member.name!r} -> {member.linkname!r}: strip-components removes the target"
            )
        tree.second_opinion(member.replace(name=rel, linkname=target, deep=False))
        tree.add_hardlink(rel, target)
        return
    if rel is None:
        return
    if member.issym():
        tree.check_symlink_target(rel, member.linkname)
        tree.second_opinion(member.replace(name=rel, deep=False))
        tree.add_symlink(rel, member.linkname)
    elif member.isdir():
        tree.second_opinion(member.replace(name=rel, deep=False))
        tree.add_dir(rel)
    elif member.sparse is not None:
        write = _sparse_writer(reader, member, rel, stored=reader.offset - reader.tell())
        tree.add_file(rel, member.size, member.mode, member.mtime, write)
    else:
        size = member.size
        tree.add_file(rel, size, member.mode, member.mtime, lambda fd: reader.copy_to(fd, size, rel))


def _sparse_writer(
    reader: _TarReader, member: tarfile.TarInfo, rel: str, stored: int
) -> Callable[[int], None]:
    """Write a sparse member's data segments at their offsets; the gaps stay holes (read as zeros).

    The map must be ordered, inside the file's size, and describe no more data than the archive holds.
    """
    pairs = cast(list[tuple[int, int]], member.sparse)  # typeshed says bytes; tarfile makes pairs
    # GNU maps end with a (size, 0) entry and may be padded with (0, 0): empty entries carry nothing.
    segments = [(offset, length) for offset, length in pairs if length]
    end = 0
    for offset, length in segments:
        if offset < end or length < 0 or offset + length > member.size:
            raise IntegrityError(f"member {rel!r} has an invalid sparse map")
        end = offset + length
    if sum(length for _, length in segments) > stored:
        raise IntegrityError(f"member {rel!r}: its sparse map describes more data than the archive holds")

    def write(fd: int) -> None:
        for offset, length in segments:
            os.lseek(fd, offset, os.SEEK_SET)
            reader.copy_to(fd, length, rel)
        os.ftruncate(fd, member.size)

    return write


# --------------------------------------------------------------------------- zip

_LOCAL_HEADER: Final = struct.Struct("<4sHHHHHIIIHH")
_LOCAL_MAGIC: Final = b"PK\x03\x04"


def _spool(stream: Readable, path: Path, tree: _Tree) -> int:
    """Copy the whole stream to `path`, within the byte budget."""
    size = 0
    budget = tree.remaining_bytes()
    with open(path, "xb", buffering=0) as out:
        while True:
            try:
                chunk = stream.read(COPY_CHUNK)
            except PackageError:
                raise
            except Exception as exc:
                raise _SourceError(exc) from exc
            if not chunk:
                return size
            size += len(chunk)
            if size > budget:
                raise UnsafeArchiveError(
                    f"the zip file is larger than the {tree.limits.max_extracted_bytes} bytes allowed "
                    f"({contract.ENV_MAX_EXTRACTED_BYTES}; a zip is spooled to the volume first)"
                )
            out.write(chunk)


def _extract_zip(stream: Readable, tree: _Tree, staging: Path) -> None:
    spool = staging.parent / f"{staging.name}{SPOOL_SUFFIX}"
    try:
        tree.reserved_bytes = _spool(stream, spool, tree)
        try:
            archive = zipfile.ZipFile(spool)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
            raise IntegrityError(f"not a valid zip archive, or corrupt/truncated: {exc}") from exc
        with archive:
            infos = archive.infolist()
            if len(infos) > tree.limits.max_files:
                raise UnsafeArchiveError(
                    f"decompression bomb: the zip lists {len(infos)} entries, more than "
                    f"{tree.limits.max_files} ({contract.ENV_MAX_FILES})"
                )
            declared = sum(i.file_size for i in infos)
            if declared > tree.remaining_bytes():
                raise UnsafeArchiveError(
                    f"decompression bomb: the zip declares {declared} bytes, more than the "
                    f"{tree.remaining_bytes()} bytes left of {contract.ENV_MAX_EXTRACTED_BYTES}"
                )
            _check_zip_layout(spool, infos, archive.start_dir)
            for info in infos:
                _zip_member(archive, info, tree)
    finally:
        with contextlib.suppress(FileNotFoundError):
            spool.unlink()


def _check_zip_layout(spool: Path, infos: list[zipfile.ZipInfo], central_dir: int) -> None:
    """Every entry's local header + data must lie apart and before the central directory.

    Overlapping entries are the CVE-2024-0450 class of zip bombs (one compressed
    blob referenced many times); Python only checks this from 3.11.8/3.12.2.
    """
    with open(spool, "rb") as f:
        previous_end, previous_name = 0, ""
        for info in sorted(infos, key=lambda i: i.header_offset):
            if info.header_offset < previous_end:
                raise UnsafeArchiveError(
                    f"zip entries {previous_name!r} and {info.filename!r} overlap "
                    "(overlapping-entry zip bomb, CVE-2024-0450 class)"
                )
            f.seek(info.header_offset)
            header = f.read(_LOCAL_HEADER.size)
            if len(header) != _LOCAL_HEADER.size or header[:4] != _LOCAL_MAGIC:
                raise IntegrityError(f"zip entry {info.filename!r} has no valid local header")
            name_len, extra_len = _LOCAL_HEADER.unpack(header)[-2:]
            data_end = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len + info.compress_size
            if info.flag_bits & 0x08:
                data_end += 12  # data descriptor, at least crc + two 32-bit sizes
            if data_end > central_dir:
                raise UnsafeArchiveError(
                    f"zip entry {info.filename!r} runs into the central directory (corrupt or overlapping)"
                )
            previous_end, previous_name = data_end, info.filename


def _zip_mtime(info: zipfile.ZipInfo) -> float | None:
    try:
        return time.mktime((*info.date_time, 0, 0, -1))
    except (OverflowError, ValueError):
        return None


def _zip_name(info: zipfile.ZipInfo) -> str:
    """The entry name as unzip writes it on Linux.

    Without the UTF-8 flag, zipfile decodes names as cp437, but Info-ZIP and most
    tools store the raw (UTF-8) bytes of the name: take those bytes back as-is.
    DOS separators count as separators, as in unzip, so `..\\` is traversal too.
    """
    name = info.filename
    if not info.flag_bits & 0x800:
        with contextlib.suppress(UnicodeEncodeError):
            name = name.encode("cp437").decode("utf-8", "surrogateescape")
    return name.replace("\\", "/")


def _zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, tree: _Tree) -> None:
    name = _zip_name(info)
    if info.flag_bits & 0x01:
        raise UnsafeArchiveError(f"zip entry {name!r} is encrypted: the init container cannot decrypt it")
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK):
        raise UnsafeArchiveError(f"zip entry {name!r} is a device, FIFO or socket (mode {mode:o}): refused")
    rel = tree.relpath(name, "zip entry")
    if rel is None:
        return
    if kind == stat.S_IFLNK:
        if info.file_size > SYMLINK_TARGET_LIMIT:
            raise UnsafeArchiveError(f"zip symlink {name!r} has a {info.file_size}-byte target")
        target = _zip_read_small(archive, info).decode("utf-8", "surrogateescape")
        tree.check_symlink_target(rel, target)
        tree.second_opinion(_synthetic(rel, tarfile.SYMTYPE, target))
        tree.add_symlink(rel, target)
    elif name.endswith("/") or kind == stat.S_IFDIR:
        tree.second_opinion(_synthetic(rel, tarfile.DIRTYPE, mode=0o755))
        tree.add_dir(rel)
    else:
        tree.claim(rel, info.file_size)
        try:
            src = archive.open(info)
        except (zipfile.BadZipFile, NotImplementedError, EOFError) as exc:
            raise IntegrityError(f"zip entry {name!r} cannot be read: {exc}") from exc
        with src:
            size = info.file_size
            tree.add_file(
                rel,
                size,
                mode if kind else 0o644,
                _zip_mtime(info),
                lambda fd: tree.copy_stream(rel, src, fd, size),
            )


def _zip_read_small(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        return archive.read(info)
    except Exception as exc:
        raise IntegrityError(f"zip entry {info.filename!r} cannot be read: {exc}") from exc
