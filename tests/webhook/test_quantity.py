"""The quantity parser agrees with the kubernetes client's and refuses what Kubernetes refuses."""

from __future__ import annotations

import pytest
from kubernetes.utils.quantity import parse_quantity as client_parse

from webhook.quantity import parse_quantity, same_quantity


@pytest.mark.parametrize(
    "text", ["1Gi", "512Mi", "1.5Gi", "1G", "500M", "100m", "2k", "1e9", "1E3", ".5Ki", "0", "7"]
)
def test_agrees_with_kubernetes_client(text: str) -> None:
    assert parse_quantity(text) == client_parse(text)  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("text", ["", "Gi", "1GB", "1 Gi", "1gi", "one", "1.2.3", "--1", "1Ki2"])
def test_rejects_non_quantities(text: str) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity(text)


def test_same_quantity_sees_apiserver_canonical_forms() -> None:
    assert same_quantity("1024Mi", "1Gi")
    assert same_quantity("1000m", "1")
    assert not same_quantity("1G", "1Gi")
    assert not same_quantity("bogus", "bogus")
