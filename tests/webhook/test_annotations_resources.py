"""Per-Pod resources of the downloader (package-init-requests-*/limits-*): merge, caps, denials, settings."""

from __future__ import annotations

import pydantic
import pytest

from initcontainer import contract
from webhook import annotations as ann
from webhook.annotations import Denied, parse
from webhook.inject import inject
from webhook.settings import Settings

URL = "https://files.example.com/site.tar.gz"


def pod(annotations: dict[str, str]) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "annotations": {"package-url": URL, **annotations}},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]},
    }


def init_resources(annotations: dict[str, str], settings: Settings | None = None) -> object:
    result = inject(pod(annotations), settings or Settings())
    (init,) = [c for c in result.pod["spec"]["initContainers"] if c["name"] == contract.INIT_CONTAINER_NAME]
    return init["resources"]


def denial(annotations: dict[str, str], settings: Settings | None = None) -> Denied:
    with pytest.raises(Denied) as info:
        parse({"package-url": URL, **annotations}, settings or Settings())
    return info.value


def test_without_the_keys_the_cluster_defaults_are_injected_unchanged() -> None:
    settings = Settings()
    assert parse({"package-url": URL}, settings).request.init_resources == ()  # type: ignore[union-attr]
    assert init_resources({}, settings) == settings.init_resources
    assert settings.init_resources == {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"memory": "256Mi"},
    }


def test_each_key_replaces_only_its_own_entry() -> None:
    assert init_resources({"package-init-limits-memory": "1Gi"}) == {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"memory": "1Gi"},
    }
    assert init_resources(
        {
            "package-init-requests-cpu": " 500m ",
            "package-init-limits-cpu": "1",
            "package-init-limits-memory": "2Gi",
        }
    ) == {"requests": {"cpu": "500m", "memory": "64Mi"}, "limits": {"memory": "2Gi", "cpu": "1"}}


def test_all_six_keys() -> None:
    annotations = {
        f"package-init-{kind}-{name}": value
        for kind, values in {
            "requests": {"cpu": "100m", "memory": "128Mi", "ephemeral-storage": "1Gi"},
            "limits": {"cpu": "2", "memory": "1Gi", "ephemeral-storage": "2Gi"},
        }.items()
        for name, value in values.items()
    }
    assert init_resources(annotations) == {
        "requests": {"cpu": "100m", "memory": "128Mi", "ephemeral-storage": "1Gi"},
        "limits": {"cpu": "2", "memory": "1Gi", "ephemeral-storage": "2Gi"},
    }


@pytest.mark.parametrize("value", ["lots", "1GB", "-1Gi", "0", "1 Gi", ""])
def test_bad_quantity_is_denied_with_an_example(value: str) -> None:
    denied = denial({"package-init-limits-memory": value})
    assert denied.code == 400
    assert 'annotation "package-init-limits-memory"' in denied.message
    assert "256Mi or 1Gi" in denied.message or "positive quantity" in denied.message


def test_above_the_cap_is_denied_with_the_cap() -> None:
    denied = denial({"package-init-limits-memory": "5Gi"})
    assert denied.code == 403 and denied.reason == "policy"
    assert "5Gi is above the cluster maximum of 4Gi for memory" in denied.message
    settings = Settings(max_init_resources={"cpu": "500m"})
    assert (
        "above the cluster maximum of 500m for cpu"
        in denial({"package-init-requests-cpu": "0.6"}, settings).message
    )
    # A resource left out of the caps has none; an equal value is within it.
    assert init_resources({"package-init-limits-memory": "64Gi"}, settings) is not None
    assert parse({"package-url": URL, "package-init-limits-cpu": "500m"}, settings).request is not None


def test_request_above_the_default_limit_says_what_to_raise() -> None:
    denied = denial({"package-init-requests-memory": "512Mi"})
    assert (
        'annotation "package-init-requests-memory": 512Mi is above the memory limit 256Mi '
        '(the cluster default); raise "package-init-limits-memory" too'
    ) in denied.message
    # Both set, inconsistent.
    denied = denial({"package-init-requests-memory": "1Gi", "package-init-limits-memory": "512Mi"})
    assert "1Gi is above the memory limit 512Mi" in denied.message
    assert "cluster default" not in denied.message
    # A limit below the default request.
    denied = denial({"package-init-limits-memory": "32Mi"})
    assert "32Mi is below the memory request 64Mi (the cluster default)" in denied.message
    assert 'lower "package-init-requests-memory" too' in denied.message
    # Compared as quantities, not strings.
    assert (
        parse({"package-url": URL, "package-init-requests-memory": "0.25Gi"}, Settings()).request is not None
    )


def test_every_problem_listed_once_and_prefix_applies() -> None:
    settings = Settings(annotation_prefix="example.com/")
    with pytest.raises(Denied) as info:
        parse(
            {
                "example.com/package-url": URL,
                "example.com/package-init-requests-cpu": "fast",
                "example.com/package-init-limits-ephemeral-storage": "1Ti",
            },
            settings,
        )
    message = info.value.message
    assert 'annotation "example.com/package-init-requests-cpu": is not a Kubernetes quantity' in message
    assert "1Ti is above the cluster maximum of 20Gi for ephemeral-storage" in message
    assert info.value.code == 400  # one of the two is bad input, not policy


def test_typo_gets_did_you_mean() -> None:
    warnings = parse({"package-url": URL, "package-init-limit-memory": "1Gi"}, Settings()).warnings
    assert any('did you mean "package-init-limits-memory"' in w for w in warnings), warnings


def test_keys_without_url_warn() -> None:
    parsed = parse({"package-init-limits-memory": "1Gi"}, Settings())
    assert parsed.request is None
    assert any("package-init-limits-memory set without" in w for w in parsed.warnings)


def test_reinjection_with_a_new_value_rewrites_and_converges() -> None:
    settings = Settings()
    first = inject(pod({}), settings).pod
    first["metadata"]["annotations"]["package-init-limits-memory"] = "1Gi"
    second = inject(first, settings)
    assert second.changed
    (init,) = second.pod["spec"]["initContainers"]
    assert init["resources"]["limits"] == {"memory": "1Gi"}
    again = inject(second.pod, settings)
    assert not again.changed


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("max_init_resources", {"gpu": "1"}, "'gpu' is not one of cpu, memory, ephemeral-storage"),
        ("max_init_resources", {"memory": "0"}, "must be a positive quantity"),
        ("max_init_resources", {"memory": "big"}, "not a Kubernetes quantity"),
        ("init_resources", {"request": {"cpu": "1"}}, "'request' is not 'requests' or 'limits'"),
        (
            "init_resources",
            {"requests": {"memory": "1Gi"}, "limits": {"memory": "1Mi"}},
            "above limits.memory",
        ),
        ("init_resources", {"limits": {"memory": "lots"}}, "not a Kubernetes quantity"),
    ],
)
def test_bad_settings_stop_startup(field: str, value: object, fragment: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=fragment):
        Settings(**{field: value})


def test_keys_are_in_the_contract() -> None:
    assert set(ann.INIT_RESOURCES) <= set(ann.USER_KEYS)
    assert len(ann.INIT_RESOURCES) == 6
