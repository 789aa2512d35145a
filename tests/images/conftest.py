"""A real Docker engine, a locally made CPython base image and both images built against it.

Session fixtures, slow the first time on a machine (docker.io install, debootstrap about
70 s, the webhook image about 70-110 s on 2 cores) and cached after that under
${XDG_CACHE_HOME:-~/.cache}/package-injector/ (engine data root, base rootfs tarball,
wheelhouse, layer cache).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Engine:
    docker: str
    env: dict[str, str]

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.docker, *args], env=self.env, capture_output=True, text=True, check=check, timeout=timeout
        )


@dataclass(frozen=True)
class Images:
    engine: Engine
    base: str
    init: str
    webhook: str
    build_seconds: float
    tag: str


def _script(name: str, env: dict[str, str], timeout: float = 1200) -> str:
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / name), *([] if name != "images.sh" else ["build"])],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"scripts/{name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


@pytest.fixture(scope="session")
def engine() -> Engine:
    """The private dockerd of scripts/dockerd.sh (installed and started when needed)."""
    env = dict(os.environ)
    host = _script("dockerd.sh", env)
    assert host.startswith("unix://"), host
    env["DOCKER_HOST"] = host
    # Debian's CLI matches Debian's daemon; another docker CLI on PATH may be much newer.
    docker = (
        "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else (shutil.which("docker") or "docker")
    )
    env["DOCKER"] = docker
    return Engine(docker=docker, env=env)


@pytest.fixture(scope="session")
def base_image(engine: Engine) -> str:
    """local/python-base:trixie (scripts/base-image.sh): the CPython, and so the tarfile, of both images."""
    return _script("base-image.sh", engine.env)


@pytest.fixture(scope="session")
def images(engine: Engine, base_image: str) -> Iterator[Images]:
    """Both images, built offline (--network none) against local/python-base:trixie.

    The tag is this session's own: the engine may be shared (scripts/dockerd.sh), and another checkout's
    tests building `:test` at the same time would swap our images for theirs between build and use.
    """
    base = base_image
    tag = f"test-{os.getpid()}-{secrets.token_hex(3)}"
    env = {**engine.env, "BASE_IMAGE": base, "TAG": tag}
    start = time.monotonic()
    _script("images.sh", env)
    built = Images(
        engine=engine,
        base=base,
        init=f"package-init-container:{tag}",
        webhook=f"package-injector:{tag}",
        build_seconds=time.monotonic() - start,
        tag=tag,
    )
    try:
        yield built
    finally:  # only the tags go; the layers stay cached for the next build
        engine.run("rmi", built.init, built.webhook, check=False)


@pytest.fixture(scope="session")
def registry_binary() -> str:
    """Debian's docker-registry (distribution 2.8), installed when missing."""
    path = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not os.access(path, os.X_OK):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        apt = ["apt-get", "-o", "DPkg::Lock::Timeout=600"]
        subprocess.run([*apt, "update", "-qq"], env=env, check=True, capture_output=True, timeout=600)
        subprocess.run(
            [*apt, "install", "-y", "-qq", "--no-install-recommends", "docker-registry"],
            env=env,
            check=True,
            capture_output=True,
            timeout=600,
        )
    return path


@pytest.fixture
def registry(registry_binary: str, tmp_path: Path) -> Iterator[str]:
    """A private docker-registry on 127.0.0.1 (plain HTTP: dockerd trusts 127.0.0.0/8 as insecure)."""
    from tests.support.net import free_port, wait_http_ok

    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = (tmp_path / "registry.log").open("wb")
    proc = subprocess.Popen([registry_binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http_ok(
            f"http://127.0.0.1:{port}/v2/",
            timeout=20,
            alive=lambda: proc.poll() is None,
            context=lambda: (tmp_path / "registry.log").read_text(),
        )
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
