"""A real nginx on 127.0.0.1 serving a directory twice: unthrottled, and with `limit_rate` per connection."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.net import free_port

CONF = """\
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
{user}
events {{ worker_connections 64; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {prefix}/tmp;
    proxy_temp_path {prefix}/tmp;
    fastcgi_temp_path {prefix}/tmp;
    uwsgi_temp_path {prefix}/tmp;
    scgi_temp_path {prefix}/tmp;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
    server {{
        listen 127.0.0.1:{slow_port};
        root {root};
        limit_rate {limit_rate};
    }}
}}
"""


@dataclass
class Nginx:
    """Base URLs of the two servers (same directory)."""

    url: str
    throttled_url: str
    limit_rate: str
    proc: subprocess.Popen[bytes]


@contextlib.contextmanager
def serve(root: Path, prefix: Path, limit_rate: str = "100m") -> Iterator[Nginx]:
    """Run nginx serving `root` on two ports; the second one with `limit_rate` (bytes/s per connection)."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / "tmp").mkdir(exist_ok=True)
    port, slow_port = free_port(), free_port()
    conf = prefix / "nginx.conf"
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(
        CONF.format(
            prefix=prefix, root=root, port=port, slow_port=slow_port, limit_rate=limit_rate, user=user
        )
    )
    proc = subprocess.Popen(
        [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        for p in (port, slow_port):
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{p}/", timeout=1).close()
                    break
                except urllib.error.HTTPError:
                    break  # 403/404 on the index: the server answers
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"nginx did not start: {(prefix / 'error.log').read_text()}"
                        ) from None
                    time.sleep(0.05)
        yield Nginx(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{slow_port}", limit_rate, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
