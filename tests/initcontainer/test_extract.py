"""Extraction: the malicious corpus is refused without side effects; good archives round-trip."""

from __future__ import annotations

import gzip
import io
import itertools
import os
import re
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
from corpus import (
    Case,
    NonSeekable,
    compress_bytes,
    corpus,
    dir_,
    hard,
    reg,
    sha256_tree,
    sym,
    tar_bytes,
    zip_bytes,
    zip_info,
)

from initcontainer import contract, formats
from initcontainer.errors import IntegrityError, PackageError, UnsafeArchiveError
from initcontainer.extract import ExtractStats, Limits, extract
from initcontainer.install import discard, prepare_staging


def _layout(tmp_path: Path) -> tuple[Path, Path, Path]:
    """sentinel/{dest, outside/victim.txt}: everything but dest must stay as it was."""
    sentinel = tmp_path / "sentinel"
    dest = sentinel / "dest"
    outside = sentinel / "outside"
    dest.mkdir(parents=True)
    outside.mkdir()
    (outside / "victim.txt").write_text("original\n")
    return sentinel, dest, outside


def _run(data: bytes, staging: Path, strip: int = 0, limits: Limits | None = None) -> ExtractStats:
    fmt = formats.detect_format(data[: formats.HEAD_BYTES])
    return extract(NonSeekable(data), staging, fmt=fmt, limits=limits, strip_components=strip)


def _outside_view(sentinel: Path) -> dict[str, tuple[str, ...]]:
    return {k: v for k, v in sha256_tree(sentinel).items() if not (k == "dest" or k.startswith("dest/"))}


@pytest.mark.parametrize("case", corpus(), ids=lambda c: c.name)
def test_corpus_is_refused_without_side_effects(tmp_path: Path, case: Case) -> None:
    sentinel, dest, outside = _layout(tmp_path)
    data = case.build(outside)
    before = _outside_view(sentinel)
    staging = prepare_staging(dest)
    with pytest.raises(PackageError) as raised:
        try:
            _run(data, staging, case.strip, case.limits)
        finally:
            discard(staging)
    assert type(raised.value) is case.error, raised.value
    assert re.search(case.match, raised.value.message), raised.value.message
    expected_code = {
        UnsafeArchiveError: contract.EXIT_UNSAFE_ARCHIVE,
        IntegrityError: contract.EXIT_INTEGRITY,
    }[case.error]
    assert raised.value.exit_code == expected_code
    assert _outside_view(sentinel) == before
    assert os.listdir(dest) == []
    assert (outside / "victim.txt").read_text() == "original\n"


def test_html_page_is_not_an_archive() -> None:
    page = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>login</body></html>\n"
    with pytest.raises(IntegrityError, match=r"HTML page.*check the URL") as raised:
        formats.detect_format(page)
    assert raised.value.exit_code == contract.EXIT_INTEGRITY


def test_setuid_sticky_cleared_and_owners_ignored(tmp_path: Path) -> None:
    _, dest, _ = _layout(tmp_path)
    staging = prepare_staging(dest)
    data = tar_bytes(
        [
            reg("suid", b"#!/bin/sh\n", mode=0o4755, uid=0, gid=0, uname="root", gname="root"),
            reg("sgid", b"x", mode=0o2640, uid=12345, gid=54321, uname="evil", gname="evil"),
            reg("private", b"x", mode=0o600),
            reg("groupexec", b"x", mode=0o710),
            dir_("sticky/", mode=0o1777),
            reg("sticky/f", b"x", mode=0o666),
        ],
        "gz",
    )
    _run(data, staging)
    modes = {p.name: stat.S_IMODE(p.lstat().st_mode) for p in staging.rglob("*")}
    assert modes == {
        "suid": 0o755,
        "sgid": 0o644,
        "private": 0o644,
        "groupexec": 0o755,
        "sticky": 0o755,
        "f": 0o644,
    }
    owner = os.getuid()
    assert all(p.lstat().st_uid == owner for p in staging.rglob("*"))


