"""Workload templates: located for every kind, validated like Pods, misplaced annotations warned."""

from __future__ import annotations

from typing import Any

import pytest

from webhook import workloads
from webhook.inject import Denied
from webhook.settings import Settings

URL = "https://files.example.com/site.tar.gz"


def template(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "a"}, "annotations": annotations or {}},
        "spec": {"containers": [{"name": "app", "image": "nginx"}]},
    }


def workload(kind: str, tmpl: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"template": tmpl}
    if kind == "CronJob":
        spec = {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": tmpl}}}
    return {"kind": kind, "metadata": {"name": "w", "annotations": annotations or {}}, "spec": spec}


@pytest.mark.parametrize("kind", list(workloads.WORKLOADS))
def test_template_is_found_for_every_kind(kind: str) -> None:
    tmpl = template({"package-url": URL})
    assert workloads.pod_template(workload(kind, tmpl)) is tmpl
    assert workloads.validate(workload(kind, tmpl), Settings(), "ns").requested


@pytest.mark.parametrize("kind", list(workloads.WORKLOADS))
def test_invalid_template_annotation_is_denied(kind: str) -> None:
    with pytest.raises(Denied, match='annotation "package-sha256": must be 64 hex digits'):
        workloads.validate(
            workload(kind, template({"package-url": URL, "package-sha256": "x"})), Settings(), None
        )


def test_groups() -> None:
    assert workloads.is_workload("Deployment", "apps")
    assert not workloads.is_workload("Deployment", "example.com")
    assert workloads.is_workload("CronJob", "batch")
    assert not workloads.is_workload("Pod")


def test_annotation_on_workload_metadata_only_is_warned() -> None:
    obj = workload("Deployment", template(), {"package-url": URL, "package-sha256": "x"})
    result = workloads.validate(obj, Settings(), None)
    assert not result.requested
    assert result.warnings == (
        "package-injector: package-url, package-sha256 on the Deployment's own metadata does nothing; "
        "move it to spec.template.metadata.annotations",
    )


def test_cronjob_warning_names_its_template_path() -> None:
    obj = workload("CronJob", template(), {"package-url": URL})
    (warning,) = workloads.validate(obj, Settings(), None).warnings
    assert "spec.jobTemplate.spec.template.metadata.annotations" in warning


def test_annotation_on_both_is_not_warned() -> None:
    pinned = {"package-url": URL, "package-sha256": "a" * 64}
    obj = workload("Deployment", template(pinned), pinned)
    assert workloads.validate(obj, Settings(), None).warnings == ()


def test_validation_does_not_mutate_the_workload() -> None:
    obj = workload("StatefulSet", template({"package-url": URL}))
    before = repr(obj)
    workloads.validate(obj, Settings(), None)
    assert repr(obj) == before


def test_missing_template_is_tolerated() -> None:
    assert workloads.validate({"kind": "Deployment", "spec": {}}, Settings(), None).warnings == ()


def test_named_package_keys_on_workload_metadata_are_warned_too() -> None:
    own = {"package-url.tools": URL, "package-size-limit.tools": "1Gi", "unrelated": "x"}
    result = workloads.validate(workload("Deployment", template(), own), Settings(), None)
    assert result.warnings == (
        "package-injector: package-url.tools on the Deployment's own metadata does nothing; "
        "move it to spec.template.metadata.annotations",
    )
