"""The decompressed tar stream: gzip, bzip2, xz or zstd codecs behind one interface.

Decompression is done here rather than by tarfile's `r|gz` so that a cut
stream is always detected (tarfile's stream mode does not check the gzip
trailer), multi-member gzip/bz2/xz/zstd files (pigz, pbzip2) work, and zstd
works on any Python that has a zstd module.

gzip is inflated by ISA-L (`isal.isal_zlib`, the one package the init image
adds to the standard library) when it is importable, else by zlib: same API,
same checks (CRC and length trailer, end marker), and inflate is most of the
cost of a .tar.gz (bench/FINDINGS.md).
"""

from __future__ import annotations

import bz2
import lzma
import queue
import threading
import zlib
from collections.abc import Callable
from types import ModuleType
from typing import Final, Protocol, cast

from initcontainer import contract, formats
from initcontainer.errors import ConfigError, IntegrityError, PackageError, UnsafeArchiveError

COPY_CHUNK: Final = 1 << 20
"""Read and write size for file data: large copies keep Python out of the hot path."""
INPUT_CHUNK: Final = 256 << 10
"""Compressed bytes pulled from the source at a time."""
INFLATE_QUEUE_DEPTH: Final = 8
"""Decompressed chunks (of up to COPY_CHUNK) the inflating thread may be ahead of the tar reader."""
CLOSE_WAIT: Final = 2.0
"""Seconds `close` waits for the inflating thread (it stops after its current read)."""


class Readable(Protocol):
    """What extraction needs from the source: sequential reads, nothing else."""

    def read(self, size: int, /) -> bytes: ...


def _inflate_backend() -> ModuleType:
    try:
        from isal import isal_zlib
    except ImportError:  # no wheel for this platform, or a bare Python: zlib does the same, slower
        return zlib
    return isal_zlib


INFLATE: ModuleType = _inflate_backend()
"""The zlib-compatible module that inflates gzip: `isal.isal_zlib` or `zlib`."""


