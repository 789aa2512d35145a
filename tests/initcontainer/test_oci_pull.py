"""oci:// end to end: artifacts pushed by real tools to a real registry, pulled by the real init program.

The registry is Debian's docker-registry (distribution 2.8) started by
tests/support/registry.py; oras and crane come from scripts/oci-tools.sh (Go
modules, pinned), skopeo from Debian. The init container runs as a subprocess
configured by its environment only, as the kubelet runs it.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import socketserver
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from initcontainer import contract
from initcontainer.config import load_config
from initcontainer.log import Logger
from initcontainer.oci.auth import Token
from initcontainer.oci.client import RegistryClient
from initcontainer.oci.keyring import RegistryCredential
from initcontainer.oci.manifest import own_platform
from initcontainer.oci.source import credential_files
from initcontainer.transport import Request
from tests.initcontainer.corpus import dir_, hard, reg, sym, tar_bytes
from tests.support.init_process import Run, run_init
from tests.support.registry import BlobRedirect, RegistryServer, run_registry
from webhook.inject import inject
from webhook.settings import Settings

FLUX_CONFIG = "application/vnd.cncf.flux.config.v1+json"
FLUX_CONTENT = "application/vnd.cncf.flux.content.v1.tar+gzip"


# --------------------------------------------------------------------------- helpers


def tool(reg_: RegistryServer, *argv: str, cwd: Path | None = None, user: str | None = None) -> str:
    """Run oras/crane/skopeo against the registry with its login and CA; return stdout."""
    args = list(argv)
    if args[0] == "oras" and reg_.ca is None:
        args.insert(2, "--plain-http")
    if args[0] == "crane" and reg_.ca is None:
        args.insert(1, "--insecure")
    proc = subprocess.run(args, env=reg_.push_env(user), cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(args)}:\n{proc.stderr}"
    return proc.stdout


def pull(
    tmp_path: Path,
    reg_: RegistryServer,
    ref: str,
    *,
    dockerconfig: dict[str, Any] | None = None,
    host: str | None = None,
    name: str = "dest",
    **extra: str,
) -> Run:
    """Run the init program for oci://HOST/REF (HOST: the registry or a proxy in front of it)."""
    creds = tmp_path / f"creds-{name}"
    creds.mkdir(exist_ok=True)
    if dockerconfig is not None:
        (creds / ".dockerconfigjson").write_text(json.dumps(dockerconfig))
    if reg_.ca is not None:
        (creds / "ca.crt").write_text(reg_.ca.ca_pem)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        contract.ENV_URL: f"oci://{host or reg_.host}/{ref}",
        contract.ENV_DEST: str(tmp_path / name),
        contract.ENV_TERMINATION_LOG: str(tmp_path / f"term-{name}"),
        contract.ENV_CREDENTIALS_DIR: str(creds),
        contract.ENV_READ_TIMEOUT: "5",
        contract.ENV_RETRIES: "2",
    }
    if reg_.ca is None:
        env[contract.ENV_ALLOW_HTTP] = "true"
    env.update(extra)
    return run_init(env, timeout=120)


