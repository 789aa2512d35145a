"""The fast header parser against tarfile's: the same members, or the same refusal, on every archive.

Three layers: single 512-byte blocks (the fast parser, when it accepts one, must build exactly what
tarfile builds), whole archives read by the reader with and without the fast parser (the hostile corpus
and seeded random archives: same member list and next-header offsets, or the same error class and
message), and the grammar itself (the forms it must accept, so the fast path cannot silently go dead).
Randomness is seeded: a failure reproduces with the same seed.
"""

from __future__ import annotations

import io
import random
import re
import tarfile
from pathlib import Path

import pytest

from initcontainer import formats, untar, ustar
from tests.initcontainer.corpus import Case, corpus, dir_, hard, raw_header, reg, sym, tar_bytes
from tests.initcontainer.tarcompare import ATTRS, assert_same, attrs, read_all, read_choppy, reference, value


def check_block(block: bytes, offset: int = 0) -> bool:
    """True when the fast parser accepted `block`, after checking it agrees with tarfile."""
    found = ustar.parse_plain(block, offset, tarfile.ENCODING, "surrogateescape")
    if found is None:
        return False
    info, following = found
    assert reference(block, offset) == (attrs(info), following), block
    return True


# ------------------------------------------------------------------ the corpus and good archives


_TAR_CASES = [case for case in corpus() if not re.search(r"(^|-)zip(-|$)", case.name)]


@pytest.mark.parametrize("case", _TAR_CASES, ids=lambda c: c.name)
def test_corpus_reads_the_same_with_both_parsers(tmp_path: Path, case: Case) -> None:
    data = case.build(tmp_path)
    fmt = formats.detect_format(data[: formats.HEAD_BYTES])
    assert fmt != formats.ZIP
    assert_same(data, fmt)


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_good_archives_read_the_same_and_mostly_fast(fmt: int) -> None:
    members = [dir_("pkg/"), reg("pkg/a", b"x" * 513), sym("pkg/l", "a"), hard("pkg/h", "pkg/a")]
    members += [reg("p/" + "d" * 100 + f"/file{i}", b"y" * i) for i in range(5)]  # ustar prefix field
    data = tar_bytes(members, fmt=fmt)
    found, end = assert_same(data)
    assert end == "complete" and len(found) == len(members)
    # each member's own header (GNU: its long-name header, not plain)
    offsets = [int(str(value(m, "offset"))) for m in found]
    accepted = sum(check_block(data[o : o + 512], o) for o in offsets)
    assert accepted == (len(members) if fmt == tarfile.USTAR_FORMAT else 4)  # pax: an x header


# ------------------------------------------------------------------ blocks drawn at random


def _octal(rng: random.Random, width: int, value: int) -> bytes:
    """`value` in one of the forms a tar writer may use, some outside the grammar on purpose."""
    digits = b"%o" % value
    forms = [
        digits.rjust(width - 1, b"0") + b"\x00",
        digits.rjust(width - 1, b" ") + b"\x00",
        digits.rjust(width - 2, b"0") + b" \x00",
        digits.rjust(width - 2, b"0") + b"\x00 ",
        digits.rjust(width, b"0"),
        digits + bytes(width - len(digits)),
        b" " + digits + b" " * (width - 1 - len(digits)),
        bytes(width),
        b" " * width,
        b"\x80" + value.to_bytes(width - 1, "big"),
        b"\xff" * width,
        b"-" + digits.rjust(width - 2, b"0") + b"\x00",
        b"+" + digits.rjust(width - 2, b"0") + b"\x00",
        b"0o" + digits.rjust(width - 3, b"0") + b"\x00",
        b"1_" + digits.rjust(width - 3, b"0") + b"\x00",
        b"\t" + digits.rjust(width - 2, b"0") + b"\x00",
        digits.rjust(width - 3, b"0") + b"\x00x\x00",
        digits.rjust(width - 1, b"9") + b"\x00",
        b"0 1" + bytes(width - 3),
        bytes([rng.randrange(256) for _ in range(width)]),
    ]
    field = rng.choice(forms[:9] if rng.random() < 0.9 else forms)[:width]  # the first 9 are plain
    return field + bytes(width - len(field))


