"""Archive builders and the malicious-archive corpus, built by the tests themselves.

Every hostile case is a real archive made with tarfile/zipfile from hand-crafted
TarInfo/ZipInfo members (or the real `zip` CLI where Python cannot write the
feature), so the bytes are exactly what an attacker could serve.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import stat
import struct
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from initcontainer import contract
from initcontainer.errors import IntegrityError, PackageError, UnsafeArchiveError
from initcontainer.extract import Limits

Member = tuple[tarfile.TarInfo, bytes | None]


class NonSeekable:
    """A stream exposing only `read`, like an HTTP body; records what was read."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)
        self.consumed = 0

    def read(self, size: int = -1, /) -> bytes:
        chunk = self._buf.read(size)
        self.consumed += len(chunk)
        return chunk


# ------------------------------------------------------------------ tar members


def reg(name: str, data: bytes = b"data\n", mode: int = 0o644, **attrs: object) -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 1_700_000_000
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def dir_(name: str, mode: int = 0o755) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    return info, None


def sym(name: str, target: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    info.mode = 0o777
    return info, None


def hard(name: str, target: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE
    info.linkname = target
    return info, None


def special(name: str, kind: bytes) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.devmajor, info.devminor = 1, 3
    return info, None


def tar_bytes(members: list[Member], compress: str = "", fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return compress_bytes(buf.getvalue(), compress)


def compress_bytes(raw: bytes, compress: str) -> bytes:
    if compress == "":
        return raw
    if compress == "gz":
        return gzip.compress(raw, compresslevel=6, mtime=0)
    if compress == "bz2":
        return bz2.compress(raw)
    if compress == "xz":
        return lzma.compress(raw, format=lzma.FORMAT_XZ)
    raise ValueError(compress)


def patch_size(tar: bytes, offset: int, new_size: int) -> bytes:
    """Rewrite the size field of the header at `offset` and fix its checksum (a lying header)."""
    block = bytearray(tar[offset : offset + 512])
    block[124:136] = b"%011o\x00" % new_size
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    return tar[:offset] + bytes(block) + tar[offset + 512 :]


# ------------------------------------------------------------------ zip members


def zip_bytes(
    entries: list[tuple[zipfile.ZipInfo | str, bytes]], method: int = zipfile.ZIP_DEFLATED
) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return buf.getvalue()


def zip_info(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 2, 3, 4, 5))
    info.create_system = 3
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def zip_overlapping() -> bytes:
    """Two central-directory entries pointing at one local header (CVE-2024-0450 class)."""
    data = zip_bytes([("a.txt", b"A" * 1000), ("b.txt", b"B" * 1000)])
    cd = data.index(b"PK\x01\x02", data.index(b"PK\x01\x02") + 4)  # second central record
    return data[: cd + 42] + struct.pack("<I", 0) + data[cd + 46 :]


def zip_encrypted(workdir: Path) -> bytes:
    """A real ZipCrypto entry, made by Info-ZIP `zip -P` (Python cannot write one)."""
    (workdir / "secret.txt").write_bytes(b"top secret\n")
    out = workdir / "enc.zip"
    subprocess.run(["zip", "-q", "-P", "pw", str(out), "secret.txt"], cwd=workdir, check=True)
    return out.read_bytes()


def zip_lying_size() -> bytes:
    """Central directory and local header both claim 10 bytes for 100 bytes of data."""
    data = zip_bytes([("a.txt", b"x" * 100)], method=zipfile.ZIP_STORED)
    local = data.index(b"PK\x03\x04")
    cd = data.index(b"PK\x01\x02")
    patched = bytearray(data)
    struct.pack_into("<I", patched, local + 22, 10)
    struct.pack_into("<I", patched, cd + 24, 10)
    return bytes(patched)


def negative_size(members: list[Member], offset: int = 0) -> bytes:
    """A GNU tar whose header at `offset` has a base-256 size of -1 (CVE-2025-8194 class)."""
    raw = bytearray(tar_bytes(members, fmt=tarfile.GNU_FORMAT))
    block = raw[offset : offset + 512]
    block[124:136] = b"\xff" * 12
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    raw[offset : offset + 512] = block
    return bytes(raw)


def raw_header(
    name: bytes, size: int | bytes = 0, kind: bytes = b"0", fields: dict[int, bytes] | None = None
) -> bytes:
    """One hand-made ustar header block: `size` as an int (octal) or raw 12 bytes (base-256),
    `fields` overwrites bytes at offsets (GNU sparse structs...); the checksum is fixed."""
    block = bytearray(512)
    block[0 : len(name)] = name
    block[100:108] = b"0000644\x00"
    block[124:136] = size if isinstance(size, bytes) else b"%011o\x00" % size
    block[136:148] = b"%011o\x00" % 1_700_000_000
    block[156:157] = kind
    block[257:265] = b"ustar\x0000"
    for offset, value in (fields or {}).items():
        block[offset : offset + len(value)] = value
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % 512)


def raw_pax(records: dict[str, str] | bytes, kind: bytes = b"x") -> bytes:
    """A pax header (`x`, or `g` for a global one) with these records, or this raw body."""
    body = records if isinstance(records, bytes) else b""
    if not isinstance(records, bytes):
        for key, value in records.items():
            record = f" {key}={value}\n".encode()
            length = len(record) + len(str(len(record)))
            length = len(record) + len(str(length))
            body += str(length).encode() + record
    return raw_header(b"././@PaxHeader", len(body), kind) + padded(body)


def base256(value: int) -> bytes:
    """A 12-byte GNU base-256 number field (negative values too)."""
    return (b"\xff" if value < 0 else b"\x80") + (value % (1 << 88)).to_bytes(11, "big")


END_OF_ARCHIVE = bytes(1024)


def long_name(name: str, data: bytes = b"x") -> Member:
    """A regular member whose name needs a pax or GNU long-name header."""
    info, _ = reg("placeholder", data)
    info.name = name
    return info, data


def zip_local_name_differs(local: bytes) -> bytes:
    """The central directory says `aaaaaaaa.txt`, the local header says `local` (same length)."""
    data = bytearray(zip_bytes([("a" * (len(local) - 4) + ".txt", b"x" * 50)], method=zipfile.ZIP_STORED))
    at = data.index(b"PK\x03\x04") + 30
    data[at : at + len(local)] = local
    return bytes(data)


# ------------------------------------------------------------------ the corpus


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], bytes]
    error: type[PackageError]
    strip: int = 0
    limits: Limits = field(default_factory=Limits)
    match: str = ""
    """A regex the error message must contain: the case is refused for the intended reason."""