def tree_of(root: Path) -> dict[str, str]:
    """Relative path -> 'd', 'l:TARGET' or 'f:SHA256' (the marker excluded)."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if rel == contract.MARKER_NAME:
            continue
        if path.is_symlink():
            out[rel] = f"l:{os.readlink(path)}"
        elif path.is_dir():
            out[rel] = "d"
        else:
            out[rel] = "f:" + hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def marker(dest: Path) -> dict[str, Any]:
    return dict(json.loads((dest / contract.MARKER_NAME).read_text()))


def assert_failed_cleanly(r: Run, dest: Path, code: int, fragment: str) -> None:
    assert r.code == code, r.stderr
    assert fragment in r.reason["message"], r.reason
    assert not dest.exists() or [p.name for p in dest.iterdir()] == []


def make_site(root: Path) -> Path:
    (root / "site/static").mkdir(parents=True)
    (root / "site/index.html").write_text("<h1>hello</h1>\n")
    (root / "site/static/app.js").write_bytes(os.urandom(300_000))
    (root / "site/static/empty").write_bytes(b"")
    return root / "site"


# --------------------------------------------------------------------------- registries

REGISTRY_MODES = {
    "anonymous-http": {"auth": "none", "tls": False},
    "htpasswd-tls": {"auth": "htpasswd", "tls": True},
    "token-tls": {"auth": "token", "tls": True},
    "token-http": {"auth": "token", "tls": False},
}


@pytest.fixture(scope="module", params=sorted(REGISTRY_MODES))
def registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryServer]:
    with run_registry(tmp_path_factory.mktemp(request.param), **REGISTRY_MODES[request.param]) as srv:
        yield srv


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with run_registry(tmp_path_factory.mktemp("token"), auth="token", tls=True) as srv:
        yield srv


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """htpasswd + TLS: crane (go-containerregistry) refuses a token realm on a private address (127.0.0.1)."""
    with run_registry(tmp_path_factory.mktemp("basic"), auth="htpasswd", tls=True) as srv:
        yield srv


def login(reg_: RegistryServer) -> dict[str, Any] | None:
    return reg_.docker_config() if reg_.users else None


# --------------------------------------------------------------------------- oras, every auth mode


def test_oras_file_and_directory_in_every_auth_mode(registry: RegistryServer, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "hello.txt").write_text("hello\n")
    (src / "conf").mkdir()
    (src / "conf/app.json").write_text('{"a": 1}\n')
    (src / "empty").write_bytes(b"")
    tool(
        registry,
        "oras",
        "push",
        f"{registry.host}/team/files:v1",
        "hello.txt",
        "conf/app.json",
        "empty",
        cwd=src,
    )
    site = make_site(src)
    tool(registry, "oras", "push", f"{registry.host}/team/site:v1", "site", cwd=src)

    r = pull(tmp_path, registry, "team/files:v1", dockerconfig=login(registry), name="files")
    assert r.code == 0, r.stderr
    assert tree_of(tmp_path / "files") == {
        "hello.txt": tree_of(src)["hello.txt"],
        "conf": "d",
        "conf/app.json": tree_of(src)["conf/app.json"],
        "empty": tree_of(src)["empty"],
    }
    assert marker(tmp_path / "files")["kind"] == "files"

    r = pull(tmp_path, registry, "team/site:v1", dockerconfig=login(registry), name="site")
    assert r.code == 0, r.stderr
    expected = {f"site/{k}": v for k, v in tree_of(site).items()} | {"site": "d"}
    assert tree_of(tmp_path / "site") == expected
    m = marker(tmp_path / "site")
    assert m["kind"] == "archive" and m["mediaTypes"] == ["application/vnd.oci.image.layer.v1.tar+gzip"]
    for secret in registry.users.values():
        assert secret not in r.stderr


def test_pinned_digest_and_idempotent_reruns(token_registry: RegistryServer, tmp_path: Path) -> None:
    reg_ = token_registry
    src = tmp_path / "src"
    site = make_site(src)
    tool(reg_, "oras", "push", f"{reg_.host}/team/pinned:v1", "site", cwd=src)
    digest = tool(reg_, "oras", "resolve", f"{reg_.host}/team/pinned:v1").strip()
    assert digest.startswith("sha256:")

    r = pull(tmp_path, reg_, f"team/pinned:v1@{digest}", dockerconfig=reg_.docker_config())
    assert r.code == 0, r.stderr
    assert "no_checksum" not in r.events()
    assert marker(tmp_path / "dest")["manifestDigest"] == digest
    assert tree_of(tmp_path / "dest") == {f"site/{k}": v for k, v in tree_of(site).items()} | {"site": "d"}

    asked = len(reg_.token_server.requests) if reg_.token_server else 0
    again = pull(tmp_path, reg_, f"team/pinned:v1@{digest}", dockerconfig=reg_.docker_config())
    assert again.code == 0 and "already_installed" in again.events()
    assert reg_.token_server is not None and len(reg_.token_server.requests) == asked  # no request at all

    by_tag = pull(tmp_path, reg_, "team/pinned:v1", dockerconfig=reg_.docker_config(), name="tagged")
    assert by_tag.code == 0 and "no_checksum" in by_tag.events()
    rerun = pull(tmp_path, reg_, "team/pinned:v1", dockerconfig=reg_.docker_config(), name="tagged")
    assert rerun.code == 0 and "already_installed" in rerun.events()
    assert "download_start" not in rerun.events()  # the manifest only


# --------------------------------------------------------------------------- other tools


def test_flux_artifact_made_with_oras(token_registry: RegistryServer, tmp_path: Path) -> None:
    """Flux's OCIRepository format: config and layer media types of `flux push artifact`."""
    reg_ = token_registry
    src = tmp_path / "src"
    (src / "manifests").mkdir(parents=True)
    (src / "manifests/deploy.yaml").write_text("kind: Deployment\n")
    (src / "manifests/svc.yaml").write_text("kind: Service\n")
    with tarfile.open(tmp_path / "flux.tgz", "w:gz") as tf:
        tf.add(src / "manifests", arcname="manifests")
    (tmp_path / "config.json").write_text("{}")
    tool(
        reg_,
        "oras",
        "push",
        f"{reg_.host}/flux/app:v1",
        "--config",
        f"config.json:{FLUX_CONFIG}",
        f"flux.tgz:{FLUX_CONTENT}",
        cwd=tmp_path,
    )
    r = pull(tmp_path, reg_, "flux/app:v1", dockerconfig=reg_.docker_config())
    assert r.code == 0, r.stderr
    assert tree_of(tmp_path / "dest") == {
        f"manifests/{k}": v for k, v in tree_of(src / "manifests").items()
    } | {"manifests": "d"}
    assert marker(tmp_path / "dest")["mediaTypes"] == [FLUX_CONTENT]


