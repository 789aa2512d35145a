"""The tar header fast paths against the tarfile of the images' Python, not only the dev one's.

`ustar.py` and `pax.py` must build exactly what tarfile builds, and tarfile's pax parsing changed in
the 2025 fixes (3.13.4+): the differential tests run again inside the base image both images are
built from, with the dev virtualenv's pytest mounted read-only. That image has no git or bsdtar, so
their archives are made here and compared there by the same reader helpers.
"""

from __future__ import annotations

import ast
import io
import os
import site
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.images.conftest import ROOT, Engine

pytestmark = pytest.mark.docker

_TOOL_ARCHIVES = """
import pathlib
from tests.initcontainer.tarcompare import assert_same, read_all
from initcontainer import formats, untar
taken = []
real = untar.TarReader._next_fast
def counting(self):
    found = real(self)
    taken.append(found is not None)
    return found
untar.TarReader._next_fast = counting
for path in sorted(pathlib.Path("/archives").iterdir()):
    data = path.read_bytes()
    found, end = assert_same(data)
    taken.clear()
    read_all(data, formats.TAR, fast=True)
    print(path.name, end, len(found), sum(taken))
"""


def _docker_run(engine: Engine, base_image: str, mounts: dict[Path, str], *argv: str) -> str:
    volumes = [arg for host, inside in mounts.items() for arg in ("-v", f"{host}:{inside}:ro")]
    proc = engine.run(
        "run", "--rm", "--network", "none", *volumes,
        "-e", "PYTHONPATH=/pylib:/src", "-e", "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1",
        "-e", "PYTHONDONTWRITEBYTECODE=1",
        "-w", "/src", base_image, "python3", *argv,
        check=False, timeout=1200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    return proc.stdout


def _tool_archives(directory: Path) -> None:
    src = directory / "tree" / "src"
    (src / "d\u00e9j\u00e0" / ("n" * 120)).mkdir(parents=True)
    (src / "d\u00e9j\u00e0" / ("n" * 120) / ("long" * 30)).write_bytes(b"deep")
    for i in range(10):
        (src / f"f{i}").write_bytes(b"x" * i * 300)
    os.symlink("f1", src / "link")
    out = directory / "archives"
    out.mkdir()

    def run(*argv: str, cwd: Path = src.parent) -> bytes:  # C: bsdtar would write hdrcharset=BINARY
        env = {**os.environ, "LC_ALL": "C.UTF-8"}
        return subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True).stdout

    (out / "gnu-posix.tar").write_bytes(run("tar", "--format=posix", "-cf", "-", "src"))
    (out / "bsdtar-pax.tar").write_bytes(run("bsdtar", "--format", "pax", "-cf", "-", "src"))
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    run(*git, "init", "-q", cwd=src)
    run(*git, "add", "-A", cwd=src)
    run(*git, "commit", "-qm", "package", cwd=src)
    (out / "git-archive.tar").write_bytes(run("git", "archive", "--prefix=pkg/", "HEAD", cwd=src))


def test_the_fast_paths_agree_with_the_image_tarfile(engine: Engine, base_image: str, tmp_path: Path) -> None:
    pylib = Path(site.getsitepackages()[0])
    mounts = {ROOT / "initcontainer": "/src/initcontainer", ROOT / "tests": "/src/tests", pylib: "/pylib"}
    version = _docker_run(engine, base_image, mounts, "-c", "import sys; print(sys.version_info[:3])")
    assert ast.literal_eval(version.strip()) >= (3, 13, 4), version  # tarfile with the 2025 pax fixes
    out = _docker_run(
        engine, base_image, mounts, "-m", "pytest", "-q", "--noconftest", "-p", "no:cacheprovider",
        "tests/initcontainer/test_pax.py", "tests/initcontainer/test_ustar.py",
        "-k", "not git_archive and not bsdtar",  # the image has neither tool: below
    )  # fmt: skip
    assert " passed" in out and "failed" not in out, out
    _tool_archives(tmp_path)
    lines = _docker_run(
        engine, base_image, {**mounts, tmp_path / "archives": "/archives"}, "-c", _TOOL_ARCHIVES
    ).splitlines()
    assert {line.split()[0] for line in lines} == {"bsdtar-pax.tar", "git-archive.tar", "gnu-posix.tar"}
    for line in lines:
        name, end, members, fast = line.split()
        assert end == "complete" and int(members) > 10, line
        assert int(fast) == int(members) - (name == "git-archive.tar"), line  # git: the global header's


_LOOPS = """
import io, pathlib, sys, tarfile
from initcontainer import formats
from initcontainer.extract import extract
data = pathlib.Path("/archives/loops.tar").read_bytes()
staging = pathlib.Path("/tmp/staging")
staging.mkdir()
stats = extract(io.BytesIO(data), staging, fmt=formats.TAR)
print(sys.version_info[:3], stats.files, stats.symlinks, sorted(p.name for p in (staging / "pkg").iterdir()))
"""


def test_symlink_loops_install_under_the_image_tarfile(
    engine: Engine, base_image: str, tmp_path: Path
) -> None:
    """3.13.4+'s data filter resolves links strictly: a loop raised ELOOP, reported as a full volume (exit 7).

    A loop points nowhere, so nowhere outside: it installs, as GNU tar and the dev Python install it.
    """
    archives = tmp_path / "archives"
    archives.mkdir()
    with tarfile.open(archives / "loops.tar", "w", format=tarfile.GNU_FORMAT) as tar:
        for name, target in [("pkg/a", "b"), ("pkg/b", "a"), ("pkg/self", "self"), ("pkg/c", "a/x")]:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
        info = tarfile.TarInfo("pkg/file")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"ok"))
    mounts = {ROOT / "initcontainer": "/src/initcontainer", archives: "/archives"}
    out = _docker_run(engine, base_image, mounts, "-c", _LOOPS)
    assert out.strip().endswith("1 4 ['a', 'b', 'c', 'file', 'self']"), out
