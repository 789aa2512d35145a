"""The pax fast path against tarfile: the same members, or the same refusal, for every pax header.

Four layers, like test_ustar.py: hand-made pax headers (each form the fast path must accept, checked
member by member against tarfile, and each form it must leave to tarfile), pax headers drawn and
mutated at random, the same archives read in odd-sized chunks, and archives written by real tools
(GNU tar --format=posix, git archive, bsdtar, Python's tarfile), which must also take the fast path
(otherwise it would be dead code and these tests would prove nothing). Randomness is seeded.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from initcontainer import formats, pax, untar
from tests.initcontainer.corpus import END_OF_ARCHIVE, dir_, hard, padded, raw_header, reg, sym
from tests.initcontainer.tarcompare import assert_same, attrs, read_all, read_choppy, reference, value

ENC = tarfile.ENCODING
ERR = "surrogateescape"
MTIME = b"1700000000.123456789"


def record(key: bytes, value: bytes, fix: int = 0) -> bytes:
    """One `LENGTH key=value\\n` record, its length off by `fix`."""
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + len(str(len(body)))
    length = len(body) + len(str(length))
    return str(length + fix).encode() + body


def times(stamp: bytes = MTIME) -> bytes:
    return record(b"mtime", stamp) + record(b"atime", stamp) + record(b"ctime", stamp)


def member(
    records: bytes,
    header: bytes | None = None,
    data: bytes = b"hello",
    *,
    kind: bytes = b"x",
    size: int | None = None,
    padding: bytes = b"",
) -> bytes:
    """A pax header with `records` (its size field `size`, its padding starting with `padding`), then
    `header` (a regular file of len(data) by default) and the data."""
    body = records + padding
    head = raw_header(b"./PaxHeaders/file", len(records) if size is None else size, kind)
    header = raw_header(b"file", len(data)) if header is None else header
    return head + padded(body) + header + padded(data)


def accepted(data: bytes) -> bool:
    """True when the fast path took the pax header at the start of `data`, after checking that it
    built what tarfile builds (member and next-header offset); the whole archive reads the same."""
    assert_same(data + END_OF_ARCHIVE)
    found = pax.parse_extended(data + END_OF_ARCHIVE, 0, 0, {}, ENC, ERR)
    if found is None:
        return False
    info, following, _ = found
    assert reference(data) == (attrs(info), following)
    return True


# ------------------------------------------------------------------ hand-made pax headers

LINK = raw_header(b"link", 0, b"2", {157: b"target"})
DIR = raw_header(b"dir/", 0, b"5")
ACCEPTED = {
    "gnu-posix-times": member(times()),
    "integer-times": member(times(b"1700000000")),
    "no-records": member(b""),
    "long-unicode-path": member(record(b"path", ("d\u00e9j\u00e0/" * 40 + "\u00fc").encode())),
    "path-with-equals-and-newline": member(record(b"path", b"a=b\nc")),
    "path-slashes-stripped": member(record(b"path", b"pkg/file//")),
    "dir-path-slash": member(record(b"path", b"pkg/dir/") + times(), DIR, b""),
    "empty-path": member(record(b"path", b"")),
    "linkpath": member(record(b"linkpath", b"/" + b"t" * 300), LINK, b""),
    "size-grows": member(record(b"size", b"1000"), raw_header(b"file", 0), bytes(1000)),
    "size-shrinks": member(record(b"size", b"3"), raw_header(b"file", 5), b"abc"),
    "size-zero-dir": member(record(b"size", b"0"), DIR, b""),
    "ids-and-names": member(
        record(b"uid", b"123456789012345678")
        + record(b"gid", b"0007")
        + record(b"uname", "\u00e9".encode())
        + record(b"gname", b"")
    ),
    "comment": member(record(b"comment", b"any text = \n with \x00 NUL and \xc3\xa9")),
    "records-fill-a-block": member(record(b"comment", b"c" * 497)),
    "every-key": member(
        times()
        + record(b"path", b"p")
        + record(b"linkpath", b"l")
        + record(b"size", b"5")
        + record(b"uid", b"1")
        + record(b"gid", b"2")
        + record(b"uname", b"u")
        + record(b"gname", b"g")
        + record(b"comment", b"c")
    ),
}


@pytest.mark.parametrize("name", ACCEPTED)
def test_the_fast_path_takes_the_common_pax_forms_and_builds_what_tarfile_builds(name: str) -> None:
    assert accepted(ACCEPTED[name])


def _declined() -> Iterator[tuple[str, bytes]]:
    good = record(b"path", b"pkg/f")
    for key in [b"hdrcharset", b"GNU.sparse.size", b"GNU.sparse.map", b"GNU.sparse.major", b"SCHILY.xattr.a"]:
        yield key.decode(), member(record(key, b"1") + good)
    yield "hdrcharset-in-a-value", member(record(b"comment", b"x 21 hdrcharset=BINARY") + good)
    yield "sparse-1.0", member(record(b"GNU.sparse.major", b"1") + record(b"GNU.sparse.minor", b"0"))
    yield "duplicate-key", member(good + record(b"path", b"pkg/g"))
    for fix in (-2, -1, 1, 2):
        yield f"length{fix:+d}", member(record(b"path", b"pkg/file", fix) + times())
    yield "leading-zero", member(b"0" + record(b"path", b"pkg/f"))
    for raw in [b"0 a=\n", b"4 a=\n", b"3 =\n", b"12345678 path=x\n", b"99999999999999999999 path=x\n"]:
        yield f"record-{raw!r}", member(raw)
    yield "no-space", member(b"13path=pkg/f\n")
    yield "no-equals", member(b"12 path pkg\n")
    yield "empty-key", member(b"6 =abc\n")
    yield "non-ascii-key", member(record("cl\u00e9".encode(), b"1"))
    yield "binary-key", member(record(b"\xff\xfe", b"1"))
    yield "key-with-nul", member(record(b"path\x00", b"x"))
    yield "no-newline", member(b"13 path=pkg/fX")
    yield "tab-for-space", member(b"14\tpath=pkg/f\n")
    yield "minus-length", member(b"-13 path=pkg/f\n")
    yield "unicode-digit-length", member("\u0661\u0663 path=pkg/f\n".encode())
    yield "straddles-size", member(good, size=len(good) - 3)
    yield "straddles-into-padding", member(good + b"30 mtime=1", size=len(good) + 5)
    yield "garbage-padding", member(good, padding=b"x")
    yield "record-in-padding", member(good, padding=record(b"path", b"evil"))
    yield "size-past-the-records", member(good, size=len(good) + 1)
    yield "nul-in-path", member(record(b"path", b"pkg/a\x00b"))
    yield "nul-in-linkpath", member(record(b"linkpath", b"a\x00b"), LINK, b"")
    for key in [b"path", b"uname", b"comment"]:
        yield f"bad-utf8-{key.decode()}", member(record(key, b"caf\xe9"))
    numbers = [b"-1", b"+1", b" 1", b"1 ", b"1_0", b"1e3", b"0x10", b"nan", b"inf", b"", b"1" * 19, b"\xff"]
    for number in [*numbers, "\u0661".encode()]:
        for key in [b"size", b"uid", b"gid"]:
            yield f"{key.decode()}={number!r}", member(record(key, number) + good)
    stamps = [b"-1.5", b"1.", b".5", b"1.5.5", b"1,5", b"1e9", b"nan", b"-0", b" 1", b"", b"1." + b"5" * 19]
    for stamp in stamps:
        for key in [b"mtime", b"atime", b"ctime"]:
            yield f"{key.decode()}={stamp!r}", member(record(key, stamp) + good)
    yield "size-on-a-directory", member(record(b"size", b"5"), DIR, b"hello")
    yield "size-on-a-symlink", member(record(b"size", b"1"), LINK, b"")
    yield "records-over-the-limit", member(record(b"comment", b"c" * pax.RECORDS_LIMIT))
    yield "records-over-the-reader's-limit", member(record(b"comment", b"c" * untar.META_HEADER_LIMIT))
    gnu_long = raw_header(b"././@LongLink", 8, b"L") + padded(b"longname") + raw_header(b"x", 5)
    yield "then-gnu-longname", member(record(b"size", b"5"), gnu_long)
    yield "then-another-x", member(times(), member(record(b"path", b"two"))[:-512])
    yield (
        "then-global",
        member(times(), raw_header(b"g", 8, b"g") + padded(b"9 a=bcd\n") + raw_header(b"f", 5)),
    )
    yield "then-end-of-archive", member(times(), bytes(512), b"")
    yield "then-a-device", member(times(), raw_header(b"dev", 0, b"3"), b"")
    yield "then-v7-header", member(times(), raw_header(b"v7", 5, fields={257: bytes(8)}))
    yield "then-bad-checksum", member(times(), raw_header(b"f", 5)[:148] + b"0000000\x00" + bytes(356))
    yield "solaris-X", member(times(), kind=b"X")
    base256 = raw_header(b"p", b"\x80" + len(times()).to_bytes(11, "big"), b"x")
    yield "x-with-base256-size", base256 + padded(times()) + raw_header(b"f", 5) + padded(b"hello")
    gnu = raw_header(b"p", len(times()), b"x", {257: b"ustar  \x00", 345: b"pre"})
    yield "x-gnu-prefix", gnu + padded(times()) + raw_header(b"f", 5) + padded(b"hello")
    yield "truncated-records", member(times())[:600]
    yield "truncated-header", member(times())[:1100]


DECLINED = dict(_declined())


@pytest.mark.parametrize("name", DECLINED)
def test_unusual_pax_headers_go_to_tarfile_with_the_same_outcome(name: str) -> None:
    assert not accepted(DECLINED[name])


# ------------------------------------------------------------------ global headers


def _fast_members(data: bytes, patch: pytest.MonkeyPatch) -> int:
    """How many members of `data` the reader's fast paths parsed (the same count on every Python,
    unlike tarfile's recursion)."""
    taken: list[bool] = []
    real = untar.TarReader._next_fast

    def counting(self: untar.TarReader) -> tarfile.TarInfo | None:
        found = real(self)
        taken.append(found is not None)
        return found

    with patch.context() as inner:
        inner.setattr(untar.TarReader, "_next_fast", counting)
        read_all(data, formats.TAR, fast=True)
    return sum(taken)