def layer_tar(path: Path, members: list[Any]) -> Path:
    path.write_bytes(tar_bytes(members, "gz"))
    return path


def test_crane_image_with_whiteouts_equals_crane_export(
    basic_registry: RegistryServer, tmp_path: Path
) -> None:
    """Whiteouts and an opaque directory, as `crane export` flattens them.

    Not compared here: a whiteout and a new entry of the same name in one layer. The OCI spec
    says a whiteout hides lower layers only (we keep the new entry, see test_oci_layers.py);
    go-containerregistry's export drops both, so the two differ by design.
    """
    reg_ = basic_registry
    base = layer_tar(
        tmp_path / "l1.tar.gz",
        [
            dir_("etc"),
            reg("etc/keep.conf", b"keep\n"),
            reg("etc/gone.conf", b"gone\n"),
            dir_("var"),
            dir_("var/cache"),
            reg("var/cache/old1", b"1"),
            reg("var/cache/old2", b"2"),
            dir_("usr"),
            dir_("usr/bin"),
            reg("usr/bin/tool", b"#!/bin/sh\n", mode=0o755),
            hard("usr/bin/tool-alias", "usr/bin/tool"),
            sym("usr/bin/t", "tool"),
        ],
    )
    top = layer_tar(
        tmp_path / "l2.tar.gz",
        [
            reg("etc/.wh.gone.conf", b""),
            reg("etc/keep.conf", b"changed\n"),
            dir_("var/cache"),
            reg("var/cache/.wh..wh..opq", b""),
            reg("var/cache/new", b"new"),
        ],
    )
    ref = f"{reg_.host}/team/image:v1"
    tool(reg_, "crane", "append", "-f", str(base), "-f", str(top), "-t", ref)
    manifest = json.loads(tool(reg_, "crane", "manifest", ref))
    export = tmp_path / "export.tar"
    tool(reg_, "crane", "export", ref, str(export))
    expected_root = tmp_path / "expected"
    expected_root.mkdir()
    subprocess.run(["tar", "-xf", str(export), "-C", str(expected_root)], check=True)

    r = pull(tmp_path, reg_, "team/image:v1", dockerconfig=reg_.docker_config())
    assert r.code == 0, r.stderr
    got = tree_of(tmp_path / "dest")
    assert got == tree_of(expected_root)
    assert "etc/gone.conf" not in got and "var/cache/old1" not in got
    assert (tmp_path / "dest/usr/bin/tool").stat().st_ino == (
        tmp_path / "dest/usr/bin/tool-alias"
    ).stat().st_ino
    m = marker(tmp_path / "dest")
    assert m["kind"] == "image"
    assert m["mediaTypes"] == sorted({layer["mediaType"] for layer in manifest["layers"]})


def test_skopeo_copy_is_pulled_by_the_same_digest(token_registry: RegistryServer, tmp_path: Path) -> None:
    reg_ = token_registry
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.bin").write_bytes(os.urandom(50_000))
    tool(reg_, "oras", "push", f"{reg_.host}/team/orig:v1", "data.bin", cwd=src)
    digest = tool(reg_, "oras", "resolve", f"{reg_.host}/team/orig:v1").strip()
    env_auth = reg_.push_env()["REGISTRY_AUTH_FILE"]
    tool(
        reg_,
        "skopeo",
        "copy",
        "--authfile",
        env_auth,
        "--src-cert-dir",
        str(reg_.cert_dir()),
        "--dest-cert-dir",
        str(reg_.cert_dir()),
        f"docker://{reg_.host}/team/orig:v1",
        f"docker://{reg_.host}/mirror/copy:v1",
    )
    r = pull(tmp_path, reg_, f"mirror/copy@{digest}", dockerconfig=reg_.docker_config())
    assert r.code == 0, r.stderr
    assert (tmp_path / "dest/data.bin").read_bytes() == (src / "data.bin").read_bytes()


