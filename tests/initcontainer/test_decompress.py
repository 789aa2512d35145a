"""The decompressed stream: multi-member gzip, trailing bytes left to the caller, corrupt members."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
from corpus import (
    NonSeekable,
    reg,
    tar_bytes,
)
from extracting import layout, run_extract

from initcontainer import formats
from initcontainer.errors import IntegrityError
from initcontainer.extract import extract
from initcontainer.install import prepare_staging


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
