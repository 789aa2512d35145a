"""The program as the kubelet runs it: a subprocess, configured by its environment only."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import signal
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from initcontainer import contract, pax
from tests.initcontainer.corpus import END_OF_ARCHIVE, padded, raw_header
from tests.support.faults import FaultServer, Respond
from tests.support.init_process import Run, run_init
from tests.support.kubelet_env import container_env
from tests.support.nginx import NginxServer, run_nginx
from tests.support.packages import (
    BIG,
    PKG_A,
    SHA_A,
    SHA_B,
    assert_package_a,
    leftovers,
    make_tgz,
    visible,
    write_packages,
)

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
USER, PASSWORD, TOKEN = "deploy", "Pw-9f8e7d6c", "Tk-0a1b2c3d4e"
QUERY_SECRET = "SIGxyz123secret"


HTML = b"<!DOCTYPE html><html><head><title>Login required</title></head><body>sign in</body></html>"


@pytest.fixture(scope="module")
def www(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_packages(tmp_path_factory.mktemp("www"))
    (root / "truncated.tgz").write_bytes(PKG_A[: len(PKG_A) // 2])
    (root / "error.html").write_bytes(HTML)
    for name, (body, _) in HOSTILE_PAX.items():
        (root / f"pax-{name}.tar").write_bytes(_PAX_OK + body + END_OF_ARCHIVE)
    return root


@pytest.fixture(scope="module")
def nginx(www: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxServer]:
    with run_nginx(
        www, tmp_path_factory.mktemp("nginx"), tls=True, basic_auth=(USER, PASSWORD), bearer_token=TOKEN
    ) as srv:
        yield srv


@pytest.fixture
def faults() -> Iterator[FaultServer]:
    with FaultServer() as srv:
        yield srv


def base_env(tmp_path: Path, url: str, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        contract.ENV_URL: url,
        contract.ENV_DEST: str(tmp_path / "dest"),
        contract.ENV_TERMINATION_LOG: str(tmp_path / "termination-log"),
        contract.ENV_CREDENTIALS_DIR: str(tmp_path / "creds"),
        contract.ENV_ALLOW_HTTP: "true",
        contract.ENV_READ_TIMEOUT: "5",
        contract.ENV_RETRIES: "2",
    }
    (tmp_path / "creds").mkdir(exist_ok=True)
    env.update(extra)
    return env


def run(env: dict[str, str], timeout: float = 60, argv: list[str] | None = None) -> Run:
    return run_init(env, timeout, argv)


def assert_failed_cleanly(r: Run, dest: Path, code: int, reason: str) -> None:
    assert r.code == code, r.stderr
    assert r.reason["reason"] == reason
    assert r.reason["exitCode"] == code
    assert leftovers(dest) == []
    assert not (dest / contract.MARKER_NAME).exists()
    assert visible(dest) == set() if dest.exists() else True
    last = json.loads(r.stderr.strip().splitlines()[-1])
    assert last["event"] == "failed" and last["exitCode"] == code


# ---- hostile pax headers (the pax.py fast path) through the whole program -------------


def _record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + len(str(len(body) + len(str(len(body)))))
    return str(length).encode() + body


def _x(*records: bytes, kind: bytes = b"x") -> bytes:
    body = b"".join(records)
    return raw_header(b"./PaxHeaders/m", len(body), kind) + padded(body)


def _m(name: bytes, data: bytes = b"pwned\n", kind: bytes = b"0", link: bytes = b"") -> bytes:
    return raw_header(name, len(data), kind, {157: link} if link else None) + padded(data)


_PAX_OK = _m(b"pkg/ok.txt", b"fine\n")  # extracted first: the refusal must take it back out of sight
HOSTILE_PAX: dict[str, tuple[bytes, str]] = {  # the archive after _PAX_OK, words of the refusal
    "absolute-path": (_x(_record(b"path", b"/tmp/pax-pwned")) + _m(b"pkg/a"), "absolute path"),
    "dotdot-path": (_x(_record(b"path", b"../outside/victim.txt")) + _m(b"pkg/a"), "'..' component"),
    "inner-dotdot": (_x(_record(b"path", b"pkg/../../outside/victim.txt")) + _m(b"pkg/a"), "'..'"),
    "dotdot-dir-slashes": (_x(_record(b"path", b"../outside//")) + _m(b"pkg/d", b"", b"5"), "'..'"),
    "non-utf8-dotdot": (_x(_record(b"path", b"\xff/../../outside/x")) + _m(b"pkg/a"), "'..'"),
    "nul-in-path": (_x(_record(b"path", b"pkg/a\x00/../../outside/x")) + _m(b"pkg/a"), "NUL"),
    "reserved-name": (_x(_record(b"path", contract.MARKER_NAME.encode())) + _m(b"pkg/a"), "reserved"),
    "symlink-out": (_x(_record(b"linkpath", b"../../outside")) + _m(b"pkg/l", b"", b"2", b"x"), "outside"),
    "symlink-slash-out": (
        _x(_record(b"path", b"pkg/s/"), _record(b"linkpath", b"../..")) + _m(b"pkg/q", b"", b"2", b"x"),
        "outside",
    ),
    "write-through-symlink": (
        _x(_record(b"linkpath", b".."))
        + _m(b"pkg/l", b"", b"2", b"x")
        + _x(_record(b"path", b"pkg/l/f"))
        + _m(b"a"),
        "through the symlink",
    ),
    "hardlink-out": (
        _x(_record(b"linkpath", b"../outside/victim.txt")) + _m(b"pkg/h", b"", b"1", b"x"),
        "'..'",
    ),
    "file-slash-then-child": (
        _x(_record(b"path", b"pkg/d/")) + _m(b"pkg/a") + _m(b"pkg/d/evil"),
        "it is a file",
    ),
    "dir-size-hides-a-member": (
        _x(_record(b"size", b"1024")) + _m(b"pkg/d", b"", b"5") + _m(b"../outside/hidden"),
        "'..'",
    ),
    "size-zero-hides-a-member": (
        _x(_record(b"size", b"0")) + _m(b"pkg/z", _m(b"../outside/hidden")[:512]),
        "'..'",
    ),
    "size-huge": (_x(_record(b"size", b"9" * 18)) + _m(b"pkg/huge"), "decompression bomb"),
    "comment-then-global-path": (
        _x(_record(b"comment", b"c"), kind=b"g")
        + _m(b"pkg/c")
        + _x(_record(b"path", b"../g"), kind=b"g")
        + _m(b"c"),
        "'..'",
    ),
    "x-then-global-path": (
        _x(_record(b"mtime", b"1")) + _x(_record(b"path", b"../g"), kind=b"g") + _m(b"c"),
        "'..'",
    ),
}


@pytest.mark.parametrize("name", HOSTILE_PAX)
def test_hostile_pax_headers_are_refused_and_nothing_lands_anywhere(
    nginx: NginxServer, tmp_path: Path, name: str
) -> None:
    """Escapes through pax path/linkpath/size, most of them parsed by the pax.py fast path: the
    tree refuses each one, nothing outside the destination changes, nothing of the package is left."""
    words = HOSTILE_PAX[name][1]
    sentinel, dest = tmp_path / "sentinel", tmp_path / "sentinel" / "dest"
    (sentinel / "outside").mkdir(parents=True)
    (sentinel / "outside" / "victim.txt").write_text("original\n")
    r = run(base_env(tmp_path, nginx.url(f"pax-{name}.tar"), **{contract.ENV_DEST: str(dest)}))
    assert_failed_cleanly(r, dest, contract.EXIT_UNSAFE_ARCHIVE, "UnsafeArchiveError")
    assert words in r.reason["message"]
    assert sorted(str(p.relative_to(sentinel)) for p in sentinel.rglob("*")) == [
        "dest",
        "outside",
        "outside/victim.txt",
    ]
    assert (sentinel / "outside" / "victim.txt").read_text() == "original\n"
    assert not Path("/tmp/pax-pwned").exists()


def test_the_hostile_pax_headers_take_the_fast_path() -> None:
    """Those above would otherwise test tarfile's parser only: all but five are pax.py's."""
    tarfiles = {
        name
        for name, (body, _) in HOSTILE_PAX.items()
        if pax.parse_extended(body + END_OF_ARCHIVE, 0, 0, {}, "utf-8", "surrogateescape") is None
    }
    by_design = {"non-utf8-dotdot", "nul-in-path", "dir-size-hides-a-member"}  # outside pax.py's grammar
    assert tarfiles == by_design | {"comment-then-global-path", "x-then-global-path"}  # and `g` headers


# ---- the contract with the webhook --------------------------------------------


def injected_env(url: str, sha256: str) -> dict[str, str]:
    """The init container's env exactly as webhook/inject.py renders it for an annotated pod."""
    from webhook.inject import inject
    from webhook.settings import Settings

    pod = {
        "metadata": {
            "name": "p",
            "annotations": {"package-url": url, "package-sha256": sha256, "package-secret": "pkg-creds"},
        },
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
    }
    result = inject(pod, Settings())
    (init,) = [c for c in result.pod["spec"]["initContainers"] if c["name"] == contract.INIT_CONTAINER_NAME]
    assert "args" not in init and all(USER not in a for a in init.get("command", []))
    # As the process sees it: the kubelet expands $(VAR) and collapses $$ (a stand-in: no kubelet here).
    return container_env(init)


