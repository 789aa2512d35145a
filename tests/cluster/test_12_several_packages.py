"""Case 12 (issue 13): a Pod with two packages, the unnamed one over HTTPS from the package server
and a named one (`package-url.tools: s3://...`) from moto's S3 with signatures checked, reaches Running with
both in place.

The S3 endpoint is as production would have it: https:// with a private CA (`ca.crt` in the package's own
Secret, next to AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and AWS_ENDPOINT_URL_S3), TLS verified,
default chart values (s3 is an allowed scheme; no http allowance). The one difference: TLS ends at an nginx
reverse proxy in front of moto (moto serves plain http only), as it might at a load balancer.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.conftest import NamespaceFactory, secret
from tests.cluster.live import Live, pod_container_status
from tests.cluster.pkgserver import Package, PackageServer, make_package
from tests.cluster.pods import MOUNT, package_annotations, pod
from tests.cluster.s3server import S3Endpoint, s3_in_netns

S3_PORT = 9443
BUCKET = "packages"
KEY = "tools/tools.tar.gz"
NAMED_MOUNT = "/shared-data/packages/tools"  # docs/annotations.md: package-mount-path.NAME's default


@pytest.fixture
def tools(tmp_path: Path) -> Package:
    src = tmp_path / "tools"
    src.mkdir()
    return make_package(
        src, "tools.tar.gz", {"bin/tool.sh": b"#!/bin/sh\necho tool\n", "lib/data.bin": os.urandom(200_000)}
    )


@pytest.fixture
def s3(live: Live, server: PackageServer, tools: Package, tmp_path: Path) -> Iterator[S3Endpoint]:
    body = tmp_path / "tools" / tools.name
    with s3_in_netns(live, tmp_path / "s3", S3_PORT, server.prefix / "tls", BUCKET, KEY, body) as endpoint:
        yield endpoint


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_pod_with_an_https_and_an_s3_package(
    live: Live,
    server: PackageServer,
    packages: dict[str, Package],
    tools: Package,
    s3: S3Endpoint,
    namespace: NamespaceFactory,
) -> None:
    ns = namespace()
    live.apply(
        secret(
            "s3-tools",
            {
                "AWS_ACCESS_KEY_ID": _b64(s3.access_key_id),
                "AWS_SECRET_ACCESS_KEY": _b64(s3.secret_access_key),
                "AWS_REGION": _b64("us-east-1"),
                "AWS_ENDPOINT_URL_S3": _b64(s3.endpoint),
                "ca.crt": _b64(server.ca_pem),
            },
        ),
        namespace=ns,
    )
    app = packages["app"]
    annotations = package_annotations(server.url(app.name), app.sha256)
    annotations.update(
        {
            "package-url.tools": f"s3://{BUCKET}/{KEY}",
            "package-sha256.tools": tools.sha256,
            "package-secret.tools": "s3-tools",
        }
    )
    live.create(pod("two", annotations), namespace=ns)
    p = live.wait_pod(ns, "two")
    assert p["status"]["phase"] == "Running"
    downloader = pod_container_status(p, "package-downloader")
    assert downloader["state"]["terminated"]["exitCode"] == 0, downloader
    for container in ("app0", "app1"):
        for mount, pkg in ((MOUNT, app), (NAMED_MOUNT, tools)):
            for path, data in pkg.files.items():
                out = live.exec(ns, "two", container, "/bin/busybox", "sha256sum", f"{mount}/{path}")
                assert out.split()[0] == hashlib.sha256(data).hexdigest(), (container, mount, path)
    # Each package came from its own server: the S3 object through the TLS proxy, signed and accepted by moto.
    assert server.downloads(app.name) >= 1
    gets = [r for r in s3.requests() if r["method"] == "GET" and r["uri"].startswith(f"/{BUCKET}/{KEY}")]
    assert gets and all(r["status"] in (200, 206) for r in gets), s3.requests()
