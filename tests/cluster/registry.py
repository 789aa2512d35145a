"""Debian's docker-registry (distribution 2.8) inside the cluster's network namespace, and the node's
containerd told how to reach it (a hosts.toml under the cluster's certs.d, as a node would be configured)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.cluster.live import ROOT, Live


def cluster_certs_dir() -> Path:
    """The containerd `config_path` of the running cluster (scripts/cluster.sh)."""
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "cluster.sh"), "dir"], capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip()) / "certs.d"


@contextlib.contextmanager
def plain_http_on_node(address: str) -> Iterator[None]:
    """containerd pulls from `address` over plain HTTP (a node's hosts.toml for an http registry)."""
    hosts = cluster_certs_dir() / address
    hosts.mkdir(parents=True, exist_ok=True)
    (hosts / "hosts.toml").write_text(
        f'server = "http://{address}"\n[host."http://{address}"]\n  capabilities = ["pull", "resolve"]\n'
    )
    try:
        yield
    finally:
        subprocess.run(["rm", "-rf", str(hosts)], check=False)


@contextlib.contextmanager
def registry_in_netns(
    live: Live,
    workdir: Path,
    address: str,
    storage: Path,
    *,
    readonly: bool = False,
    htpasswd: Path | None = None,
) -> Iterator[Path]:
    """Serve `storage` on `address` inside the cluster's namespace; yields the registry's log file.

    `readonly`: a second instance on storage another registry writes (distribution's maintenance
    read-only mode: pulls only).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": "info", "formatter": "text"},
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "maintenance": {"uploadpurging": {"enabled": False}, "readonly": {"enabled": readonly}},
        },
        "http": {"addr": address},
    }
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "cluster-test", "path": str(htpasswd)}}
    (workdir / "config.yml").write_text(json.dumps(config, indent=1))  # JSON is YAML
    log = workdir / "registry.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            live.in_netns("/usr/bin/docker-registry", "serve", str(workdir / "config.yml")),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while "listening on" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        yield log
    finally:
        proc.terminate()
        proc.wait(timeout=10)