def test_contract_with_the_webhook(nginx: NginxServer, tmp_path: Path) -> None:
    url = nginx.https_url("a.tgz", "basic")
    env = injected_env(url, "sha256:" + SHA_A)
    assert env[contract.ENV_URL] == url
    # Simulate the kubelet's mounts: the emptyDir and the Secret appear at the paths the env names.
    dest, creds = tmp_path / "shared", tmp_path / "secret"
    creds.mkdir()
    (creds / "username").write_text(USER)
    (creds / "password").write_text(PASSWORD + "\n")
    (creds / "ca.crt").write_text(nginx.ca_pem)
    assert env[contract.ENV_DEST] == contract.DEFAULT_DEST
    assert env[contract.ENV_CREDENTIALS_DIR] == contract.DEFAULT_CREDENTIALS_DIR
    env[contract.ENV_DEST] = str(dest)
    env[contract.ENV_CREDENTIALS_DIR] = str(creds)
    env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    r = run(env)
    assert r.code == 0, r.stderr
    assert_package_a(dest)
    assert PASSWORD not in r.stderr


def test_dollar_in_the_url_reaches_the_init_container_unchanged(
    nginx: NginxServer, www: Path, tmp_path: Path
) -> None:
    """`$(PACKAGE_DEST)` and `$$` in the URL: the kubelet substitutes and collapses them unless escaped."""
    name = "a$$(PACKAGE_DEST)$(X.tgz"
    (www / name).write_bytes(PKG_A)
    url = nginx.https_url(name, "basic")
    env = injected_env(url, "sha256:" + SHA_A)
    assert env[contract.ENV_URL] == url
    dest, creds = tmp_path / "shared", tmp_path / "secret"
    creds.mkdir()
    (creds / "username").write_text(USER)
    (creds / "password").write_text(PASSWORD)
    (creds / "ca.crt").write_text(nginx.ca_pem)
    env.update({contract.ENV_DEST: str(dest), contract.ENV_CREDENTIALS_DIR: str(creds)})
    env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    r = run(env)
    assert r.code == 0, r.stderr
    assert_package_a(dest)
    assert [e["uri"] for e in nginx.requests()][-1].endswith("/basic/a$$(PACKAGE_DEST)$(X.tgz")


