"""The init image itself (pruned CPython 3.13 rootfs) fetching an s3:// package from moto, signatures checked:
proves the image carries what SigV4 and the S3 error answers need (hmac, xml.etree with pyexpat)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from initcontainer import contract
from tests.images.conftest import Images
from tests.support.packages import PKG_A, SHA_A
from tests.support.s3server import MotoS3, run_moto
from webhook.inject import inject
from webhook.settings import Settings

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    with run_moto(tmp_path_factory.mktemp("moto"), {"packages/app/pkg.tar.gz": PKG_A}) as server:
        yield server


def _secret_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    """A Secret volume as the kubelet mounts it: files readable by the container's user."""
    d = tmp_path / "secret"
    d.mkdir()
    for name, value in files.items():
        (d / name).write_text(value)
        (d / name).chmod(0o644)
    return d


@pytest.mark.parametrize("good", [True, False], ids=["good-keys", "wrong-secret"])
def test_init_image_fetches_from_s3(images: Images, s3: MotoS3, tmp_path: Path, good: bool) -> None:
    settings = Settings(allowed_schemes=["https", "http", "s3"], s3_endpoint=s3.url, s3_region="us-east-1")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "app",
            "annotations": {
                "package-url": "s3://packages/app/pkg.tar.gz",
                "package-sha256": SHA_A,
                "package-secret": "s3-reader",
            },
        },
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
    }
    (init,) = [
        c
        for c in inject(pod, settings, "default").pod["spec"]["initContainers"]
        if c["name"] == contract.INIT_CONTAINER_NAME
    ]
    secret = s3.reader.secret_access_key if good else s3.reader.secret_access_key[::-1]
    creds = _secret_dir(
        tmp_path, {"AWS_ACCESS_KEY_ID": s3.reader.access_key_id, "AWS_SECRET_ACCESS_KEY": secret}
    )
    volume = tmp_path / "volume"
    volume.mkdir()
    volume.chmod(0o777)
    term = tmp_path / "termination-log"
    term.write_text("")
    term.chmod(0o666)
    sc = init["securityContext"]
    args = [
        "run", "--rm", "--network", "host", "--read-only",
        "--user", f"{sc['runAsUser']}:{sc['runAsGroup']}",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--memory", "256m",
        "-v", f"{volume}:{contract.DEFAULT_DEST}",
        "-v", f"{creds}:{contract.DEFAULT_CREDENTIALS_DIR}:ro",
        "-v", f"{term}:{contract.DEFAULT_TERMINATION_LOG}",
    ]  # fmt: skip
    for item in init["env"]:
        args += ["-e", f"{item['name']}={item['value']}"]
    run = images.engine.run(*args, images.init, check=False)
    if good:
        assert run.returncode == 0, run.stderr
        assert json.loads((volume / contract.MARKER_NAME).read_text())["sha256"] == SHA_A
    else:
        assert run.returncode == contract.EXIT_HTTP_CLIENT, run.stderr
        assert "SignatureDoesNotMatch" in json.loads(term.read_text())["message"]
        assert secret not in run.stderr + term.read_text()
        assert [p.name for p in volume.iterdir()] == []
