"""The zip path: entry modes, directories, odd names and duplicates; the spool is removed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from initcontainer.install import prepare_staging
from tests.initcontainer.corpus import (
    zip_bytes,
    zip_info,
)
from tests.initcontainer.extracting import layout, run_extract, tree_summary


def test_zip_entry_modes_and_dirs(tmp_path: Path) -> None:
    _, dest, _ = layout(tmp_path)
    staging = prepare_staging(dest)
    data = zip_bytes(
        [
            ("plain.txt", b"no unix mode"),
            (zip_info("run.sh", stat.S_IFREG | 0o700), b"#!"),
            (zip_info("dir/", stat.S_IFDIR | 0o700), b""),
            (zip_info("dir/link", stat.S_IFLNK | 0o777), b"../run.sh"),
        ]
    )
    run_extract(data, staging)
    assert stat.S_IMODE((staging / "plain.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((staging / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((staging / "dir").stat().st_mode) == 0o755
    assert (staging / "dir/link").read_bytes() == b"#!"
    assert not any(n.endswith(".zip") for n in os.listdir(dest)), "the spool must be removed"


def test_odd_zip_entries(tmp_path: Path) -> None:
    """Mixed separators, a directory entry carrying data, a 0o000 directory, duplicates."""
    _, dest, _ = layout(tmp_path)
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
    run_extract(data, staging)
    assert tree_summary(staging) == {
        "a": ("dir", 0o755),
        "a/b": ("dir", 0o755),
        "a/b/c.txt": ("file", 0o644, b"mixed"),
        "dup": ("file", 0o644, b"2"),
        "locked": ("dir", 0o755),
        "locked/f": ("file", 0o644, b"x"),
        "withdata": ("dir", 0o755),
    }
