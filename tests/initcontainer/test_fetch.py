"""The transport against real servers: nginx for auth/TLS/ranges, a scripted server for faults."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from initcontainer import contract
from initcontainer.config import Config, load_config
from initcontainer.errors import HTTPClientError, IntegrityError, TransportError
from initcontainer.fetch import (
    CHUNK_SIZE,
    PackageStream,
    RestartDownload,
    _describe,
    open_package,
    parse_retry_after,
)
from initcontainer.log import Logger, Progress, scrub
from tests.support.faults import FaultServer, Respond
from tests.support.nginx import NginxServer, run_nginx

PAYLOAD = os.urandom(3 * CHUNK_SIZE + 12345)
USER, PASSWORD, TOKEN = "alice", "pa55-w0rd", "tok-Zq9"


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxServer]:
    root = tmp_path_factory.mktemp("www")
    (root / "pkg.bin").write_bytes(PAYLOAD)
    (root / "empty.bin").write_bytes(b"")
    with run_nginx(
        root,
        tmp_path_factory.mktemp("nginx"),
        tls=True,
        basic_auth=(USER, PASSWORD),
        bearer_token=TOKEN,
    ) as srv:
        yield srv


@pytest.fixture
def faults() -> Iterator[FaultServer]:
    with FaultServer() as srv:
        yield srv


def make_cfg(url: str, tmp_path: Path, files: dict[str, str] | None = None, /, **extra: str) -> Config:
    creds = tmp_path / "creds"
    creds.mkdir(exist_ok=True)
    for name, content in (files or {}).items():
        (creds / name).write_text(content)
    env = {
        contract.ENV_URL: url,
        contract.ENV_ALLOW_HTTP: "true",
        contract.ENV_CREDENTIALS_DIR: str(creds),
        contract.ENV_READ_TIMEOUT: "5",
        contract.ENV_CONNECT_TIMEOUT: "5",
        contract.ENV_RETRIES: "2",
    }
    env.update(extra)
    return load_config(env)


def fetch_all(cfg: Config, log: Logger | None = None) -> tuple[bytes, PackageStream]:
    with open_package(cfg, log or Logger(stream=io.StringIO())) as stream:
        data = stream.read(-1)
        return data, stream


def check(data: bytes, stream: PackageStream, expected: bytes = PAYLOAD) -> None:
    assert data == expected
    assert stream.size == len(expected)
    assert stream.hexdigest() == hashlib.sha256(expected).hexdigest()


# ---- nginx: auth, TLS -----------------------------------------------------------


def test_plain_download(nginx: NginxServer, tmp_path: Path) -> None:
    data, stream = fetch_all(make_cfg(nginx.url("pkg.bin"), tmp_path))
    check(data, stream)
    assert stream.total == len(PAYLOAD)


def test_basic_auth(nginx: NginxServer, tmp_path: Path) -> None:
    cfg = make_cfg(nginx.url("pkg.bin", "basic"), tmp_path, {"username": USER, "password": PASSWORD})
    check(*fetch_all(cfg))


def test_basic_auth_wrong_password_is_permanent(nginx: NginxServer, tmp_path: Path) -> None:
    nginx.clear_requests()
    cfg = make_cfg(nginx.url("pkg.bin", "basic"), tmp_path, {"username": USER, "password": "nope"})
    with pytest.raises(HTTPClientError, match="rejected the credentials"):
        fetch_all(cfg)
    assert len(nginx.requests()) == 1  # no retry on 401


def test_missing_credentials_say_what_to_do(nginx: NginxServer, tmp_path: Path) -> None:
    with pytest.raises(HTTPClientError, match="requires authentication"):
        fetch_all(make_cfg(nginx.url("pkg.bin", "basic"), tmp_path))


def test_bearer_token(nginx: NginxServer, tmp_path: Path) -> None:
    nginx.clear_requests()
    cfg = make_cfg(nginx.url("pkg.bin", "bearer"), tmp_path, {"token": TOKEN + "\n"})
    check(*fetch_all(cfg))
    assert nginx.requests()[-1]["auth"] == f"Bearer {TOKEN}"


def test_custom_ca(nginx: NginxServer, tmp_path: Path) -> None:
    cfg = make_cfg(
        nginx.https_url("pkg.bin", "basic"),
        tmp_path,
        {"username": USER, "password": PASSWORD, "ca.crt": nginx.ca_pem},
    )
    check(*fetch_all(cfg))


def test_untrusted_certificate_fails_without_retry(nginx: NginxServer, tmp_path: Path) -> None:
    cfg = make_cfg(nginx.https_url("pkg.bin"), tmp_path)
    started = time.monotonic()
    with pytest.raises(TransportError, match=r"not trusted.*ca\.crt"):
        fetch_all(cfg)
    assert time.monotonic() - started < 2  # permanent: no backoff


def test_insecure_skip_verify(nginx: NginxServer, tmp_path: Path) -> None:
    cfg = make_cfg(nginx.https_url("pkg.bin"), tmp_path, **{contract.ENV_INSECURE_SKIP_TLS_VERIFY: "true"})
    check(*fetch_all(cfg))


def test_404_is_permanent(nginx: NginxServer, tmp_path: Path) -> None:
    nginx.clear_requests()
    with pytest.raises(HTTPClientError, match=r"404.*check PACKAGE_URL"):
        fetch_all(make_cfg(nginx.url("missing.bin"), tmp_path))
    assert len(nginx.requests()) == 1


def test_empty_body_is_an_error(nginx: NginxServer, tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match="empty body"):
        fetch_all(make_cfg(nginx.url("empty.bin"), tmp_path))


def test_content_length_over_limit_fails_before_reading(nginx: NginxServer, tmp_path: Path) -> None:
    cfg = make_cfg(nginx.url("pkg.bin"), tmp_path, **{contract.ENV_MAX_DOWNLOAD_BYTES: "500k"})
    with pytest.raises(IntegrityError, match="PACKAGE_MAX_DOWNLOAD_BYTES"):
        open_package(cfg, Logger(stream=io.StringIO()))


def test_total_timeout(tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    (root / "pkg.bin").write_bytes(PAYLOAD)
    with run_nginx(root, tmp_path / "ng", limit_rate="100k") as slow:
        cfg = make_cfg(slow.url("pkg.bin"), tmp_path, **{contract.ENV_TOTAL_TIMEOUT: "1"})
        started = time.monotonic()
        log = Logger(stream=io.StringIO())
        with (
            pytest.raises(TransportError, match="PACKAGE_TOTAL_TIMEOUT"),
            open_package(cfg, log, deadline=time.monotonic() + 1) as s,
        ):
            s.read(-1)
        assert time.monotonic() - started < 4


def test_progress_lines_on_slow_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "www"
    root.mkdir()
    (root / "pkg.bin").write_bytes(PAYLOAD)
    out = io.StringIO()
    with run_nginx(root, tmp_path / "ng", limit_rate="400k") as slow:
        import initcontainer.fetch as fetch_mod

        class FastProgress(Progress):
            def __init__(self, log: Logger, total: int | None) -> None:
                super().__init__(log, total, interval=0.2)

        monkeypatch.setattr(fetch_mod, "Progress", FastProgress)
        check(*fetch_all(make_cfg(slow.url("pkg.bin"), tmp_path), Logger(stream=out)))
    lines = [line for line in out.getvalue().splitlines() if '"download_progress"' in line]
    assert lines, out.getvalue()
    assert '"percent"' in lines[0] and '"bytesPerSecond"' in lines[0]


# ---- scripted faults ------------------------------------------------------------


def test_reset_mid_body_is_resumed_with_range(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/pkg", Respond(body=PAYLOAD, cut_after=300_000), Respond(body=PAYLOAD))
    data, stream = fetch_all(make_cfg(faults.url("/pkg"), tmp_path))
    check(data, stream)
    assert stream.resumes == 1
    second = faults.requests_to("/pkg")[1]
    # http.client fills whole chunks, so the resume starts at the last full chunk received.
    assert second.header("Range") == f"bytes={CHUNK_SIZE}-"
    assert second.header("If-Range") == '"v1"'


def test_clean_close_mid_body_is_resumed(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/pkg", Respond(body=PAYLOAD, cut_after=CHUNK_SIZE * 2, cut="close"), Respond(body=PAYLOAD))
    data, stream = fetch_all(make_cfg(faults.url("/pkg"), tmp_path))
    check(data, stream)
    assert faults.requests_to("/pkg")[1].header("Range") == f"bytes={CHUNK_SIZE * 2}-"


def test_chunked_body_reset_is_resumed(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/pkg", Respond(body=PAYLOAD, chunked=True, cut_after=500_000), Respond(body=PAYLOAD))
    check(*fetch_all(make_cfg(faults.url("/pkg"), tmp_path)))


def test_resume_with_last_modified(faults: FaultServer, tmp_path: Path) -> None:
    lm = "Wed, 21 Oct 2015 07:28:00 GMT"
    faults.script(
        "/pkg",
        Respond(body=PAYLOAD, etag=None, last_modified=lm, cut_after=CHUNK_SIZE),
        Respond(body=PAYLOAD, etag=None, last_modified=lm),
    )
    check(*fetch_all(make_cfg(faults.url("/pkg"), tmp_path)))
    assert faults.requests_to("/pkg")[1].header("If-Range") == lm


def test_changed_file_restarts(faults: FaultServer, tmp_path: Path) -> None:
    faults.script(
        "/pkg", Respond(body=PAYLOAD, cut_after=CHUNK_SIZE), Respond(body=PAYLOAD[::-1], etag='"v2"')
    )
    with pytest.raises(RestartDownload, match="whole file"):
        fetch_all(make_cfg(faults.url("/pkg"), tmp_path))


def test_server_without_range_support_restarts(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/pkg", Respond(body=PAYLOAD, cut_after=CHUNK_SIZE), Respond(body=PAYLOAD, ranges=False))
    with pytest.raises(RestartDownload):
        fetch_all(make_cfg(faults.url("/pkg"), tmp_path))


def test_no_validator_restarts(faults: FaultServer, tmp_path: Path) -> None:
    faults.script(
        "/pkg", Respond(body=PAYLOAD, etag=None, cut_after=CHUNK_SIZE), Respond(body=PAYLOAD, etag=None)
    )
    with pytest.raises(RestartDownload, match="neither ETag nor Last-Modified"):
        fetch_all(make_cfg(faults.url("/pkg"), tmp_path))


def test_reset_before_any_byte_just_retries(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/pkg", Respond(body=PAYLOAD, cut_after=0), Respond(body=PAYLOAD))
    check(*fetch_all(make_cfg(faults.url("/pkg"), tmp_path)))
    assert faults.requests_to("/pkg")[1].header("Range") is None


def test_stalled_server_times_out(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/pkg", Respond(body=PAYLOAD, cut_after=1000, cut="stall", stall_seconds=20))
    cfg = make_cfg(
        faults.url("/pkg"), tmp_path, **{contract.ENV_READ_TIMEOUT: "1", contract.ENV_RETRIES: "0"}
    )
    started = time.monotonic()
    with pytest.raises(TransportError, match=r"giving up.*(timed out|TimeoutError)"):
        fetch_all(cfg)
    # The read timeout fired (not an earlier error, not the 20 s stall ending).
    assert 0.9 <= time.monotonic() - started < 3


def test_bytes_beyond_content_length_are_not_part_of_the_body(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/pkg", Respond(body=PAYLOAD, extra=b"SMUGGLED" * 5000))
    check(*fetch_all(make_cfg(faults.url("/pkg"), tmp_path)))


def test_resume_answered_with_another_version_restarts(faults: FaultServer, tmp_path: Path) -> None:
    """A cache that ignores If-Range serves a 206 of the new version: never spliced onto the old bytes."""
    other = PAYLOAD[::-1]
    faults.script(
        "/pkg",
        Respond(body=PAYLOAD, cut_after=CHUNK_SIZE),
        Respond(body=other, etag='"v2"', honour_if_range=False),
    )
    with pytest.raises(RestartDownload, match="changed during the download"):
        fetch_all(make_cfg(faults.url("/pkg"), tmp_path))
    second = faults.requests_to("/pkg")[1]
    assert second.header("If-Range") == '"v1"' and second.header("Range") == f"bytes={CHUNK_SIZE}-"


def test_short_206_is_continued_to_the_end(faults: FaultServer, tmp_path: Path) -> None:
    """A 206 may cover less than asked for: keep asking until the whole file is there."""
    faults.script(
        "/pkg", Respond(body=PAYLOAD, cut_after=CHUNK_SIZE), Respond(body=PAYLOAD, max_range_bytes=300_000)
    )
    data, stream = fetch_all(make_cfg(faults.url("/pkg"), tmp_path, **{contract.ENV_RETRIES: "5"}))
    check(data, stream)
    assert stream.resumes == 2  # 1 chunk, then two 300000-byte parts cover the rest


def test_retry_after_is_capped(faults: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import initcontainer.fetch as fetch_mod

    monkeypatch.setattr(fetch_mod, "RETRY_AFTER_MAX", 0.5)
    faults.script("/pkg", Respond(status=503, headers={"Retry-After": "86400"}), Respond(body=PAYLOAD))
    started = time.monotonic()
    check(*fetch_all(make_cfg(faults.url("/pkg"), tmp_path)))
    assert 0.45 <= time.monotonic() - started < 3


def test_retry_after_past_the_total_timeout_fails_now(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/pkg", Respond(status=429, headers={"Retry-After": "3600"}), Respond(body=PAYLOAD))
    cfg = make_cfg(faults.url("/pkg"), tmp_path, **{contract.ENV_TOTAL_TIMEOUT: "20"})
    started = time.monotonic()
    with pytest.raises(TransportError, match="PACKAGE_TOTAL_TIMEOUT=20s would be exceeded"):
        open_package(cfg, Logger(stream=io.StringIO()), deadline=time.monotonic() + 20)
    assert time.monotonic() - started < 2
    assert len(faults.requests_to("/pkg")) == 1


def test_500_then_success(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/pkg", Respond(status=500, body=b"oops"), Respond(body=PAYLOAD))
    check(*fetch_all(make_cfg(faults.url("/pkg"), tmp_path)))
    assert len(faults.requests_to("/pkg")) == 2


def test_persistent_503_gives_up_after_retries(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/pkg", Respond(status=503, body=b"busy"))
    with pytest.raises(TransportError, match=r"giving up after 2 attempt.*503"):
        fetch_all(make_cfg(faults.url("/pkg"), tmp_path, **{contract.ENV_RETRIES: "1"}))
    assert len(faults.requests_to("/pkg")) == 2


def test_429_honours_retry_after(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/pkg", Respond(status=429, headers={"Retry-After": "1"}), Respond(body=PAYLOAD))
    started = time.monotonic()
    check(*fetch_all(make_cfg(faults.url("/pkg"), tmp_path)))
    assert time.monotonic() - started >= 0.95


@pytest.mark.parametrize("status", [401, 403, 404, 410])
def test_permanent_statuses_are_not_retried(faults: FaultServer, tmp_path: Path, status: int) -> None:
    faults.script("/pkg", Respond(status=status, body=b"no"))
    with pytest.raises(HTTPClientError, match=str(status)):
        fetch_all(make_cfg(faults.url("/pkg"), tmp_path))
    assert len(faults.requests_to("/pkg")) == 1


def test_same_host_redirect_keeps_credentials(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/old", Respond(status=302, headers={"Location": "/new"}))
    faults.script("/new", Respond(body=PAYLOAD))
    cfg = make_cfg(faults.url("/old"), tmp_path, {"username": USER, "password": PASSWORD})
    check(*fetch_all(cfg))
    assert (faults.requests_to("/new")[0].header("Authorization") or "").startswith("Basic ")


def test_cross_host_redirect_drops_credentials(tmp_path: Path) -> None:
    with FaultServer() as first, FaultServer() as second:
        second.script("/pkg", Respond(body=PAYLOAD))
        first.script("/pkg", Respond(status=307, headers={"Location": second.url("/pkg", host="localhost")}))
        cfg = make_cfg(first.url("/pkg"), tmp_path, {"token": TOKEN})
        check(*fetch_all(cfg))
        assert first.requests_to("/pkg")[0].header("Authorization") == f"Bearer {TOKEN}"
        seen = second.requests_to("/pkg")[0]
        assert seen.header("Authorization") is None
        assert TOKEN not in repr(seen.headers)


def test_redirect_to_other_port_same_host_drops_credentials(tmp_path: Path) -> None:
    with FaultServer() as first, FaultServer() as second:
        second.script("/pkg", Respond(body=PAYLOAD))
        first.script("/pkg", Respond(status=301, headers={"Location": second.url("/pkg")}))
        check(*fetch_all(make_cfg(first.url("/pkg"), tmp_path, {"username": USER, "password": PASSWORD})))
        assert second.requests_to("/pkg")[0].header("Authorization") is None


def test_401_after_cross_host_redirect_explains(tmp_path: Path) -> None:
    with FaultServer() as first, FaultServer() as second:
        second.script("/pkg", Respond(status=401))
        first.script("/pkg", Respond(status=302, headers={"Location": second.url("/pkg")}))
        with pytest.raises(HTTPClientError, match="only sent to the host"):
            fetch_all(make_cfg(first.url("/pkg"), tmp_path, {"token": TOKEN}))


def test_redirect_loop_is_bounded(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/loop", Respond(status=302, headers={"Location": "/loop"}))
    with pytest.raises(HTTPClientError, match="redirects"):
        fetch_all(make_cfg(faults.url("/loop"), tmp_path))


def test_https_to_http_redirect_is_refused(nginx: NginxServer, tmp_path: Path) -> None:
    """nginx on its TLS port answers 302 to its own plain-http port: never followed, even with
    PACKAGE_ALLOW_HTTP=true, and the credentials never go out in clear."""
    nginx.clear_requests()
    cfg = make_cfg(
        nginx.https_url("to-http/basic/pkg.bin"),
        tmp_path,
        {"username": USER, "password": PASSWORD, "ca.crt": nginx.ca_pem},
    )
    with pytest.raises(HTTPClientError, match="plain http"):
        fetch_all(cfg)
    seen = nginx.requests()
    assert [(r["uri"], r["status"], r["server_port"]) for r in seen] == [
        ("/to-http/basic/pkg.bin", 302, nginx.tls_port)
    ]


def test_credentials_do_not_follow_a_scheme_and_port_change(nginx: NginxServer, tmp_path: Path) -> None:
    """http://host:P -> https://host:Q (same host): another origin, so no bearer token there."""
    nginx.clear_requests()
    cfg = make_cfg(nginx.url("to-https/bearer/pkg.bin"), tmp_path, {"token": TOKEN, "ca.crt": nginx.ca_pem})
    with pytest.raises(HTTPClientError, match="only sent to the host"):
        fetch_all(cfg)
    seen = [(r["uri"], r["status"], r["auth"]) for r in nginx.requests()]
    assert seen == [("/to-https/bearer/pkg.bin", 302, f"Bearer {TOKEN}"), ("/bearer/pkg.bin", 401, "")]


