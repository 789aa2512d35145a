"""The zip path: spool, check the layout, then extract entry by entry through the same tree rules.

Zip needs its central directory at the end of the file, so a zip is spooled to a
hidden file next to the staging directory (`<staging>-spool.zip`, removed
afterwards; a crash leaves it under the staging prefix for the next run to
clean). This is the one exception to "no copy of the archive on disk", and the
spool counts against `max_extracted_bytes` because it shares the volume.
Names are taken as unzip writes them on Linux (`_zip_name`); encrypted entries,
devices, FIFOs and overlapping entries are refused.
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
import tarfile
import time
import zipfile
from pathlib import Path
from typing import IO, Final

from initcontainer import contract
from initcontainer.decompress import COPY_CHUNK, Readable, SourceError, read_source
from initcontainer.errors import IntegrityError, PackageError, UnsafeArchiveError
from initcontainer.tree import Tree, synthetic

SPOOL_SUFFIX: Final = "-spool.zip"
SYMLINK_TARGET_LIMIT: Final = 4096
_LOCAL_HEADER: Final = struct.Struct("<4sHHHHHIIIHH")
_LOCAL_MAGIC: Final = b"PK\x03\x04"


def _spool(stream: Readable, path: Path, tree: Tree) -> int:
    """Copy the whole stream to `path`, within the byte budget."""
    size = 0
    budget = tree.remaining_bytes()
    with open(path, "xb", buffering=0) as out:
        while True:
            chunk = read_source(stream, COPY_CHUNK)
            if not chunk:
                return size
            size += len(chunk)
            if size > budget:
                raise UnsafeArchiveError(
                    f"the zip file is larger than the {tree.limits.max_extracted_bytes} bytes allowed "
                    f"({contract.ENV_MAX_EXTRACTED_BYTES}; a zip is spooled to the volume first)"
                )
            out.write(chunk)


def extract_zip(stream: Readable, tree: Tree, staging: Path) -> None:
    """Spool the zip next to `staging`, check its layout, extract its entries into `tree`."""
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


def _zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, tree: Tree) -> None:
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
        tree.second_opinion(synthetic(rel, tarfile.SYMTYPE, target))
        tree.add_symlink(rel, target)
    elif name.endswith("/") or kind == stat.S_IFDIR:
        tree.second_opinion(synthetic(rel, tarfile.DIRTYPE, mode=0o755))
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
                lambda fd: _copy_member(tree, rel, src, fd, size),
            )


def _zip_read_small(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        return archive.read(info)
    except Exception as exc:
        raise IntegrityError(f"zip entry {info.filename!r} cannot be read: {exc}") from exc


def _copy_member(tree: Tree, rel: str, src: IO[bytes], fd: int, size: int) -> None:
    """Copy a member whose data only `src.read` knows (zip): count, and check the declared size."""
    written = 0
    budget = tree.remaining_bytes()
    while True:
        try:
            chunk = src.read(COPY_CHUNK)
        except (PackageError, SourceError):
            raise
        except Exception as exc:
            raise IntegrityError(f"corrupt data in member {rel!r}: {exc}") from exc
        if not chunk:
            break
        written += len(chunk)
        if written > budget:
            raise UnsafeArchiveError(
                f"decompression bomb: extracting {rel!r} goes past the "
                f"{tree.limits.max_extracted_bytes} bytes allowed ({contract.ENV_MAX_EXTRACTED_BYTES})"
            )
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]
    if written != size:
        raise IntegrityError(f"member {rel!r} declares {size} bytes but holds {written}")
