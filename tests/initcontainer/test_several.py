"""Several packages in one run (PACKAGE_LIST), as the kubelet runs the program, against real nginx."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from initcontainer import contract
from initcontainer.several import GRACE_SECONDS
from tests.initcontainer.test_main import PASSWORD, PYTHON, REPO, TOKEN, USER, run
from tests.support.init_process import Run
from tests.support.kubelet_env import container_env
from tests.support.nginx import NginxServer, run_nginx
from tests.support.packages import (
    BIG,
    FILES_A,
    FILES_B,
    PKG_A,
    PKG_B,
    SHA_A,
    SHA_B,
    leftovers,
    visible,
    write_packages,
)
from tests.support.s3server import MotoS3, run_moto
from webhook.inject import inject
from webhook.settings import Settings


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxServer]:
    root = write_packages(tmp_path_factory.mktemp("www"))
    with run_nginx(
        root, tmp_path_factory.mktemp("nginx"), basic_auth=(USER, PASSWORD), bearer_token=TOKEN
    ) as srv:
        yield srv


def env_for(tmp_path: Path, packages: list[dict[str, object]], **extra: str) -> dict[str, str]:
    env = {
        "PATH": "/usr/bin:/bin",
        contract.ENV_PACKAGE_LIST: json.dumps(packages),
        contract.ENV_TERMINATION_LOG: str(tmp_path / "termination-log"),
        contract.ENV_ALLOW_HTTP: "true",
        contract.ENV_READ_TIMEOUT: "5",
        contract.ENV_RETRIES: "2",
        # No Secret at the default directory may reach a package: point the unnamed one elsewhere.
        contract.ENV_CREDENTIALS_DIR: str(tmp_path / "no-creds"),
    }
    (tmp_path / "no-creds").mkdir(exist_ok=True)
    env.update(extra)
    return env


def package(tmp_path: Path, name: str, url: str, **fields: object) -> dict[str, object]:
    return {"name": name, "url": url, "dest": str(tmp_path / "packages" / name), **fields}


def assert_clean(r: Run, *dests: Path) -> None:
    for dest in dests:
        assert leftovers(dest) == [], dest


def test_two_named_and_the_unnamed_package_install(nginx: NginxServer, tmp_path: Path) -> None:
    creds = tmp_path / "creds-private"
    creds.mkdir()
    (creds / "username").write_text(USER)
    (creds / "password").write_text(PASSWORD)
    packages = [
        package(tmp_path, "tools", nginx.url("a.tgz"), sha256=SHA_A),
        package(tmp_path, "private", nginx.url("b.tgz", "basic"), sha256=SHA_B, credentialsDir=str(creds)),
    ]
    env = env_for(
        tmp_path,
        packages,
        **{contract.ENV_URL: nginx.url("b.tgz"), contract.ENV_DEST: str(tmp_path / "unnamed")},
        **{contract.ENV_STRIP_COMPONENTS: "1"},
    )
    r = run(env)
    assert r.code == 0, r.stderr
    tools, private, unnamed = tmp_path / "packages/tools", tmp_path / "packages/private", tmp_path / "unnamed"
    assert visible(tools) == FILES_A and (tools / "app/blob.bin").read_bytes() == BIG
    assert visible(private) == FILES_B
    assert visible(unnamed) == {"b.txt", "common/other.ini"}  # strip applies to the unnamed package only
    for dest, digest in ((tools, SHA_A), (private, SHA_B), (unnamed, hashlib.sha256(PKG_B).hexdigest())):
        assert json.loads((dest / contract.MARKER_NAME).read_text())["sha256"] == digest
    assert_clean(r, tools, private, unnamed)
    lines = [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
    assert {line.get("package") for line in lines if line["event"] == "installed"} >= {"tools", "private"}
    assert PASSWORD not in r.stderr

    # Idempotent: pinned packages already in place are not fetched again.
    again = run(env)
    assert again.code == 0, again.stderr
    skipped = [json.loads(x) for x in again.stderr.splitlines() if '"already_installed"' in x]
    assert {s.get("package") for s in skipped} == {"tools", "private"}


def test_one_404_fails_the_run_with_its_name_and_leaves_nothing_half_visible(
    nginx: NginxServer, tmp_path: Path
) -> None:
    packages = [
        package(tmp_path, "good", nginx.url("a.tgz"), sha256=SHA_A),
        package(tmp_path, "gone", nginx.url("missing.tgz")),
    ]
    r = run(env_for(tmp_path, packages))
    assert r.code == contract.EXIT_HTTP_CLIENT, r.stderr
    assert r.reason["reason"] == "HTTPClientError"
    assert r.reason["package"] == "gone"
    assert r.reason["message"].startswith("package 'gone': ")
    good, gone = tmp_path / "packages/good", tmp_path / "packages/gone"
    assert visible(gone) == set() and not (gone / contract.MARKER_NAME).exists()
    # The other package is whole (promoted atomically) or absent, never part of itself.
    assert visible(good) in (set(), FILES_A)
    assert_clean(r, good, gone)


def test_a_named_package_never_gets_another_packages_secret(nginx: NginxServer, tmp_path: Path) -> None:
    (tmp_path / "token-dir").mkdir()
    (tmp_path / "token-dir" / "token").write_text(TOKEN)
    packages = [package(tmp_path, "nosecret", nginx.url("a.tgz", "bearer"))]
    env = env_for(
        tmp_path,
        packages,
        **{
            contract.ENV_URL: nginx.url("b.tgz", "bearer"),
            contract.ENV_DEST: str(tmp_path / "unnamed"),
            contract.ENV_CREDENTIALS_DIR: str(tmp_path / "token-dir"),
        },
    )
    r = run(env)
    assert r.code == contract.EXIT_HTTP_CLIENT, r.stderr
    assert r.reason["package"] == "nosecret" and "401" in r.reason["message"]
    assert visible(tmp_path / "unnamed") == FILES_B  # the unnamed package used its own token
    assert TOKEN not in r.stderr and TOKEN not in r.termination


@pytest.mark.parametrize(
    ("packages", "fragment"),
    [
        ([{"name": "a", "url": "https://x.example/a.tgz", "dest": "/tmp/p"}] * 2, "names 'a' more than once"),
        ([{"name": "a", "url": "ftp://x.example/a.tgz", "dest": "/tmp/p/a"}], "package 'a': "),
        (
            [{"name": "a", "url": "https://x.example/a.tgz", "dest": "/tmp/p/a", "token": "t"}],
            "unknown field",
        ),
    ],
)
def test_bad_list_is_a_config_error_before_any_download(
    tmp_path: Path, packages: list[dict[str, object]], fragment: str
) -> None:
    r = run(env_for(tmp_path, packages))
    assert r.code == contract.EXIT_CONFIG, r.stderr
    assert r.reason["reason"] == "ConfigError" and fragment in r.reason["message"]


def test_nested_with_the_unnamed_package_is_refused(tmp_path: Path) -> None:
    unnamed = tmp_path / "unnamed"
    packages = [package(tmp_path, "inner", "https://x.example/a.tgz", dest=str(unnamed / "inner"))]
    env = env_for(
        tmp_path, packages, **{contract.ENV_URL: "https://x.example/b.tgz", contract.ENV_DEST: str(unnamed)}
    )
    r = run(env)
    assert r.code == contract.EXIT_CONFIG
    assert "overlap" in r.reason["message"]
    assert not unnamed.exists()


def events(r: Run) -> list[dict[str, Any]]:
    return [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]


def test_after_a_failure_queued_packages_do_not_start(nginx: NginxServer, tmp_path: Path) -> None:
    packages = [
        package(tmp_path, "a-gone", nginx.url("missing.tgz")),
        package(tmp_path, "b-queued", nginx.url("a.tgz"), sha256=SHA_A),
        package(tmp_path, "c-queued", nginx.url("b.tgz"), sha256=SHA_B),
    ]
    nginx.clear_requests()
    r = run(env_for(tmp_path, packages, **{contract.ENV_CONCURRENCY: "1"}))
    assert r.code == contract.EXIT_HTTP_CLIENT, r.stderr
    assert r.reason["package"] == "a-gone"
    lines = events(r)
    started = {line.get("package") for line in lines if line["event"] == "start" and "package" in line}
    assert started == {"a-gone"}
    (skipped,) = [line for line in lines if line["event"] == "not_started"]
    assert skipped["packages"] == ["b-queued", "c-queued"]
    for name in ("b-queued", "c-queued"):
        assert not (tmp_path / "packages" / name).exists()
    # Nothing was fetched for them either.
    assert not [q for q in nginx.requests() if q.get("uri", "").endswith(("/a.tgz", "/b.tgz"))]


def test_sigterm_stops_every_download_at_once_and_leaves_nothing(tmp_path: Path) -> None:
    """Two packages downloading (100 KB/s: about 20 s each), a third queued; SIGTERM 1 s into the downloads.

    The run must end within seconds (the grace it gives its workers, plus a margin for a loaded machine),
    with exit 143, every staging directory removed, no package promoted and the queued one never started:
    the workers stop, not only the main thread."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "a.tgz").write_bytes(PKG_A)
    with run_nginx(www, tmp_path / "slow-nginx", limit_rate="100k") as slow:
        names = ("one", "two", "three")
        packages = [package(tmp_path, n, slow.url("a.tgz"), sha256=SHA_A) for n in names]
        env = env_for(tmp_path, packages, **{contract.ENV_CONCURRENCY: "2"})
        proc = subprocess.Popen([PYTHON, "-m", "initcontainer"], env=env, cwd=REPO, stderr=subprocess.PIPE)
        dests = [tmp_path / "packages" / n for n in names]
        deadline = time.monotonic() + 20
        while not (leftovers(dests[0]) and leftovers(dests[1])) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert leftovers(dests[0]) and leftovers(dests[1]), "the two downloads never started"
        time.sleep(1.0)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        elapsed = time.monotonic() - sent
        assert proc.stderr is not None
        stderr = proc.stderr.read().decode()
        proc.stderr.close()
    assert code == 143, stderr[-2000:]
    assert elapsed < GRACE_SECONDS + 1, f"took {elapsed:.1f}s to stop after SIGTERM"
    for dest in dests:
        assert leftovers(dest) == [], (dest, elapsed, stderr[-3000:])
        assert not (dest / contract.MARKER_NAME).exists(), dest
        assert not dest.exists() or visible(dest) == set(), dest
    assert not dests[2].exists()
    assert json.loads((tmp_path / "termination-log").read_text())["reason"] == "Terminated"


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    with run_moto(tmp_path_factory.mktemp("moto"), {"packages/models/v7.tgz": PKG_B}) as server:
        yield server