def test_safe_links_inside_are_kept(tmp_path: Path) -> None:
    _, dest, _ = _layout(tmp_path)
    staging = prepare_staging(dest)
    data = tar_bytes(
        [
            dir_("pkg/lib/"),
            reg("pkg/lib/libx.so.1", b"ELF", mode=0o755),
            sym("pkg/lib/libx.so", "libx.so.1"),
            sym("pkg/current", "./lib"),
            dir_("pkg/bin/"),
            sym("pkg/bin/lib", "../lib/libx.so"),
            hard("pkg/bin/copy", "pkg/lib/libx.so.1"),
            sym("dangling", "pkg/not-yet"),
        ],
        "gz",
    )
    stats = _run(data, staging)
    assert stats == ExtractStats(files=2, dirs=3, symlinks=4, bytes=3)
    assert (staging / "pkg/bin/lib").read_bytes() == b"ELF"
    assert os.path.samefile(staging / "pkg/bin/copy", staging / "pkg/lib/libx.so.1")
    assert os.readlink(staging / "pkg/current") == "./lib"


def test_later_member_wins_without_writing_through(tmp_path: Path) -> None:
    """A duplicate replaces the earlier entry; a hard-linked sibling keeps its old content."""
    _, dest, _ = _layout(tmp_path)
    staging = prepare_staging(dest)
    data = tar_bytes(
        [
            reg("a", b"first"),
            hard("b", "a"),
            reg("a", b"second"),
            sym("s", "a"),
            reg("s", b"now a file"),
            reg("f", b"file"),
            dir_("f/"),
            reg("f/inner", b"x"),
        ],
        "gz",
    )
    _run(data, staging)
    assert (staging / "a").read_bytes() == b"second"
    assert (staging / "b").read_bytes() == b"first"
    assert not (staging / "s").is_symlink()
    assert (staging / "s").read_bytes() == b"now a file"
    assert (staging / "f/inner").read_bytes() == b"x"


def test_strip_components_counts_dot_like_gnu_tar(tmp_path: Path) -> None:
    _, dest, _ = _layout(tmp_path)
    staging = prepare_staging(dest)
    data = tar_bytes([dir_("./"), dir_("./pkg-1.0/"), reg("./pkg-1.0/bin/run", b"#!", mode=0o755)], "gz")
    _run(data, staging, strip=2)
    assert sorted(os.listdir(staging)) == ["bin"]
    assert (staging / "bin/run").read_bytes() == b"#!"


def test_multi_member_gzip_like_pigz(tmp_path: Path) -> None:
    _, dest, _ = _layout(tmp_path)
    staging = prepare_staging(dest)
    raw = tar_bytes([reg(f"f{i}", os.urandom(3000)) for i in range(10)])
    data = gzip.compress(raw[:7777]) + gzip.compress(raw[7777:])
    assert _run(data, staging).files == 10


def test_stream_is_read_only_as_far_as_needed(tmp_path: Path) -> None:
    """Trailing bytes after the archive are left for the caller to drain and hash."""
    _, dest, _ = _layout(tmp_path)
    staging = prepare_staging(dest)
    data = tar_bytes([reg("a", b"x")], "gz") + b"TRAILER" * 1_000_000
    stream = NonSeekable(data)
    extract(stream, staging, fmt=formats.TAR_GZ)
    assert stream.consumed < 2 * 1024 * 1024
    assert stream.consumed + len(stream.read(-1)) == len(data)


def test_stream_errors_propagate_unchanged(tmp_path: Path) -> None:
    """A network error from the caller's stream is not mistaken for a disk error."""

    class Failing:
        def __init__(self, data: bytes) -> None:
            self.inner = NonSeekable(data)

        def read(self, size: int = -1, /) -> bytes:
            if self.inner.consumed > 1000:
                raise ConnectionResetError("peer reset")
            return self.inner.read(min(size, 500))

    _, dest, _ = _layout(tmp_path)
    staging = prepare_staging(dest)
    data = tar_bytes([reg("a", os.urandom(100_000))], "gz")
    with pytest.raises(ConnectionResetError):
        extract(Failing(data), staging, fmt=formats.TAR_GZ)