def _global(records: bytes) -> bytes:
    return raw_header(b"pax_global_header", len(records), b"g") + padded(records)


def _members(n: int) -> bytes:
    plain = b"".join(raw_header(b"pkg/f%d" % i, 5) + padded(b"hello") for i in range(n))
    return plain + b"".join(member(times() + record(b"path", b"pkg/x%d" % i)) for i in range(n))


@pytest.mark.parametrize(
    ("records", "fast"),
    [
        (record(b"comment", b"0123456789abcdef0123456789abcdef01234567"), True),
        (record(b"comment", b"a") + record(b"comment", b"b"), True),
        (record(b"comment", b"x 21 hdrcharset=BINARY"), None),  # Pythons before 3.13.4 set hdrcharset
        (record(b"mtime", b"1"), False),
        (record(b"uname", b"root"), False),
        (record(b"path", b"evil"), False),
        (record(b"size", b"0"), False),
        (record(b"GNU.sparse.map", b"0,1"), False),
        (record(b"hdrcharset", b"BINARY"), False),
        (record(b"comment", b"c") + record(b"linkpath", b"/etc"), False),
    ],
)
def test_a_global_header_keeps_the_fast_path_only_when_every_key_is_harmless(
    monkeypatch: pytest.MonkeyPatch, records: bytes, fast: bool | None
) -> None:
    data = _global(records) + _members(10) + END_OF_ARCHIVE
    found, end = assert_same(data)
    taken = _fast_members(data, monkeypatch)
    if fast is True:  # all but the member read with the global header
        assert end == "complete" and taken == 19
    elif fast is False:
        assert taken == 0
    if end == "complete":
        assert all(isinstance(value(m, "pax_headers"), dict) for m in found)


