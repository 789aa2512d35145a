"""Servers for the transport and download tests (test_main.py has its own, serving archives)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.initcontainer.httpkit import PASSWORD, PAYLOAD, TOKEN, USER
from tests.support.faults import FaultServer
from tests.support.nginx import NginxServer, run_nginx


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxServer]:
    """nginx with TLS, basic auth and a bearer location, serving PAYLOAD as pkg.bin and an empty file."""
    root = tmp_path_factory.mktemp("www")
    (root / "pkg.bin").write_bytes(PAYLOAD)
    (root / "empty.bin").write_bytes(b"")
    with run_nginx(
        root,
        tmp_path_factory.mktemp("nginx"),
        tls=True,
        basic_auth=(USER, PASSWORD),
        bearer_token=TOKEN,
    ) as srv:
        yield srv


@pytest.fixture
def faults() -> Iterator[FaultServer]:
    with FaultServer() as srv:
        yield srv
