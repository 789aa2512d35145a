"""Helpers shared by the extraction tests: a destination next to a sentinel, one-call extraction."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from initcontainer import formats
from initcontainer.extract import ExtractStats, Limits, extract
from tests.initcontainer.corpus import NonSeekable, sha256_tree


def layout(tmp_path: Path) -> tuple[Path, Path, Path]:
    """sentinel/{dest, outside/victim.txt}: everything but dest must stay as it was."""
    sentinel = tmp_path / "sentinel"
    dest = sentinel / "dest"
    outside = sentinel / "outside"
    dest.mkdir(parents=True)
    outside.mkdir()
    (outside / "victim.txt").write_text("original\n")
    return sentinel, dest, outside


def run_extract(data: bytes, staging: Path, strip: int = 0, limits: Limits | None = None) -> ExtractStats:
    fmt = formats.detect_format(data[: formats.HEAD_BYTES])
    return extract(NonSeekable(data), staging, fmt=fmt, limits=limits, strip_components=strip)


def outside_view(sentinel: Path) -> dict[str, tuple[str, ...]]:
    return {k: v for k, v in sha256_tree(sentinel).items() if not (k == "dest" or k.startswith("dest/"))}


def tree_summary(root: Path) -> dict[str, object]:
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
