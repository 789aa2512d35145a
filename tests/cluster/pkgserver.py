"""nginx serving test packages to Pods: inside the cluster's network namespace, bound to CLUSTER_HOST_IP.

HTTPS with a throwaway CA (the webhook admits https:// only by default; Pods trust the CA through the
`ca.crt` key of their package Secret, as with a private CA in production), a `/basic/` location behind
basic auth, and a JSON access log so tests count downloads per Pod.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import signal
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.nginx import make_test_ca, nginx_binary


@dataclass(frozen=True)
class Package:
    """A tar.gz served by the test nginx: its name, SHA-256 and the files it holds (path -> bytes)."""

    name: str
    sha256: str
    files: dict[str, bytes]


def make_package(directory: Path, name: str, files: dict[str, bytes]) -> Package:
    """Write `name`: a tar.gz of `files` (regular files, mode 0644) into `directory`."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for path, data in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    blob = raw.getvalue()
    (directory / name).write_bytes(blob)
    return Package(name=name, sha256=hashlib.sha256(blob).hexdigest(), files=dict(files))


@dataclass
class PackageServer:
    """The running nginx; `url()` for Pods, `ca_pem` for their Secret, `downloads()` from its access log."""

    host: str
    port: int
    root: Path
    prefix: Path
    ca_pem: str
    user: str
    password: str
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def url(self, name: str, location: str = "") -> str:
        return f"https://{self.host}:{self.port}/{location + '/' if location else ''}{name}"

    def requests(self) -> list[dict[str, Any]]:
        log = self.prefix / "access.log"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]

    def downloads(self, name: str) -> int:
        """Completed GETs of `name` (any location) answered 200 or 206."""
        return sum(
            1
            for r in self.requests()
            if r["method"] == "GET" and r["uri"].rsplit("/", 1)[-1] == name and r["status"] in (200, 206)
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def nginx_head(prefix: Path, extra_log_fields: str = "") -> str:
    """The start of an nginx.conf for a server run by these tests: foreground, files under `prefix`, a JSON
    access log (method, uri, status, bytes, plus `extra_log_fields`); the caller adds its `server` blocks
    and the closing brace of `http`."""
    runas = "user root root;" if os.geteuid() == 0 else ""
    return f"""{runas}
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
  log_format pi_json escape=json '{{"method":"$request_method","uri":"$request_uri","status":$status,'
    '"bytes":$body_bytes_sent{extra_log_fields}}}';
  access_log {prefix}/access.log pi_json;
  client_body_temp_path {prefix}/client_body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
"""


def start_package_server(netns: str, host: str, port: int, root: Path, prefix: Path) -> PackageServer:
    """Start nginx in `netns` on host:port (TLS), serving `root` at / and, behind basic auth, at /basic/."""
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed: run scripts/setup.sh")
    prefix.mkdir(parents=True, exist_ok=True)
    ca = make_test_ca(prefix / "tls", hosts=(host,))
    user, password = "reader", "pkg-" + os.urandom(6).hex()
    digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
    (prefix / "htpasswd").write_text(f"{user}:{{SHA}}{digest}\n")
    conf = prefix / "nginx.conf"
    conf.write_text(
        nginx_head(prefix, ',"auth":"$remote_user"')
        + f"""  default_type application/octet-stream;
  server {{
    listen {host}:{port} ssl;
    ssl_certificate {ca.cert_path};
    ssl_certificate_key {ca.key_path};
    location / {{ root {root}; }}
    location /basic/ {{ alias {root}/; auth_basic "packages"; auth_basic_user_file {prefix}/htpasswd; }}
  }}
}}
"""
    )
    proc = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{netns}", "--", binary, "-p", str(prefix), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    srv = PackageServer(host, port, root, prefix, ca.ca_pem, user, password, proc)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = (prefix / "error.log").read_text() if (prefix / "error.log").exists() else ""
            raise RuntimeError(f"nginx exited with {proc.returncode}: {err[-2000:]}")
        probe = subprocess.run(
            ["nsenter", f"--net=/run/netns/{netns}", "--", "bash", "-c", f"exec 3<>/dev/tcp/{host}/{port}"],
            capture_output=True,
        )
        if probe.returncode == 0:
            return srv
        time.sleep(0.1)
    srv.stop()
    raise RuntimeError(f"nginx did not listen on {host}:{port}")