def _text(rng: random.Random, width: int) -> bytes:
    choices = [
        b"pkg/file.txt",
        b"pkg/dir/",
        b"pkg//dir//",
        b"/",
        b"",
        b"a" * width,
        "caf\u00e9/\u00fc".encode(),
        b"bad\xff\xfeutf8",
        b"nul\x00after",
        b"../up",
        bytes([rng.randrange(1, 256) for _ in range(rng.randrange(width + 1))]),
    ]
    field = rng.choice(choices)[:width]
    return field + bytes(width - len(field))


def random_block(rng: random.Random) -> bytes:
    block = bytearray(512)
    block[0:100] = _text(rng, 100)
    block[100:108] = _octal(rng, 8, rng.choice([0o644, 0o755, 0o4755, 0o100644, 0o7777777]))
    block[108:116] = _octal(rng, 8, rng.choice([0, 1000, 0o7777777]))
    block[116:124] = _octal(rng, 8, rng.choice([0, 1000]))
    size = rng.choice([0, 0, 1, 511, 512, 513, 70_000, 8**11 - 1, rng.randrange(1 << 33)])
    block[124:136] = _octal(rng, 12, size)
    block[136:148] = _octal(rng, 12, rng.choice([0, 1_700_000_000, 8**11 - 1]))
    block[156:157] = rng.choice([b"0"] * 6 + [b"5"] * 3 + [b"1", b"2", b"\x00", b"7", b"3", b"x", b"g", b"L"])
    block[157:257] = _text(rng, 100)
    block[257:265] = rng.choice(
        [b"ustar\x0000"] * 4 + [b"ustar  \x00"] * 2 + [bytes(8), b"ustar\x00\x00\x00", b"USTAR\x0000"]
    )
    block[265:297] = _text(rng, 32)
    block[297:329] = _text(rng, 32)
    block[329:337] = _octal(rng, 8, rng.choice([0, 1, 259]))
    block[337:345] = _octal(rng, 8, rng.choice([0, 3]))
    block[345:500] = rng.choice([bytes(155), _text(rng, 155), b"p" * 155])
    if rng.random() < 0.2:
        block[500:512] = bytes([rng.randrange(256) for _ in range(12)])
    block[148:156] = b" " * 8
    unsigned = sum(block)
    signed = unsigned - 256 * sum(1 for b in block if b > 127)
    checksum = rng.choice([unsigned] * 6 + [signed, unsigned + 1, 0])
    forms = [b"%06o\x00 " % checksum, b"%07o\x00" % checksum, b"%o" % checksum]
    block[148:156] = rng.choice(forms)[:8].ljust(8, b" ")
    return bytes(block)


def test_random_blocks_agree_with_tarfile() -> None:
    rng = random.Random(15)
    accepted = 0
    for _ in range(20_000):
        accepted += check_block(random_block(rng), rng.choice([0, 512, 1 << 20]))
    assert accepted > 1_000  # the grammar's forms come up often enough for the check to mean something


def test_the_grammar_accepts_the_common_forms() -> None:
    """What tarfile, GNU tar and bsdtar write for plain members: if these fell back, the fast path
    would be dead code and the differential tests would prove nothing."""
    blocks = [
        raw_header(b"pkg/file.txt", 5),
        raw_header(b"pkg/dir/", 0, b"5"),
        raw_header(b"pkg/link", 0, b"2", {157: b"file.txt"}),
        raw_header(b"pkg/hard", 0, b"1", {157: b"pkg/file.txt"}),
        raw_header(b"file", 5, fields={345: b"a/very/long/prefix"}),
        raw_header(b"gnu", 5, fields={257: b"ustar  \x00", 100: b"000644 \x00", 124: b"%11o " % 5}),
        raw_header(b"spaces", 5, fields={100: b"   644 \x00", 108: bytes(8), 329: b" " * 8}),
    ]
    for block in blocks:
        assert check_block(block), block
    for block in [
        raw_header(b"neg", b"\xff" * 12),
        raw_header(b"pax", 30, b"x"),
        raw_header(b"v7", 5, fields={257: bytes(8)}),
        raw_header(b"gnu-prefix", 5, fields={257: b"ustar  \x00", 345: b"atime"}),
        raw_header(b"dir-with-size", 5, b"5"),
        bytes(512),
        raw_header(b"short", 5)[:511],
    ]:
        assert ustar.parse_plain(block, 0, tarfile.ENCODING, "surrogateescape") is None, block


# ------------------------------------------------------------------ archives mutated at random