@pytest.mark.parametrize("creds", [{"token": TOKEN}, {"username": USER, "password": PASSWORD}])
def test_no_credentials_to_the_same_host_on_another_port(tmp_path: Path, creds: dict[str, str]) -> None:
    with FaultServer() as first, FaultServer() as second:
        second.script("/pkg", Respond(body=PAYLOAD))
        first.script("/pkg", Respond(status=308, headers={"Location": second.url("/pkg")}))
        check(*fetch_all(make_cfg(first.url("/pkg"), tmp_path, creds)))
        assert first.requests_to("/pkg")[0].header("Authorization") is not None
        seen = second.requests_to("/pkg")[0]
        assert seen.header("Authorization") is None
        assert all(secret not in repr(seen.headers) for secret in creds.values())


def test_redirect_with_control_characters_is_encoded_without_leaking(
    faults: FaultServer, tmp_path: Path
) -> None:
    """http.client refuses controls in the request line and quotes the whole target in its error."""
    faults.script("/pkg", Respond(status=302, headers={"Location": "/next?sig=SECRET\x01 x"}))
    out = io.StringIO()
    with pytest.raises(HTTPClientError, match="404") as raised:
        fetch_all(make_cfg(faults.url("/pkg"), tmp_path), Logger(stream=out))
    assert faults.requests[-1].path == "/next?sig=SECRET%01%20x"
    assert "SECRET" not in raised.value.message
    assert "SECRET" not in out.getvalue()


