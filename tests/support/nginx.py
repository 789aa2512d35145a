"""Debian's nginx on 127.0.0.1 with a private prefix: a real file server for the tests.

Python's http.server ignores Range; nginx implements Range/206/416/If-Range, ETag
and basic auth the way production servers do, so resume and auth are tested
against the real thing.

    with run_nginx(root=files_dir, workdir=tmp_path / "nginx", tls=True,
                   basic_auth=("alice", "s3cret"), bearer_token="tok") as srv:
        srv.url("pkg.tar.gz")              # http://127.0.0.1:PORT/pkg.tar.gz   (no auth)
        srv.url("pkg.tar.gz", "basic")     # .../basic/pkg.tar.gz   (basic auth required)
        srv.url("pkg.tar.gz", "bearer")    # .../bearer/pkg.tar.gz  (Authorization: Bearer tok required)
        srv.https_url("pkg.tar.gz")        # https://127.0.0.1:TLSPORT/pkg.tar.gz, cert signed by srv.ca_pem
        srv.requests()                     # access log entries: method, uri, status, range, auth...

Locations: `/` serves `root`; `/basic/` and `/bearer/` serve the same files behind
auth. `limit_rate` (e.g. "200k") throttles every response, for slow-download tests.
`nginx_binary()` is None when nginx is not installed (`scripts/setup.sh` installs it).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.kube import free_port


def nginx_binary() -> str | None:
    """Path of nginx (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    return shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)


@dataclass(frozen=True)
class TestCA:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost."""

    ca_pem: str
    cert_path: Path
    key_path: Path
    ca_path: Path


def make_test_ca(directory: Path, *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> TestCA:
    """Write ca.crt, server.crt and server.key into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "package-injector test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM).decode()
    ca_path = directory / "ca.crt"
    ca_path.write_text(ca_pem)
    cert_path = directory / "server.crt"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = directory / "server.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return TestCA(ca_pem=ca_pem, cert_path=cert_path, key_path=key_path, ca_path=ca_path)


def _htpasswd_line(user: str, password: str) -> str:
    """An {SHA} entry: nginx accepts it, and it needs no external tool."""
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
    return f"{user}:{{SHA}}{digest}\n"