# --------------------------------------------------------------------------- redirects and resume


@pytest.mark.parametrize("auth", ["token", "htpasswd"])
def test_blob_redirect_never_carries_credentials(auth: str, tmp_path: Path) -> None:
    with run_registry(tmp_path / "reg", auth=auth, tls=True) as reg_:
        src = tmp_path / "src"
        site = make_site(src)
        tool(reg_, "oras", "push", f"{reg_.host}/team/site:v1", "site", cwd=src)
        proxy = BlobRedirect(reg_, tls=True).start()
        try:
            r = pull(
                tmp_path,
                reg_,
                "team/site:v1",
                dockerconfig=reg_.docker_config(host=proxy.host),
                host=proxy.host,
            )
        finally:
            proxy.stop()
    assert r.code == 0, r.stderr
    assert tree_of(tmp_path / "dest") == {f"site/{k}": v for k, v in tree_of(site).items()} | {"site": "d"}
    assert proxy.hits, "the blob was not fetched through the redirect"
    assert all(hit["authorization"] is None for hit in proxy.hits), proxy.hits
    blob_gets = [p for p in proxy.proxied if "/blobs/" in p["path"] and p["method"] == "GET"]
    assert blob_gets and all(p["auth"] for p in blob_gets)


def test_blob_resumed_with_range_after_a_dropped_connection(
    token_registry: RegistryServer, tmp_path: Path
) -> None:
    reg_ = token_registry
    src = tmp_path / "src"
    src.mkdir()
    payload = os.urandom(3_000_000)
    (src / "big.bin").write_bytes(payload)
    tool(reg_, "oras", "push", f"{reg_.host}/team/big:v1", "big.bin", cwd=src)
    proxy = BlobRedirect(reg_, tls=True, drop_after=1_000_000).start()
    try:
        r = pull(
            tmp_path, reg_, "team/big:v1", dockerconfig=reg_.docker_config(host=proxy.host), host=proxy.host
        )
    finally:
        proxy.stop()
    assert r.code == 0, r.stderr
    assert (tmp_path / "dest/big.bin").read_bytes() == payload
    assert "download_resumed" in r.events()
    assert [h["range"] for h in proxy.hits] == [None, "bytes=1000000-"]


# --------------------------------------------------------------------------- credentials


def test_pull_secrets_are_tried_in_turn_and_secrets_never_logged(
    token_registry: RegistryServer, tmp_path: Path
) -> None:
    reg_ = token_registry
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    tool(reg_, "oras", "push", f"{reg_.host}/team/private:v1", "a.txt", cwd=src)
    creds = tmp_path / "creds-dest"
    for name, password in (("0-stale", "wrong-password-123"), ("1-good", reg_.users["alice"])):
        (creds / name).mkdir(parents=True)
        cfg = {"auths": {reg_.host: {"username": "alice", "password": password}}}
        (creds / name / ".dockerconfigjson").write_text(json.dumps(cfg))
    r = pull(tmp_path, reg_, "team/private:v1")
    assert r.code == 0, r.stderr
    assert "wrong-password-123" not in r.stderr and reg_.users["alice"] not in r.stderr


def test_wrong_or_missing_credentials(token_registry: RegistryServer, tmp_path: Path) -> None:
    reg_ = token_registry
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    tool(reg_, "oras", "push", f"{reg_.host}/team/secret:v1", "a.txt", cwd=src)
    bad = {"auths": {reg_.host: {"username": "alice", "password": "not-the-password"}}}
    r = pull(tmp_path, reg_, "team/secret:v1", dockerconfig=bad, name="bad")
    assert_failed_cleanly(r, tmp_path / "bad", contract.EXIT_HTTP_CLIENT, "refused every credential")
    assert "not-the-password" not in r.stderr + r.termination
    r = pull(tmp_path, reg_, "team/secret:v1", name="none")
    assert_failed_cleanly(r, tmp_path / "none", contract.EXIT_HTTP_CLIENT, "imagePullSecrets")


