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
auth; `/to-http/X` redirects (302) to `http://127.0.0.1:PORT/X` and, with tls,
`/to-https/X` to `https://127.0.0.1:TLSPORT/X` (same host, other scheme and port).
`limit_rate` (e.g. "200k") throttles every response, for slow-download tests.
`proxy_to=PORT` makes it a reverse proxy (TLS terminator) for a plain-HTTP server on 127.0.0.1:PORT.
`nginx_binary()` is None when nginx is not installed (`scripts/setup.sh` installs it).
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.net import free_port
from webhook import certs


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
    """Write ca.crt, tls.crt and tls.key (and ca.key) into `directory`, made by `webhook.certs`."""
    ips, dns = [], []
    for host in hosts:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            dns.append(host)
        else:
            ips.append(host)
    bundle = certs.generate("package-repo", "test", ips=ips, dns=dns, days=1, ca_days=2)
    certs.write_bundle(bundle, directory)
    return TestCA(
        ca_pem=bundle.ca_cert.decode("ascii"),
        cert_path=directory / certs.TLS_CERT,
        key_path=directory / certs.TLS_KEY,
        ca_path=directory / certs.CA_CERT,
    )


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
        """Access log entries of the requests answered so far: method, uri, status, range, auth...

        nginx writes an entry when it finishes a request, which is after the client has
        read the response: a test that reads the log as soon as its client returns can
        miss the last entry. So first wait (bounded) until nginx's own counters show no
        request in progress other than the status request asking.
        """
        self.wait_idle()
        log = self.prefix / "access.log"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Until nginx reads and writes no request but this one (stub_status), so all are logged."""
        deadline = time.monotonic() + timeout
        while True:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)  # never via a proxy
            try:
                conn.request("GET", _STATUS_PATH, headers={"Connection": "close"})
                status = conn.getresponse().read().decode()
            finally:
                conn.close()
            m = _STATUS_RE.search(status)
            if m is None:
                raise RuntimeError(f"unexpected nginx stub_status answer: {status!r}")
            if int(m.group(1)) == 0 and int(m.group(2)) == 1:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx still busy after {timeout}s: {status!r}")
            time.sleep(0.02)

    def clear_requests(self) -> None:
        """Empty the access log, once the requests of earlier tests are all in it."""
        self.wait_idle()
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


_STATUS_PATH = "/__nginx_status"
_STATUS_RE = re.compile(r"Reading: (\d+) Writing: (\d+)")
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
    proxy_to: int | None = None,
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
    if proxy_to is not None:
        # A TLS terminator in front of a plain-HTTP server; Host passes unchanged (it is signed).
        locations = [
            f"location / {{ proxy_pass http://127.0.0.1:{proxy_to}; proxy_set_header Host $http_host; "
            "proxy_http_version 1.1; proxy_buffering off; proxy_request_buffering off; "
            "client_max_body_size 0; }"
        ]
    # For wait_idle: nginx's request counters; not logged, so it never shows in requests().
    locations.append(f"location = {_STATUS_PATH} {{ stub_status; access_log off; }}")
    # Scheme switches on the same host (other port): /to-http/X -> http://.../X, /to-https/X -> https://.../X.
    locations.append(f"location ~ ^/to-http/(.*)$ {{ return 302 http://127.0.0.1:{srv.port}/$1; }}")
    if srv.tls_port is not None:
        locations.append(f"location ~ ^/to-https/(.*)$ {{ return 302 https://127.0.0.1:{srv.tls_port}/$1; }}")
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
    proxy_to: int | None = None,
) -> NginxServer:
    """Start nginx serving `root` (or proxying to 127.0.0.1:`proxy_to`); config, logs, certs in `workdir`."""
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
            _config(
                srv,
                basic_auth=basic_auth is not None,
                bearer_token=bearer_token,
                limit_rate=limit_rate,
                proxy_to=proxy_to,
            )
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