def test_a_later_global_header_with_another_key_turns_the_fast_path_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = _global(record(b"comment", b"c")) + _members(3) + _global(record(b"uid", b"7")) + _members(3)
    found, end = assert_same(data + END_OF_ARCHIVE)
    assert end == "complete" and {value(m, "uid") for m in found[-6:]} == {7}
    assert _fast_members(data + END_OF_ARCHIVE, monkeypatch) == 5  # those between the two


def test_global_headers_record_whether_they_are_harmless() -> None:
    headers = pax.GlobalHeaders()
    headers["comment"] = "x"
    assert headers.harmless
    headers["mtime"] = "1"
    headers["comment"] = "y"
    assert not headers.harmless


# ------------------------------------------------------------------ drawn and mutated at random

_KEYS = [b"path", b"linkpath", b"size", b"uid", b"gid", b"uname", b"gname", b"mtime", b"atime", b"ctime"]
_VALUES = {
    b"path": [
        b"pkg/f",
        b"pkg/d/",
        b"/",
        b"",
        b"../up",
        "\u00e9/\u00fc".encode(),
        b"a\x00b",
        b"\xff",
        b"a\nb",
    ],
    b"size": [b"0", b"1", b"511", b"512", b"513", b"1000", b"-1", b"1e3", b"", b"007", b"9" * 18, b"9" * 19],
    b"mtime": [MTIME, b"1", b"0.0", b"-1", b"1.", b".1", b"nan", b"1e3", b" 1", b"1_0", b"9" * 18 + b".1"],
}