def _pax_named(placeholder: str, name: str) -> tarfile.TarInfo:
    """A member whose pax `path` record holds `name` verbatim (NUL included)."""
    info, _ = reg(placeholder, b"x")
    info.pax_headers = {"path": name}
    return info


def _gz(members: list[Member]) -> Callable[[Path], bytes]:
    return lambda outside: tar_bytes(members, "gz")


def corpus() -> list[Case]:
    """Hostile archives; `outside` is a directory next to dest that must stay untouched."""
    small = Limits(max_extracted_bytes=1_000_000, max_files=100)

    def absolute_into(outside: Path) -> bytes:
        return tar_bytes([reg(str(outside / "pwned"))], "gz")

    def abs_symlink(outside: Path) -> bytes:
        return tar_bytes([sym("etc", "/etc"), reg("ok", b"x")], "gz")

    def write_through_abs_link(outside: Path) -> bytes:
        return tar_bytes([sym("link", str(outside)), reg("link/pwned")], "gz")

    def hardlink_abs(outside: Path) -> bytes:
        return tar_bytes([hard("passwd", "/etc/passwd"), reg("passwd", b"overwrite")], "gz")

    def hardlink_abs_sentinel(outside: Path) -> bytes:
        return tar_bytes([hard("victim", str(outside / "victim.txt")), reg("victim", b"pwned")], "gz")

    def zip_abs(outside: Path) -> bytes:
        return zip_bytes([(str(outside / "pwned"), b"x")])

    def zip_bomb(outside: Path) -> bytes:
        return zip_bytes([("zeros.bin", bytes(5_000_000))])

    def many_files() -> list[Member]:
        return [reg(f"f{i:04}", b"") for i in range(150)]

    def lying_small(outside: Path) -> bytes:
        raw = tar_bytes([reg("a.txt", b"A" * 2000), reg("b.txt", b"B")], fmt=tarfile.USTAR_FORMAT)
        return compress_bytes(patch_size(raw, 0, 10), "gz")

    def lying_large(outside: Path) -> bytes:
        raw = tar_bytes([reg("a.txt", b"A" * 600)], fmt=tarfile.USTAR_FORMAT)
        return patch_size(raw, 0, 5000)[: 512 + 1024]

    def lying_huge(outside: Path) -> bytes:
        raw = tar_bytes([reg("a.txt", b"A" * 600)], fmt=tarfile.GNU_FORMAT)
        return compress_bytes(patch_size(raw, 0, 8 * 1024**3 - 1), "gz")

    return [
        Case("absolute-path", absolute_into, UnsafeArchiveError),
        Case("dotdot-traversal", _gz([reg("../pwned")]), UnsafeArchiveError),
        Case("dotdot-nested", _gz([reg("a/b/../../../pwned")]), UnsafeArchiveError),
        Case("traversal-after-strip", _gz([reg("pkg/../pwned")]), UnsafeArchiveError, strip=1),
        Case("symlink-to-etc", abs_symlink, UnsafeArchiveError),
        Case("symlink-relative-escape", _gz([sym("up", "../.."), reg("ok")]), UnsafeArchiveError),
        Case(
            "symlink-deep-escape",
            _gz([dir_("a/"), sym("a/up", "../../outside"), reg("ok")]),
            UnsafeArchiveError,
        ),
        Case(
            "symlink-chain-escape",
            _gz([dir_("a/"), sym("a/l1", ".."), sym("l2", "a/l1/.."), reg("ok")]),
            UnsafeArchiveError,
        ),
        Case("write-through-abs-symlink", write_through_abs_link, UnsafeArchiveError),
        Case(
            "symlink-to-dir-then-file-under-it",
            _gz([dir_("real/"), sym("link", "real"), reg("link/file")]),
            UnsafeArchiveError,
        ),
        Case("symlink-then-dir-through-it", _gz([sym("link", "."), dir_("link/sub/")]), UnsafeArchiveError),
        Case("hardlink-to-etc-passwd", hardlink_abs, UnsafeArchiveError),
        Case("hardlink-to-outside-absolute", hardlink_abs_sentinel, UnsafeArchiveError),
        Case("hardlink-outside-relative", _gz([hard("x", "../outside/victim.txt")]), UnsafeArchiveError),
        Case("hardlink-to-missing", _gz([hard("x", "not-there")]), UnsafeArchiveError),
        Case(
            "hardlink-to-symlink",
            _gz([reg("f"), sym("s", "f"), hard("h", "s")]),
            UnsafeArchiveError,
        ),
        Case("char-device", _gz([reg("ok"), special("null", tarfile.CHRTYPE)]), UnsafeArchiveError),
        Case("block-device", _gz([special("sda", tarfile.BLKTYPE), reg("ok")]), UnsafeArchiveError),
        Case("fifo", _gz([special("pipe", tarfile.FIFOTYPE), reg("ok")]), UnsafeArchiveError),
        Case("file-replaces-dir", _gz([dir_("d/"), reg("d/f"), reg("d")]), UnsafeArchiveError),
        Case("reserved-marker-name", _gz([reg(contract.MARKER_NAME)]), UnsafeArchiveError),
        Case("reserved-staging-name", _gz([reg(contract.STAGING_PREFIX + "x/f")]), UnsafeArchiveError),
        Case("size-bomb", _gz([reg("zeros", bytes(2_000_000))]), UnsafeArchiveError, limits=small),
        Case(
            "size-bomb-many-small",
            _gz([reg(f"z{i}", bytes(300_000)) for i in range(5)]),
            UnsafeArchiveError,
            limits=small,
        ),
        Case("count-bomb", lambda outside: tar_bytes(many_files(), "gz"), UnsafeArchiveError, limits=small),
        Case("header-claims-huge-size", lying_huge, UnsafeArchiveError, limits=small),
        Case("header-claims-less-than-data", lying_small, IntegrityError),
        Case("header-claims-more-than-data", lying_large, IntegrityError),
        # -- names and nesting
        Case(
            "pax-long-name-dotdot",
            _gz([long_name("a/" * 60 + "../" * 61 + "pwned")]),
            UnsafeArchiveError,
            match="'\\.\\.' component",
        ),
        Case(
            "gnu-long-name-dotdot",
            lambda o: tar_bytes([long_name("a/" * 60 + "../" * 61 + "pwned")], "gz", fmt=tarfile.GNU_FORMAT),
            UnsafeArchiveError,
            match="'\\.\\.' component",
        ),
        Case(
            "gnu-long-link-escape",
            lambda o: tar_bytes(
                [dir_("d/"), sym("d/l", "../" * 80 + "etc"), reg("ok")], fmt=tarfile.GNU_FORMAT
            ),
            UnsafeArchiveError,
            match="points outside",
        ),
        Case(
            "pax-name-with-nul",
            _gz([(_pax_named("ok", "a\x00/../../pwned"), b"x")]),
            UnsafeArchiveError,
            match="NUL byte",
        ),
        # Deeper than Python's recursion limit: such a tree could never be removed again (crash loop).
        Case("deep-nesting", _gz([reg("a/" * 1500 + "f")]), UnsafeArchiveError, match="nested deeper"),
        Case(
            "deep-nesting-just-over", _gz([reg("d/" * 256 + "f")]), UnsafeArchiveError, match="nested deeper"
        ),
        # -- links and replacements
        Case(
            "symlink-is-parent-after-strip",
            _gz([sym("p/x", "."), reg("q/x/f")]),
            UnsafeArchiveError,
            strip=1,
            match="goes through the symlink",
        ),
        Case(
            "dir-replaced-by-symlink",
            _gz([dir_("d/"), sym("d", "."), reg("d/f")]),
            UnsafeArchiveError,
            match="replace a directory",
        ),
        Case(
            "implicit-dir-replaced-by-symlink",
            _gz([reg("d/f"), sym("d", "."), reg("d/g")]),
            UnsafeArchiveError,
            match="replace a directory",
        ),
        Case(
            "hardlink-target-replaced-by-symlink",
            _gz([reg("a", b"1"), hard("b", "a"), sym("a", "b"), hard("c", "a")]),
            UnsafeArchiveError,
            match="not a regular file",
        ),
        Case(
            "hardlink-to-directory",
            _gz([dir_("d/"), reg("d/f"), hard("h", "d")]),
            UnsafeArchiveError,
            match="not a regular file",
        ),
        Case(
            "hardlink-through-symlink",
            _gz([dir_("d/"), reg("d/f"), sym("l", "d"), hard("h", "l/f")]),
            UnsafeArchiveError,
            match="not a regular file",
        ),
        Case(
            "hardlink-dotdot-after-strip",
            _gz([reg("p/f"), hard("p/h", "p/../../outside/victim.txt")]),
            UnsafeArchiveError,
            strip=1,
            match="'\\.\\.' component",
        ),
        # -- lying headers
        Case(
            "negative-size",
            lambda o: negative_size([reg("a", b"A" * 600), reg("b")]),
            IntegrityError,
            # Ours, or the header parser's own refusal on Pythons with the 2025 tarfile fixes (3.13.4+).
            match="declares -1 bytes|invalid offset|member header is corrupt",
        ),
        Case(
            "negative-size-second-member",
            lambda o: compress_bytes(negative_size([reg("z", b"z"), reg("a", b"A" * 600)], 1024), "gz"),
            IntegrityError,
            # Ours, or the header parser's own refusal on Pythons with the 2025 tarfile fixes (3.13.4+).
            match="declares -1 bytes|invalid offset|member header is corrupt",
        ),
        # -- headers the parser mishandles by itself (the reader must turn them into clean refusals)
        *header_parser_cases(small),
        Case("zip-slip", lambda o: zip_bytes([("../pwned", b"x")]), UnsafeArchiveError),
        Case(
            "zip-mixed-separators",
            lambda o: zip_bytes([("a/b\\c", b"x"), ("a\\..\\../pwned", b"y")]),
            UnsafeArchiveError,
            match="'\\.\\.' component",
        ),
        Case(
            "zip-local-header-traversal",
            lambda o: zip_local_name_differs(b"../../pwned1"),
            IntegrityError,
            match="differ",
        ),
        Case(
            "zip-symlink-then-file-under-it",
            lambda o: zip_bytes([(zip_info("l", stat.S_IFLNK | 0o777), b"."), ("l/f", b"x")]),
            UnsafeArchiveError,
            match="goes through the symlink",
        ),
        Case(
            "zip-deep-nesting",
            lambda o: zip_bytes([("a/" * 1500 + "f", b"x")]),
            UnsafeArchiveError,
            match="nested deeper",
        ),
        Case("zip-slip-backslash", lambda o: zip_bytes([("..\\..\\pwned", b"x")]), UnsafeArchiveError),
        Case("zip-absolute", zip_abs, UnsafeArchiveError),
        Case(
            "zip-symlink-escape",
            lambda o: zip_bytes([(zip_info("link", stat.S_IFLNK | 0o777), b"../../outside"), ("ok", b"x")]),
            UnsafeArchiveError,
        ),
        Case(
            "zip-symlink-absolute",
            lambda o: zip_bytes([(zip_info("link", stat.S_IFLNK | 0o777), b"/etc"), ("ok", b"x")]),
            UnsafeArchiveError,
        ),
        Case(
            "zip-fifo",
            lambda o: zip_bytes([(zip_info("pipe", stat.S_IFIFO | 0o644), b""), ("ok", b"x")]),
            UnsafeArchiveError,
        ),
        Case("zip-bomb", zip_bomb, UnsafeArchiveError, limits=small),
        Case(
            "zip-count-bomb",
            lambda o: zip_bytes([(f"f{i}", b"") for i in range(150)]),
            UnsafeArchiveError,
            limits=small,
        ),
        Case("zip-overlapping-entries", lambda o: zip_overlapping(), UnsafeArchiveError),
        Case("zip-encrypted", lambda o: zip_encrypted(Path(tempfile.mkdtemp(dir=o))), UnsafeArchiveError),
        Case("zip-lying-size", lambda o: zip_lying_size(), IntegrityError),
        Case("empty-tar", lambda o: tar_bytes([]), IntegrityError),
        Case("empty-tar-gz-only-dirs", _gz([dir_("a/"), dir_("a/b/")]), IntegrityError),
        Case("empty-zip", lambda o: zip_bytes([]), IntegrityError),
        Case("only-stripped-away", _gz([reg("toplevel-file")]), IntegrityError, strip=1),
        Case(
            "truncated-gzip",
            lambda o: tar_bytes([reg("a", os.urandom(50_000))], "gz")[:30_000],
            IntegrityError,
        ),
        Case(
            "gzip-missing-trailer",
            lambda o: tar_bytes([reg("a", b"hello")], "gz")[:-8],
            IntegrityError,
        ),
        Case(
            "truncated-tar-at-member-boundary",
            lambda o: tar_bytes([reg("a", b"A" * 512), reg("b", b"B" * 512)], fmt=tarfile.USTAR_FORMAT)[
                :1024
            ],
            IntegrityError,
        ),
        Case(
            "truncated-xz", lambda o: tar_bytes([reg("a", os.urandom(20_000))], "xz")[:-100], IntegrityError
        ),
        Case(
            "corrupt-bz2",
            lambda o: tar_bytes([reg("a", b"x" * 10_000)], "bz2")[:40] + bytes(200),
            IntegrityError,
        ),
        Case("truncated-zip", lambda o: zip_bytes([("a", os.urandom(10_000))])[:5000], IntegrityError),
    ]