def test_anonymous_token_for_a_public_repository(token_registry: RegistryServer, tmp_path: Path) -> None:
    reg_ = token_registry
    src = tmp_path / "src"
    src.mkdir()
    (src / "pub.txt").write_text("public")
    tool(reg_, "oras", "push", f"{reg_.host}/public/pkg:v1", "pub.txt", cwd=src)
    r = pull(tmp_path, reg_, "public/pkg:v1")
    assert r.code == 0, r.stderr
    assert (tmp_path / "dest/pub.txt").read_text() == "public"
    assert reg_.token_server is not None and reg_.token_server.requests[-1]["basic"] is False


# --------------------------------------------------------------------------- hostile registries and artifacts


def push_one(
    reg_: RegistryServer, tmp_path: Path, repo: str, name: str = "blob.bin", size: int = 100_000
) -> str:
    src = tmp_path / f"src-{repo.replace('/', '-')}"
    src.mkdir()
    (src / name).write_bytes(os.urandom(size))
    tool(reg_, "oras", "push", f"{reg_.host}/{repo}", name, cwd=src)
    return tool(reg_, "oras", "resolve", f"{reg_.host}/{repo}").strip()


def push_index(reg_: RegistryServer, tmp_path: Path, ref: str, index: dict[str, Any]) -> None:
    """Push `index` (an OCI index or Docker manifest list, by its mediaType) as REPO:TAG `ref`."""
    (tmp_path / "index.json").write_text(json.dumps(index))
    media_type = index["mediaType"]
    tool(
        reg_,
        "oras",
        "manifest",
        "push",
        "--media-type",
        media_type,
        f"{reg_.host}/{ref}",
        str(tmp_path / "index.json"),
    )


def test_tampered_blob_in_storage(token_registry: RegistryServer, tmp_path: Path) -> None:
    reg_ = token_registry
    digest = push_one(reg_, tmp_path, "evil/blob:v1")
    layer = json.loads(tool(reg_, "oras", "manifest", "fetch", f"{reg_.host}/evil/blob@{digest}"))["layers"][
        0
    ]
    path = reg_.blob_path(layer["digest"])
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, last byte flipped: caught only by the digest
    path.write_bytes(bytes(data))
    r = pull(tmp_path, reg_, f"evil/blob@{digest}", dockerconfig=reg_.docker_config())
    assert_failed_cleanly(
        r, tmp_path / "dest", contract.EXIT_INTEGRITY, f"not the expected {layer['digest']}"
    )


@pytest.mark.parametrize("pinned", [True, False])
def test_tampered_manifest_in_storage(token_registry: RegistryServer, tmp_path: Path, pinned: bool) -> None:
    reg_ = token_registry
    repo = f"evil/manifest-{pinned}".lower()
    digest = push_one(reg_, tmp_path, f"{repo}:v1")
    path = reg_.blob_path(digest)
    path.write_bytes(path.read_bytes().replace(b'"schemaVersion":2', b'"schemaVersion": 2'))
    r = pull(
        tmp_path, reg_, f"{repo}@{digest}" if pinned else f"{repo}:v1", dockerconfig=reg_.docker_config()
    )
    assert_failed_cleanly(r, tmp_path / "dest", contract.EXIT_INTEGRITY, "hashes to")


def test_index_without_our_platform(token_registry: RegistryServer, tmp_path: Path) -> None:
    reg_ = token_registry
    digest = push_one(reg_, tmp_path, "multi/arch:one")
    size = len(tool(reg_, "oras", "manifest", "fetch", f"{reg_.host}/multi/arch@{digest}").encode())
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest,
                "size": size,
                "platform": {"os": "linux", "architecture": "s390x"},
            }
        ],
    }
    push_index(reg_, tmp_path, "multi/arch:index", index)
    r = pull(tmp_path, reg_, "multi/arch:index", dockerconfig=reg_.docker_config())
    assert_failed_cleanly(r, tmp_path / "dest", contract.EXIT_INTEGRITY, "(it has: linux/s390x)")


