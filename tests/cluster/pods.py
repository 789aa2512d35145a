"""Manifests of the test workloads: busybox "applications" that comply with Pod Security `restricted`."""

from __future__ import annotations

from typing import Any

BUSYBOX = "localhost/busybox:local"  # built and imported into the node by scripts/cluster.sh
MOUNT = "/shared-data/diff-var-files"  # the webhook's default mount path


def restricted_security(run_as_user: int | None = 1000) -> dict[str, Any]:
    """A container securityContext that satisfies Pod Security `restricted`."""
    ctx: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if run_as_user is not None:
        ctx["runAsUser"] = run_as_user
    return ctx


def app_container(name: str, run_as_user: int | None = 1000) -> dict[str, Any]:
    return {
        "name": name,
        "image": BUSYBOX,
        "imagePullPolicy": "Never",
        # SIGTERM ends it with exit code 3 (PID 1 ignores signals without a handler): a test restarts a
        # container with `kill 1`.
        "command": [
            "/bin/busybox",
            "sh",
            "-c",
            "trap 'exit 3' TERM; while true; do /bin/busybox sleep 1; done",
        ],
        "securityContext": restricted_security(run_as_user),
    }


def pod_spec(
    containers: int = 2,
    run_as_user: int | None = 1000,
    pod_run_as_user: int | None = None,
    init: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [app_container(f"app{i}", run_as_user) for i in range(containers)],
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "terminationGracePeriodSeconds": 1,
        "automountServiceAccountToken": True,
    }
    if pod_run_as_user is not None:
        spec["securityContext"]["runAsUser"] = pod_run_as_user
    if init:
        spec["initContainers"] = init
    return spec


def pod(name: str, annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}, "labels": {"app": name}},
        "spec": pod_spec(**spec),
    }


def deployment(name: str, replicas: int, annotations: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations},
                "spec": pod_spec(**spec),
            },
        },
    }


def package_annotations(url: str, sha256: str | None, secret: str | None = "pkg-ca") -> dict[str, str]:
    out = {"package-url": url}
    if sha256 is not None:
        out["package-sha256"] = sha256
    if secret is not None:
        out["package-secret"] = secret
    return out
