"""Run the real webhook (`package-injector serve`) as a subprocess on 127.0.0.1 for tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.net import free_port, wait_http_ok
from webhook import certs


@dataclass
class WebhookProcess:
    """A running webhook and what a MutatingWebhookConfiguration needs to call it."""

    url: str
    metrics_url: str
    ca_bundle_b64: str
    ca_file: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def running_webhook(
    workdir: Path,
    settings_env: Mapping[str, str] | None = None,
    command: Sequence[str] | None = None,
    *,
    ca: tuple[bytes, bytes] | None = None,
) -> Iterator[WebhookProcess]:
    """Start `package-injector serve` (or `command`, e.g. the benchmarks' server) with a fresh certificate
    for 127.0.0.1 (signed by `ca`, e.g. one shared by an old and a new Pod; else a CA of its own), wait
    until /readyz answers, and stop it on exit."""
    tls_dir = workdir / "tls"
    workdir.mkdir(parents=True, exist_ok=True)
    bundle = certs.generate("package-injector", "e2e", ips=["127.0.0.1"], dns=["localhost"], ca=ca)
    certs.write_bundle(bundle, tls_dir)
    port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "PACKAGE_INJECTOR_HOST": "127.0.0.1",
        "PACKAGE_INJECTOR_PORT": str(port),
        "PACKAGE_INJECTOR_METRICS_PORT": str(metrics_port),
        "PACKAGE_INJECTOR_TLS_CERT_FILE": str(tls_dir / certs.TLS_CERT),
        "PACKAGE_INJECTOR_TLS_KEY_FILE": str(tls_dir / certs.TLS_KEY),
        **(settings_env or {}),
    }
    log = workdir / "webhook.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(command or [sys.executable, "-m", "webhook", "serve"]),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    metrics_url = f"http://127.0.0.1:{metrics_port}"
    try:
        wait_http_ok(
            metrics_url + "/readyz",
            timeout=30,
            alive=lambda: proc.poll() is None,
            context=lambda: log.read_text(errors="replace")[-3000:],
        )
        yield WebhookProcess(
            url=f"https://127.0.0.1:{port}",
            metrics_url=metrics_url,
            ca_bundle_b64=bundle.ca_bundle_b64,
            ca_file=tls_dir / certs.CA_CERT,
            proc=proc,
            log=log,
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
