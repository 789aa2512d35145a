"""Reading a tar stream with and without the fast header parsers (`ustar.py`, `pax.py`), for the
differential tests: both must give the same members (every TarInfo attribute with its type, and the
next-header offsets) or the same refusal."""

from __future__ import annotations

import io
import random
import tarfile
from typing import Any

from initcontainer import formats
from initcontainer.decompress import TarSource
from initcontainer.errors import PackageError
from initcontainer.untar import TarReader
from tests.initcontainer.corpus import NonSeekable

ATTRS = tuple(tarfile.TarInfo.__slots__)
_CAP = 1 << 40
Outcome = tuple[list[tuple[object, ...]], str]


def attrs(info: tarfile.TarInfo) -> tuple[object, ...]:
    """Every attribute and its type (an int mtime where tarfile makes a float is a difference)."""
    values = [getattr(info, name, "<unset>") for name in ATTRS]
    # repr() of a float: tarfile takes mtime=nan, and nan != nan
    return tuple((repr(v) if isinstance(v, float) else v, type(v).__name__) for v in values)


def value(row: tuple[object, ...], name: str) -> object:
    """The attribute `name` in a row of `read_all`'s members."""
    pair = row[ATTRS.index(name)]
    assert isinstance(pair, tuple)
    return pair[0]


def read_all(data: bytes, fmt: str, *, fast: bool, stream: Any = None) -> Outcome:
    """Every member's attributes and next-header offset, then how the read ended (`stream`: where the
    bytes come from, whole reads of `data` by default)."""
    source = TarSource(stream or NonSeekable(data), fmt, _CAP)
    reader = TarReader(source, fast=fast)
    members: list[tuple[object, ...]] = []
    try:
        while (member := reader.next()) is not None:
            members.append((*attrs(member), reader.offset, reader.tell()))
            reader.skip_to(reader.offset, member.name)
        source.finish()
    except PackageError as exc:
        return members, f"{type(exc).__name__}: {exc}"
    finally:
        source.close()
    return members, "complete"


def assert_same(data: bytes, fmt: str = formats.TAR) -> Outcome:
    slow = read_all(data, fmt, fast=False)
    fast = read_all(data, fmt, fast=True)
    assert fast == slow
    return fast


def reference(block: bytes, offset: int = 0) -> tuple[tuple[object, ...], int] | str:
    """What tarfile makes of `block` at `offset`: its member and next-header offset, or its error."""
    source = TarSource(NonSeekable(bytes(offset) + block + bytes(1024)), formats.TAR, _CAP)
    reader = TarReader(source, fast=False)
    reader.skip_to(offset, "-")
    try:
        member = reader.next()
    except PackageError as exc:
        return type(exc).__name__
    return ("end",) if member is None else attrs(member), reader.offset


class Choppy:
    """A body that arrives in reads of odd sizes (1 byte, 511, 513...), like a slow HTTP connection:
    headers straddle the reader's chunks, where the fast parser must hand the block to tarfile."""

    def __init__(self, data: bytes, seed: int) -> None:
        self._buf = io.BytesIO(data)
        self._rng = random.Random(seed)

    def read(self, size: int = -1, /) -> bytes:
        want = self._rng.choice([1, 7, 100, 511, 512, 513, 1000, 1536, 4096])
        return self._buf.read(want if size < 0 else min(want, size))


def read_choppy(data: bytes, seed: int, *, fast: bool) -> Outcome:
    return read_all(data, formats.TAR, fast=fast, stream=Choppy(data, seed))