def test_the_env_inject_renders_installs_two_packages_from_nginx_and_one_from_s3(
    nginx: NginxServer, moto: MotoS3, tmp_path: Path
) -> None:
    """The webhook's own output drives the real program: PACKAGE_LIST as `inject` writes it, after the
    kubelet's env handling. The kubelet's other part is played here: the mounts (each package's dest and
    Secret directory) move under tmp_path, the S3 Secret's keys become files."""
    settings = Settings(
        allowed_schemes=["https", "http", "s3"],
        s3_endpoint=moto.url,  # moto speaks plain http on 127.0.0.1; a cluster's would be https
        s3_region="us-east-1",
    )
    annotations = {
        "package-url.tools": nginx.url("a.tgz"),
        "package-sha256.tools": SHA_A,
        "package-url.extra": nginx.url("b.tgz"),
        "package-strip-components.extra": "1",
        "package-url.models": "s3://packages/models/v7.tgz",
        "package-sha256.models": SHA_B,
        "package-secret.models": "models-reader",
    }
    pod = {"metadata": {"annotations": annotations}, "spec": {"containers": [{"name": "app", "image": "a"}]}}
    (init,) = inject(pod, settings).pod["spec"]["initContainers"]
    env = container_env(init)
    assert contract.ENV_URL not in env and env[contract.ENV_ALLOW_HTTP] == "true"
    listed = json.loads(env[contract.ENV_PACKAGE_LIST])
    assert [p["name"] for p in listed] == ["extra", "models", "tools"]
    secret = tmp_path / "secret-models"
    secret.mkdir()
    (secret / "AWS_ACCESS_KEY_ID").write_text(moto.reader.access_key_id)
    (secret / "AWS_SECRET_ACCESS_KEY").write_text(moto.reader.secret_access_key)
    moved = {contract.named_credentials_dir("models"): str(secret)}
    for entry in listed:
        entry["dest"] = str(tmp_path / "packages" / entry["name"])
        if "credentialsDir" in entry:
            entry["credentialsDir"] = moved[entry["credentialsDir"]]
    env.update(
        {
            "PATH": "/usr/bin:/bin",
            contract.ENV_PACKAGE_LIST: json.dumps(listed),
            contract.ENV_TERMINATION_LOG: str(tmp_path / "termination-log"),
        }
    )
    r = run(env)
    assert r.code == 0, r.stderr[-3000:]
    root = tmp_path / "packages"
    assert visible(root / "tools") == FILES_A
    assert visible(root / "extra") == {"b.txt", "common/other.ini"}
    assert visible(root / "models") == FILES_B
    assert (
        json.loads((root / "models" / contract.MARKER_NAME).read_text())["url"]
        == "s3://packages/models/v7.tgz"
    )
    assert moto.reader.secret_access_key not in r.stderr


