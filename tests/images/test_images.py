"""The two images, built offline with a real Docker engine, doing their job.

The init container runs the way the webhook configures it: the env, user and
mount path come from `webhook.inject.inject` on an annotated pod, not from a
copy in this file.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import ssl
import subprocess
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from initcontainer import contract
from tests.images.conftest import ROOT, Images
from tests.support.net import free_port, wait_http_ok
from tests.support.nginx import run_nginx
from webhook.inject import inject
from webhook.settings import Settings

pytestmark = pytest.mark.docker

FILES = {
    "app/config.yaml": (b"greeting: hello from the package\n", 0o644),
    "app/bin/run.sh": (b"#!/bin/sh\necho run\n", 0o755),
    "README.txt": (b"top level file\n", 0o644),
}


def _package() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, (data, mode) in FILES.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    """nginx on 127.0.0.1 serving the package and an HTML error page; the package's sha256."""
    root = tmp_path_factory.mktemp("www")
    pkg = _package()
    (root / "pkg.tar.gz").write_bytes(pkg)
    (root / "error.html").write_bytes(b"<!doctype html><html><body>Login required</body></html>\n")
    with run_nginx(root=root, workdir=tmp_path_factory.mktemp("nginx")) as srv:
        yield srv, hashlib.sha256(pkg).hexdigest()


def _injected_init_container(url: str, sha256: str | None) -> dict[str, Any]:
    """What the webhook adds to a pod annotated with this package (http allowed for 127.0.0.1)."""
    annotations = {"package-url": url}
    if sha256:
        annotations["package-sha256"] = sha256
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "app", "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
    }
    result = inject(pod, Settings(allowed_schemes=["https", "http"]), "default")
    (init,) = [c for c in result.pod["spec"]["initContainers"] if c["name"] == contract.INIT_CONTAINER_NAME]
    return init


def _docker_run_args(init: dict[str, Any], volume: Path, termination_log: Path | None) -> list[str]:
    """`docker run` flags equivalent to the injected container's securityContext, env and mount."""
    sc = init["securityContext"]
    assert sc["readOnlyRootFilesystem"] and sc["capabilities"]["drop"] == ["ALL"]
    assert sc["allowPrivilegeEscalation"] is False and sc["runAsNonRoot"] is True
    (mount,) = init["volumeMounts"]
    args = [
        "run", "--rm", "--network", "host", "--read-only",
        "--user", f"{sc['runAsUser']}:{sc['runAsGroup']}",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--memory", "256m",
        "-v", f"{volume}:{mount['mountPath']}",
    ]  # fmt: skip
    if termination_log is not None:
        args += ["-v", f"{termination_log}:{contract.DEFAULT_TERMINATION_LOG}"]
    for item in init["env"]:
        args += ["-e", f"{item['name']}={item['value']}"]
    return args


def _empty_dir(tmp_path: Path, name: str) -> Path:
    """Like a pod's emptyDir: a fresh directory anyone may write (mode 0777)."""
    d = tmp_path / name
    d.mkdir()
    d.chmod(0o777)
    return d


def _termination_log(tmp_path: Path) -> Path:
    """The file kubelet mounts at /dev/termination-log, writable by the container's user."""
    f = tmp_path / "termination-log"
    f.write_text("")
    f.chmod(0o666)
    return f


def test_images_built_offline_and_hardened(images: Images) -> None:
    eng = images.engine
    sizes = {}
    for ref in (images.init, images.webhook):
        (info,) = json.loads(eng.run("image", "inspect", ref).stdout)
        cfg = info["Config"]
        sizes[ref] = info["Size"]
        assert cfg["User"] == "65532:65532"
        assert cfg["Labels"]["org.opencontainers.image.version"] == "0.1.0"
        assert cfg["Labels"]["org.opencontainers.image.licenses"] == "Apache-2.0"
        assert "PYTHONDONTWRITEBYTECODE=1" in cfg["Env"]
        # No shell, no package manager, no network tool in either image.
        for program in ("sh", "bash", "apt-get", "dpkg", "pip", "curl", "wget"):
            probe = eng.run("run", "--rm", "--network", "none", "--entrypoint", program, ref, check=False)
            assert probe.returncode != 0, f"{program} exists in {ref}"
            assert "executable file not found" in probe.stderr or "no such file" in probe.stderr.lower()
    entrypoint = "{{json .Config.Entrypoint}}"
    assert json.loads(eng.run("image", "inspect", "-f", entrypoint, images.init).stdout) == [
        "python3", "-m", "initcontainer",
    ]  # fmt: skip
    assert json.loads(eng.run("image", "inspect", "-f", entrypoint, images.webhook).stdout) == [
        "package-injector", "serve",
    ]  # fmt: skip
    print(
        f"\nimages built in {images.build_seconds:.0f} s; "
        + ", ".join(f"{ref} {size / 1e6:.1f} MB" for ref, size in sizes.items())
    )
    # Guards against an accidental fat image (the init image is about 60 MB on Debian trixie).
    assert sizes[images.init] < 100e6


