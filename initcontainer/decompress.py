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
import zlib
from collections.abc import Callable
from types import ModuleType
from typing import Final, Protocol

from initcontainer import contract, formats
from initcontainer.errors import ConfigError, IntegrityError, PackageError, UnsafeArchiveError

COPY_CHUNK: Final = 1 << 20
"""Read and write size for file data: large copies keep Python out of the hot path."""
INPUT_CHUNK: Final = 256 << 10
"""Compressed bytes pulled from the source at a time."""


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


class _Inflater(Protocol):
    """What `decompressobj()` returns, in zlib and in isal_zlib alike."""

    eof: bool
    unused_data: bytes
    unconsumed_tail: bytes

    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes: ...


class GzipCodec:
    """A zlib-API gzip decoder (INFLATE's) with the needs_input/eof interface of bz2 and lzma."""

    def __init__(self, backend: ModuleType | None = None) -> None:
        self._d: _Inflater = (backend or INFLATE).decompressobj(wbits=31)
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
    than `cap` bytes of tar data an UnsafeArchiveError (it bounds the time spent on skipped members)."""

    def __init__(self, raw: Readable, fmt: str, cap: int) -> None:
        self._raw = raw
        self._fmt = fmt
        self._factory = codec_factory(fmt)
        self._codec = self._factory() if self._factory else None
        self._count = 0
        self._cap = cap

    def _raw_read(self, size: int) -> bytes:
        return read_source(self._raw, size)

    def _counted(self, data: bytes) -> bytes:
        self._count += len(data)
        if self._count > self._cap:
            raise UnsafeArchiveError(
                f"decompression bomb: the tar stream expands past {self._cap} bytes "
                f"(from {contract.ENV_MAX_EXTRACTED_BYTES} and {contract.ENV_MAX_FILES})"
            )
        return data

    def _step(self, codec: Codec, size: int) -> bytes:
        try:
            if codec.needs_input:
                data = self._raw_read(INPUT_CHUNK)
                if not data:
                    raise IntegrityError(
                        f"the {self._fmt} stream is truncated: it ends before its end marker"
                    )
                return codec.decompress(data, size)
            return codec.decompress(b"", size)
        except (PackageError, SourceError):
            raise
        except Exception as exc:
            raise IntegrityError(f"corrupt {self._fmt} data: {exc}") from exc

    def read(self, size: int = -1, /) -> bytes:
        """Up to `size` bytes of tar data (b"" at the end); what `untar.TarReader` pulls."""
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
