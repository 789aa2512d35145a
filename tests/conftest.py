"""Shared fixtures: a real control plane and the real webhook, started once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.kube import Cluster, running_cluster
from tests.support.webhook import WebhookProcess, running_webhook


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """etcd + kube-apiserver 1.20 + kube-controller-manager on 127.0.0.1."""
    with running_cluster(tmp_path_factory.mktemp("cluster")) as c:
        yield c


@pytest.fixture(scope="session")
def webhook_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookProcess]:
    """`package-injector serve` over TLS on 127.0.0.1 with default settings."""
    with running_webhook(tmp_path_factory.mktemp("webhook")) as w:
        yield w


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