def test_redirect_to_a_non_ascii_path_is_percent_encoded(faults: FaultServer, tmp_path: Path) -> None:
    """A server's raw UTF-8 Location (read by http.client as latin-1) is requested percent-encoded."""
    faults.script("/pkg", Respond(status=302, headers={"Location": "/päck.bin".encode().decode("latin-1")}))
    faults.script("/p%C3%A4ck.bin", Respond(body=PAYLOAD))
    check(*fetch_all(make_cfg(faults.url("/pkg"), tmp_path)))


def test_query_string_redacted_in_every_line_and_error(faults: FaultServer, tmp_path: Path) -> None:
    """Retries, a redirect carrying its own token, a reset and a resume: no token anywhere."""
    faults.script(
        "/pkg", Respond(status=503), Respond(status=302, headers={"Location": "/real?X-Sig=TOKEN2"})
    )
    faults.script("/real", Respond(body=PAYLOAD, cut_after=CHUNK_SIZE), Respond(body=PAYLOAD))
    out = io.StringIO()
    check(*fetch_all(make_cfg(faults.url("/pkg") + "?X-Sig=TOKEN1", tmp_path), Logger(stream=out)))
    events = [json.loads(line)["event"] for line in out.getvalue().splitlines()]
    assert {"retry", "redirect", "download_resumed"} <= set(events)
    assert "TOKEN" not in out.getvalue()
    faults.script("/gone", Respond(status=302, headers={"Location": "/missing?X-Sig=TOKEN3"}))
    with pytest.raises(HTTPClientError) as raised:
        fetch_all(make_cfg(faults.url("/gone") + "?X-Sig=TOKEN4", tmp_path), Logger(stream=out))
    assert "404" in raised.value.message and "?<redacted>" in raised.value.message
    assert "TOKEN" not in raised.value.message + out.getvalue()