def test_init_image_python_has_fixed_tarfile_isal_and_precompiled_code(images: Images) -> None:
    code = (
        "import os.path, sys, tarfile, initcontainer.__main__ as m, importlib.util as u; "
        "from initcontainer import decompress as d; "
        "assert hasattr(tarfile, 'data_filter') and hasattr(os.path, 'ALLOW_MISSING'); "
        "print(sys.version_info[:3] >= (3, 13, 4), u.cache_from_source(m.__file__), os.getuid(), "
        "d.INFLATE.__name__)"
    )
    out = images.engine.run(
        "run", "--rm", "--network", "none", "--read-only", "--entrypoint", "python3", images.init, "-c", code
    ).stdout.split()
    assert out[0] == "True"
    assert out[2] == "65532"
    assert out[3] == "isal.isal_zlib"  # ISA-L's inflate, from requirements/init.lock
    pyc = out[1]
    listed = images.engine.run(
        "run", "--rm", "--network", "none", "--entrypoint", "python3", images.init,
        "-c", f"import os; print(os.path.exists({pyc!r}))",
    ).stdout.strip()  # fmt: skip
    assert listed == "True", f"{pyc} was not precompiled"


def test_init_image_fills_the_volume_and_the_app_reads_it(
    images: Images, served: tuple[Any, str], tmp_path: Path
) -> None:
    srv, digest = served
    init = _injected_init_container(srv.url("pkg.tar.gz"), digest)
    assert {e["name"] for e in init["env"]} >= {contract.ENV_URL, contract.ENV_SHA256, contract.ENV_DEST}
    volume = _empty_dir(tmp_path, "package-shared-volume")
    term = _termination_log(tmp_path)

    run = images.engine.run(*_docker_run_args(init, volume, term), images.init, check=False)
    assert run.returncode == 0, run.stderr
    events = [json.loads(line)["event"] for line in run.stderr.splitlines() if line.startswith("{")]
    assert "installed" in events, run.stderr
    assert term.read_text() == ""  # nothing to report on success

    for name, (data, mode) in FILES.items():
        p = volume / name
        assert p.read_bytes() == data
        assert p.stat().st_mode & 0o777 == mode
        assert p.stat().st_uid == 65532
    assert (volume / contract.MARKER_NAME).is_file()
    assert not [p for p in volume.iterdir() if p.name.startswith(contract.STAGING_PREFIX)]

    # The app: another image, another non-root UID, the volume read-only.
    (app_mount,) = [c for c in _injected_pod_app_mounts(srv.url("pkg.tar.gz"), digest)]
    dest = app_mount["mountPath"]
    assert app_mount["readOnly"] is True
    script = (
        f"cat {dest}/app/config.yaml && test -x {dest}/app/bin/run.sh && id -u "
        f"&& if touch {dest}/new 2>/dev/null; then echo WRITABLE; fi"
    )
    app = images.engine.run(
        "run", "--rm", "--network", "none", "--read-only", "--user", "1000:1000", "--cap-drop", "ALL",
        "-v", f"{volume}:{dest}:ro", images.base, "sh", "-c", script,
    )  # fmt: skip
    assert app.stdout.splitlines() == ["greeting: hello from the package", "1000"]


def _injected_pod_app_mounts(url: str, sha256: str) -> list[dict[str, Any]]:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "app", "annotations": {"package-url": url, "package-sha256": sha256}},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
    }
    result = inject(pod, Settings(allowed_schemes=["https", "http"]), "default")
    return [
        m for m in result.pod["spec"]["containers"][0]["volumeMounts"] if m["name"] == contract.VOLUME_NAME
    ]


@pytest.mark.parametrize(
    ("name", "good_digest"),
    [("pkg.tar.gz", False), ("error.html", True), ("error.html", False)],
    ids=["wrong-checksum", "html-page-with-package-checksum", "html-page-no-checksum"],
)
def test_init_image_rejects_a_bad_package(
    images: Images, served: tuple[Any, str], tmp_path: Path, name: str, good_digest: bool
) -> None:
    srv, digest = served
    sha = digest if good_digest else ("0" * 64 if name == "pkg.tar.gz" else None)
    init = _injected_init_container(srv.url(name), sha)
    volume = _empty_dir(tmp_path, "package-shared-volume")
    term = _termination_log(tmp_path)

    run = images.engine.run(*_docker_run_args(init, volume, term), images.init, check=False)
    assert run.returncode == contract.EXIT_INTEGRITY, run.stderr
    message = json.loads(term.read_text())
    assert message["exitCode"] == contract.EXIT_INTEGRITY
    assert message["reason"]
    assert message["url"].endswith(name)
    # Nothing half-installed is left for the app.
    assert [p.name for p in volume.iterdir()] == []