def _value(rng: random.Random, key: bytes) -> bytes:
    pool = (
        _VALUES.get(key)
        or _VALUES[b"size" if key in (b"uid", b"gid") else b"path" if b"path" in key else b"mtime"]
    )
    if key in (b"uname", b"gname"):
        pool = [b"root", b"", "\u00e9".encode(), b"\xfe"]
    return rng.choice(pool)


def _records(rng: random.Random) -> bytes:
    keys = rng.sample(_KEYS, rng.randrange(0, 5))
    if rng.random() < 0.1:
        keys.append(rng.choice([b"comment", b"hdrcharset", b"GNU.sparse.size", b"SCHILY.x", *_KEYS]))
    out = b""
    for key in keys:
        fix = rng.choice([0] * 12 + [-1, 1, 5])
        raw = record(key, _value(rng, key), fix)
        out += b"0" + raw if rng.random() < 0.03 else raw
    return out


def _header(rng: random.Random, size: int) -> tuple[bytes, bytes]:
    kind = rng.choice([b"0"] * 5 + [b"5", b"2", b"1", b"L", b"x", b"3"])
    data = bytes(size) if kind == b"0" else b""
    return raw_header(b"pkg/h", len(data), kind, {157: b"pkg/f"} if kind in (b"1", b"2") else None), data


def random_archive(rng: random.Random) -> bytes:
    out = _global(record(b"comment", b"c")) if rng.random() < 0.2 else b""
    for _ in range(rng.randrange(1, 5)):
        if rng.random() < 0.3:
            out += raw_header(b"pkg/plain", 3) + padded(b"abc")
            continue
        records = _records(rng)
        header, data = _header(rng, rng.choice([0, 3, 512, 1000]))
        size = len(records) + rng.choice([0] * 10 + [-1, 1, 512])
        out += member(records, header, data, size=max(size, 0))
    return out + END_OF_ARCHIVE