def test_chunked_body_over_limit(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/pkg", Respond(body=PAYLOAD, chunked=True))
    cfg = make_cfg(faults.url("/pkg"), tmp_path, **{contract.ENV_MAX_DOWNLOAD_BYTES: "300000"})
    with pytest.raises(IntegrityError, match="larger than PACKAGE_MAX_DOWNLOAD_BYTES"):
        fetch_all(cfg)


def test_http_proxy_and_no_proxy(
    faults: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FaultServer() as proxy:
        target = faults.url("/pkg", host="localhost")
        proxy.script(target, Respond(body=PAYLOAD))
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.setenv("NO_PROXY", "")
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("http_proxy", raising=False)
        check(*fetch_all(make_cfg(target, tmp_path)))
        assert proxy.requests[0].path == target  # absolute-form request through the proxy
        faults.script("/pkg", Respond(body=PAYLOAD))
        monkeypatch.setenv("NO_PROXY", "localhost")
        check(*fetch_all(make_cfg(target, tmp_path)))
        assert len(proxy.requests) == 1
        assert len(faults.requests_to("/pkg")) == 1


def test_peek_does_not_consume(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/pkg", Respond(body=PAYLOAD))
    with open_package(make_cfg(faults.url("/pkg"), tmp_path), Logger(stream=io.StringIO())) as s:
        head = s.peek(512)
        assert head == PAYLOAD[:512]
        assert s.read(10) == PAYLOAD[:10]
        rest = s.read(-1)
        assert PAYLOAD[:10] + rest == PAYLOAD
        assert s.read(100) == b""


def test_exception_texts_are_scrubbed_of_url_secrets() -> None:
    url = "https://h/p.tgz?X-Sig=SECRET1&b=2#SECRET2"
    exc = http.client.InvalidURL("URL can't contain control characters. '/p.tgz?X-Sig=SECRET1&b=2\\x01'")
    text = _describe(exc, url)
    assert text.startswith("InvalidURL: ") and "SECRET" not in text
    assert scrub("at SECRET2 X-Sig=SECRET1&b=2", url) == "at <redacted> <redacted>"


def test_parse_retry_after() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after("100000") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    date = "Wed, 21 Oct 2015 07:28:30 GMT"
    now = 1445412480.0  # 07:28:00
    assert parse_retry_after(date, now=now) == pytest.approx(30.0)
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
