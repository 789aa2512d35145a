"""Case 5: a wrong checksum or a 404 is what a user sees with kubectl, and the app never starts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import NamespaceFactory
from tests.cluster.live import Live, pod_container_status
from tests.cluster.pkgserver import PackageServer, make_package
from tests.cluster.pods import package_annotations, pod


def _failed_downloader(live: Live, ns: str, name: str) -> dict[str, Any]:
    """Wait until the downloader has failed at least once; return the Pod."""

    def probe() -> dict[str, Any] | None:
        p = live.get("pod", name, ns)
        st = pod_container_status(p, "package-downloader") if p["status"].get("initContainerStatuses") else {}
        last = st.get("state", {}).get("terminated") or st.get("lastState", {}).get("terminated")
        return p if last and last.get("exitCode", 0) != 0 else None

    result: dict[str, Any] = live.wait_for(f"{ns}/{name} downloader failure", probe, timeout=180)
    return result


@pytest.mark.parametrize("fault", ["checksum", "404"])
def test_failed_download_is_visible_and_app_never_starts(
    live: Live, server: PackageServer, package_root: Path, namespace: NamespaceFactory, fault: str
) -> None:
    ns = namespace()
    pkg = make_package(package_root, f"{ns}.tar.gz", {"a.txt": b"a\n"})
    if fault == "checksum":
        ann = package_annotations(server.url(pkg.name), "0" * 64)
        expect = "sha256"
    else:
        ann = package_annotations(server.url("missing-" + pkg.name), None)
        expect = "404"
    live.create(pod("p", ann), namespace=ns)
    p = _failed_downloader(live, ns, "p")
    st = pod_container_status(p, "package-downloader")
    term = st["state"].get("terminated") or st["lastState"]["terminated"]
    # The reason is in the termination message, as JSON from the init program.
    message = json.loads(term["message"])
    assert expect in json.dumps(message).lower(), message
    # kubectl shows the Pod as an init failure ...
    status_col = live.wait_for(
        "Init:Error or Init:CrashLoopBackOff",
        lambda: next(
            (
                s
                for s in [live.kubectl("get", "pod", "p", "-n", ns, "--no-headers").stdout.split()[2]]
                if s in ("Init:Error", "Init:CrashLoopBackOff")
            ),
            None,
        ),
        timeout=120,
    )
    assert status_col in ("Init:Error", "Init:CrashLoopBackOff")
    # ... and the application containers never started.
    p = live.get("pod", "p", ns)
    for c in ("app0", "app1"):
        cs = pod_container_status(p, c)
        assert "running" not in cs["state"] and "terminated" not in cs["state"], cs
        assert cs.get("restartCount", 0) == 0 and not cs.get("lastState"), cs
    # `kubectl describe` names the failed init container for the user.
    assert "package-downloader" in live.describe(ns, "p")
