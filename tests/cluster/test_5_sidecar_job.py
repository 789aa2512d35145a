"""Case 4: a native sidecar runs before the downloader starts. Case 7: a Job with a package completes, and
a CronJob whose template is broken is refused at `kubectl apply`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from tests.cluster.conftest import NamespaceFactory
from tests.cluster.live import CommandError, Live, pod_container_status
from tests.cluster.pkgserver import PackageServer, make_package
from tests.cluster.pods import app_container, package_annotations, pod, pod_spec


def _time(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def test_native_sidecar_runs_before_the_downloader(
    live: Live, server: PackageServer, package_root: Path, namespace: NamespaceFactory
) -> None:
    ns = namespace()
    pkg = make_package(package_root, f"{ns}.tar.gz", {"f.txt": b"side\n"})
    sidecar = app_container("mesh-proxy")
    sidecar["restartPolicy"] = "Always"
    live.create(pod("p", package_annotations(server.url(pkg.name), pkg.sha256), init=[sidecar]), namespace=ns)
    p = live.wait_pod(ns, "p")
    names = [c["name"] for c in p["spec"]["initContainers"]]
    assert names == ["mesh-proxy", "package-downloader"], names
    side = pod_container_status(p, "mesh-proxy")
    down = pod_container_status(p, "package-downloader")
    assert "running" in side["state"] and side["started"] is True, side
    assert down["state"]["terminated"]["exitCode"] == 0
    # The kubelet starts the next init container only once the sidecar has started.
    assert _time(side["state"]["running"]["startedAt"]) <= _time(down["state"]["terminated"]["startedAt"])
    assert live.exec(ns, "p", "app0", "/bin/busybox", "cat", "/shared-data/diff-var-files/f.txt") == "side\n"


def test_job_with_a_package_completes(
    live: Live, server: PackageServer, package_root: Path, namespace: NamespaceFactory
) -> None:
    ns = namespace()
    pkg = make_package(package_root, f"{ns}.tar.gz", {"input.txt": b"42\n"})
    spec = pod_spec(containers=1)
    spec["restartPolicy"] = "Never"
    spec["containers"][0]["command"] = [
        "/bin/busybox",
        "sh",
        "-c",
        'test "$(/bin/busybox cat /shared-data/diff-var-files/input.txt)" = 42',
    ]
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": package_annotations(server.url(pkg.name), pkg.sha256)},
                "spec": spec,
            },
        },
    }
    live.apply(job, namespace=ns)
    proc = live.kubectl(
        "wait", "-n", ns, "job/j", "--for=condition=Complete", "--timeout=180s", timeout=210, check=False
    )
    assert proc.returncode == 0, live.kubectl("describe", "job", "-n", ns, "j", check=False).stdout
    assert server.downloads(pkg.name) == 1


def test_cronjob_with_a_broken_template_is_refused(live: Live, namespace: NamespaceFactory) -> None:
    ns = namespace()
    spec = pod_spec(containers=1)
    spec["restartPolicy"] = "OnFailure"
    cron = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "c"},
        "spec": {
            "schedule": "0 0 1 1 *",
            "jobTemplate": {
                "spec": {
                    "template": {
                        "metadata": {"annotations": {"package-url": "ftp://example.invalid/x.tar"}},
                        "spec": spec,
                    }
                }
            },
        },
    }
    with pytest.raises(CommandError) as err:
        live.apply(cron, namespace=ns)
    msg = err.value.stderr
    assert "package-injector: CronJob spec.jobTemplate.spec.template" in msg and "package-url" in msg, msg
    assert live.kubectl("get", "cronjob", "c", "-n", ns, check=False).returncode != 0
