"""A real OCI registry for the oci:// tests: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1.

    with run_registry(tmp_path / "reg", auth="token", tls=True, users={"alice": "pw"}) as reg:
        reg.host                       # "127.0.0.1:PORT"
        reg.push_env()                 # env for oras/crane/skopeo: DOCKER_CONFIG login, SSL_CERT_FILE
        reg.token_server.requests      # what reached the token endpoint (paths, whether credentials came)

Auth modes, all enforced by the registry itself:
- "none": anonymous pull and push.
- "htpasswd": Basic auth (bcrypt file made by Debian's `htpasswd -B`).
- "token": the distribution token flow; the token endpoint is `TokenServer` below (test
  infrastructure: a few dozen lines issuing ES256 JWTs with an `x5c` header, which the
  registry checks against its `rootcertbundle`). It grants push+pull to known users,
  pull to anonymous callers on repositories under `public/`, and can be told to hang.

`BlobRedirect` (test infrastructure) sits in front of the registry and answers blob GETs with a 307 to a
second port that serves the blob from the registry's storage and records whether an
`Authorization` header arrived: the shape of a registry that redirects blob downloads
to object storage with signed URLs. Distribution 2.8 redirects only for cloud storage
drivers, so the redirect is made by this proxy; everything else is the real registry.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import http.server
import json
import os
import re
import secrets
import shutil
import socket
import socketserver
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tests.support.net import free_port
from tests.support.nginx import TestCA, make_test_ca

SERVICE = "test-registry"
ISSUER = "test-token-issuer"


def registry_binary() -> str:
    path = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not os.access(path, os.X_OK):
        raise RuntimeError("docker-registry is not installed: run scripts/setup.sh")
    return path


def oci_tools_bin() -> Path:
    """Where scripts/oci-tools.sh put oras and crane (built once per machine, cached)."""
    out = subprocess.run(
        ["bash", str(Path(__file__).resolve().parents[2] / "scripts" / "oci-tools.sh")],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# --------------------------------------------------------------------------- servers


class _ThreadingServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _serve(handler: type[http.server.BaseHTTPRequestHandler], ca: TestCA | None) -> _ThreadingServer:
    server = _ThreadingServer(("127.0.0.1", 0), handler)
    if ca is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(ca.cert_path, ca.key_path)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass
class TokenServer:
    """The token endpoint of the distribution token spec, in this process."""

    users: dict[str, str]
    workdir: Path
    ca: TestCA | None = None
    expires_in: int = 300
    hang: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)
    cert_path: Path = field(init=False)
    _key: ec.EllipticCurvePrivateKey = field(init=False, repr=False)
    _x5c: str = field(init=False, repr=False)
    _server: _ThreadingServer | None = field(default=None, init=False, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)

    def __post_init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test token signer")])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_path = self.workdir / "token-signer.crt"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")

    @property
    def realm(self) -> str:
        assert self._server is not None
        scheme = "https" if self.ca is not None else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}/token"

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "ES256", "x5c": [self._x5c]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        der = self._key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def grant(self, account: str | None, scopes: list[str]) -> list[dict[str, Any]]:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind != "repository" or not name:
                continue
            wanted = [a for a in actions.split(",") if a]
            allowed = wanted if account is not None else [a for a in wanted if a == "pull"]
            if account is None and not name.startswith("public/"):
                allowed = []
            if allowed:
                access.append({"type": "repository", "name": name, "actions": allowed})
        return access

    def start(self) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def _answer(self, query: dict[str, list[str]], account: str | None) -> None:
                now = int(time.time())
                claims = {
                    "iss": ISSUER,
                    "sub": account or "",
                    "aud": query.get("service", [""])[0],
                    "exp": now + outer.expires_in,
                    "nbf": now - 10,
                    "iat": now,
                    "jti": secrets.token_hex(8),
                    "access": outer.grant(account, query.get("scope", [])),
                }
                body = json.dumps(
                    {
                        "token": outer.sign(claims),
                        "expires_in": outer.expires_in,
                        "issued_at": datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z"),
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(parts.query)
                auth = self.headers.get("Authorization")
                outer.requests.append(
                    {"path": parts.path, "query": query, "basic": bool(auth and auth.startswith("Basic "))}
                )
                if outer.hang:
                    outer._stop.wait(600)
                    return
                account = None
                if auth:
                    try:
                        user, _, pw = base64.b64decode(auth.split(" ", 1)[1]).decode().partition(":")
                    except ValueError:
                        user, pw = "", ""
                    if outer.users.get(user) != pw or not user:
                        self.send_response(401)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    account = user
                self._answer(query, account)

        self._server = _serve(Handler, self.ca)

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


# --------------------------------------------------------------------------- registry


@dataclass
class RegistryServer:
    """A running docker-registry and what the tests need to reach it."""

    workdir: Path
    port: int
    auth: str
    users: dict[str, str]
    ca: TestCA | None
    token_server: TokenServer | None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if self.ca is not None else "http"

    @property
    def storage(self) -> Path:
        return self.workdir / "storage"

    def blob_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob (manifests are blobs too)."""
        hexdigest = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"

    def log(self) -> str:
        path = self.workdir / "registry.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def docker_config(self, user: str | None = None, host: str | None = None) -> dict[str, Any]:
        """A .dockerconfigjson for `user` (default: the first user) on this registry (or `host`)."""
        user = user or next(iter(self.users))
        token = base64.b64encode(f"{user}:{self.users[user]}".encode()).decode()
        return {"auths": {host or self.host: {"auth": token}}}

    def push_env(self, user: str | None = None) -> dict[str, str]:
        """Environment for oras/crane (DOCKER_CONFIG login, SSL_CERT_FILE = the test CA) and tools' PATH."""
        env = dict(os.environ)
        env["PATH"] = f"{oci_tools_bin()}:{env.get('PATH', '')}"
        config_dir = self.workdir / f"docker-config-{user or 'default'}"
        config_dir.mkdir(exist_ok=True)
        config = self.docker_config(user) if self.users else {"auths": {}}
        (config_dir / "config.json").write_text(json.dumps(config))
        env["DOCKER_CONFIG"] = str(config_dir)
        env["REGISTRY_AUTH_FILE"] = str(config_dir / "config.json")  # skopeo/containers-auth
        if self.ca is not None:
            env["SSL_CERT_FILE"] = str(self.ca.ca_path)
        return env

    def cert_dir(self) -> Path:
        """A directory holding only ca.crt (skopeo's --cert-dir reads every *.key there as a client key)."""
        path = self.workdir / "cert-dir"
        path.mkdir(exist_ok=True)
        if self.ca is not None:
            (path / "ca.crt").write_text(self.ca.ca_pem)
        return path

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.token_server is not None:
            self.token_server.stop()


