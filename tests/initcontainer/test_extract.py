"""Extraction as a whole: the malicious corpus is refused without side effects; good archives round-trip."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from initcontainer import contract, formats
from initcontainer.errors import IntegrityError, PackageError, UnsafeArchiveError
from initcontainer.extract import extract
from initcontainer.install import discard, prepare_staging
from tests.initcontainer.corpus import (
    Case,
    NonSeekable,
    corpus,
    reg,
    sha256_tree,
    tar_bytes,
)
from tests.initcontainer.extracting import layout, outside_view, run_extract


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


@pytest.mark.parametrize("case", corpus(), ids=lambda c: c.name)
def test_corpus_is_refused_without_side_effects(tmp_path: Path, case: Case) -> None:
    sentinel, dest, outside = layout(tmp_path)
    data = case.build(outside)
    before = outside_view(sentinel)
    staging = prepare_staging(dest)
    with pytest.raises(PackageError) as raised:
        try:
            run_extract(data, staging, case.strip, case.limits)
        finally:
            discard(staging)
    assert type(raised.value) is case.error, raised.value
    assert re.search(case.match, raised.value.message), raised.value.message
    expected_code = {
        UnsafeArchiveError: contract.EXIT_UNSAFE_ARCHIVE,
        IntegrityError: contract.EXIT_INTEGRITY,
    }[case.error]
    assert raised.value.exit_code == expected_code
    assert outside_view(sentinel) == before
    assert os.listdir(dest) == []
    assert (outside / "victim.txt").read_text() == "original\n"


def test_html_page_is_not_an_archive() -> None:
    page = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>login</body></html>\n"
    with pytest.raises(IntegrityError, match=r"HTML page.*check the URL") as raised:
        formats.detect_format(page)
    assert raised.value.exit_code == contract.EXIT_INTEGRITY


@pytest.mark.parametrize("fmt", GOOD_FORMATS)
@pytest.mark.parametrize("strip", [0, 1])
def test_good_archive_round_trip(tmp_path: Path, source_tree: Path, fmt: str, strip: int) -> None:
    if fmt == "tar.zst":
        # Python < 3.14 reads zstd only with backports.zstd, which the dev lock installs.
        assert formats.zstd_module() is not None, "install backports.zstd (requirements/dev.lock)"
    out = tmp_path / f"pkg.{fmt}"
    data = _zip_cli(source_tree, out) if fmt == "zip" else _tar_cli(source_tree, out, _TAR_FLAGS[fmt])
    assert formats.detect_format(data[: formats.HEAD_BYTES]) == fmt
    _, dest, _ = layout(tmp_path)
    staging = prepare_staging(dest)
    stats = run_extract(data, staging, strip=strip)
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


def test_stream_is_read_only_as_far_as_needed(tmp_path: Path) -> None:
    """Trailing bytes after the archive are left for the caller to drain and hash."""
    _, dest, _ = layout(tmp_path)
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

    _, dest, _ = layout(tmp_path)
    staging = prepare_staging(dest)
    data = tar_bytes([reg("a", os.urandom(100_000))], "gz")
    with pytest.raises(ConnectionResetError):
        extract(Failing(data), staging, fmt=formats.TAR_GZ)


def test_zstd_needs_a_zstd_module(monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulate a Python without compression.zstd (< 3.14) and without backports.zstd.
    monkeypatch.setattr(formats, "zstd_module", lambda: None)
    with pytest.raises(PackageError, match="cannot read zstd"):
        formats.detect_format(b"\x28\xb5\x2f\xfd" + bytes(100))