def header_parser_cases(small: Limits) -> list[Case]:
    """Hand-made headers on which tarfile's parser moves backwards, recurses, trusts a field
    or reads without bound. A regular file comes first so a failure is not the first header."""
    ok = raw_header(b"ok", 3) + padded(b"abc")
    empty = raw_header(b"again", 0)  # re-read forever if the parser is sent back: a count bomb
    pax10 = raw_pax(
        {
            "GNU.sparse.major": "1",
            "GNU.sparse.minor": "0",
            "GNU.sparse.realsize": "10",
            "GNU.sparse.name": "s",
        }
    )
    full_extension = b"".join(b"%011o\x00%011o\x00" % (i * 2, 1) for i in range(21)) + b"\x01" + bytes(7)

    def case(
        name: str, data: bytes, error: type[PackageError], match: str, end: bytes = END_OF_ARCHIVE
    ) -> Case:
        return Case(name, lambda o: ok + data + end, error, limits=small, match=match)

    # Ours, or the header parser's own refusal on Pythons with the 2025 tarfile fixes (3.13.4+).
    negative = "declares -1024 bytes|invalid offset|member header is corrupt"
    return [
        *(
            case(
                f"{kind.decode()}-header-negative-size-rewinds",
                empty + raw_header(b"h", base256(-1024), kind),
                IntegrityError,
                negative,
            )
            for kind in (b"x", b"g", b"L", b"K")
        ),
        case(
            "chained-long-names-recurse",
            (raw_header(b"././@LongLink", 2, b"L") + padded(b"n\x00")) * 2000 + ok,
            IntegrityError,
            "chained",
        ),
        case("chained-pax-headers-recurse", raw_pax({"comment": "c"}) * 2000 + ok, IntegrityError, "chained"),
        case(
            "gnu-sparse-extension-cut",
            raw_header(b"s", 0, b"S", {482: b"\x01", 483: b"%011o\x00" % 10}),
            IntegrityError,
            "header is corrupt",
            end=b"",
        ),
        case(
            "gnu-sparse-extensions-endless",
            raw_header(b"s", 0, b"S", {482: b"\x01", 483: b"%011o\x00" % 10**6}) + full_extension * 8192,
            UnsafeArchiveError,
            "headers of one tar member",
        ),
        case(
            "pax-sparse-0.1-map-not-numbers",
            raw_pax({"GNU.sparse.map": "a,b", "GNU.sparse.size": "1"}) + ok,
            IntegrityError,
            "header is corrupt",
        ),
        case(
            "pax-sparse-size-not-a-number",
            raw_pax({"GNU.sparse.size": "many"}) + ok,
            IntegrityError,
            "header is corrupt",
        ),
        case(
            "pax-sparse-realsize-5000-digits",
            raw_pax({"GNU.sparse.realsize": "9" * 5000}) + ok,
            IntegrityError,
            "header is corrupt",
        ),
        case(
            "pax-record-length-5000-digits",
            raw_pax(b"0" * 4992 + b"5008 a=\n") + ok,
            IntegrityError,
            "header is corrupt",
        ),
        case(
            "pax-sparse-1.0-map-no-newline",
            pax10 + raw_header(b"s", 512) + padded(b"1" * 512),
            IntegrityError,
            "header is corrupt",
        ),
        case(
            "pax-sparse-1.0-map-not-numbers",
            pax10 + raw_header(b"s", 512) + padded(b"x\n"),
            IntegrityError,
            "header is corrupt",
        ),
        case(
            "pax-sparse-1.0-map-endless",
            pax10 + raw_header(b"s", 512) + b"9999999\n" + b"1\n" * (2 << 20),
            UnsafeArchiveError,
            "headers of one tar member",
        ),
        case(
            "global-pax-many-keywords",
            raw_pax({f"k{i}": "" for i in range(200)}, b"g") + ok,
            UnsafeArchiveError,
            "global pax headers hold more than 128 keywords",
        ),
        case(
            "global-pax-too-large",
            b"".join(raw_pax({f"k{i}": "v" * 500_000}, b"g") for i in range(3)) + ok,
            UnsafeArchiveError,
            "global pax headers hold more than 1048576 bytes",
        ),
    ]


def sha256_tree(root: Path) -> dict[str, tuple[str, ...]]:
    """Everything under `root`: type, mode and content (or link target) per path."""
    out: dict[str, tuple[str, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", oct(stat.S_IMODE(st.st_mode)))
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                out[rel] = ("file", oct(stat.S_IMODE(st.st_mode)), digest, str(int(st.st_mtime)))
    return out
