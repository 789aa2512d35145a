"""The tar reader: every header form in any chunking, long names, sparse members, header caps."""

from __future__ import annotations

import io
import itertools
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from initcontainer import formats
from initcontainer.errors import IntegrityError, UnsafeArchiveError
from initcontainer.extract import Limits, extract
from initcontainer.install import discard, prepare_staging
from tests.initcontainer.corpus import (
    NonSeekable,
    compress_bytes,
    dir_,
    hard,
    reg,
    sym,
    tar_bytes,
)
from tests.initcontainer.extracting import layout, run_extract


def test_long_names_pax(tmp_path: Path) -> None:
    _, dest, _ = layout(tmp_path)
    staging = prepare_staging(dest)
    long_dir = "/".join(["d" * 60] * 4)
    data = tar_bytes([reg(f"{long_dir}/{'f' * 200}", b"long")], "xz")
    run_extract(data, staging)
    assert (staging / long_dir / ("f" * 200)).read_bytes() == b"long"


def test_pax_header_memory_bomb_refused(tmp_path: Path) -> None:
    _, dest, _ = layout(tmp_path)
    staging = prepare_staging(dest)
    info, data = reg("a", b"x")
    info.pax_headers = {"comment": "x" * (2 << 20)}
    with pytest.raises(UnsafeArchiveError, match="metadata header"):
        run_extract(tar_bytes([(info, data)], "gz"), staging)


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


def test_many_small_files_and_a_large_one(tmp_path: Path) -> None:
    """3000 small files in 30 directories and 64 MiB in one member, from one gzip stream.

    (How fast is bench/'s question, measured there: a time limit here would fail on a busy machine.)"""
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
    _, dest, _ = layout(tmp_path)
    staging = prepare_staging(dest)
    stats = run_extract(data, staging)
    assert stats.files == 3001
    assert stats.bytes == (64 << 20) + sum(len(b"line %d\n" % i) * 20 for i in range(3000))
    assert (staging / "pkg/d7/file2707.txt").read_bytes() == b"line 2707\n" * 20
    assert (staging / "pkg/big.bin").stat().st_size == 64 << 20
    shutil.rmtree(staging)


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
    _, dest, _ = layout(tmp_path)
    staging = prepare_staging(dest)
    with pytest.raises(UnsafeArchiveError, match="decompression bomb"):
        run_extract(data, staging, limits=Limits(max_extracted_bytes=1_000_000))
    discard(staging)
    staging = prepare_staging(dest)
    assert run_extract(data, staging).bytes == 20_000_003
    with open(staging / "sparse", "rb") as f:
        f.seek(20_000_000)
        assert f.read() == b"end"


@pytest.mark.parametrize("variant", ["gnu", "pax-0.0", "pax-0.1", "pax-1.0"])
def test_sparse_file_with_many_holes_fits_the_header_caps(tmp_path: Path, variant: str) -> None:
    """5000 data fragments: ~240 GNU extension blocks or a ~100 KiB pax map, under the per-member cap."""
    _gnu_tar_sparse(tmp_path, variant, [(i * 16384, b"%d" % i) for i in range(5000)], 4096)