@pytest.mark.parametrize(
    "index_type",
    ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"],
)
def test_index_resolves_to_our_platform(
    token_registry: RegistryServer, tmp_path: Path, index_type: str
) -> None:
    reg_ = token_registry
    repo = f"multi/{'oci' if 'oci' in index_type else 'docker'}"
    other = push_one(reg_, tmp_path, f"{repo}:s390x", name="s390x.bin")
    ours = push_one(reg_, tmp_path, f"{repo}:ours", name="ours.bin")
    platform = own_platform()

    def entry(digest: str, plat: dict[str, str]) -> dict[str, Any]:
        body = tool(reg_, "oras", "manifest", "fetch", f"{reg_.host}/{repo}@{digest}").encode()
        media_type = "application/vnd.oci.image.manifest.v1+json"
        return {"mediaType": media_type, "digest": digest, "size": len(body), "platform": plat}

    ours_platform = {"os": platform.os, "architecture": platform.architecture}
    index = {
        "schemaVersion": 2,
        "mediaType": index_type,
        "manifests": [entry(other, {"os": "linux", "architecture": "s390x"}), entry(ours, ours_platform)],
    }
    if platform.architecture == "s390x":
        pytest.fail("this test assumes the machine is not s390x")
    push_index(reg_, tmp_path, f"{repo}:multi", index)
    r = pull(tmp_path, reg_, f"{repo}:multi", dockerconfig=reg_.docker_config())
    assert r.code == 0, r.stderr
    assert {p.name for p in (tmp_path / "dest").iterdir()} == {"ours.bin", contract.MARKER_NAME}
    m = marker(tmp_path / "dest")
    assert m["platformManifestDigest"] == ours and m["manifestDigest"] != ours
    assert "platform" in r.events()


@pytest.mark.parametrize(
    ("members", "fragment", "extra"),
    [
        ([reg("../escape.txt", b"x")], "'..' component", {}),
        ([sym("link", "../../etc"), reg("ok", b"x")], "points outside", {}),
        ([reg(f"f{i}", b"x") for i in range(50)], "more than 10 entries", {contract.ENV_MAX_FILES: "10"}),
    ],
)
def test_hostile_archive_layers(
    token_registry: RegistryServer, tmp_path: Path, members: list[Any], fragment: str, extra: dict[str, str]
) -> None:
    reg_ = token_registry
    (tmp_path / "evil.tar.gz").write_bytes(tar_bytes(members, "gz"))
    repo = f"evil/layer-{hashlib.sha256(fragment.encode()).hexdigest()[:8]}"
    tool(
        reg_,
        "oras",
        "push",
        f"{reg_.host}/{repo}:v1",
        "evil.tar.gz:application/vnd.oci.image.layer.v1.tar+gzip",
        cwd=tmp_path,
    )
    r = pull(tmp_path, reg_, f"{repo}:v1", dockerconfig=reg_.docker_config(), **extra)
    assert_failed_cleanly(r, tmp_path / "dest", contract.EXIT_UNSAFE_ARCHIVE, fragment)


def test_token_endpoint_that_hangs(tmp_path: Path) -> None:
    with run_registry(tmp_path / "reg", auth="token", tls=False) as reg_:
        push_one(reg_, tmp_path, "team/app:v1")
        assert reg_.token_server is not None
        reg_.token_server.hang = True
        r = pull(
            tmp_path,
            reg_,
            "team/app:v1",
            dockerconfig=reg_.docker_config(),
            **{contract.ENV_READ_TIMEOUT: "1", contract.ENV_RETRIES: "1"},
        )
    assert_failed_cleanly(r, tmp_path / "dest", contract.EXIT_TRANSPORT, "token endpoint")


class _Hostile(http.server.BaseHTTPRequestHandler):
    """A registry impostor answering every GET with one body (Docker's registry refuses to store these)."""

    body = b""
    content_type = ""

    def log_message(self, *_args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)


def hostile_pull(tmp_path: Path, body: bytes, content_type: str, ref: str, name: str = "dest") -> Run:
    handler = type("Handler", (_Hostile,), {"body": body, "content_type": content_type})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fake = RegistryServer(tmp_path, server.server_address[1], "none", {}, None, None)
    try:
        return pull(tmp_path, fake, ref, name=name)
    finally:
        server.shutdown()
        server.server_close()


HTML = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>portal</body></html>"


def test_registry_answering_html(tmp_path: Path) -> None:
    r = hostile_pull(tmp_path, HTML, "text/html", "team/app:v1")
    assert_failed_cleanly(
        r, tmp_path / "dest", contract.EXIT_INTEGRITY, "not a JSON manifest (starts with '<!DOC"
    )
    pinned = hostile_pull(tmp_path, HTML, "text/html", "team/app@sha256:" + "0" * 64, name="pinned")
    assert_failed_cleanly(pinned, tmp_path / "pinned", contract.EXIT_INTEGRITY, "Content-Type text/html")


def test_huge_manifest(tmp_path: Path) -> None:
    """5 MiB of manifest: Docker's registry refuses to serve more than 4 MiB itself, so an impostor does."""
    body = json.dumps({"schemaVersion": 2, "annotations": {"pad": "x" * (5 << 20)}}).encode()
    r = hostile_pull(tmp_path, body, "application/vnd.oci.image.manifest.v1+json", "team/app:v1")
    assert_failed_cleanly(r, tmp_path / "dest", contract.EXIT_INTEGRITY, "more than the 4194304")