def _seed_archive(rng: random.Random) -> bytes:
    fmt = rng.choice([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
    members = []
    for i in range(rng.randrange(1, 8)):
        name = rng.choice(["f", "d/f", "d/" + "n" * 120, "x" * 99, "p/" * 60 + "f"]) + str(i)
        kind = rng.random()
        if kind < 0.6:
            members.append(reg(name, bytes(rng.choice([0, 1, 511, 512, 513, 2000]))))
        elif kind < 0.8:
            members.append(dir_(name + "/"))
        else:
            members.append(sym(name, "f0"))
    buf = io.BytesIO()
    headers = {"comment": "g"} if fmt == tarfile.PAX_FORMAT and rng.random() < 0.2 else {}
    with tarfile.open(fileobj=buf, mode="w", format=fmt, pax_headers=headers) as tar:
        for info, data in members:
            try:
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
            except ValueError:  # a name this format cannot hold
                continue
    return buf.getvalue()


def _mutate(rng: random.Random, data: bytes) -> bytes:
    raw = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        at = rng.randrange(0, max(len(raw), 512) // 512) * 512
        what = rng.random()
        if what < 0.5 and at + 512 <= len(raw):  # one header field rewritten, checksum fixed or not
            fields = [(0, 100), (100, 8), (124, 12), (136, 12), (156, 1), (257, 8), (345, 155)]
            start, width = rng.choice(fields)
            if width in (8, 12):
                field = _octal(rng, width, rng.randrange(1 << 20))
            else:
                field = _text(rng, width) if width > 8 else bytes([rng.choice(b"0125x")])
            raw[at + start : at + start + width] = field
            if rng.random() < 0.8:
                raw[at + 148 : at + 156] = b" " * 8
                raw[at + 148 : at + 156] = b"%06o\x00 " % sum(raw[at : at + 512])
        elif what < 0.7:  # cut anywhere
            del raw[rng.randrange(len(raw) + 1) :]
        elif what < 0.85:  # one random byte
            if raw:
                raw[rng.randrange(len(raw))] = rng.randrange(256)
        else:  # a hand-made block spliced in
            raw[at:at] = random_block(rng)
    return bytes(raw)


def test_random_archives_read_the_same_with_both_parsers() -> None:
    rng = random.Random(1515)
    outcomes: dict[str, int] = {}
    for _ in range(1_500):
        data = _mutate(rng, _seed_archive(rng))
        _, end = assert_same(data)
        outcomes[end.partition(":")[0]] = outcomes.get(end.partition(":")[0], 0) + 1
    assert outcomes.get("complete", 0) > 100 and outcomes.get("IntegrityError", 0) > 100, outcomes


def test_the_reader_parses_plain_headers_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a plain ustar archive tarfile's parser runs once, for the end-of-archive block; a global pax
    header hands every later member back to it (it applies that header to each of them)."""
    calls: list[int] = []
    real = untar._TarInfo.fromtarfile.__func__  # type: ignore[attr-defined]

    def counting(cls: type[untar._TarInfo], archive: tarfile.TarFile) -> untar._TarInfo:
        calls.append(1)
        result: untar._TarInfo = real(cls, archive)
        return result

    monkeypatch.setattr(untar._TarInfo, "fromtarfile", classmethod(counting))
    members = [dir_("d/"), *(reg(f"d/f{i}", b"x" * i) for i in range(50)), sym("d/l", "f1")]
    _, end = assert_same(tar_bytes(members, fmt=tarfile.USTAR_FORMAT))
    assert end == "complete"
    calls.clear()
    read_all(tar_bytes(members, fmt=tarfile.USTAR_FORMAT), formats.TAR, fast=True)
    assert len(calls) == 1
    calls.clear()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "g"}) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    found, end = assert_same(buf.getvalue())
    assert end == "complete" and all(
        m[ATTRS.index("pax_headers")] == ({"comment": "g"}, "dict") for m in found
    )


def test_headers_split_across_chunks_read_the_same_with_both_parsers() -> None:
    rng = random.Random(1516)
    outcomes: dict[str, int] = {}
    for _ in range(400):
        data = _seed_archive(rng)
        if rng.random() < 0.6:
            data = _mutate(rng, data)
        seed = rng.randrange(1 << 30)
        slow, fast = read_choppy(data, seed, fast=False), read_choppy(data, seed, fast=True)
        assert fast == slow
        outcomes[fast[1].partition(":")[0]] = outcomes.get(fast[1].partition(":")[0], 0) + 1
    assert outcomes.get("complete", 0) > 100 and outcomes.get("IntegrityError", 0) > 30, outcomes
