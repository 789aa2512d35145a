"""The tar reader: headers parsed by `ustar.py` or the standard library, data copied straight to disk.

A header block in the plain grammar of `ustar.py` (ustar/GNU, octal numbers, a
regular file, directory or link, the whole block in the current chunk) is
parsed there, and a pax `x` header with only common keys (GNU tar's
--format=posix, long or non-ASCII names) by `pax.py`, into the TarInfo tarfile
would build; both only while no global pax header other than a comment (git
archive's) is in force. Every other header, and every refusal, is tarfile's
(`TarReader.next`).

Limits of our own, on top of the tree's rules (`tree.py`): the decompressed
tar stream as a whole is capped (data + 4 KiB per allowed entry + 64 MiB),
which bounds the time spent on members that are skipped; pax/GNU long-name
headers are capped at 1 MiB, all the headers of one member (sparse maps
included) at 2 MiB, at most 16 headers may chain before one member, and global
pax headers are bounded (128 keywords, 1 MiB in all) since the parser copies
them into every later member. Devices, FIFOs, sockets and unknown member types
are refused. A tar stream must reach its end-of-archive block, otherwise
IntegrityError, even when the cut falls on a member boundary.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable
from typing import Any, Final, cast

from initcontainer import pax, ustar
from initcontainer.decompress import COPY_CHUNK, Readable, SourceError, TarSource
from initcontainer.errors import IntegrityError, PackageError, UnsafeArchiveError
from initcontainer.tree import Tree

META_HEADER_LIMIT: Final = 1 << 20
"""Largest pax or GNU long-name header accepted (the parser holds them in memory)."""
MEMBER_HEADERS_LIMIT: Final = 2 * META_HEADER_LIMIT
"""All the header bytes of one member together: pax and long-name headers, GNU sparse extension
blocks and pax 1.0 sparse maps (read 512 bytes at a time, so the per-read cap never sees them)."""
MAX_CHAINED_HEADERS: Final = 16
"""Headers the parser may chain before a member (`g`, `x`, `L`, `K`...): it recurses once per header."""
GLOBAL_PAX_KEYWORDS: Final = 128
"""Distinct keywords of global pax headers: the parser copies them into every later member."""
_STREAM_OVERHEAD_PER_ENTRY: Final = 4096
_STREAM_OVERHEAD: Final = 64 << 20
_GNU_VOLUME_LABEL: Final = b"V"


_HEADER_ERRORS: Final = {  # tarfile's header errors, by name: typeshed does not list these classes
    "EmptyHeaderError": "the data ends without the tar end-of-archive block (truncated)",
    "TruncatedHeaderError": "the data ends inside a tar header (truncated)",
    "InvalidHeaderError": "a member header is corrupt (a size field may be lying)",
}


def _count_chained(archive: Any) -> None:
    reader = cast(TarReader, archive)
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


class _GlobalPaxHeaders(pax.GlobalHeaders):
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


class TarReader:
    """The tar stream as headers and member data, served straight from the source's chunks.

    Headers outside `ustar.py`'s grammar are parsed by the standard library
    (`TarInfo.fromtarfile`, which handles pax, GNU long names and sparse maps and
    says where the next header starts); this class stands in for the `TarFile` it
    reads from (`fileobj`, `encoding`, `errors`, `pax_headers`, `offset` are what
    that parser uses). Member
    data goes from the chunks to the file as memoryview slices: tarfile's stream
    mode copied every byte twice and ran a Python loop per small block (bench/FINDINGS.md).
    """

    def __init__(self, source: TarSource, *, fast: bool = True) -> None:
        self._source = source
        self._fast = fast  # try `ustar.parse_plain` first (False: tarfile only, for the tests)
        self._buf = b""
        self._pos = 0
        self._base = 0  # stream offset of self._buf[0]
        self.fileobj = self
        self.encoding = tarfile.ENCODING
        self.errors = "surrogateescape"
        self.pax_headers = _GlobalPaxHeaders()
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

    def _next_fast(self) -> tarfile.TarInfo | None:
        """The next member parsed by `ustar.py` or `pax.py` from the current chunk, or None (tarfile's)."""
        if self._pos == len(self._buf):
            self._advance()
        pos, buf = self._pos, self._buf
        if pos + ustar.BLOCK > len(buf):
            return None
        if buf[pos + 156] == 0x78:  # "x": a pax extended header
            extended = pax.parse_extended(buf, pos, self._base, self.pax_headers, self.encoding, self.errors)
            if extended is None:
                return None
            member, self.offset, self._pos = extended
            return member
        found = ustar.parse_plain(buf[pos : pos + ustar.BLOCK], self._base + pos, self.encoding, self.errors)
        if found is None:
            return None
        self._pos = pos + ustar.BLOCK
        member, self.offset = found
        if self.pax_headers:  # harmless global keys: tarfile copies them into each member
            member.pax_headers = dict(self.pax_headers)
        return member

    def next(self) -> tarfile.TarInfo | None:
        """The next member, None at the end-of-archive block; IntegrityError for anything else."""
        first = self.tell() == 0
        self.chained = self._header_bytes = 0
        if self._fast and self.pax_headers.harmless:  # other global pax keys apply to every member
            member = self._next_fast()
            if member is not None:
                return member
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
        except (PackageError, SourceError, MemoryError):
            raise
        except Exception as exc:
            # The parser trusts some fields: int() of pax sparse records, buf[504] of a short GNU
            # sparse block, unpacking a pax 1.0 map line... Whatever it trips on is the archive's fault.
            raise IntegrityError(f"a tar member header is corrupt: {type(exc).__name__}: {exc}") from exc


def extract_tar(
    stream: Readable, fmt: str, tree: Tree, admit: Callable[[tarfile.TarInfo], bool] | None = None
) -> None:
    """Extract the tar (compressed as `fmt` says) read from `stream` into `tree`.

    `admit`, when given, sees every member first; a member it rejects is read past
    but not written (image layers: whiteouts and what upper layers replaced).
    """
    limits = tree.limits
    cap = limits.max_extracted_bytes + _STREAM_OVERHEAD_PER_ENTRY * limits.max_files + _STREAM_OVERHEAD
    source = TarSource(stream, fmt, cap)
    reader = TarReader(source)
    try:
        while (member := reader.next()) is not None:
            if reader.tell() != member.offset_data:
                raise IntegrityError(f"the tar headers of member {member.name!r} are inconsistent")
            if admit is None or admit(member):
                _tar_member(reader, member, tree)
            reader.skip_to(reader.offset, member.name)
        source.finish()
    finally:
        source.close()


def _tar_member(reader: TarReader, member: tarfile.TarInfo, tree: Tree) -> None:
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
    reader: TarReader, member: tarfile.TarInfo, rel: str, stored: int
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
