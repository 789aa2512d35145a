"""Helpers for the server runtime tests: a Secret-volume-like cert directory and a server subprocess."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.support.kube import REPO
from tests.support.net import free_port


class SecretVolume:
    """A directory laid out like a kubelet-managed Secret volume.

    `tls.crt -> ..data/tls.crt`, `..data -> ..<timestamp>`; an update writes a new timestamped directory and
    renames a new `..data` symlink over the old one (atomic), exactly how Kubernetes rotates mounted Secrets.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._generation = 0

    @property
    def cert_file(self) -> Path:
        return self.root / "tls.crt"

    @property
    def key_file(self) -> Path:
        return self.root / "tls.key"

    def update(self, files: Mapping[str, bytes]) -> None:
        self._generation += 1
        data_dir = self.root / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{self._generation}"
        data_dir.mkdir()
        for name, content in files.items():
            (data_dir / name).write_bytes(content)
        tmp_link = self.root / "..data_tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp_link.unlink()
        tmp_link.symlink_to(data_dir.name)
        old = (self.root / "..data").resolve() if (self.root / "..data").is_symlink() else None
        os.replace(tmp_link, self.root / "..data")
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(Path("..data") / name)
        if old is not None and old != data_dir:
            for child in old.iterdir():
                child.unlink()
            old.rmdir()


@dataclass
class ServerProcess:
    """A running `serve_app`/`serve` subprocess on 127.0.0.1."""

    proc: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    log: Path

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """GET on the plain-HTTP metrics port."""
        conn = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def metric(self, name: str) -> float:
        """The value of an unlabelled metric on /metrics."""
        text = self.get("/metrics")[1].decode()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise KeyError(name)

    def readyz(self) -> tuple[int, dict[str, object]]:
        status, body = self.get("/readyz")
        return status, json.loads(body)

    def wait_metrics_port(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.logs()[-3000:]}")
            try:
                self.get("/healthz", timeout=1)
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"metrics port never opened:\n{self.logs()[-3000:]}")

    def wait_ready(self, timeout: float = 20.0) -> None:
        self.wait_metrics_port(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.readyz()[0] == 200:
                return
            time.sleep(0.05)
        raise TimeoutError(f"server never ready: {self.readyz()}\n{self.logs()[-3000:]}")

    def https(
        self, path: str, ca: Path, *, method: str = "GET", body: bytes | None = None, timeout: float = 10.0
    ) -> tuple[int, bytes, bytes]:
        """One request on a fresh TLS connection; returns (status, body, DER of the served certificate)."""
        ctx = ssl.create_default_context(cafile=str(ca))
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=timeout)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            assert conn.sock is not None
            der = conn.sock.getpeercert(binary_form=True) or b""
            resp = conn.getresponse()
            return resp.status, resp.read(), der
        finally:
            conn.close()

    def terminate(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


@contextlib.contextmanager
def server_process(
    workdir: Path,
    cert_file: Path,
    key_file: Path,
    env: Mapping[str, str] | None = None,
    *,
    real_app: bool = False,
) -> Iterator[ServerProcess]:
    """Start the runtime with the tiny test app (or the real webhook) on free ports; kill it on exit."""
    port, metrics_port = free_port(), free_port()
    full_env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PACKAGE_INJECTOR_HOST": "127.0.0.1",
        "PACKAGE_INJECTOR_PORT": str(port),
        "PACKAGE_INJECTOR_METRICS_PORT": str(metrics_port),
        "PACKAGE_INJECTOR_TLS_CERT_FILE": str(cert_file),
        "PACKAGE_INJECTOR_TLS_KEY_FILE": str(key_file),
        "PACKAGE_INJECTOR_CERT_RELOAD_INTERVAL": "0.1",
        **(env or {}),
    }
    command = ["-m", "tests.support.runtime_app", *(["--real"] if real_app else [])]
    log = workdir / f"server-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, *command], env=full_env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO
        )
    server = ServerProcess(proc=proc, port=port, metrics_port=metrics_port, log=log)
    try:
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
