"""The tree rules on harmless archives: modes, owners, links kept, duplicates, strip-components."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from initcontainer.extract import ExtractStats
from initcontainer.install import prepare_staging
from tests.initcontainer.corpus import (
    dir_,
    hard,
    reg,
    sym,
    tar_bytes,
)
from tests.initcontainer.extracting import layout, run_extract, tree_summary


def test_setuid_sticky_cleared_and_owners_ignored(tmp_path: Path) -> None:
    _, dest, _ = layout(tmp_path)
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
    run_extract(data, staging)
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
    _, dest, _ = layout(tmp_path)
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
    stats = run_extract(data, staging)
    assert stats == ExtractStats(files=2, dirs=3, symlinks=4, bytes=3)
    assert (staging / "pkg/bin/lib").read_bytes() == b"ELF"
    assert os.path.samefile(staging / "pkg/bin/copy", staging / "pkg/lib/libx.so.1")
    assert os.readlink(staging / "pkg/current") == "./lib"


def test_later_member_wins_without_writing_through(tmp_path: Path) -> None:
    """A duplicate replaces the earlier entry; a hard-linked sibling keeps its old content."""
    _, dest, _ = layout(tmp_path)
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
    run_extract(data, staging)
    assert (staging / "a").read_bytes() == b"second"
    assert (staging / "b").read_bytes() == b"first"
    assert not (staging / "s").is_symlink()
    assert (staging / "s").read_bytes() == b"now a file"
    assert (staging / "f/inner").read_bytes() == b"x"


def test_strip_components_counts_dot_like_gnu_tar(tmp_path: Path) -> None:
    _, dest, _ = layout(tmp_path)
    staging = prepare_staging(dest)
    data = tar_bytes([dir_("./"), dir_("./pkg-1.0/"), reg("./pkg-1.0/bin/run", b"#!", mode=0o755)], "gz")
    run_extract(data, staging, strip=2)
    assert sorted(os.listdir(staging)) == ["bin"]
    assert (staging / "bin/run").read_bytes() == b"#!"


def test_odd_tar_members_extract_like_gnu_tar(tmp_path: Path) -> None:
    """Trailing-slash twins, '.' entries, a directory after a same-named symlink, mode 0,
    a 0o000 directory with files inside, newline names: all land readable by any UID."""
    _, dest, _ = layout(tmp_path)
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
    run_extract(data, staging)
    assert tree_summary(staging) == {
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
