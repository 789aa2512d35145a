"""Atomic, idempotent install: staging, promote, marker last, crash recovery."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from initcontainer import contract, install
from initcontainer.errors import LocalIOError
from initcontainer.extract import extract
from initcontainer.install import discard, installed_marker, prepare_staging, promote
from tests.initcontainer.corpus import NonSeekable, reg, tar_bytes

MARKER = {"url": "https://repo.example/pkg.tar.gz", "sha256": "ab" * 32, "bytes": 10, "files": 2}


def _install(dest: Path, members: dict[str, bytes], marker: dict[str, object] = MARKER) -> None:
    staging = prepare_staging(dest)
    data = tar_bytes([reg(name, body) for name, body in members.items()], "gz")
    extract(NonSeekable(data), staging, fmt="tar.gz")
    promote(staging, dest, dict(marker))


def _visible(dest: Path) -> list[str]:
    return sorted(os.listdir(dest))


def test_staging_is_private_and_hidden(tmp_path: Path) -> None:
    staging = prepare_staging(tmp_path)
    assert staging.parent == tmp_path
    assert staging.name.startswith(contract.STAGING_PREFIX)
    assert stat.S_IMODE(staging.stat().st_mode) == 0o700


def test_promote_writes_marker_last_and_content_readable(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    _install(dest, {"bin/run": b"#!", "conf/a.yaml": b"a: 1"})
    assert _visible(dest) == [contract.MARKER_NAME, "bin", "conf"]
    marker = installed_marker(dest)
    assert marker is not None
    assert {k: marker[k] for k in MARKER} == MARKER
    assert marker[install.BOOT_ID_KEY] == install.boot_id()
    for path in [dest / contract.MARKER_NAME, dest / "bin", dest / "bin/run", dest / "conf/a.yaml"]:
        assert path.stat().st_mode & 0o004, f"{path} must be readable by any UID"
    assert not [n for n in os.listdir(dest) if n.startswith(contract.STAGING_PREFIX)]


def test_switching_packages_leaves_no_stale_files(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    _install(dest, {"old-only.txt": b"old", "shared.txt": b"v1"})
    _install(dest, {"shared.txt": b"v2", "new.txt": b"new"}, {**MARKER, "sha256": "cd" * 32})
    assert _visible(dest) == [contract.MARKER_NAME, "new.txt", "shared.txt"]
    assert (dest / "shared.txt").read_bytes() == b"v2"
    assert installed_marker(dest)["sha256"] == "cd" * 32  # type: ignore[index]


def test_failed_new_install_keeps_the_complete_old_one(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    _install(dest, {"app.txt": b"v1"})
    staging = prepare_staging(dest)
    (staging / "partial.txt").write_bytes(b"half")
    discard(staging)
    assert _visible(dest) == [contract.MARKER_NAME, "app.txt"]
    assert installed_marker(dest) is not None


def test_crash_during_extraction_is_cleaned_by_next_run(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    crashed = prepare_staging(dest)
    (crashed / "junk").write_bytes(b"x")
    (dest / f"{crashed.name}-spool.zip").write_bytes(b"PK")
    fresh = prepare_staging(dest)
    assert _visible(dest) == [fresh.name]


def test_crash_in_the_middle_of_promote(tmp_path: Path) -> None:
    """Marker removed, some old and some new entries visible, staging half empty."""
    dest = tmp_path / "dest"
    _install(dest, {"a.txt": b"old", "b.txt": b"old"})
    staging = prepare_staging(dest)
    (staging / "c.txt").write_bytes(b"new")
    (dest / contract.MARKER_NAME).unlink()
    os.rename(staging / "c.txt", dest / "c.txt")
    assert installed_marker(dest) is None
    fresh = prepare_staging(dest)
    assert _visible(dest) == [fresh.name]


def test_crash_after_promote_before_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "dest"

    def boom(dest: Path, marker: dict[str, object]) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(install, "_write_marker", boom)
    with pytest.raises(LocalIOError):
        _install(dest, {"a.txt": b"new"})
    assert installed_marker(dest) is None
    monkeypatch.undo()
    prepare_staging(dest)
    assert [n for n in _visible(dest) if not n.startswith(contract.STAGING_PREFIX)] == []


def test_marker_from_another_boot_counts_as_absent(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    _install(dest, {"a.txt": b"x"})
    marker_path = dest / contract.MARKER_NAME
    data = json.loads(marker_path.read_text())
    data[install.BOOT_ID_KEY] = "00000000-0000-0000-0000-000000000000"
    marker_path.write_text(json.dumps(data))
    assert installed_marker(dest) is None


@pytest.mark.parametrize("content", ["not json", "[1, 2]", ""])
def test_unreadable_marker_counts_as_absent(tmp_path: Path, content: str) -> None:
    (tmp_path / contract.MARKER_NAME).write_text(content)
    assert installed_marker(tmp_path) is None


def test_refuses_root_as_destination() -> None:
    with pytest.raises(LocalIOError, match="refusing"):
        prepare_staging(Path("/"))


def test_discard_is_quiet_when_nothing_is_there(tmp_path: Path) -> None:
    discard(tmp_path / f"{contract.STAGING_PREFIX}missing")


def _deep_tree(top: Path, depth: int) -> Path:
    """`depth` nested directories made one by one (os.makedirs would recurse), with a file and a link."""
    current = os.fspath(top)
    for _ in range(depth):
        current = os.path.join(current, "d")
        os.mkdir(current)
    Path(current, "f").write_bytes(b"x")
    os.symlink("/etc", os.path.join(current, "link"))
    return Path(current)


def test_leftover_deeper_than_the_recursion_limit_is_removed(tmp_path: Path) -> None:
    """shutil.rmtree recurses per level: a 1500-deep leftover used to fail every restart."""
    dest = tmp_path / "dest"
    dest.mkdir()
    crashed = prepare_staging(dest)
    _deep_tree(crashed, 1500)
    discard(crashed)
    assert _visible(dest) == []
    leftover = prepare_staging(dest)
    _deep_tree(leftover, 1500)
    (dest / "half-promoted").mkdir()
    _deep_tree(dest / "half-promoted", 1500)
    fresh = prepare_staging(dest)
    assert _visible(dest) == [fresh.name]
    assert os.path.isdir("/etc"), "links are removed, never followed"


def test_remove_leftovers_keeps_the_install(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    _install(dest, {"app.txt": b"v1"})
    killed = prepare_staging(dest)  # a switch to another package, killed before promote
    (killed / "half.txt").write_bytes(b"half")
    (dest / f"{killed.name}-spool.zip").write_bytes(b"PK")
    install.remove_leftovers(dest)
    assert _visible(dest) == [contract.MARKER_NAME, "app.txt"]
    assert installed_marker(dest) is not None


class _Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (not even `finally` cleanup in our code)."""


