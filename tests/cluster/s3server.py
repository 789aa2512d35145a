"""moto's S3 (signatures checked, tests/support/s3server.py) inside the cluster's network namespace, behind an
nginx TLS reverse proxy on CLUSTER_HOST_IP: Pods reach it as an S3-compatible endpoint with a private CA.

moto listens on the namespace's loopback only; `run_moto` itself runs in a child process started in the
namespace (`python -m tests.cluster.s3server`), which creates the bucket and object, prints the reader's keys
as one JSON line and keeps moto up until its stdin closes (so a killed test process takes moto with it).
The proxy reuses the package server's certificate (same CA, valid for CLUSTER_HOST_IP) and passes the Host
header through unchanged: moto recomputes each SigV4 signature over the Host the client signed.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.cluster.live import ROOT, Live
from tests.cluster.pkgserver import nginx_head
from tests.support.nginx import nginx_binary


@dataclass(frozen=True)
class S3Endpoint:
    """The reader's keys and the https:// endpoint Pods use; `requests()` reads the proxy's access log."""

    endpoint: str
    access_key_id: str
    secret_access_key: str
    access_log: Path

    def requests(self) -> list[dict[str, Any]]:
        if not self.access_log.exists():
            return []
        return [json.loads(line) for line in self.access_log.read_text().splitlines() if line.strip()]


def _proxy_conf(prefix: Path, host: str, port: int, tls_dir: Path, upstream: int) -> str:
    return (
        nginx_head(prefix)
        + f"""  server {{
    listen {host}:{port} ssl;
    ssl_certificate {tls_dir}/tls.crt;
    ssl_certificate_key {tls_dir}/tls.key;
    location / {{
      proxy_pass http://127.0.0.1:{upstream};
      proxy_set_header Host $http_host;
      proxy_http_version 1.1;
      proxy_buffering off;
      proxy_request_buffering off;
    }}
  }}
}}
"""
    )


@contextlib.contextmanager
def s3_in_netns(
    live: Live, workdir: Path, port: int, tls_dir: Path, bucket: str, key: str, body: Path
) -> Iterator[S3Endpoint]:
    """moto with `bucket`/`key` = `body`, served over TLS on live.host_ip:port with the cert in `tls_dir`."""
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed: run scripts/setup.sh")
    workdir.mkdir(parents=True, exist_ok=True)
    child = subprocess.Popen(
        live.in_netns(
            sys.executable, "-m", "tests.cluster.s3server", str(workdir / "moto"), bucket, key, str(body)
        ),
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    proxy: subprocess.Popen[bytes] | None = None
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, f"moto did not start in the namespace (exit {child.poll()})"
        info = json.loads(line)
        prefix = workdir / "nginx"
        prefix.mkdir(exist_ok=True)
        (prefix / "nginx.conf").write_text(_proxy_conf(prefix, live.host_ip, port, tls_dir, info["port"]))
        proxy = subprocess.Popen(
            live.in_netns(binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf")),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while True:
            err = (prefix / "error.log").read_text() if (prefix / "error.log").exists() else ""
            assert proxy.poll() is None, f"nginx exited with {proxy.returncode}: {err[-2000:]}"
            probe = subprocess.run(
                live.in_netns("bash", "-c", f"exec 3<>/dev/tcp/{live.host_ip}/{port}"), capture_output=True
            )
            if probe.returncode == 0:
                break
            assert time.monotonic() < deadline, f"nginx did not listen on {live.host_ip}:{port}"
            time.sleep(0.1)
        yield S3Endpoint(
            f"https://{live.host_ip}:{port}",
            info["access_key_id"],
            info["secret_access_key"],
            prefix / "access.log",
        )
    finally:
        if proxy is not None and proxy.poll() is None:
            proxy.terminate()
            proxy.wait(timeout=10)
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _serve(workdir: Path, bucket: str, key: str, body: Path) -> None:
    """Run in the namespace: moto with the object; print port and reader keys; serve until stdin closes."""
    from tests.support.s3server import run_moto

    with run_moto(workdir) as s3:
        s3.create_bucket(bucket)
        s3.put_object(bucket, key, body)
        print(
            json.dumps(
                {
                    "port": s3.port,
                    "access_key_id": s3.reader.access_key_id,
                    "secret_access_key": s3.reader.secret_access_key,
                }
            ),
            flush=True,
        )
        sys.stdin.read()


if __name__ == "__main__":
    _serve(Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4]))
