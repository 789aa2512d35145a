"""Helpers shared by the transport and download tests: a payload, credentials, a config, a full read."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

from initcontainer import contract
from initcontainer.config import Config, load_config
from initcontainer.download import CHUNK_SIZE, PackageStream, open_package
from initcontainer.log import Logger

PAYLOAD = os.urandom(3 * CHUNK_SIZE + 12345)
USER, PASSWORD, TOKEN = "alice", "pa55-w0rd", "tok-Zq9"


def make_cfg(url: str, tmp_path: Path, files: dict[str, str] | None = None, /, **extra: str) -> Config:
    """A config for `url`, with `files` as the mounted credentials Secret and short timeouts."""
    creds = tmp_path / "creds"
    creds.mkdir(exist_ok=True)
    for name, content in (files or {}).items():
        (creds / name).write_text(content)
    env = {
        contract.ENV_URL: url,
        contract.ENV_ALLOW_HTTP: "true",
        contract.ENV_CREDENTIALS_DIR: str(creds),
        contract.ENV_READ_TIMEOUT: "5",
        contract.ENV_CONNECT_TIMEOUT: "5",
        contract.ENV_RETRIES: "2",
    }
    env.update(extra)
    return load_config(env)


def fetch_all(cfg: Config, log: Logger | None = None) -> tuple[bytes, PackageStream]:
    with open_package(cfg, log or Logger(stream=io.StringIO())) as stream:
        data = stream.read(-1)
        return data, stream


def check(data: bytes, stream: PackageStream, expected: bytes = PAYLOAD) -> None:
    assert data == expected
    assert stream.size == len(expected)
    assert stream.hexdigest() == hashlib.sha256(expected).hexdigest()
