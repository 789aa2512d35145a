"""The hints on connection and volume failures, each proven against the real thing that causes it.

The program runs as the kubelet runs it (a subprocess configured by its environment): against a closed
port on 127.0.0.1, a name under `.invalid` (RFC 2606: never resolves), Debian's nginx serving plain HTTP
and TLS, and a real tmpfs of a few hundred KiB (what a memory-backed emptyDir with a sizeLimit is).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import socket
import subprocess
import tarfile
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from initcontainer import contract, hints
from tests.support.init_process import Run, run_init
from tests.support.net import free_port
from tests.support.nginx import NginxServer, run_nginx


def _tgz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# Incompressible, so it needs about 4 MiB on the volume: more than the tmpfs and the ext4 below hold.
PACKAGE = _tgz({"app/big.bin": os.urandom(4 * 1024 * 1024), "app/a.txt": b"hello\n"})
SHA = hashlib.sha256(PACKAGE).hexdigest()


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxServer]:
    root = tmp_path_factory.mktemp("www")
    (root / "a.tgz").write_bytes(PACKAGE)
    with run_nginx(root, tmp_path_factory.mktemp("nginx"), tls=True) as srv:
        yield srv


def run(tmp_path: Path, url: str, dest: Path | None = None, **extra: str) -> Run:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        contract.ENV_URL: url,
        contract.ENV_DEST: str(dest or tmp_path / "dest"),
        contract.ENV_TERMINATION_LOG: str(tmp_path / "termination-log"),
        contract.ENV_CREDENTIALS_DIR: str(tmp_path),  # no credential files: anonymous
        contract.ENV_RETRIES: "1",
        contract.ENV_CONNECT_TIMEOUT: "5",
        **extra,
    }
    return run_init(env, timeout=120)


def test_connection_refused_names_port_mesh_policy_and_proxy(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there any more: the kernel answers with a reset
    r = run(tmp_path, f"http://127.0.0.1:{port}/a.tgz", **{contract.ENV_ALLOW_HTTP: "true"})
    assert r.code == contract.EXIT_TRANSPORT and r.reason["reason"] == "TransportError", r.stderr
    message = r.reason["message"]
    assert f"cannot connect to 127.0.0.1:{port}: Connection refused: nothing accepts connections" in message
    for cause in (
        "port and scheme",
        "service-mesh proxy not running yet",
        "NetworkPolicy",
        "PROXY",
    ):
        assert cause in message, message
    assert r.events().count("retry") == 1  # still transient: a proxy or server may come up


def test_a_refused_proxy_is_named_as_the_proxy(tmp_path: Path) -> None:
    port = free_port()
    r = run(tmp_path, "https://files.example.com/a.tgz", HTTPS_PROXY=f"http://127.0.0.1:{port}")
    assert r.code == contract.EXIT_TRANSPORT, r.stderr
    message = r.reason["message"]
    assert f"cannot connect to the proxy 127.0.0.1:{port} (for files.example.com:443)" in message
    assert "check HTTPS_PROXY" in message and "service-mesh" not in message


def test_a_name_that_does_not_resolve_names_dns_policy_and_mesh(tmp_path: Path) -> None:
    r = run(tmp_path, "https://package-repo.invalid/a.tgz")
    assert r.code == contract.EXIT_TRANSPORT, r.stderr
    message = r.reason["message"]
    assert "cannot connect to package-repo.invalid:443: " in message and "(DNS)" in message
    for cause in ("NAME.NAMESPACE.svc", "port 53", "NetworkPolicy", "service-mesh proxy", "PROXY"):
        assert cause in message, message


def test_https_against_a_plain_http_port_fails_at_once_with_the_scheme_hint(
    nginx: NginxServer, tmp_path: Path
) -> None:
    url = nginx.url("a.tgz").replace("http://", "https://")  # nginx's plain-HTTP port
    r = run(tmp_path, url, **{contract.ENV_RETRIES: "5"})
    assert r.code == contract.EXIT_TRANSPORT, r.stderr
    message = r.reason["message"]
    assert "answered the TLS handshake in plain HTTP" in message and "fix the scheme or port" in message
    assert "retry" not in r.events(), "a wrong scheme never heals: it must not be retried"
    assert not (tmp_path / "dest" / contract.MARKER_NAME).exists()


def test_http_against_a_tls_port_fails_at_once_with_the_scheme_hint(
    nginx: NginxServer, tmp_path: Path
) -> None:
    url = nginx.https_url("a.tgz").replace("https://", "http://")  # nginx's TLS port
    nginx.clear_requests()
    r = run(tmp_path, url, **{contract.ENV_ALLOW_HTTP: "true", contract.ENV_RETRIES: "5"})
    assert r.code == contract.EXIT_TRANSPORT, r.stderr
    assert "speaks TLS but the request was plain http: use an https:// URL" in r.reason["message"]
    assert "retry" not in r.events()
    nginx.wait_idle()
    assert [e["status"] for e in nginx.requests()] == [400]  # nginx's "plain HTTP request ... HTTPS port"


def test_an_ordinary_400_is_still_an_http_client_error(tmp_path: Path) -> None:
    """Only a TLS server's answer counts as the mismatch: nginx's own 400 for a bad request does not."""
    from tests.support.faults import FaultServer, Respond

    with FaultServer() as srv:
        srv.script("/a.tgz", Respond(status=400, body=b"<html>bad request</html>", content_type="text/html"))
        r = run(tmp_path, srv.url("/a.tgz"), **{contract.ENV_ALLOW_HTTP: "true"})
    assert r.code == contract.EXIT_HTTP_CLIENT and "HTTP 400" in r.reason["message"], r.stderr


def _mounted(path: Path, *mount_args: str) -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(["mount", *mount_args, str(path)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a test filesystem (needs root or CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        os.chmod(path, 0o777)
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB tmpfs: what the kubelet mounts for a memory-backed emptyDir with that sizeLimit."""
    yield from _mounted(tmp_path / "volume", "-t", "tmpfs", "-o", "size=256k", "tmpfs")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB ext4 on a loop device: a disk-backed emptyDir on a node whose disk is full."""
    image = tmp_path / "disk.img"
    with open(image, "wb") as f:
        f.truncate(2 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    yield from _mounted(tmp_path / "volume", "-o", "loop", str(image))


def run_into(tmp_path: Path, url: str, volume: Path) -> Run:
    return run(tmp_path, url, volume, **{contract.ENV_ALLOW_HTTP: "true", contract.ENV_SHA256: SHA})


def test_a_full_memory_backed_volume_names_its_size_limit(
    nginx: NginxServer, small_tmpfs: Path, tmp_path: Path
) -> None:
    r = run_into(tmp_path, nginx.url("a.tgz"), small_tmpfs)
    assert r.code == contract.EXIT_LOCAL_IO and r.reason["reason"] == "LocalIOError", r.stderr
    message = r.reason["message"]
    assert (
        f"the package volume {small_tmpfs} is full: it is a memory-backed emptyDir, a tmpfs of 256.0 KiB"
        in message
    )
    assert '"package-size-limit" annotation' in message and "default_size_limit" in message
    assert "No space left" not in message
    assert os.listdir(small_tmpfs) == [], "nothing half-written may stay visible"


def test_a_full_disk_backed_volume_names_eviction_at_the_size_limit(
    nginx: NginxServer, small_disk: Path, tmp_path: Path
) -> None:
    """ENOSPC on a disk filesystem: the sizeLimit does not fail writes there (the kubelet evicts past it)."""
    r = run_into(tmp_path, nginx.url("a.tgz"), small_disk)
    assert r.code == contract.EXIT_LOCAL_IO and r.reason["reason"] == "LocalIOError", r.stderr
    message = r.reason["message"]
    assert f"no space left on the package volume {small_disk} (ext4, " in message
    assert "past it the kubelet evicts the Pod" in message and '"package-size-limit" annotation' in message
    assert "ephemeral-storage request" in message
    assert os.listdir(small_disk) == [], "nothing half-written may stay visible"


def test_a_quota_is_named_as_one(tmp_path: Path) -> None:
    """EDQUOT needs a quota-enabled filesystem; the wording is checked on the function (no quota here)."""
    message = hints.full_volume(OSError(errno.EDQUOT, "Disk quota exceeded"), tmp_path)
    assert (
        message.startswith(f"the quota of the package volume {tmp_path} (")
        and "package-size-limit" in message
    )


def test_a_plain_http_registry_that_serves_tls_fails_at_once(tmp_path: Path) -> None:
    """Go's TLS server (the real registry, distribution 2.8) answers plain HTTP with its own 400 text."""
    from tests.support.registry import run_registry

    with run_registry(tmp_path / "reg", auth="none", tls=True) as reg:
        r = run(tmp_path, f"oci://{reg.host}/team/site:v1", **{contract.ENV_ALLOW_HTTP: "true"})
    assert r.code == contract.EXIT_TRANSPORT, r.stderr
    message = r.reason["message"]
    assert f"{reg.host} speaks TLS but the request was plain http" in message
    assert "remove it from the webhook's plain_http_registries" in message
    assert "retry" not in r.events()


