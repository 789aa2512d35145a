"""Several packages in one run (PACKAGE_LIST), as the kubelet runs the program, against real nginx."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from initcontainer import contract
from tests.initcontainer.test_main import (
    BIG,
    PASSWORD,
    PKG_A,
    PKG_B,
    SHA_A,
    SHA_B,
    TOKEN,
    USER,
    Run,
    leftovers,
    run,
    visible,
)
from tests.support.nginx import NginxServer, run_nginx

FILES_A = {"app/a.txt", "app/common/config.ini", "app/blob.bin"}
FILES_B = {"app/b.txt", "app/common/other.ini"}


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxServer]:
    root = tmp_path_factory.mktemp("www")
    (root / "a.tgz").write_bytes(PKG_A)
    (root / "b.tgz").write_bytes(PKG_B)
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