def _generate_certs(out: Path) -> None:
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "package-injector"), "certs", "--service", "package-injector",
         "--namespace", "default", "--out-dir", str(out), "--ip", "127.0.0.1"],
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    # A Secret volume's files are readable by the pod's fsGroup; here: owned by the image's UID.
    for p in [out, *out.iterdir()]:
        os.chown(p, 65532, 65532)


def test_webhook_image_answers_an_admission_review_over_tls(images: Images, tmp_path: Path) -> None:
    certs = tmp_path / "tls"
    _generate_certs(certs)
    port, metrics_port = free_port(), free_port()
    name = f"package-injector-test-{os.getpid()}"
    images.engine.run(
        "run", "-d", "--name", name, "--network", "host", "--read-only",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "-v", f"{certs}:/etc/package-injector/tls:ro",
        "-e", "PACKAGE_INJECTOR_HOST=127.0.0.1",
        "-e", f"PACKAGE_INJECTOR_PORT={port}",
        "-e", f"PACKAGE_INJECTOR_METRICS_PORT={metrics_port}",
        images.webhook,
    )  # fmt: skip
    try:

        def running() -> bool:
            return images.engine.run("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"

        def logs() -> str:
            out = images.engine.run("logs", name, check=False)
            return f"{out.stdout}\n{out.stderr}"

        wait_http_ok(f"http://127.0.0.1:{metrics_port}/readyz", timeout=30, alive=running, context=logs)

        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": "shop-",
                "annotations": {"package-url": "https://pkgs.example/a.tgz"},
            },
            "spec": {"containers": [{"name": "app", "image": "shop:1"}]},
        }
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "0c4d0e39-3f5e-4d1c-9f3b-6e0d3f1b8a11",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "shop",
                "operation": "CREATE",
                "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
                "object": pod,
                "dryRun": False,
            },
        }
        ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        req = urllib.request.Request(
            f"https://127.0.0.1:{port}/mutate",
            data=json.dumps(review).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            assert r.status == 200
            body = json.load(r)
        response = body["response"]
        assert response["uid"] == review["request"]["uid"]
        assert response["allowed"] is True
        assert response["patchType"] == "JSONPatch"
        patch = json.loads(base64.b64decode(response["patch"]))
        added = [op for op in patch if op["op"] == "add" and op["path"].startswith("/spec/initContainers")]
        assert added, patch
        init = added[0]["value"][0] if isinstance(added[0]["value"], list) else added[0]["value"]
        assert init["name"] == contract.INIT_CONTAINER_NAME
        assert init["image"] == f"{contract.DEFAULT_IMAGE_NAME}:0.1.0"
        assert {"name": contract.ENV_URL, "value": "https://pkgs.example/a.tgz"} in init["env"]

        # The TLS listener really checks: an untrusted client context fails.
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(req, context=ssl.create_default_context(), timeout=10)
    finally:
        images.engine.run("rm", "-f", name, check=False)


def test_push_to_a_private_registry(images: Images, registry: str, tmp_path: Path) -> None:
    env = {
        **images.engine.env,
        "REGISTRY": f"{registry}/platform",
        "TAG": images.tag,
        # No credentials anywhere: an empty docker config dir of the user's choosing.
        "DOCKER_CONFIG": str(tmp_path / "docker-config"),
    }
    proc = subprocess.run(
        ["make", "-s", "push"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    pushed = proc.stdout.split()
    assert pushed == [
        f"{registry}/platform/package-init-container:{images.tag}",
        f"{registry}/platform/package-injector:{images.tag}",
    ]
    for ref in pushed:
        repo = ref.split("/", 1)[1].rsplit(":", 1)[0]
        with urllib.request.urlopen(f"http://{registry}/v2/{repo}/tags/list", timeout=5) as r:
            assert json.load(r)["tags"] == [images.tag]
        # Pull it back into the engine after dropping the local tag.
        images.engine.run("rmi", ref)
        images.engine.run("pull", ref)
        local = images.engine.run("image", "inspect", "-f", "{{.Id}}", ref).stdout.strip()
        source = ref.rsplit("/", 1)[1]
        assert local == images.engine.run("image", "inspect", "-f", "{{.Id}}", source).stdout.strip()
        images.engine.run("rmi", ref)  # the registry's tag is gone with the registry; so is ours