# --------------------------------------------------------------------------- the client in-process


def test_expired_token_is_renewed_and_other_origins_get_nothing(
    token_registry: RegistryServer, tmp_path: Path
) -> None:
    """RegistryAuth against the real registry and token server, driven in-process to set the clock."""
    reg_ = token_registry
    push_one(reg_, tmp_path, "team/renew:v1")
    creds = tmp_path / "creds"
    creds.mkdir()
    assert reg_.ca is not None
    (creds / "ca.crt").write_text(reg_.ca.ca_pem)
    cfg = load_config(
        {
            contract.ENV_URL: f"oci://{reg_.host}/team/renew:v1",
            contract.ENV_DEST: str(tmp_path / "dest"),
            contract.ENV_CREDENTIALS_DIR: str(creds),
        }
    )
    ref = contract.parse_oci_reference(cfg.url)
    alice = RegistryCredential("alice", reg_.users["alice"], source="test")
    client = RegistryClient(cfg, Logger("json", io.StringIO()), ref, [alice], deadline=None)
    first = client.manifest("v1", None)
    assert client.auth.token_requests == 1
    client.manifest("v1", None)
    assert client.auth.token_requests == 1  # the token is reused while fresh
    current = client.auth._token
    assert current is not None
    client.auth._token = Token(current.value, time.monotonic() - 1)  # expired
    again = client.manifest("v1", None)
    assert client.auth.token_requests == 2 and again.digest == first.digest

    elsewhere = Request("GET", f"https://127.0.0.1:{reg_.port + 1}/bucket/blob?sig=x", {})
    assert client.auth.sign(elsewhere) is False and "Authorization" not in elsewhere.headers
    other_scheme = Request("GET", f"http://{reg_.host}/v2/", {})
    assert client.auth.sign(other_scheme) is False
    home = Request("GET", f"https://{reg_.host}/v2/team/renew/blobs/x", {})
    assert client.auth.sign(home) is True and home.headers["Authorization"].startswith("Bearer ")
    client.close()


# --------------------------------------------------------------------------- the contract with the webhook


def test_contract_with_the_webhook_and_the_pods_pull_secrets(tmp_path: Path) -> None:
    """The env and projected volume `webhook.inject` renders, laid out as the kubelet would; the real run.

    Differs from a cluster: the test writes the projected volume itself (kubelet stand-in) and points
    PACKAGE_DEST and PACKAGE_CREDENTIALS_DIR at temporary directories.
    """
    with run_registry(tmp_path / "reg", auth="token", tls=False) as reg_:
        src = tmp_path / "src"
        site = make_site(src)
        tool(reg_, "oras", "push", f"{reg_.host}/team/site:v1", "site", cwd=src)
        digest = tool(reg_, "oras", "resolve", f"{reg_.host}/team/site:v1").strip()
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "web",
                "annotations": {"package-url": f"oci://{reg_.host}/team/site@{digest}"},
            },
            "spec": {
                "containers": [{"name": "app", "image": f"{reg_.host}/team/app:1"}],
                "imagePullSecrets": [{"name": "stale"}, {"name": "absent"}, {"name": "regcred"}],
            },
        }
        injected = inject(pod, Settings(plain_http_registries=["127.0.0.1"]), "default").pod
        init = injected["spec"]["initContainers"][0]
        (volume,) = [v for v in injected["spec"]["volumes"] if "projected" in v]
        secrets = {
            "stale": {".dockerconfigjson": json.dumps({"auths": {reg_.host: {"auth": "YWxpY2U6b2xk"}}})},
            "regcred": {".dockerconfigjson": json.dumps(reg_.docker_config())},
        }
        creds = tmp_path / "projected"
        creds.mkdir()
        for source in volume["projected"]["sources"]:
            data = secrets.get(source["secret"]["name"])
            if data is None:
                assert source["secret"]["optional"] is True  # the kubelet skips a missing optional Secret
                continue
            for item in source["secret"]["items"]:
                (creds / item["path"]).parent.mkdir(parents=True, exist_ok=True)
                (creds / item["path"]).write_text(data[item["key"]])
        env = {e["name"]: e["value"] for e in init["env"]}
        assert env[contract.ENV_CREDENTIALS_DIR] == contract.DEFAULT_CREDENTIALS_DIR
        env.update(
            {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                contract.ENV_DEST: str(tmp_path / "dest"),
                contract.ENV_CREDENTIALS_DIR: str(creds),
                contract.ENV_TERMINATION_LOG: str(tmp_path / "term"),
            }
        )
        r = run_init(env, timeout=120)
    assert r.code == 0, r.stderr
    assert tree_of(tmp_path / "dest") == {f"site/{k}": v for k, v in tree_of(site).items()} | {"site": "d"}
    assert marker(tmp_path / "dest")["manifestDigest"] == digest


