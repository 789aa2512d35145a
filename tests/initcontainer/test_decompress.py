"""The decompressed stream: multi-member gzip, trailing bytes left to the caller, corrupt members."""

from __future__ import annotations

import gzip
import itertools
import os
import threading
import zlib
from pathlib import Path
from types import ModuleType

import pytest
from isal import isal_zlib

from initcontainer import decompress, formats
from initcontainer.errors import IntegrityError, PackageError
from initcontainer.extract import extract
from initcontainer.install import prepare_staging
from tests.initcontainer.corpus import (
    NonSeekable,
    reg,
    tar_bytes,
)
from tests.initcontainer.extracting import layout, run_extract


def test_multi_member_gzip_like_pigz(tmp_path: Path) -> None:
    _, dest, _ = layout(tmp_path)
    staging = prepare_staging(dest)
    raw = tar_bytes([reg(f"f{i}", os.urandom(3000)) for i in range(10)])
    data = gzip.compress(raw[:7777]) + gzip.compress(raw[7777:])
    assert run_extract(data, staging).files == 10


def test_gzip_trailing_garbage_is_left_to_the_caller(tmp_path: Path) -> None:
    """Bytes after the last gzip member are not tar data: not extracted, but hashed by the caller."""
    _, dest, _ = layout(tmp_path)
    staging = prepare_staging(dest)
    data = tar_bytes([reg("a", b"x")], "gz") + b"\x00garbage that is not gzip"
    stream = NonSeekable(data)
    assert extract(stream, staging, fmt=formats.TAR_GZ).files == 1
    assert stream.consumed + len(stream.read(-1)) == len(data)


def test_garbage_between_gzip_members_is_corrupt(tmp_path: Path) -> None:
    _, dest, _ = layout(tmp_path)
    staging = prepare_staging(dest)
    raw = tar_bytes([reg("a", os.urandom(2000)), reg("b", b"y")])
    data = gzip.compress(raw[:1024]) + b"JUNK" + gzip.compress(raw[1024:])
    with pytest.raises(IntegrityError, match="corrupt"):
        run_extract(data, staging)


def test_isal_inflates_gzip_when_installed() -> None:
    # The dev lock and the init image install isal; a bare Python falls back to zlib (next test).
    assert decompress.INFLATE is isal_zlib


def _gzip_cases() -> dict[str, tuple[bytes, type[PackageError] | None]]:
    """gzip streams and what extracting them must give, whichever library inflates."""
    raw = tar_bytes([reg(f"f{i}", os.urandom(70_000)) for i in range(5)])
    good = gzip.compress(raw)
    bad_crc = bytearray(good)
    bad_crc[-8] ^= 0xFF  # the CRC32 of the trailer
    bad_size = bytearray(good)
    bad_size[-1] ^= 0x01  # ISIZE, the length modulo 2**32
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    junk = gzip.compress(raw[:1024]) + b"JUNK" + gzip.compress(raw[1024:])
    return {
        "good": (good, None),
        "multi-member": (gzip.compress(raw[:100_001]) + gzip.compress(raw[100_001:]), None),
        "trailing-garbage": (good + b"\x00not gzip", None),
        "bad-crc": (bytes(bad_crc), IntegrityError),
        "bad-size": (bytes(bad_size), IntegrityError),
        "corrupt-deflate": (bytes(flipped), IntegrityError),
        "truncated-in-deflate": (good[: len(good) // 2], IntegrityError),
        "truncated-in-trailer": (good[:-3], IntegrityError),
        "junk-between-members": (junk, IntegrityError),
    }


@pytest.mark.parametrize("backend", [zlib, isal_zlib], ids=["zlib", "isal"])
@pytest.mark.parametrize("case", list(_gzip_cases()))
def test_both_inflaters_give_the_same_verdicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: ModuleType, case: str
) -> None:
    monkeypatch.setattr(decompress, "INFLATE", backend)
    data, error = _gzip_cases()[case]
    staging = tmp_path / "out"
    staging.mkdir()
    if error is None:
        assert extract(_Chunked(data, [1000, 77_777]), staging, fmt=formats.TAR_GZ).files == 5
    else:
        with pytest.raises(error):
            extract(_Chunked(data, [1000, 77_777]), staging, fmt=formats.TAR_GZ)


class _Chunked:
    """Hands the data out in the given chunk sizes, cycled (as the download does)."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self._data, self._pos = data, 0
        self._sizes = itertools.cycle(sizes)

    def read(self, size: int = -1, /) -> bytes:
        n = min(size, next(self._sizes)) if size >= 0 else next(self._sizes)
        out = self._data[self._pos : self._pos + n]
        self._pos += len(out)
        return out


def _inflate_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "package-inflate" and t.is_alive()]


@pytest.mark.parametrize("fmt", ["gz", "bz2", "xz"])
def test_inflating_thread_is_gone_after_success_and_after_failure(tmp_path: Path, fmt: str) -> None:
    """The stream is the caller's again when extract returns (it drains and hashes the rest)."""
    before = _inflate_threads()
    good = tar_bytes([reg(f"f{i}", os.urandom(300_000)) for i in range(8)], fmt)
    stream = NonSeekable(good + b"trailing")
    (tmp_path / "ok").mkdir()
    assert extract(stream, tmp_path / "ok", fmt=formats.detect_format(good[:512])).files == 8
    assert _inflate_threads() == before
    assert stream.consumed + len(stream.read(-1)) == len(good) + len(b"trailing")
    bad = tar_bytes([reg("a", b"x"), reg("../escape", os.urandom(300_000))], fmt)
    (tmp_path / "bad").mkdir()
    with pytest.raises(PackageError, match="traversal"):
        extract(NonSeekable(bad), tmp_path / "bad", fmt=formats.detect_format(bad[:512]))
    assert _inflate_threads() == before
