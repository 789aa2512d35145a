"""Fixtures of the webhook core tests: settings and pods shaped like the apiserver sends them."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from webhook.settings import Settings

PodFactory = Callable[..., dict[str, Any]]


@pytest.fixture
def settings() -> Settings:
    return Settings()


def build_pod(
    annotations: dict[str, str] | None = None,
    containers: tuple[str, ...] = ("app",),
    init_containers: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A controller-made pod as the apiserver sends it: generateName, no namespace, defaulted fields."""
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "web-5d4f8b7c9-", "labels": {"app": "web"}},
        "spec": {
            "containers": [
                {
                    "name": name,
                    "image": "nginx:1.27",
                    "imagePullPolicy": "IfNotPresent",
                    "resources": {},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "volumeMounts": [
                        {
                            "name": "kube-api-access-x7k2p",
                            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                            "readOnly": True,
                        }
                    ],
                }
                for name in containers
            ],
            "dnsPolicy": "ClusterFirst",
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 30,
            "volumes": [{"name": "kube-api-access-x7k2p", "projected": {"sources": []}}],
            **spec,
        },
    }
    if annotations is not None:
        pod["metadata"]["annotations"] = dict(annotations)
    if init_containers is not None:
        pod["spec"]["initContainers"] = copy.deepcopy(init_containers)
    return pod


@pytest.fixture
def make_pod() -> PodFactory:
    return build_pod