# ---- auth, TLS, secrets out of logs ---------------------------------------------


def test_basic_auth_custom_ca_and_no_secret_in_output(nginx: NginxServer, tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "username").write_text(USER)
    (creds / "password").write_text(PASSWORD)
    (creds / "ca.crt").write_text(nginx.ca_pem)
    url = nginx.https_url("a.tgz", "basic") + f"?X-Amz-Signature={QUERY_SECRET}"
    r = run(base_env(tmp_path, url, **{contract.ENV_SHA256: SHA_A}))
    assert r.code == 0, r.stderr
    assert_package_a(tmp_path / "dest")
    marker_text = (tmp_path / "dest" / contract.MARKER_NAME).read_text()
    for secret in (PASSWORD, QUERY_SECRET):
        assert secret not in r.stderr
        assert secret not in marker_text


def test_wrong_password_fails_without_leaking(nginx: NginxServer, tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "username").write_text(USER)
    (creds / "password").write_text("wrong-" + PASSWORD)
    url = nginx.url("a.tgz", "basic") + f"?token={QUERY_SECRET}"
    r = run(base_env(tmp_path, url))
    assert_failed_cleanly(r, tmp_path / "dest", contract.EXIT_HTTP_CLIENT, "HTTPClientError")
    assert "401" in r.reason["message"]
    for secret in (PASSWORD, QUERY_SECRET):
        assert secret not in r.stderr
        assert secret not in r.termination