class SourceError(Exception):
    """Wraps an exception raised by the caller's stream, so it is re-raised untouched
    instead of being mistaken for a disk error (both can be OSError)."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


def read_source(stream: Readable, size: int) -> bytes:
    """`stream.read(size)`, with anything but a PackageError wrapped in SourceError."""
    try:
        return stream.read(size)
    except PackageError:
        raise
    except Exception as exc:
        raise SourceError(exc) from exc


class Codec(Protocol):
    """The decoder interface of bz2 and lzma (and zstd), which gzip is adapted to."""

    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    @property
    def needs_input(self) -> bool: ...

    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes: ...


class _Decompressobj(Protocol):
    """What `decompressobj()` returns, in zlib and in isal_zlib alike."""

    eof: bool
    unused_data: bytes
    unconsumed_tail: bytes

    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes: ...


class GzipCodec:
    """A zlib-API gzip decoder (INFLATE's) with the needs_input/eof interface of bz2 and lzma."""

    def __init__(self, backend: ModuleType | None = None) -> None:
        self._d: _Decompressobj = (backend or INFLATE).decompressobj(wbits=31)
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


def codec_factory(fmt: str) -> Callable[[], Codec] | None:
    """A fresh decoder per compressed member of `fmt`; None for a plain tar."""
    if fmt == formats.TAR:
        return None
    if fmt == formats.TAR_GZ:
        backend = INFLATE  # read now: a test may swap it
        return lambda: GzipCodec(backend)
    if fmt == formats.TAR_BZ2:
        return bz2.BZ2Decompressor
    if fmt == formats.TAR_XZ:
        return lambda: lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    if fmt == formats.TAR_ZST:
        module = formats.zstd_module()
        if module is None:
            raise ConfigError("the package is zstd-compressed but this Python cannot read zstd")
        factory: Callable[[], Codec] = module.ZstdDecompressor
        return factory
    raise ConfigError(f"unknown archive format {fmt!r}")


class TarSource:
    """The decompressed tar byte stream: a cut compressed stream is an IntegrityError, and more
    than `cap` bytes of tar data an UnsafeArchiveError (it bounds the time spent on skipped members).

    A compressed stream is decompressed by a thread of its own (`_Inflater`): the codecs release
    the GIL, so inflating the next chunks overlaps the tar reader's work on this one, as `gzip -d`
    and `tar` do in a pipe. Only that thread reads `raw` until `finish` or `close` returns.
    """

    def __init__(self, raw: Readable, fmt: str, cap: int) -> None:
        self._raw = raw
        self._fmt = fmt
        self._count = 0
        self._cap = cap
        factory = codec_factory(fmt)
        self._inflater = _Inflater(raw, fmt, factory) if factory else None
        self._cur = b""
        self._pos = 0
        self._member = 0  # compressed member of the bytes read last
        self._ended = -1  # last member whose end the reader has passed

    def _counted(self, data: bytes) -> bytes:
        self._count += len(data)
        if self._count > self._cap:
            raise UnsafeArchiveError(
                f"decompression bomb: the tar stream expands past {self._cap} bytes "
                f"(from {contract.ENV_MAX_EXTRACTED_BYTES} and {contract.ENV_MAX_FILES})"
            )
        return data

    def read(self, size: int = -1, /) -> bytes:
        """Up to `size` bytes of tar data (b"" at the end); what `untar.TarReader` pulls."""
        if size is None or size < 0:
            size = COPY_CHUNK
        if self._inflater is None:
            return self._counted(read_source(self._raw, size))
        while self._pos >= len(self._cur):
            item = self._inflater.get()
            if item is None:
                return b""
            member, data = item
            if data is None:
                self._ended = member
                continue
            self._member, self._cur, self._pos = member, data, 0
        start = self._pos
        out = self._cur if start == 0 and size >= len(self._cur) else self._cur[start : start + size]
        self._pos = start + len(out)
        return self._counted(out)

    def finish(self) -> None:
        """After the tar end marker: run the current compressed member to its end.

        That checks the gzip CRC and catches a stream cut after the last tar
        block. What follows that member is left to the caller.
        """
        inflater = self._inflater
        if inflater is None:
            return
        try:
            while self._ended < self._member:
                item = inflater.get()
                if item is None:  # pragma: no cover - the inflater ends every member it starts
                    return
                member, data = item
                if data is None:
                    self._ended = member
                elif member == self._member:
                    self._counted(data)
        finally:
            self.close()

    def close(self) -> None:
        """Stop the inflating thread; `raw` is the caller's again."""
        if self._inflater is not None:
            self._inflater.close()


_END: Final = object()


class _Inflater(threading.Thread):
    """Decompresses `raw` member after member into a bounded queue of (member, bytes) items.

    (member, None) marks the end of a member (its trailer checked), None the end of the input;
    an exception is handed over as an item and raised by `get`.
    """

    def __init__(self, raw: Readable, fmt: str, factory: Callable[[], Codec]) -> None:
        super().__init__(name="package-inflate", daemon=True)
        self._raw = raw
        self._fmt = fmt
        self._factory = factory
        self._queue: queue.Queue[object] = queue.Queue(maxsize=INFLATE_QUEUE_DEPTH)
        self._stop_event = threading.Event()
        self._done = False

    def get(self) -> tuple[int, bytes | None] | None:
        """The next item, waiting for it; starts the thread on first use."""
        if self._done:
            return None
        if not self.is_alive() and self.ident is None:
            self.start()
        item = self._queue.get()
        if item is _END:
            self._done = True
            return None
        if isinstance(item, BaseException):
            self._done = True
            raise item
        return cast(tuple[int, bytes | None], item)

    def close(self) -> None:
        self._stop_event.set()
        while True:  # unblock a put
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self.ident is not None:
            # A read blocked on a stalled download returns by the read timeout at worst; the caller
            # is then on an error path and only discards the download.
            self.join(timeout=CLOSE_WAIT)

    def _put(self, item: object) -> bool:
        while not self._stop_event.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        try:
            member, codec = 0, self._factory()
            while not self._stop_event.is_set():
                if codec.eof:
                    if not self._put((member, None)):
                        return
                    leftover = codec.unused_data or read_source(self._raw, INPUT_CHUNK)
                    if not leftover:
                        self._put(_END)
                        return
                    member, codec = member + 1, self._factory()
                    out = self._first(codec, leftover)
                else:
                    out = self._step(codec)
                if out and not self._put((member, out)):
                    return
        except BaseException as exc:  # handed to the reader, which raises it
            self._put(exc)

    def _step(self, codec: Codec) -> bytes:
        try:
            if codec.needs_input:
                data = read_source(self._raw, INPUT_CHUNK)
                if not data:
                    raise IntegrityError(
                        f"the {self._fmt} stream is truncated: it ends before its end marker"
                    )
                return codec.decompress(data, COPY_CHUNK)
            return codec.decompress(b"", COPY_CHUNK)
        except (PackageError, SourceError):
            raise
        except Exception as exc:
            raise IntegrityError(f"corrupt {self._fmt} data: {exc}") from exc

    def _first(self, codec: Codec, data: bytes) -> bytes:
        try:
            return codec.decompress(data, COPY_CHUNK)
        except Exception as exc:
            raise IntegrityError(f"corrupt {self._fmt} data after the first member: {exc}") from exc