def test_download_limit_counts_the_layers_before_any_blob(
    token_registry: RegistryServer, tmp_path: Path
) -> None:
    reg_ = token_registry
    push_one(reg_, tmp_path, "team/limit:v1", size=200_000)
    r = pull(
        tmp_path, reg_, "team/limit:v1", dockerconfig=reg_.docker_config(), PACKAGE_MAX_DOWNLOAD_BYTES="100k"
    )
    assert_failed_cleanly(r, tmp_path / "dest", contract.EXIT_INTEGRITY, "layers add up to 200000 bytes")
    assert "download_start" not in r.events()


def test_credentials_in_a_kubelet_projected_layout(tmp_path: Path) -> None:
    """`..data` and timestamped directories, top-level names as symlinks: what the kubelet writes."""
    root = tmp_path / "creds"
    data = root / "..2026_12_02_08_00_00.1"
    for name in ("b-secret", "a-secret"):
        (data / name).mkdir(parents=True)
        (data / name / ".dockerconfigjson").write_text("{}")
    (data / "..hidden").mkdir()
    (data / "..hidden" / ".dockerconfigjson").write_text("{}")
    (root / "..data").symlink_to(data.name)
    for name in ("a-secret", "b-secret"):
        (root / name).symlink_to(f"..data/{name}")
    (root / ".dockerconfigjson").write_text("{}")
    assert credential_files(root) == [
        root / ".dockerconfigjson",
        root / "a-secret" / ".dockerconfigjson",
        root / "b-secret" / ".dockerconfigjson",
    ]
    assert credential_files(tmp_path / "missing") == []


@pytest.mark.parametrize("fixture", ["basic_registry", "token_registry"])
def test_username_and_password_files(fixture: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """A plain `package-secret` (username, password, ca.crt) works for registries too, Basic or token."""
    reg_: RegistryServer = request.getfixturevalue(fixture)
    src = tmp_path / "src"
    src.mkdir()
    (src / "u.txt").write_text("user+password")
    tool(reg_, "oras", "push", f"{reg_.host}/team/userpass:v1", "u.txt", cwd=src)
    creds = tmp_path / "creds-dest"
    creds.mkdir()
    (creds / "username").write_text("alice\n")
    (creds / "password").write_text(reg_.users["alice"] + "\n")
    r = pull(tmp_path, reg_, "team/userpass:v1")
    assert r.code == 0, r.stderr
    assert (tmp_path / "dest/u.txt").read_text() == "user+password"
    assert reg_.users["alice"] not in r.stderr


def test_a_token_realm_that_redirects_never_forwards_the_credentials(tmp_path: Path) -> None:
    """The realm answers 307 to the real token endpoint on another port: Basic goes to the first only."""
    seen: list[dict[str, Any]] = []
    target: dict[str, str] = {}

    class Redirect(http.server.BaseHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:
            pass

        def do_GET(self) -> None:
            seen.append({"path": self.path, "authorization": self.headers.get("Authorization")})
            query = self.path.split("?", 1)[1] if "?" in self.path else ""
            self.send_response(307)
            self.send_header("Location", f"{target['realm']}?{query}")
            self.send_header("Content-Length", "0")
            self.end_headers()

    redirector = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=redirector.serve_forever, daemon=True).start()
    try:
        realm = f"http://127.0.0.1:{redirector.server_address[1]}/token"
        with run_registry(tmp_path / "reg", auth="token", tls=False, realm=realm) as reg_:
            assert reg_.token_server is not None
            target["realm"] = reg_.token_server.realm
            r = pull(tmp_path, reg_, "public/redirected:v1", dockerconfig=reg_.docker_config())
            token_requests = list(reg_.token_server.requests)
    finally:
        redirector.shutdown()
        redirector.server_close()
    assert seen and all(s["authorization"] and s["authorization"].startswith("Basic ") for s in seen)
    assert token_requests and all(req["basic"] is False for req in token_requests)
    # The token that arrived without credentials is anonymous: pull on public/, and the repository is empty.
    assert r.code == contract.EXIT_HTTP_CLIENT and "HTTP 404" in r.reason["message"]