def test_bearer_token_never_logged(nginx: NginxServer, tmp_path: Path) -> None:
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "token").write_text(TOKEN)
    r = run(base_env(tmp_path, nginx.url("a.tgz", "bearer")))
    assert r.code == 0, r.stderr
    assert_package_a(tmp_path / "dest")
    assert TOKEN not in r.stderr


def test_legacy_env_credentials_warn(nginx: NginxServer, tmp_path: Path) -> None:
    env = base_env(tmp_path, nginx.url("b.tgz", "basic"))
    del env[contract.ENV_CREDENTIALS_DIR]  # the default path does not exist here
    env.update({contract.ENV_USERNAME: USER, contract.ENV_PASSWORD: PASSWORD})
    r = run(env)
    assert r.code == 0, r.stderr
    assert "deprecated" in r.stderr
    assert PASSWORD not in r.stderr


def test_untrusted_tls_is_transport_error(nginx: NginxServer, tmp_path: Path) -> None:
    r = run(base_env(tmp_path, nginx.https_url("a.tgz")))
    assert_failed_cleanly(r, tmp_path / "dest", contract.EXIT_TRANSPORT, "TransportError")
    assert "ca.crt" in r.reason["message"]


# ---- failures by class ------------------------------------------------------------


def test_config_error(tmp_path: Path) -> None:
    r = run(base_env(tmp_path, "https://example.invalid/p.tgz", PACKAGE_SHA1="x"))
    assert r.code == contract.EXIT_CONFIG
    assert r.reason["reason"] == "ConfigError"
    assert "PACKAGE_SHA1" in r.reason["message"]


def test_404(nginx: NginxServer, tmp_path: Path) -> None:
    r = run(base_env(tmp_path, nginx.url("missing.tgz")))
    assert_failed_cleanly(r, tmp_path / "dest", contract.EXIT_HTTP_CLIENT, "HTTPClientError")


def test_wrong_checksum_leaves_nothing_visible(nginx: NginxServer, tmp_path: Path) -> None:
    r = run(base_env(tmp_path, nginx.url("a.tgz"), **{contract.ENV_SHA256: SHA_B}))
    assert_failed_cleanly(r, tmp_path / "dest", contract.EXIT_INTEGRITY, "IntegrityError")
    assert "checksum mismatch" in r.reason["message"]


def test_truncated_gzip(nginx: NginxServer, tmp_path: Path) -> None:
    r = run(base_env(tmp_path, nginx.url("truncated.tgz")))
    assert_failed_cleanly(r, tmp_path / "dest", contract.EXIT_INTEGRITY, "IntegrityError")


def test_html_error_page_with_200(nginx: NginxServer, tmp_path: Path, www: Path) -> None:
    r = run(base_env(tmp_path, nginx.url("error.html")))
    assert_failed_cleanly(r, tmp_path / "dest", contract.EXIT_INTEGRITY, "IntegrityError")
    assert "HTML" in r.reason["message"]
    assert "Content-Type: text/html" in r.reason["message"]