def _mutate(rng: random.Random, data: bytes) -> bytes:
    raw = bytearray(data)
    for _ in range(rng.randrange(1, 3)):
        at = rng.randrange(len(raw))
        what = rng.random()
        if what < 0.1:
            raw[at] = rng.randrange(256)
        elif what < 0.4:
            raw[at] = rng.choice(b"0123456789 =\n\x00./-x")
        elif what < 0.6:
            del raw[at : at + rng.randrange(1, 4)]
        elif what < 0.8:
            raw[at:at] = bytes([rng.choice(b"0123456789 =\n\x00")])
        else:
            del raw[at:]
        block = at - at % 512  # keep the checksum right more often than not, so the records get read
        if rng.random() < 0.7 and block + 512 <= len(raw):
            raw[block + 148 : block + 156] = b" " * 8
            raw[block + 148 : block + 156] = b"%06o\x00 " % sum(raw[block : block + 512])
    return bytes(raw)


def test_random_pax_archives_read_the_same_with_both_parsers(monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[int] = []
    real = pax.parse_extended

    def counting(*args: object) -> object:
        result = real(*args)  # type: ignore[arg-type]
        taken.append(result is not None)
        return result

    monkeypatch.setattr(pax, "parse_extended", counting)
    rng = random.Random(1517)
    outcomes: dict[str, int] = {}
    for i in range(2_500):
        data = random_archive(rng)
        if i % 2:
            data = _mutate(rng, data)
        _, end = assert_same(data)
        outcomes[end.partition(":")[0]] = outcomes.get(end.partition(":")[0], 0) + 1
    assert outcomes.get("complete", 0) > 300 and outcomes.get("IntegrityError", 0) > 300, outcomes
    assert sum(taken) > 400 and len(taken) - sum(taken) > 1_000, (sum(taken), len(taken))


def _noise(rng: random.Random) -> bytes:
    """Records area: record-like tokens and arbitrary bytes mixed."""
    tokens = [
        b" ",
        b"=",
        b"\n",
        b"\x00",
        b"path",
        b"size",
        b"mtime",
        b"hdrcharset",
        b"1",
        b"0",
        b"99",
        b"\xff",
    ]
    parts = [rng.choice(tokens) if rng.random() < 0.8 else bytes([rng.randrange(256)]) for _ in range(40)]
    if rng.random() < 0.5:
        parts.insert(0, record(rng.choice(_KEYS), b"1"))
    return b"".join(parts)


def test_the_pax_parser_never_raises_and_agrees_when_it_accepts() -> None:
    """Straight at `parse_extended`, records of random bytes and tokens: None or tarfile's member."""
    rng = random.Random(1519)
    accepted_count = 0
    for _ in range(20_000):
        body = _noise(rng) if rng.random() < 0.7 else _records(rng)
        cut = rng.choice([len(body)] * 8 + [rng.randrange(len(body) + 1)])
        data = member(body[:cut], size=rng.choice([cut] * 8 + [rng.randrange(cut + 2)]))
        found = pax.parse_extended(data + END_OF_ARCHIVE, 0, 0, {}, ENC, ERR)
        if found is not None:
            accepted_count += 1
            info, following, _ = found
            assert reference(data) == (attrs(info), following), data
    assert accepted_count > 1_000


def test_pax_headers_split_across_chunks_read_the_same_with_both_parsers() -> None:
    rng = random.Random(1518)
    for _ in range(400):
        data = random_archive(rng)
        if rng.random() < 0.5:
            data = _mutate(rng, data)
        seed = rng.randrange(1 << 30)
        assert read_choppy(data, seed, fast=True) == read_choppy(data, seed, fast=False)


def test_every_prefix_of_a_pax_member_reads_the_same() -> None:
    """Cut anywhere (a record, the padding, the member's header): never a different member."""
    data = member(
        times() + record(b"path", "d\u00e9j\u00e0".encode()) + record(b"size", b"700"), None, bytes(700)
    )
    for cut in range(len(data) + len(END_OF_ARCHIVE)):
        assert_same((data + END_OF_ARCHIVE)[:cut])


# ------------------------------------------------------------------ archives from real tools


def _tree(root: Path) -> Path:
    src = root / "src"
    (src / "d\u00e9j\u00e0" / ("n" * 120)).mkdir(parents=True)
    (src / "empty").mkdir()
    for i in range(20):
        (src / f"f{i}.txt").write_bytes(b"x" * (i * 97))
    (src / "d\u00e9j\u00e0" / ("n" * 120) / ("long" * 30)).write_bytes(b"deep")
    (src / "tool").write_bytes(b"#!/bin/sh\n")
    (src / "tool").chmod(0o755)
    os.symlink("f1.txt", src / "link")
    os.symlink("d\u00e9j\u00e0/" + "n" * 120 + "/" + "long" * 30, src / "long-link")
    return src


def _read_fast(data: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], int]:
    """The member names, and how many members tarfile's parser read (not the fast paths)."""
    found, end = assert_same(data)
    assert end == "complete"
    return [str(value(m, "name")) for m in found], len(found) - _fast_members(data, monkeypatch)