@pytest.mark.parametrize("cut", ["reset", "stall"])
def test_a_400_whose_body_breaks_off_is_still_an_http_client_error(tmp_path: Path, cut: str) -> None:
    """The "use https" peek reads a hostile or broken server's 400 body: a reset or a stall there is that
    server's 400, not a crash of the program (it was InternalError, exit 1, "ConnectionResetError")."""
    from tests.support.faults import FaultServer, Respond

    body = b"<html>" + b"x" * 2000
    with FaultServer() as srv:
        srv.script(
            "/a.tgz",
            Respond(status=400, body=body, content_type="text/html", cut_after=10, cut=cut, stall_seconds=8),
        )
        r = run(
            tmp_path, srv.url("/a.tgz"), **{contract.ENV_ALLOW_HTTP: "true", contract.ENV_READ_TIMEOUT: "2"}
        )
    assert r.code == contract.EXIT_HTTP_CLIENT, r.stderr
    assert r.reason["reason"] == "HTTPClientError" and "HTTP 400" in r.reason["message"], r.reason


class _RecordCorrupter:
    """A TCP relay in front of a TLS port that sets an impossible length on the server's first record:
    what a faulty middlebox or a bit flip in transit does. A test helper standing in for a broken
    network, not for the server: nginx answers behind it."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._relay, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._relay, args=(server, client, True), daemon=True).start()

    @staticmethod
    def _relay(src: socket.socket, dst: socket.socket, corrupt: bool) -> None:
        pending, done = b"", not corrupt
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if not done:
                    pending += data
                    data = b""
                    while len(pending) >= 5 and len(pending) >= 5 + int.from_bytes(pending[3:5], "big"):
                        end = 5 + int.from_bytes(pending[3:5], "big")
                        record, pending = bytearray(pending[:end]), pending[end:]
                        if not done:  # the server's first record (ServerHello): TLS framing, bad length
                            record[3:5], done = (20_000).to_bytes(2, "big"), True
                        data += bytes(record)
                    if done:
                        data, pending = data + pending, b""
                dst.sendall(data)
        for sock in (src, dst):
            sock.close()

    def close(self) -> None:
        self.listener.close()


def test_a_tls_record_corrupted_in_transit_is_retried_not_called_plain_http(
    nginx: NginxServer, tmp_path: Path
) -> None:
    """A TLS record with a broken length is a broken network, which heals; only an answer that is not TLS
    at all (WRONG_VERSION_NUMBER) is the https-on-an-http-port mistake. OpenSSL 3.0 reports this record as
    PACKET_LENGTH_TOO_LONG, 3.2+ (the image's 3.5) reports it, and a bad MAC, as RECORD_LAYER_FAILURE;
    both were taken for a plain-HTTP server and failed at once, not retried, naming the wrong fix."""
    tls_port = int(urllib.parse.urlsplit(nginx.https_url("a.tgz")).port or 0)
    relay = _RecordCorrupter(tls_port)
    try:
        r = run(tmp_path, f"https://127.0.0.1:{relay.port}/a.tgz", **{contract.ENV_RETRIES: "2"})
    finally:
        relay.close()
    assert r.code == contract.EXIT_TRANSPORT, r.stderr
    message = r.reason["message"]
    assert "TLS handshake with 127.0.0.1" in message and "plain HTTP" not in message, message
    assert r.events().count("retry") == 2, r.stderr  # transient: PACKAGE_RETRIES=2 retries