def test_zstd_needs_a_zstd_module(monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulate a Python without compression.zstd (< 3.14) and without backports.zstd.
    monkeypatch.setattr(formats, "zstd_module", lambda: None)
    with pytest.raises(PackageError, match="cannot read zstd"):
        formats.detect_format(b"\x28\xb5\x2f\xfd" + bytes(100))


# ------------------------------------------------------------- good archives


def _make_tree(root: Path) -> None:
    (root / "pkg/bin").mkdir(parents=True)
    (root / "pkg/conf/deep/er").mkdir(parents=True)
    (root / "pkg/bin/start.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "pkg/bin/start.sh").chmod(0o755)
    (root / "pkg/conf/app.yaml").write_text("a: 1\n")
    (root / "pkg/conf/deep/er/ünïcødé-名前.txt").write_text("unicode\n")
    (root / "pkg/empty").write_bytes(b"")
    (root / "pkg/link").symlink_to("conf/app.yaml")
    big = root / "pkg/big.bin"
    with open(big, "wb") as f:
        block = os.urandom(1 << 20)
        for i in range(12):
            f.write(bytes([i]) + block[1:])
    for d in root.rglob("*"):
        if d.is_dir() and not d.is_symlink():
            d.chmod(0o755)
    for p in [
        root / "pkg/conf/app.yaml",
        root / "pkg/empty",
        big,
        root / "pkg/conf/deep/er/ünïcødé-名前.txt",
    ]:
        p.chmod(0o644)


def _tar_cli(src: Path, out: Path, flag: str) -> bytes:
    subprocess.run(["tar", "-C", str(src), flag, "-cf", str(out), "pkg"], check=True)
    return out.read_bytes()


def _zip_cli(src: Path, out: Path) -> bytes:
    subprocess.run(["zip", "-q", "-r", "-y", str(out), "pkg"], cwd=src, check=True)
    return out.read_bytes()


GOOD_FORMATS = ["tar", "tar.gz", "tar.bz2", "tar.xz", "tar.zst", "zip"]
_TAR_FLAGS = {"tar": "--format=gnu", "tar.gz": "-z", "tar.bz2": "-j", "tar.xz": "-J", "tar.zst": "--zstd"}


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("src")
    _make_tree(root)
    return root


@pytest.mark.parametrize("fmt", GOOD_FORMATS)
@pytest.mark.parametrize("strip", [0, 1])
def test_good_archive_round_trip(tmp_path: Path, source_tree: Path, fmt: str, strip: int) -> None:
    if fmt == "tar.zst":
        # Python < 3.14 reads zstd only with backports.zstd, which the dev lock installs.
        assert formats.zstd_module() is not None, "install backports.zstd (requirements/dev.lock)"
    out = tmp_path / f"pkg.{fmt}"
    data = _zip_cli(source_tree, out) if fmt == "zip" else _tar_cli(source_tree, out, _TAR_FLAGS[fmt])
    assert formats.detect_format(data[: formats.HEAD_BYTES]) == fmt
    _, dest, _ = _layout(tmp_path)
    staging = prepare_staging(dest)
    stats = _run(data, staging, strip=strip)
    expected_root = source_tree / "pkg" if strip else source_tree
    got, want = sha256_tree(staging), sha256_tree(expected_root)
    # Zip stores mtimes with 2 s resolution and in local time: compare content and modes only.
    if fmt == "zip":
        got = {k: v[:3] for k, v in got.items()}
        want = {k: v[:3] for k, v in want.items()}
    assert got == want
    assert stats.files == 5 and stats.symlinks == 1
    assert stats.bytes == sum(
        p.stat().st_size for p in source_tree.rglob("*") if p.is_file() and not p.is_symlink()
    )


def test_zip_entry_modes_and_dirs(tmp_path: Path) -> None:
    _, dest, _ = _layout(tmp_path)
    staging = prepare_staging(dest)
    data = zip_bytes(
        [
            ("plain.txt", b"no unix mode"),
            (zip_info("run.sh", stat.S_IFREG | 0o700), b"#!"),
            (zip_info("dir/", stat.S_IFDIR | 0o700), b""),
            (zip_info("dir/link", stat.S_IFLNK | 0o777), b"../run.sh"),
        ]
    )
    _run(data, staging)
    assert stat.S_IMODE((staging / "plain.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((staging / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((staging / "dir").stat().st_mode) == 0o755
    assert (staging / "dir/link").read_bytes() == b"#!"
    assert not any(n.endswith(".zip") for n in os.listdir(dest)), "the spool must be removed"


def test_long_names_pax(tmp_path: Path) -> None:
    _, dest, _ = _layout(tmp_path)
    staging = prepare_staging(dest)
    long_dir = "/".join(["d" * 60] * 4)
    data = tar_bytes([reg(f"{long_dir}/{'f' * 200}", b"long")], "xz")
    _run(data, staging)
    assert (staging / long_dir / ("f" * 200)).read_bytes() == b"long"


def test_pax_header_memory_bomb_refused(tmp_path: Path) -> None:
    _, dest, _ = _layout(tmp_path)
    staging = prepare_staging(dest)
    info, data = reg("a", b"x")
    info.pax_headers = {"comment": "x" * (2 << 20)}
    with pytest.raises(UnsafeArchiveError, match="metadata header"):
        _run(tar_bytes([(info, data)], "gz"), staging)


class _Chunked:
    """Hands the stream out in the given chunk sizes, cycled: network reads and decompressors
    cut the tar stream anywhere, including inside headers and member data."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self._buf = io.BytesIO(data)
        self._sizes = itertools.cycle(sizes)

    def read(self, size: int = -1, /) -> bytes:
        n = next(self._sizes)
        return self._buf.read(n if size < 0 else min(size, n))


def _varied_tar(fmt: int) -> tuple[bytes, dict[str, bytes]]:
    """Members that exercise every header path: pax or GNU long names and link targets, a global pax
    header, hard links, empty members and sizes on each side of the 512-byte block."""
    files = {f"d/s{n}": os.urandom(n) for n in (0, 1, 511, 512, 513, 1024, 70_000)}
    files["l/" + "n" * 150 + "/file"] = b"long name"
    members = [dir_("d/")]
    members += [reg(name, data) for name, data in files.items()]  # long names get pax/GNU headers
    members += [sym("d/link", "s1"), sym("d/far", "./" * 60 + "s513"), hard("d/hard", "d/s513")]
    buf = io.BytesIO()
    headers = {"comment": "a global header"} if fmt == tarfile.PAX_FORMAT else {}
    with tarfile.open(fileobj=buf, mode="w", format=fmt, pax_headers=headers) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue(), {**files, "d/hard": files["d/s513"]}


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT], ids=["pax", "gnu"])
@pytest.mark.parametrize("sizes", [[1], [7], [511], [512, 1], [513], [100, 5000, 3], [1 << 20]], ids=str)
def test_any_chunking_gives_the_same_tree(tmp_path: Path, fmt: int, sizes: list[int]) -> None:
    data, files = _varied_tar(fmt)
    staging = tmp_path / "out"
    staging.mkdir()
    stats = extract(_Chunked(data, sizes), staging, fmt=formats.TAR)
    assert stats.files == len(files)
    for name, content in files.items():
        assert (staging / name).read_bytes() == content, name
    assert os.readlink(staging / "d/link") == "s1"
    assert (staging / "d/far").read_bytes() == files["d/s513"]
    assert (staging / "d/hard").stat().st_ino == (staging / "d/s513").stat().st_ino


def _gnu_tar_sparse(tmp_path: Path, variant: str, pieces: list[tuple[int, bytes]], chunk: int) -> Path:
    """Write `pieces` (offset, data) into a sparse file, archive it with GNU tar's `variant` sparse
    encoding, extract that in `chunk`-byte reads and check the result is byte-identical."""
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        for offset, data in pieces:
            f.seek(offset)
            f.write(data)
    fmt = ["--format=gnu"] if variant == "gnu" else ["--format=pax", f"--sparse-version={variant[4:]}"]
    out = tmp_path / "s.tar"
    subprocess.run(["tar", "-C", str(src), "--sparse", *fmt, "-cf", str(out), "sparse"], check=True)
    staging = tmp_path / "out"
    staging.mkdir()
    extract(_Chunked(out.read_bytes(), [chunk]), staging, fmt=formats.TAR)
    assert (staging / "sparse").read_bytes() == (src / "sparse").read_bytes()
    return staging


@pytest.mark.parametrize("variant", ["gnu", "pax-0.0", "pax-0.1", "pax-1.0"])
def test_sparse_formats_of_gnu_tar(tmp_path: Path, variant: str) -> None:
    """Each sparse encoding GNU tar writes comes out byte-identical, holes included, read in odd chunks."""
    pieces = [(0, b"head"), (3_000_000, b"middle"), (9_000_000, b"end")]
    staging = _gnu_tar_sparse(tmp_path, variant, pieces, 777)
    assert os.listdir(staging) == ["sparse"]


@pytest.mark.parametrize(
    ("sparse_map", "real_size"),
    [("0,999999", "10"), ("0,999999", "999999"), ("500,10,0,10", "999")],
    ids=["past-the-end", "more-than-stored", "unordered"],
)
def test_bad_sparse_map_refused(tmp_path: Path, sparse_map: str, real_size: str) -> None:
    """A sparse map must be ordered, stay inside the file and describe no more data than the archive holds."""
    info, _ = reg("s", b"")
    info.pax_headers = {"GNU.sparse.map": sparse_map, "GNU.sparse.size": real_size, "GNU.sparse.name": "s"}
    data = tar_bytes([(info, b"")])
    staging = tmp_path / "out"
    staging.mkdir()
    with pytest.raises(IntegrityError, match="sparse map"):
        extract(NonSeekable(data), staging, fmt=formats.TAR)


def test_many_small_files_and_a_large_one_fast(tmp_path: Path) -> None:
    """Throughput smoke test: 3000 small files + 64 MiB from an in-memory stream."""
    import time

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(3000):
            info = tarfile.TarInfo(f"pkg/d{i % 30}/file{i}.txt")
            payload = (b"line %d\n" % i) * 20
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        info = tarfile.TarInfo("pkg/big.bin")
        info.size = 64 << 20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    data = compress_bytes(buf.getvalue(), "gz")
    _, dest, _ = _layout(tmp_path)
    staging = prepare_staging(dest)
    start = time.perf_counter()
    stats = _run(data, staging)
    elapsed = time.perf_counter() - start
    assert stats.files == 3001
    assert elapsed < 20, f"extraction took {elapsed:.1f}s"
    shutil.rmtree(staging)


# ------------------------------------------------- odd but harmless archives


def _tree_summary(root: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            out[rel] = ("dir", stat.S_IMODE(path.stat().st_mode))
        else:
            out[rel] = ("file", stat.S_IMODE(path.stat().st_mode), path.read_bytes())
    return out


def test_odd_tar_members_extract_like_gnu_tar(tmp_path: Path) -> None:
    """Trailing-slash twins, '.' entries, a directory after a same-named symlink, mode 0,
    a 0o000 directory with files inside, newline names: all land readable by any UID."""
    _, dest, _ = _layout(tmp_path)
    staging = prepare_staging(dest)
    data = tar_bytes(
        [
            dir_("./"),
            reg(".", b"dot"),
            reg("twin", b"file first"),
            dir_("twin/"),
            reg("twin/inner", b"in"),
            sym("was-link", "."),
            dir_("was-link/"),
            reg("was-link/f", b"f"),
            reg("mode0", b"zero", mode=0),
            dir_("locked/", mode=0),
            reg("locked/secret", b"s", mode=0o600),
            dir_("locked/sub/", mode=0o700),
            reg("locked/sub/run", b"#!", mode=0o100),
            reg("new\nline", b"nl"),
            reg("dup", b"1"),
            reg("./dup", b"2"),
        ],
        "gz",
    )
    _run(data, staging)
    assert _tree_summary(staging) == {
        "dup": ("file", 0o644, b"2"),
        "locked": ("dir", 0o755),
        "locked/secret": ("file", 0o644, b"s"),
        "locked/sub": ("dir", 0o755),
        "locked/sub/run": ("file", 0o755, b"#!"),
        "mode0": ("file", 0o644, b"zero"),
        "new\nline": ("file", 0o644, b"nl"),
        "twin": ("dir", 0o755),
        "twin/inner": ("file", 0o644, b"in"),
        "was-link": ("dir", 0o755),
        "was-link/f": ("file", 0o644, b"f"),
    }


def test_odd_zip_entries(tmp_path: Path) -> None:
    """Mixed separators, a directory entry carrying data, a 0o000 directory, duplicates."""
    _, dest, _ = _layout(tmp_path)
    staging = prepare_staging(dest)
    with pytest.warns(UserWarning, match="Duplicate name"):  # zipfile warns only when writing them
        data = zip_bytes(
            [
                ("a/b\\c.txt", b"mixed"),
                ("withdata/", b"ignored bytes of a directory entry"),
                (zip_info("locked/", stat.S_IFDIR), b""),
                (zip_info("locked/f", stat.S_IFREG), b"x"),
                ("dup", b"1"),
                ("dup", b"2"),
            ]
        )
    _run(data, staging)
    assert _tree_summary(staging) == {
        "a": ("dir", 0o755),
        "a/b": ("dir", 0o755),
        "a/b/c.txt": ("file", 0o644, b"mixed"),
        "dup": ("file", 0o644, b"2"),
        "locked": ("dir", 0o755),
        "locked/f": ("file", 0o644, b"x"),
        "withdata": ("dir", 0o755),
    }


def test_gzip_trailing_garbage_is_left_to_the_caller(tmp_path: Path) -> None:
    """Bytes after the last gzip member are not tar data: not extracted, but hashed by the caller."""
    _, dest, _ = _layout(tmp_path)
    staging = prepare_staging(dest)
    data = tar_bytes([reg("a", b"x")], "gz") + b"\x00garbage that is not gzip"
    stream = NonSeekable(data)
    assert extract(stream, staging, fmt=formats.TAR_GZ).files == 1
    assert stream.consumed + len(stream.read(-1)) == len(data)


def test_garbage_between_gzip_members_is_corrupt(tmp_path: Path) -> None:
    _, dest, _ = _layout(tmp_path)
    staging = prepare_staging(dest)
    raw = tar_bytes([reg("a", os.urandom(2000)), reg("b", b"y")])
    data = gzip.compress(raw[:1024]) + b"JUNK" + gzip.compress(raw[1024:])
    with pytest.raises(IntegrityError, match="corrupt"):
        _run(data, staging)


def test_gnu_sparse_member_counts_its_real_size(tmp_path: Path) -> None:
    """A sparse member holds a few data blocks but expands to its real size: that is what counts."""
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.seek(20_000_000)
        f.write(b"end")
    out = tmp_path / "s.tar"
    subprocess.run(["tar", "-C", str(src), "--sparse", "--format=gnu", "-cf", str(out), "sparse"], check=True)
    data = out.read_bytes()
    assert len(data) < 100_000
    _, dest, _ = _layout(tmp_path)
    staging = prepare_staging(dest)
    with pytest.raises(UnsafeArchiveError, match="decompression bomb"):
        _run(data, staging, limits=Limits(max_extracted_bytes=1_000_000))
    discard(staging)
    staging = prepare_staging(dest)
    assert _run(data, staging).bytes == 20_000_003
    with open(staging / "sparse", "rb") as f:
        f.seek(20_000_000)
        assert f.read() == b"end"


@pytest.mark.parametrize("variant", ["gnu", "pax-0.0", "pax-0.1", "pax-1.0"])
def test_sparse_file_with_many_holes_fits_the_header_caps(tmp_path: Path, variant: str) -> None:
    """5000 data fragments: ~240 GNU extension blocks or a ~100 KiB pax map, under the per-member cap."""
    _gnu_tar_sparse(tmp_path, variant, [(i * 16384, b"%d" % i) for i in range(5000)], 4096)