def _run(*argv: str, cwd: Path, locale: str = "C.UTF-8") -> bytes:
    """The tool's output. In the C locale bsdtar writes non-ASCII names with hdrcharset=BINARY."""
    env = {**os.environ, "LC_ALL": locale}
    return subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True).stdout


def test_gnu_tar_posix_archives_take_the_fast_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _tree(tmp_path)
    os.link(src / "f2.txt", src / "hard")
    data = _run("tar", "--format=posix", "-cf", "-", "src", cwd=tmp_path)
    names, calls = _read_fast(data, monkeypatch)
    assert len(names) == 29 and "src/hard" in names and "src/link" in names
    assert calls == 0


def test_git_archive_takes_the_fast_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _tree(tmp_path)
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    _run(*git, "init", "-q", cwd=src)
    _run(*git, "add", "-A", cwd=src)
    _run(*git, "commit", "-qm", "package", cwd=src)
    data = _run("git", "archive", "--prefix=pkg/", "HEAD", cwd=src)
    assert data[156:157] == b"g"  # git archive's global header: comment=<commit id>
    names, calls = _read_fast(data, monkeypatch)
    assert "pkg/long-link" in names and any(len(n) > 200 for n in names)
    assert calls == 1  # the member read with the global header


def test_tarfile_pax_archives_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    members = [dir_("pkg/"), dir_("pkg/" + "\u00e9" * 150 + "/"), reg("pkg/caf\u00e9", b"x" * 700)]
    members += [reg("pkg/" + "n" * 300, b"y"), sym("pkg/l", "t" * 200), hard("pkg/h", "pkg/caf\u00e9")]
    members += [reg("pkg/\u4e2d\u6587/\u00fc" * 10, b"z" * 513, uid=10**12, uname="\u00e9")]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, content in members:
            info.mtime = 1_700_000_000.25
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    names, calls = _read_fast(buf.getvalue(), monkeypatch)
    assert names[1] == "pkg/" + "\u00e9" * 150 and len(names) == len(members)
    assert calls == 0


@pytest.mark.parametrize("fmt", ["pax", "paxr", "ustar", "pax-c-locale"])
def test_bsdtar_archives_read_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    assert shutil.which("bsdtar"), "bsdtar missing: scripts/setup.sh installs it (libarchive-tools)"
    src = _tree(tmp_path)
    if fmt == "ustar":  # ustar cannot hold the long names
        shutil.rmtree(src / "d\u00e9j\u00e0")
        (src / "long-link").unlink()
    locale = "C" if fmt.endswith("-c-locale") else "C.UTF-8"
    data = _run("bsdtar", "--format", fmt.split("-")[0], "-cf", "-", "src", cwd=tmp_path, locale=locale)
    names, calls = _read_fast(data, monkeypatch)
    assert "src/link" in names
    if locale == "C":  # hdrcharset=BINARY before the non-ASCII names: those are tarfile's
        assert b"hdrcharset=BINARY" in data and 0 < calls < len(names)
    else:
        assert calls == 0