def _htpasswd(users: dict[str, str]) -> str:
    lines = []
    for user, password in users.items():
        out = subprocess.run(
            ["htpasswd", "-nbB", "-C", "5", user, password], check=True, capture_output=True, text=True
        )
        lines.append(out.stdout.strip())
    return "\n".join(lines) + "\n"


def start_registry(
    workdir: Path,
    *,
    auth: str = "none",
    tls: bool = False,
    users: dict[str, str] | None = None,
    token_expires_in: int = 300,
    realm: str | None = None,
) -> RegistryServer:
    """Start docker-registry with its own config, storage and (optionally) TLS and auth. Call `.stop()`.

    `realm` replaces the token server's URL in the registry's challenges (a realm that redirects).
    """
    if auth not in ("none", "htpasswd", "token"):
        raise ValueError(auth)
    workdir.mkdir(parents=True, exist_ok=True)
    users = dict(users or ({"alice": "alice-secret"} if auth != "none" else {}))
    ca = make_test_ca(workdir / "tls") if tls else None
    token_server = None
    config: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": "info", "formatter": "text"},
        "storage": {
            "filesystem": {"rootdirectory": str(workdir / "storage")},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"secret": secrets.token_hex(16), "headers": {"X-Content-Type-Options": ["nosniff"]}},
    }
    if ca is not None:
        config["http"]["tls"] = {"certificate": str(ca.cert_path), "key": str(ca.key_path)}
    if auth == "htpasswd":
        (workdir / "htpasswd").write_text(_htpasswd(users))
        config["auth"] = {"htpasswd": {"realm": "test-realm", "path": str(workdir / "htpasswd")}}
    elif auth == "token":
        token_server = TokenServer(users, workdir, ca, expires_in=token_expires_in)
        token_server.start()
        config["auth"] = {
            "token": {
                "realm": realm or token_server.realm,
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": str(token_server.cert_path),
            }
        }
    last = ""
    for _attempt in range(3):
        port = free_port()
        config["http"]["addr"] = f"127.0.0.1:{port}"
        (workdir / "config.yml").write_text(json.dumps(config, indent=1))  # JSON is YAML
        log = (workdir / "registry.log").open("wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        proc = subprocess.Popen(
            [registry_binary(), "serve", str(workdir / "config.yml")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        reg = RegistryServer(workdir, port, auth, users, ca, token_server, proc)
        if _wait_v2(reg):
            return reg
        last = reg.log()[-2000:]
        reg.proc = None
        with contextlib.suppress(OSError):
            proc.kill()
        proc.wait(timeout=5)
    if token_server is not None:
        token_server.stop()
    raise RuntimeError(f"docker-registry did not start:\n{last}")


def _wait_v2(reg: RegistryServer) -> bool:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert reg.proc is not None
        if reg.proc.poll() is not None:
            return False
        try:
            status = _get_status(reg.scheme, reg.port, "/v2/", reg.ca)
        except OSError:
            time.sleep(0.05)
            continue
        if status in (200, 401):
            return True
        time.sleep(0.05)
    return False


def _connection(scheme: str, port: int, ca: TestCA | None, timeout: float = 10) -> http.client.HTTPConnection:
    if scheme == "https":
        ctx = ssl.create_default_context(cafile=str(ca.ca_path) if ca else None)
        return http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)


def _get_status(scheme: str, port: int, path: str, ca: TestCA | None) -> int:
    conn = _connection(scheme, port, ca, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


@contextlib.contextmanager
def run_registry(workdir: Path, **options: Any) -> Iterator[RegistryServer]:
    reg = start_registry(workdir, **options)
    try:
        yield reg
    finally:
        reg.stop()


# --------------------------------------------------------------------------- blob redirect


_HOP_HEADERS = frozenset({"connection", "transfer-encoding", "content-length", "date", "server"})
_BLOB_PATH = re.compile(r"^/v2/(.+)/blobs/(sha256:[0-9a-f]{64})$")
_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


@dataclass
class BlobRedirect:
    """A proxy in front of `registry` whose blob GETs answer 307 to `storage_url` (another port).

    `hits` records every request that reached the storage port: path, whether it
    carried `Authorization`, and its `Range`. Storage requires the signed `sig`
    query parameter the redirect adds, like a pre-signed object-storage URL.
    """

    registry: RegistryServer
    tls: bool = False
    drop_after: int | None = None
    """Cut the first whole-blob response after this many bytes (a connection dropped mid-download)."""
    hits: list[dict[str, Any]] = field(default_factory=list)
    proxied: list[dict[str, Any]] = field(default_factory=list)
    signature: str = field(default_factory=lambda: secrets.token_hex(8))
    _proxy: _ThreadingServer | None = field(default=None, init=False, repr=False)
    _storage: _ThreadingServer | None = field(default=None, init=False, repr=False)

    @property
    def host(self) -> str:
        assert self._proxy is not None
        return f"127.0.0.1:{self._proxy.server_address[1]}"

    @property
    def storage_port(self) -> int:
        assert self._storage is not None
        return int(self._storage.server_address[1])

    def start(self) -> BlobRedirect:
        outer = self
        ca = self.registry.ca if self.tls else None
        if self.tls and ca is None:
            raise ValueError("tls=True needs a registry started with tls=True (its CA signs both ports)")
        scheme = "https" if self.tls else "http"

        class Storage(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                outer.hits.append(
                    {
                        "path": parts.path,
                        "authorization": self.headers.get("Authorization"),
                        "range": self.headers.get("Range"),
                    }
                )
                query = urllib.parse.parse_qs(parts.query)
                digest = parts.path.rsplit("/", 1)[-1]
                path = outer.registry.blob_path(digest) if digest.startswith("sha256:") else None
                if query.get("sig") != [outer.signature] or path is None or not path.is_file():
                    self.send_response(403)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = path.read_bytes()
                start, end = 0, len(data) - 1
                m = _RANGE.match(self.headers.get("Range", ""))
                status = 200
                if m:
                    start = int(m.group(1))
                    end = int(m.group(2)) if m.group(2) else end
                    status = 206
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(end - start + 1))
                self.send_header("ETag", f'"{digest}"')
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                self.end_headers()
                if outer.drop_after is not None and status == 200:
                    outer.drop_after, cut = None, outer.drop_after
                    self.wfile.write(data[:cut])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(data[start : end + 1])

        class Proxy(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._forward("GET")

            def do_HEAD(self) -> None:
                self._forward("HEAD")

            def _forward(self, method: str) -> None:
                auth = "Authorization" in self.headers
                outer.proxied.append({"method": method, "path": self.path, "auth": auth})
                m = _BLOB_PATH.match(urllib.parse.urlsplit(self.path).path)
                if method == "GET" and m and self._authorized():
                    location = (
                        f"{scheme}://127.0.0.1:{outer.storage_port}/bucket/{m.group(2)}?sig={outer.signature}"
                    )
                    self.send_response(307)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                conn = _connection(outer.registry.scheme, outer.registry.port, outer.registry.ca)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(method, self.path, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP_HEADERS:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(body)
                conn.close()

            def _authorized(self) -> bool:
                """Ask the registry with a HEAD (auth checked there) before redirecting a GET."""
                conn = _connection(outer.registry.scheme, outer.registry.port, outer.registry.ca)
                headers = {k: v for k, v in self.headers.items() if k.lower() == "authorization"}
                conn.request("HEAD", self.path, headers=headers)
                ok = conn.getresponse().status == 200
                conn.close()
                return ok

        self._storage = _serve(Storage, ca)
        self._proxy = _serve(Proxy, ca)
        return self

    def stop(self) -> None:
        for server in (self._proxy, self._storage):
            if server is not None:
                server.shutdown()
                server.server_close()