def test_a_named_package_without_a_secret_reads_no_credentials_directory(tmp_path: Path) -> None:
    """attack-multi: the webhook mounts the unnamed package's Secret (or the Pod's pull secrets) at
    DEFAULT_CREDENTIALS_DIR; a named oci:// or s3:// package without its own Secret fell back to that
    directory (its registry keyring, its AWS keys, or a ConfigError for its username/password files).
    Checked on the Config, because a test cannot mount at the default path on a shared machine."""
    from initcontainer.several import load_all

    settings = Settings(allowed_schemes=["https", "oci", "s3"], s3_region="us-east-1")
    annotations = {
        "package-url": "https://files.example.com/site.tar.gz",
        "package-secret": "site-reader",
        "package-url.image": "oci://registry.example.com/team/tools:v1",
        "package-url.models": "s3://packages/models/v7.tgz",
    }
    pod = {"metadata": {"annotations": annotations}, "spec": {"containers": [{"name": "app", "image": "a"}]}}
    (init,) = inject(pod, settings).pod["spec"]["initContainers"]
    env = container_env(init)
    assert env[contract.ENV_CREDENTIALS_DIR] == contract.DEFAULT_CREDENTIALS_DIR  # the unnamed Secret
    env[contract.ENV_CREDENTIALS_DIR] = str(tmp_path)  # the kubelet's mount, moved (as in the test above)
    configs = dict(load_all(env)[0])
    assert configs["image"].credentials_dir is None
    assert configs["models"].credentials_dir is None


@pytest.mark.parametrize(
    ("first", "second", "unnamed"),
    [
        ("/tmp/p/x", "/tmp/p//x", None),
        ("/tmp/p/x", "/tmp/p/./x", None),
        ("/tmp/p/x", "//tmp/p/x/y", None),
        ("/tmp/p/x", "/tmp/q", "/tmp/p/./x"),
    ],
)
def test_dests_that_differ_only_in_spelling_overlap(
    tmp_path: Path, first: str, second: str, unnamed: str | None
) -> None:
    # attack-multi: the overlap rule compared strings, so `/p//x` and `/p/./x` let two packages unpack into
    # one directory at once.
    packages = [
        {"name": "a", "url": "https://x.example/a.tgz", "dest": first},
        {"name": "b", "url": "https://x.example/b.tgz", "dest": second},
    ]
    extra = {contract.ENV_URL: "https://x.example/c.tgz", contract.ENV_DEST: unnamed} if unnamed else {}
    r = run(env_for(tmp_path, packages, **extra))
    assert r.code == contract.EXIT_CONFIG, r.stderr
    assert "overlap" in r.reason["message"]
