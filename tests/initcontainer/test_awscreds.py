"""Web identity: the STS request we send, the answers we parse, refresh before expiry, error classes."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest

from initcontainer import awscreds
from initcontainer.awscreds import WebIdentity, WebIdentityConfig
from initcontainer.errors import ConfigError, HTTPClientError, TransportError

ROLE = "arn:aws:iam::123456789012:role/reader"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJl"


def ok_body(expiration: str = "2030-01-01T00:00:00Z", key: str = "ASIAEXAMPLE") -> bytes:
    return f"""<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <AccessKeyId>{key}</AccessKeyId><SecretAccessKey>sekrit</SecretAccessKey>
      <SessionToken>sess-token</SessionToken><Expiration>{expiration}</Expiration>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>""".encode()


def error_body(code: str, message: str) -> bytes:
    return (
        f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>{message}</Message></Error></ErrorResponse>"
    ).encode()


def make(
    tmp_path: Path, answers: list[tuple[int, bytes]], clock: list[float]
) -> tuple[WebIdentity, list[dict]]:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    sent: list[dict] = []

    def post(url: str, body: bytes) -> tuple[int, bytes]:
        sent.append({"url": url, **dict(urllib.parse.parse_qsl(body.decode()))})
        return answers.pop(0) if len(answers) > 1 else answers[0]

    cfg = WebIdentityConfig(ROLE, token_file, "package-injector-pod", "https://sts.eu-west-1.amazonaws.com/")
    return WebIdentity(cfg, post, clock=lambda: clock[0]), sent


def test_request_carries_the_token_in_the_body_and_credentials_are_parsed(tmp_path: Path) -> None:
    web, sent = make(tmp_path, [(200, ok_body())], [0.0])
    creds = web.get()
    assert sent == [
        {
            "url": "https://sts.eu-west-1.amazonaws.com/",
            "Action": "AssumeRoleWithWebIdentity",
            "Version": "2011-06-15",
            "RoleArn": ROLE,
            "RoleSessionName": "package-injector-pod",
            "WebIdentityToken": TOKEN,
            "DurationSeconds": "3600",
        }
    ]
    assert (creds.access_key_id, creds.secret_access_key, creds.session_token) == (
        "ASIAEXAMPLE",
        "sekrit",
        "sess-token",
    )
    assert creds.expires_at == 1893456000.0
    assert "sekrit" not in repr(creds) and "sess-token" not in repr(creds)


def test_credentials_are_reused_then_refreshed_before_expiry_with_a_reread_token(tmp_path: Path) -> None:
    clock = [1893456000.0 - 3600]
    web, sent = make(
        tmp_path,
        [(200, ok_body(key="ASIAFIRST")), (200, ok_body("2030-01-01T02:00:00Z", key="ASIASECOND"))],
        clock,
    )
    assert web.get().access_key_id == "ASIAFIRST"
    clock[0] += 3000  # 600 s left: still fine
    assert web.get().access_key_id == "ASIAFIRST"
    (tmp_path / "token").write_text("rotated-token")
    clock[0] += 301 + 60  # inside the refresh margin
    assert web.get().access_key_id == "ASIASECOND"
    assert [s["WebIdentityToken"] for s in sent] == [TOKEN, "rotated-token"]
    assert web.assumed == 2


@pytest.mark.parametrize(
    ("status", "code", "cls", "hint"),
    [
        (403, "AccessDenied", HTTPClientError, "trust policy"),
        (400, "InvalidIdentityToken", HTTPClientError, "OIDC provider"),
        (400, "ExpiredTokenException", HTTPClientError, "rotated"),
        (400, "IDPCommunicationError", TransportError, "IDPCommunicationError"),
        (503, "ServiceUnavailable", TransportError, "ServiceUnavailable"),
    ],
)
def test_errors_are_classified_with_a_fix(
    tmp_path: Path, status: int, code: str, cls: type[Exception], hint: str
) -> None:
    web, _ = make(
        tmp_path, [(status, error_body(code, "Not authorized to perform sts:AssumeRoleWithWebIdentity"))], [0]
    )
    with pytest.raises(cls) as info:
        web.get()
    assert hint in str(info.value)
    assert code in str(info.value)
    assert TOKEN not in str(info.value)


def test_a_server_echoing_the_token_does_not_get_it_into_the_message(tmp_path: Path) -> None:
    for echoed in (TOKEN, TOKEN[:20], "eyJzomethingelse123456"):
        web, _ = make(tmp_path, [(400, error_body("InvalidIdentityToken", f"bad token {echoed}"))], [0])
        with pytest.raises(HTTPClientError) as info:
            web.get()
        assert TOKEN[:16] not in info.value.message
        assert "eyJzomething" not in info.value.message


def test_garbage_answers(tmp_path: Path) -> None:
    web, _ = make(tmp_path, [(200, b"<html>not sts</html")], [0])
    with pytest.raises(TransportError, match="not XML"):
        web.get()
    web, _ = make(tmp_path, [(200, b"<x><AccessKeyId>A</AccessKeyId></x>")], [0])
    with pytest.raises(TransportError, match="without AccessKeyId"):
        web.get()
    web, _ = make(tmp_path, [(400, b"\x00\xff<<<")], [0])
    with pytest.raises(HTTPClientError, match="HTTP 400"):
        web.get()
    hostile_code = error_body("<script>", "x").replace(b"&lt;", b"")
    assert awscreds.parse_error_code(hostile_code) == (None, None)


def test_token_file_problems_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the web identity token"):
        awscreds.read_token(tmp_path / "missing")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        awscreds.read_token(tmp_path / "empty")
    (tmp_path / "big").write_bytes(b"a" * (awscreds.MAX_TOKEN_BYTES + 1))
    with pytest.raises(ConfigError, match="larger"):
        awscreds.read_token(tmp_path / "big")


def test_session_names() -> None:
    assert awscreds.default_session_name("app-7d9f-xk2") == "package-injector-app-7d9f-xk2"
    assert awscreds.default_session_name(None) == "package-injector-pod"
    assert len(awscreds.default_session_name("x" * 300)) == 64
    with pytest.raises(ConfigError):
        awscreds.check_session_name("has space")
