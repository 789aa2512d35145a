"""The transport against real servers: redirects, credentials per origin, TLS, proxies, status classes."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import time
from pathlib import Path

import pytest

from initcontainer import contract
from initcontainer.download import CHUNK_SIZE, PackageStream, open_package
from initcontainer.errors import HTTPClientError, TransportError
from initcontainer.log import Logger, scrub
from initcontainer.transport import Auth, Request, Transport, describe, parse_retry_after
from tests.initcontainer.httpkit import PASSWORD, PAYLOAD, TOKEN, USER, check, fetch_all, make_cfg
from tests.support.faults import FaultServer, Respond
from tests.support.nginx import NginxServer


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
    out = io.StringIO()
    with pytest.raises(TransportError, match=r"not trusted.*ca\.crt"):
        fetch_all(cfg, Logger(stream=out))
    assert '"retry"' not in out.getvalue()  # permanent: no backoff


def test_insecure_skip_verify(nginx: NginxServer, tmp_path: Path) -> None:
    cfg = make_cfg(nginx.https_url("pkg.bin"), tmp_path, **{contract.ENV_INSECURE_SKIP_TLS_VERIFY: "true"})
    check(*fetch_all(cfg))


def test_404_is_permanent(nginx: NginxServer, tmp_path: Path) -> None:
    nginx.clear_requests()
    with pytest.raises(HTTPClientError, match=r"404.*check PACKAGE_URL"):
        fetch_all(make_cfg(nginx.url("missing.bin"), tmp_path))
    assert len(nginx.requests()) == 1


def test_retry_after_is_capped(faults: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import initcontainer.transport as transport_mod

    monkeypatch.setattr(transport_mod, "RETRY_AFTER_MAX", 0.5)
    faults.script("/pkg", Respond(status=503, headers={"Retry-After": "86400"}), Respond(body=PAYLOAD))
    out = io.StringIO()
    started = time.monotonic()
    check(*fetch_all(make_cfg(faults.url("/pkg"), tmp_path), Logger(stream=out)))
    assert time.monotonic() - started >= 0.45
    (retry,) = [json.loads(line) for line in out.getvalue().splitlines() if '"retry"' in line]
    assert retry["delaySeconds"] == 0.5


def test_retry_after_past_the_total_timeout_fails_now(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/pkg", Respond(status=429, headers={"Retry-After": "3600"}), Respond(body=PAYLOAD))
    cfg = make_cfg(faults.url("/pkg"), tmp_path, **{contract.ENV_TOTAL_TIMEOUT: "20"})
    out = io.StringIO()
    with pytest.raises(TransportError, match="PACKAGE_TOTAL_TIMEOUT=20s would be exceeded"):
        open_package(cfg, Logger(stream=out), deadline=time.monotonic() + 20)
    assert '"retry"' not in out.getvalue()  # failed at once, without sleeping first
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


def test_exception_texts_are_scrubbed_of_url_secrets() -> None:
    url = "https://h/p.tgz?X-Sig=SECRET1&b=2#SECRET2"
    exc = http.client.InvalidURL("URL can't contain control characters. '/p.tgz?X-Sig=SECRET1&b=2\\x01'")
    text = describe(exc, url)
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


# ---- the plug-in points: Auth.sign and Auth.challenge ----------------------------


class _Signer(Auth):
    """Signs every request over its method, URL and Range, as AWS SigV4 signs the canonical request."""

    def __init__(self) -> None:
        self.signed: list[str] = []

    @property
    def configured(self) -> bool:
        return True

    def sign(self, request: Request) -> bool:
        canonical = f"{request.method} {request.url} {request.headers.get('Range', '')}"
        request.headers["X-Signature"] = hashlib.sha256(canonical.encode()).hexdigest()
        self.signed.append(canonical)
        return True


def test_sign_hook_sees_every_request_with_its_range(faults: FaultServer, tmp_path: Path) -> None:
    """A redirect, a dropped connection and the resume (through the redirect again): each request
    is signed over exactly what is sent, Range included."""
    faults.script("/start", Respond(status=302, headers={"Location": "/pkg?part=1"}))
    faults.script("/pkg", Respond(body=PAYLOAD, cut_after=CHUNK_SIZE, cut="close"), Respond(body=PAYLOAD))
    cfg = make_cfg(faults.url("/start"), tmp_path)
    log = Logger(stream=io.StringIO())
    signer = _Signer()
    with PackageStream(cfg, log, transport=Transport(cfg, log, None, auth=signer)).open() as stream:
        check(stream.read(-1), stream)
    seen = faults.requests
    resume = f"bytes={CHUNK_SIZE}-"
    assert [(s.path, s.header("Range")) for s in seen] == [
        ("/start", None),
        ("/pkg?part=1", None),
        ("/start", resume),
        ("/pkg?part=1", resume),
    ]
    for request, canonical in zip(seen, signer.signed, strict=True):
        url = faults.url(request.path)
        assert canonical == f"GET {url} {request.header('Range') or ''}"
        assert request.header("X-Signature") == hashlib.sha256(canonical.encode()).hexdigest()


class _TokenAuth(Auth):
    """A registry's flow: anonymous first; on 401, fetch a token for the challenge, then retry."""

    def __init__(self) -> None:
        self.token: str | None = None
        self.challenges: list[str] = []

    @property
    def configured(self) -> bool:
        return True

    def sign(self, request: Request) -> bool:
        if self.token is None:
            return False
        request.headers["Authorization"] = f"Bearer {self.token}"
        return True

    def challenge(self, request: Request, response: http.client.HTTPResponse) -> bool:
        self.challenges.append(response.getheader("WWW-Authenticate") or "")
        self.token = "fresh-token"
        return True


def test_challenge_hook_gets_one_retry_with_fresh_credentials(faults: FaultServer, tmp_path: Path) -> None:
    challenge = 'Bearer realm="http://auth.example/token",scope="repository:app:pull"'
    faults.script(
        "/blob", Respond(status=401, headers={"WWW-Authenticate": challenge}), Respond(body=PAYLOAD)
    )
    cfg = make_cfg(faults.url("/blob"), tmp_path)
    log = Logger(stream=io.StringIO())
    auth = _TokenAuth()
    with PackageStream(cfg, log, transport=Transport(cfg, log, None, auth=auth)).open() as stream:
        check(stream.read(-1), stream)
    assert auth.challenges == [challenge]
    assert [s.header("Authorization") for s in faults.requests] == [None, "Bearer fresh-token"]


def test_challenge_hook_is_asked_once_then_the_401_stands(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/blob", Respond(status=401, headers={"WWW-Authenticate": "Bearer realm=x"}))
    cfg = make_cfg(faults.url("/blob"), tmp_path)
    log = Logger(stream=io.StringIO())
    auth = _TokenAuth()
    with pytest.raises(HTTPClientError, match="rejected the credentials"):
        PackageStream(cfg, log, transport=Transport(cfg, log, None, auth=auth)).open()
    assert len(auth.challenges) == 1
    assert len(faults.requests) == 2