@dataclass
class NginxServer:
    """A running nginx; `url()`/`https_url()` build addresses, `requests()` reads its access log."""

    root: Path
    prefix: Path
    port: int
    tls_port: int | None = None
    ca: TestCA | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def https_base_url(self) -> str:
        if self.tls_port is None:
            raise RuntimeError("nginx was started without tls=True")
        return f"https://127.0.0.1:{self.tls_port}"

    @property
    def ca_pem(self) -> str:
        if self.ca is None:
            raise RuntimeError("nginx was started without tls=True")
        return self.ca.ca_pem

    def url(self, name: str, location: str = "") -> str:
        """http URL of `name` under `root`; location '' (open), 'basic' or 'bearer'."""
        return f"{self.base_url}/{location + '/' if location else ''}{name}"

    def https_url(self, name: str, location: str = "") -> str:
        return f"{self.https_base_url}/{location + '/' if location else ''}{name}"

    def requests(self) -> list[dict[str, Any]]:
        """Access log entries so far: method, uri, status, range, if_range, auth, bytes."""
        log = self.prefix / "access.log"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]

    def clear_requests(self) -> None:
        log = self.prefix / "access.log"
        if log.exists():
            log.write_text("")

    def stop(self) -> None:
        """Graceful stop; kills after 5 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


_LOG_FORMAT = (
    "log_format pi_json escape=json '{"
    '"method":"$request_method","uri":"$request_uri","status":$status,'
    '"range":"$http_range","if_range":"$http_if_range","auth":"$http_authorization",'
    '"bytes":$body_bytes_sent,"server_port":$server_port'
    "}';"
)


def _config(
    srv: NginxServer,
    *,
    basic_auth: bool,
    bearer_token: str | None,
    limit_rate: str | None,
) -> str:
    user = "user root root;" if os.geteuid() == 0 else ""
    listen = [f"listen 127.0.0.1:{srv.port};"]
    if srv.tls_port is not None and srv.ca is not None:
        listen += [
            f"listen 127.0.0.1:{srv.tls_port} ssl;",
            f"ssl_certificate {srv.ca.cert_path};",
            f"ssl_certificate_key {srv.ca.key_path};",
        ]
    rate = f"limit_rate {limit_rate};" if limit_rate else ""
    locations = [f"location / {{ root {srv.root}; {rate} }}"]
    if basic_auth:
        locations.append(
            f'location /basic/ {{ alias {srv.root}/; auth_basic "test"; '
            f"auth_basic_user_file {srv.prefix}/htpasswd; {rate} }}"
        )
    if bearer_token is not None:
        locations.append(
            f'location /bearer/ {{ alias {srv.root}/; if ($http_authorization != "Bearer {bearer_token}") '
            f"{{ return 401; }} {rate} }}"
        )
    p = srv.prefix
    return f"""
{user}
worker_processes 1;
daemon off;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 256; }}
http {{
    {_LOG_FORMAT}
    access_log {p}/access.log pi_json;
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    default_type application/octet-stream;
    sendfile on;
    keepalive_timeout 5;
    server {{
        {" ".join(listen)}
        server_name localhost;
        {" ".join(locations)}
    }}
}}
"""


def _wait_ready(proc: subprocess.Popen[bytes], ports: list[int], prefix: Path) -> None:
    deadline = time.monotonic() + 10
    pending = list(ports)
    while pending:
        if proc.poll() is not None:
            err = (prefix / "error.log").read_text() if (prefix / "error.log").exists() else ""
            raise RuntimeError(f"nginx exited with {proc.returncode}: {err[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", pending[0]), timeout=0.5):
                pending.pop(0)
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"nginx did not listen on {pending}") from None
            time.sleep(0.05)


def start_nginx(
    root: Path,
    workdir: Path,
    *,
    basic_auth: tuple[str, str] | None = None,
    bearer_token: str | None = None,
    tls: bool = False,
    limit_rate: str | None = None,
) -> NginxServer:
    """Start nginx serving `root`; its config, logs and certs live in `workdir`. Call `.stop()`."""
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed: run scripts/setup.sh")
    workdir.mkdir(parents=True, exist_ok=True)
    ca = make_test_ca(workdir / "tls") if tls else None
    if basic_auth is not None:
        (workdir / "htpasswd").write_text(_htpasswd_line(*basic_auth))
    last_error: Exception | None = None
    for _attempt in range(3):  # a free port can be taken between probe and bind
        srv = NginxServer(
            root=root.resolve(),
            prefix=workdir.resolve(),
            port=free_port(),
            ca=ca,
            tls_port=free_port() if tls else None,
        )
        conf = workdir / "nginx.conf"
        conf.write_text(
            _config(srv, basic_auth=basic_auth is not None, bearer_token=bearer_token, limit_rate=limit_rate)
        )
        proc = subprocess.Popen(
            [binary, "-p", str(srv.prefix), "-c", str(conf), "-e", str(srv.prefix / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        srv.proc = proc
        try:
            _wait_ready(proc, [srv.port] + ([srv.tls_port] if srv.tls_port else []), srv.prefix)
            return srv
        except RuntimeError as exc:
            last_error = exc
            srv.stop()
    raise RuntimeError(f"nginx did not start: {last_error}")


@contextlib.contextmanager
def run_nginx(root: Path, workdir: Path, **options: Any) -> Iterator[NginxServer]:
    """Context manager around `start_nginx`: always stops nginx."""
    srv = start_nginx(root, workdir, **options)
    try:
        yield srv
    finally:
        srv.stop()
