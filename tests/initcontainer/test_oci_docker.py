"""An image built by a real Docker engine (scripts/dockerd.sh) and pushed with `docker push`, then pulled.

The build deletes files and replaces a directory in RUN steps, so Docker's own
differ writes the whiteouts; the pulled tree must equal `crane export` of the
same image. FROM scratch plus Debian's static busybox: no base image download.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.initcontainer.test_oci_pull import marker, pull, tool, tree_of
from tests.support.kube import REPO
from tests.support.registry import RegistryServer, run_registry

pytestmark = pytest.mark.docker

DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
COPY app/ /app/
RUN ["/bin/busybox", "rm", "-r", "/app/remove-me.txt", "/app/gone-dir"]
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox rm -r /app/cache && /bin/busybox mkdir /app/cache && \\
     echo fresh > /app/cache/new && echo changed > /app/keep.txt && /bin/busybox ln -s keep.txt /app/link"]
"""


def busybox() -> str:
    path = shutil.which("busybox") or "/bin/busybox"
    if not os.access(path, os.X_OK):
        raise RuntimeError("busybox is not installed: run scripts/setup.sh (busybox-static)")
    return path


@pytest.fixture(scope="module")
def docker_env() -> dict[str, str]:
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "dockerd.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    env = dict(os.environ)
    env["DOCKER_HOST"] = out.stdout.strip().splitlines()[-1]
    return env


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """Plain HTTP, anonymous: Docker treats 127.0.0.0/8 registries as insecure (HTTP) by default."""
    with run_registry(tmp_path_factory.mktemp("docker-reg"), auth="none", tls=False) as srv:
        yield srv


def docker(env: dict[str, str], *args: str) -> str:
    cli = "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else "docker"
    proc = subprocess.run([cli, *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"docker {' '.join(args)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


def test_docker_built_image_equals_crane_export(
    docker_env: dict[str, str], registry: RegistryServer, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "app/gone-dir").mkdir(parents=True)
    (ctx / "app/cache").mkdir()
    shutil.copy(busybox(), ctx / "busybox")
    (ctx / "app/keep.txt").write_text("keep\n")
    (ctx / "app/remove-me.txt").write_text("remove\n")
    (ctx / "app/gone-dir/g").write_text("g\n")
    (ctx / "app/cache/old").write_text("old\n")
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    ref = f"{registry.host}/team/built:v1"
    docker(docker_env, "build", "--network", "none", "-t", ref, str(ctx))
    docker(docker_env, "push", ref)
    docker(docker_env, "rmi", ref)

    whiteouts = []
    manifest = tool(registry, "crane", "manifest", ref)
    for layer in json.loads(manifest)["layers"]:
        blob = subprocess.run(
            ["crane", "--insecure", "blob", f"{ref.rsplit(':', 1)[0]}@{layer['digest']}"],
            env=registry.push_env(),
            capture_output=True,
            check=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(blob)) as tf:
            whiteouts += [n for n in tf.getnames() if "/.wh." in f"/{n}"]
    assert whiteouts, "the build made no whiteouts; the test would prove nothing"

    export = tmp_path / "export.tar"
    tool(registry, "crane", "export", ref, str(export))
    expected = tmp_path / "expected"
    expected.mkdir()
    subprocess.run(["tar", "-xf", str(export), "-C", str(expected)], check=True)

    r = pull(tmp_path, registry, "team/built:v1")
    assert r.code == 0, r.stderr
    got = tree_of(tmp_path / "dest")
    assert got == tree_of(expected)
    assert "app/remove-me.txt" not in got and "app/gone-dir" not in got and "app/cache/old" not in got
    assert (tmp_path / "dest/app/keep.txt").read_text() == "changed\n"
    m = marker(tmp_path / "dest")
    assert m["kind"] == "image"
    assert m["mediaTypes"] == ["application/vnd.docker.image.rootfs.diff.tar.gzip"]