def test_stalled_server_times_out(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/p.tgz", Respond(body=PKG_A, cut_after=1000, cut="stall", stall_seconds=30))
    env = base_env(
        tmp_path, faults.url("/p.tgz"), **{contract.ENV_READ_TIMEOUT: "1", contract.ENV_RETRIES: "1"}
    )
    r = run(env)
    assert_failed_cleanly(r, tmp_path / "dest", contract.EXIT_TRANSPORT, "TransportError")
    # The read timeout ended it (a 30 s stall outlasts the retries), not the stall.
    assert re.search(r"giving up after 2 attempt.*(timed out|TimeoutError)", r.reason["message"])


def test_500_then_success(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/p.tgz", Respond(status=500), Respond(status=502), Respond(body=PKG_A))
    r = run(base_env(tmp_path, faults.url("/p.tgz"), **{contract.ENV_SHA256: SHA_A}))
    assert r.code == 0, r.stderr
    assert_package_a(tmp_path / "dest")
    assert r.events().count("retry") == 2


def test_429_retry_after(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/p.tgz", Respond(status=429, headers={"Retry-After": "1"}), Respond(body=PKG_A))
    started = time.monotonic()
    r = run(base_env(tmp_path, faults.url("/p.tgz")))
    assert r.code == 0, r.stderr
    assert time.monotonic() - started >= 1.0
    assert_package_a(tmp_path / "dest")


# ---- resume and restart -----------------------------------------------------------


def test_reset_mid_body_is_resumed_byte_identical(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/p.tgz", Respond(body=PKG_A, cut_after=700_000), Respond(body=PKG_A))
    r = run(base_env(tmp_path, faults.url("/p.tgz"), **{contract.ENV_SHA256: SHA_A}))
    assert r.code == 0, r.stderr
    assert_package_a(tmp_path / "dest")
    second = faults.requests_to("/p.tgz")[1]
    assert (second.header("Range") or "").startswith("bytes=")
    assert second.header("Range") != "bytes=0-"
    assert second.header("If-Range") == '"v1"'
    assert "download_resumed" in r.events()


def test_unresumable_server_restarts_cleanly(faults: FaultServer, tmp_path: Path) -> None:
    faults.script(
        "/p.tgz",
        Respond(body=PKG_A, cut_after=700_000, cut="close"),
        Respond(body=PKG_A, ranges=False),
    )
    r = run(base_env(tmp_path, faults.url("/p.tgz"), **{contract.ENV_SHA256: SHA_A}))
    assert r.code == 0, r.stderr
    assert "restart" in r.events()
    assert_package_a(tmp_path / "dest")
    assert [s.header("Range") for s in faults.requests_to("/p.tgz")][-1] is None


# ---- idempotency, crashes, switching -----------------------------------------------


def test_second_run_makes_no_request(nginx: NginxServer, tmp_path: Path) -> None:
    env = base_env(tmp_path, nginx.url("a.tgz"), **{contract.ENV_SHA256: SHA_A})
    assert run(env).code == 0
    before = len(nginx.requests())
    r = run(env)
    assert r.code == 0, r.stderr
    assert "already_installed" in r.events()
    assert len(nginx.requests()) == before
    assert_package_a(tmp_path / "dest")


def test_without_checksum_every_run_downloads(nginx: NginxServer, tmp_path: Path) -> None:
    env = base_env(tmp_path, nginx.url("a.tgz"))
    assert run(env).code == 0
    before = len(nginx.requests())
    r = run(env)
    assert r.code == 0
    assert len(nginx.requests()) == before + 1
    assert "no_checksum" in r.events()


def test_switching_packages_leaves_no_stale_files(nginx: NginxServer, tmp_path: Path) -> None:
    assert run(base_env(tmp_path, nginx.url("a.tgz"), **{contract.ENV_SHA256: SHA_A})).code == 0
    r = run(base_env(tmp_path, nginx.url("b.tgz"), **{contract.ENV_SHA256: SHA_B}))
    assert r.code == 0, r.stderr
    assert visible(tmp_path / "dest") == {"app/b.txt", "app/common/other.ini"}


def test_failed_switch_keeps_nothing_half_written(nginx: NginxServer, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    assert run(base_env(tmp_path, nginx.url("a.tgz"))).code == 0
    r = run(base_env(tmp_path, nginx.url("b.tgz"), **{contract.ENV_SHA256: SHA_A}))
    assert r.code == contract.EXIT_INTEGRITY
    assert leftovers(dest) == []
    # The previous complete install is still intact (nothing of B became visible).
    assert_package_a(dest)


def _slow_server(tmp_path: Path, www: Path) -> Any:
    return run_nginx(www, tmp_path / "slow-nginx", limit_rate="300k")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_crash_in_the_middle_then_rerun(tmp_path: Path, www: Path, sig: signal.Signals) -> None:
    dest = tmp_path / "dest"
    with _slow_server(tmp_path, www) as slow:
        env = base_env(tmp_path, slow.url("a.tgz"), **{contract.ENV_SHA256: SHA_A})
        proc = subprocess.Popen([PYTHON, "-m", "initcontainer"], env=env, cwd=REPO, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while not leftovers(dest) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # well into the download, files being written into staging
        assert leftovers(dest), "staging never appeared"
        proc.send_signal(sig)
        code = proc.wait(timeout=20)
        assert proc.stderr is not None
        proc.stderr.close()
        assert not (dest / contract.MARKER_NAME).exists()
        if sig == signal.SIGTERM:
            assert code == 143
            assert leftovers(dest) == []
            term = json.loads((tmp_path / "termination-log").read_text())
            assert term["reason"] == "Terminated"
    with run_nginx(www, tmp_path / "fast-nginx") as fast:
        r = run(base_env(tmp_path, fast.url("a.tgz"), **{contract.ENV_SHA256: SHA_A}))
        assert r.code == 0, r.stderr
        assert_package_a(dest)


def test_console_script_and_text_logs(nginx: NginxServer, tmp_path: Path) -> None:
    script = Path(PYTHON).parent / "package-init"
    assert script.exists(), (
        "package-init console script not installed (scripts/setup.sh runs pip install -e .)"
    )
    r = run(base_env(tmp_path, nginx.url("b.tgz"), **{contract.ENV_LOG_FORMAT: "text"}), argv=[str(script)])
    assert r.code == 0, r.stderr
    assert "installed 2 files" in r.stderr
    assert not r.stderr.lstrip().startswith("{")


# ---- transport security, end to end -------------------------------------------------


def test_https_to_http_redirect_refused_end_to_end(nginx: NginxServer, tmp_path: Path) -> None:
    """The TLS server redirects to its own plain-http port; http is even allowed: still refused."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "username").write_text(USER)
    (creds / "password").write_text(PASSWORD)
    (creds / "ca.crt").write_text(nginx.ca_pem)
    nginx.clear_requests()
    url = nginx.https_url("to-http/basic/a.tgz") + f"?sig={QUERY_SECRET}"
    r = run(base_env(tmp_path, url, **{contract.ENV_ALLOW_HTTP: "true"}))
    assert_failed_cleanly(r, tmp_path / "dest", contract.EXIT_HTTP_CLIENT, "HTTPClientError")
    assert "plain http" in r.reason["message"]
    assert [q["server_port"] for q in nginx.requests()] == [nginx.tls_port]
    for secret in (PASSWORD, QUERY_SECRET):
        assert secret not in r.stderr + r.termination


def test_no_secret_on_the_command_line(nginx: NginxServer, tmp_path: Path) -> None:
    """/proc/PID/cmdline of the running program (and of any child) holds no credential or token."""
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "token").write_text(TOKEN)
    dest = tmp_path / "dest"
    with _slow_server(tmp_path, nginx.root) as slow:
        url = slow.url("a.tgz") + f"?sig={QUERY_SECRET}"
        env = base_env(tmp_path, url)
        proc = subprocess.Popen([PYTHON, "-m", "initcontainer"], env=env, cwd=REPO, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 20
            while not leftovers(dest) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert leftovers(dest), "the download never started"
            pids = [proc.pid]
            for task in Path(f"/proc/{proc.pid}/task").iterdir():
                pids += [int(p) for p in (task / "children").read_text().split()]
            assert pids == [proc.pid], "the init container must not run helper processes"
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
            assert cmdline.split(b"\0")[1:3] == [b"-m", b"initcontainer"]
            for secret in (TOKEN, QUERY_SECRET, USER):
                assert secret.encode() not in cmdline
        finally:
            proc.kill()
            proc.wait(timeout=10)
            assert proc.stderr is not None
            proc.stderr.close()


def make_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_resume_answered_with_another_version_starts_over(faults: FaultServer, tmp_path: Path) -> None:
    """The file changes mid-download (same size) and the server ignores If-Range: the 206 of the
    new version is caught by its ETag and the download starts over. Spliced, the two versions
    would make a valid tar whose blob is half old, half new."""
    v1 = make_tar({"app/version": b"1", "app/blob.bin": BIG})
    new_blob = os.urandom(len(BIG))
    v2 = make_tar({"app/version": b"2", "app/blob.bin": new_blob})
    assert len(v1) == len(v2)
    faults.script(
        "/p.tar",
        Respond(body=v1, cut_after=700_000),
        Respond(body=v2, etag='"v2"', honour_if_range=False),
    )
    r = run(base_env(tmp_path, faults.url("/p.tar")))
    assert r.code == 0, r.stderr
    assert "restart" in r.events()
    dest = tmp_path / "dest"
    assert visible(dest) == {"app/version", "app/blob.bin"}
    assert (dest / "app/version").read_bytes() == b"2"
    assert (dest / "app/blob.bin").read_bytes() == new_blob
    marker = json.loads((dest / contract.MARKER_NAME).read_text())
    assert marker["sha256"] == hashlib.sha256(v2).hexdigest()
    ranges = [s.header("Range") for s in faults.requests_to("/p.tar")]
    assert ranges[0] is None and ranges[1] and ranges[-1] is None


def test_content_type_and_name_are_ignored(faults: FaultServer, tmp_path: Path) -> None:
    """kserve#2938: a valid tar.gz served as text/html under a .zip name still installs."""
    faults.script("/package.zip", Respond(body=PKG_A, content_type="text/html; charset=utf-8"))
    r = run(base_env(tmp_path, faults.url("/package.zip"), **{contract.ENV_SHA256: SHA_A}))
    assert r.code == 0, r.stderr
    assert_package_a(tmp_path / "dest")


def test_already_installed_run_removes_a_killed_switch_leftover(nginx: NginxServer, tmp_path: Path) -> None:
    env = base_env(tmp_path, nginx.url("a.tgz"), **{contract.ENV_SHA256: SHA_A})
    assert run(env).code == 0
    dest = tmp_path / "dest"
    leftover = dest / f"{contract.STAGING_PREFIX}0123456789abcdef"
    (leftover / "app").mkdir(parents=True)
    (leftover / "app" / "half.bin").write_bytes(b"x" * 1000)
    r = run(env)
    assert r.code == 0, r.stderr
    assert "already_installed" in r.events()
    assert_package_a(dest)


# ---- kill -9 anywhere: never a mix of two packages under a marker -------------------------


def _many_files_tgz(tag: str, seed: int) -> tuple[bytes, dict[str, bytes]]:
    """~2000 files under 150 top-level entries (so promote has many renames), some shared names."""
    rnd = random.Random(seed)
    files: dict[str, bytes] = {}
    for top in range(150):
        for i in range(12):
            files[f"t{top:03}/f{i}.txt"] = f"{tag} {top} {i} ".encode() + rnd.randbytes(700)
    files[f"only-{tag}/blob.bin"] = rnd.randbytes(3 * 1024 * 1024)
    return make_tgz(files), files


def _app_view(dest: Path) -> dict[str, bytes]:
    """What a main container sees: every file but the marker and hidden staging leftovers."""
    out: dict[str, bytes] = {}
    for path in dest.rglob("*"):
        rel = path.relative_to(dest)
        if rel.parts[0].startswith(contract.STAGING_PREFIX) or rel.parts[0] == contract.MARKER_NAME:
            continue
        if path.is_file():
            out[str(rel)] = path.read_bytes()
    return out


def test_kill_9_at_random_points_never_exposes_a_mix(tmp_path: Path) -> None:
    """Switch A -> B and SIGKILL the run after N ms, for N spread over a whole run (download,
    extraction, promote). After every kill: a marker means exactly the package it names; then a
    re-run installs exactly B with no leftovers."""
    www = tmp_path / "www"
    www.mkdir()
    pkgs: dict[str, tuple[str, dict[str, bytes]]] = {}
    for tag, seed in (("A", 1), ("B", 2)):
        data, files = _many_files_tgz(tag, seed)
        (www / f"{tag}.tgz").write_bytes(data)
        pkgs[tag] = (hashlib.sha256(data).hexdigest(), files)
    by_digest = {sha: files for sha, files in pkgs.values()}
    dest = tmp_path / "dest"
    with run_nginx(www, tmp_path / "nginx") as srv:

        def env(tag: str) -> dict[str, str]:
            return base_env(tmp_path, srv.url(f"{tag}.tgz"), **{contract.ENV_SHA256: pkgs[tag][0]})

        def check_invariant(when: str) -> str | None:
            for name in leftovers(dest):  # hidden and private: no other UID can look inside
                mode = stat.S_IMODE((dest / name).lstat().st_mode)
                assert mode & 0o077 == 0 or not (dest / name).is_dir(), (name, oct(mode))
            marker_path = dest / contract.MARKER_NAME
            if not marker_path.exists():
                return None
            sha = json.loads(marker_path.read_text())["sha256"]
            assert _app_view(dest) == by_digest[sha], f"mixed content under the marker {when}"
            return str(sha)

        started = time.monotonic()
        assert run(env("A")).code == 0
        full_run = time.monotonic() - started
        rnd = random.Random(int(time.time()))
        delays = sorted(
            f * full_run + rnd.uniform(-0.03, 0.03) for f in (0.15, 0.35, 0.55, 0.7, 0.8, 0.9, 0.97)
        )
        outcomes = []
        for delay in delays:
            if check_invariant("before the run") != pkgs["A"][0]:
                assert run(env("A")).code == 0
            proc = subprocess.Popen(
                [PYTHON, "-m", "initcontainer"], env=env("B"), cwd=REPO, stderr=subprocess.DEVNULL
            )
            time.sleep(max(delay, 0.01))
            proc.send_signal(signal.SIGKILL)
            code = proc.wait(timeout=20)
            outcomes.append((round(delay, 3), code, check_invariant(f"after a kill at {delay:.3f}s")))
        r = run(env("B"))
        assert r.code == 0, r.stderr
        assert _app_view(dest) == pkgs["B"][1]
        assert check_invariant("after the re-run") == pkgs["B"][0]
        assert leftovers(dest) == [] and sorted(os.listdir(dest)) == sorted(
            {contract.MARKER_NAME, "only-B", *(f"t{i:03}" for i in range(150))}
        )
    # At least the early kills hit a running process (otherwise nothing was tested).
    assert any(code == -signal.SIGKILL for _, code, _ in outcomes), outcomes


def _package_init(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "initcontainer", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"], **(env or {})},
        cwd=Path(__file__).resolve().parents[2],
    )


def test_help_lists_every_variable_and_exit_code_and_touches_nothing() -> None:
    existed = Path(contract.DEFAULT_TERMINATION_LOG).exists()
    result = _package_init("--help")
    assert result.returncode == 0 and result.stderr == ""
    for name in contract.KNOWN_ENV:
        assert name in result.stdout
    for code in (2, 3, 4, 5, 6, 7):
        assert f"  {code}  " in result.stdout
    assert "ConfigError" not in result.stdout
    assert Path(contract.DEFAULT_TERMINATION_LOG).exists() == existed
    assert _package_init("--version").stdout.startswith("package-init ")


def test_an_argument_is_refused_with_usage() -> None:
    result = _package_init("https://example.com/a.tgz")
    assert result.returncode == contract.EXIT_CONFIG
    assert "unexpected argument" in result.stderr and "package-init --help" in result.stderr


def test_the_default_termination_log_is_never_created(tmp_path: Path) -> None:
    """Outside a container (here: as whoever runs the tests, root in CI) a failure leaves no file behind.
    The kubelet provides the file in a container; an explicit PACKAGE_TERMINATION_LOG is still created."""
    default = Path(contract.DEFAULT_TERMINATION_LOG)
    # A file left on this machine by something else (an older build run as root) is moved aside.
    aside = default.with_name(f"{default.name}.aside-{os.getpid()}") if default.exists() else None
    if aside is not None:
        default.rename(aside)
    try:
        env = {contract.ENV_URL: "ftp://nowhere", contract.ENV_DEST: str(tmp_path / "d")}
        result = _package_init(env=env)
        assert result.returncode == contract.EXIT_CONFIG
        assert not default.exists()
    finally:
        if aside is not None:
            aside.rename(default)
    chosen = tmp_path / "term"
    env = {
        contract.ENV_URL: "ftp://nowhere",
        contract.ENV_DEST: str(tmp_path / "d"),
        contract.ENV_TERMINATION_LOG: str(chosen),
    }
    assert _package_init(env=env).returncode == contract.EXIT_CONFIG
    assert json.loads(chosen.read_text())["exitCode"] == contract.EXIT_CONFIG