def _view(dest: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(dest)): p.read_bytes()
        for p in dest.rglob("*")
        if p.is_file()
        and not str(p.relative_to(dest)).startswith(contract.STAGING_PREFIX)
        and p.name != contract.MARKER_NAME
    }


def test_killed_at_every_step_of_promote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Crash promote after each of its removals and renames: a marker is only ever present over
    exactly the package it describes, and the next run starts clean."""
    old = {f"t{i}/f": b"old %d" % i for i in range(6)} | {"old-only": b"o"}
    new = {f"t{i}/f": b"new %d" % i for i in range(4)} | {"new-only": b"n"}
    steps = 0
    while True:
        dest = tmp_path / f"dest{steps}"
        _install(dest, old, {**MARKER, "sha256": "old"})
        calls = 0

        def counting(real: Any, allowed: int = steps) -> Any:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                nonlocal calls
                calls += 1
                if calls > allowed:
                    raise _Killed
                return real(*args, **kwargs)

            return wrapper

        monkeypatch.setattr(install, "_remove", counting(install._remove))
        monkeypatch.setattr(install.os, "rename", counting(os.rename))
        monkeypatch.setattr(install, "_write_marker", counting(install._write_marker))
        try:
            _install(dest, new, {**MARKER, "sha256": "new"})
            killed = False
        except _Killed:
            killed = True
        monkeypatch.undo()
        marker = installed_marker(dest)
        if marker is not None:
            assert _view(dest) == {"old": old, "new": new}[marker["sha256"]], f"mixed after step {steps}"
        if not killed:
            assert marker is not None and marker["sha256"] == "new"
            break
        fresh = prepare_staging(dest)
        if marker is None:
            assert _visible(dest) == [fresh.name]
        discard(fresh)
        steps += 1
    assert steps >= 10  # removals of 7 old entries, 5 renames, the marker
