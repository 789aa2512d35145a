"""s3:// against endpoints and STS servers that misbehave on purpose: nothing secret may come out.

A scripted server (FaultServer) plays the S3 endpoint or STS; the init container runs as a subprocess,
so stderr and the termination message are exactly what a cluster would show.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from initcontainer import contract
from tests.initcontainer.test_main import base_env, run
from tests.support.faults import FaultServer, Respond
from tests.support.init_process import Run
from tests.support.packages import PKG_A

KEY_ID, SECRET, TOKEN = (
    "AKIAHOSTILETEST00001",
    "hostile/Secret+Key0123456789abcdefghij",
    "SessTok-hostile-0123456789",
)
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJob3N0aWxlIn0.c2lnbmF0dXJlLWhvc3RpbGU"
URL = "s3://packages/app/pkg.tar.gz"
PATH = "/packages/app/pkg.tar.gz"


@pytest.fixture
def srv() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


def env_with_keys(tmp_path: Path, srv: FaultServer, **extra: str) -> dict[str, str]:
    creds = tmp_path / "creds"
    creds.mkdir(exist_ok=True)
    for name, value in (
        ("AWS_ACCESS_KEY_ID", KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AWS_SESSION_TOKEN", TOKEN),
    ):
        (creds / name).write_text(value)
    env = base_env(tmp_path, URL, **extra)
    env[contract.ENV_S3_ENDPOINT] = srv.url("").rstrip("/")
    return env


def clean(result: Run, *also: str) -> None:
    for text in (result.stderr, result.termination):
        for secret in (SECRET, TOKEN, KEY_ID, "Signature=", "Credential=", *also):
            assert secret not in text, (secret, text[-1500:])


def echo_body(code: str, extra: str = "") -> bytes:
    """What a hostile (or very chatty) server might answer: our own secrets quoted back."""
    return (
        f"<Error><Code>{code}</Code><Message>you sent {SECRET} and {TOKEN}</Message>"
        f"<AWSAccessKeyId>{KEY_ID}</AWSAccessKeyId><SignatureProvided>abc</SignatureProvided>"
        f"<StringToSign>AWS4-HMAC-SHA256 Credential={KEY_ID}/...</StringToSign>{extra}</Error>"
    ).encode()


@pytest.mark.parametrize(
    ("status", "code", "words"),
    [
        (403, "SignatureDoesNotMatch", "refused our signature"),
        (403, "AccessDenied", "may not s3:GetObject arn:aws:s3:::packages/app/pkg.tar.gz"),
        (400, "ExpiredToken", "session token was refused"),
        (403, "RequestTimeTooSkewed", "clock"),
        (404, "NoSuchBucket", "there is no bucket packages"),
        (418, "<script>alert(1)</script>", "HTTP 418"),
    ],
)
def test_echoed_secrets_never_reach_the_output(
    srv: FaultServer, tmp_path: Path, status: int, code: str, words: str
) -> None:
    srv.script(PATH, Respond(status=status, body=echo_body(code), content_type="application/xml"))
    result = run(env_with_keys(tmp_path, srv))
    assert result.code == contract.EXIT_HTTP_CLIENT, result.stderr[-2000:]
    assert words in result.reason["message"]
    assert "alert" not in result.termination
    clean(result)
    # The server did get a signed request with the session token: the check above is not vacuous.
    sent = srv.requests_to(PATH)[0]
    assert (sent.header("Authorization") or "").startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/")
    assert sent.header("x-amz-security-token") == TOKEN


def test_wrong_region_names_the_right_one(srv: FaultServer, tmp_path: Path) -> None:
    srv.script(
        PATH,
        Respond(
            status=301, headers={"x-amz-bucket-region": "eu-west-2"}, body=echo_body("PermanentRedirect")
        ),
    )
    result = run(env_with_keys(tmp_path, srv, PACKAGE_S3_REGION="us-west-1"))
    assert result.code == contract.EXIT_HTTP_CLIENT
    assert (
        "the bucket is in region eu-west-2, not us-west-1 (from PACKAGE_S3_REGION)"
        in result.reason["message"]
    )
    clean(result)
    body = echo_body("AuthorizationHeaderMalformed", "<Region>ap-south-1</Region>")
    srv.script(PATH, Respond(status=400, body=body))
    result = run(env_with_keys(tmp_path, srv))
    assert "region ap-south-1, not us-east-1" in result.reason["message"]


def test_a_redirect_to_another_host_gets_no_signature_or_token(srv: FaultServer, tmp_path: Path) -> None:
    other = srv.url("/elsewhere.tgz", host="localhost")
    srv.script(PATH, Respond(status=307, headers={"Location": other}))
    srv.script("/elsewhere.tgz", Respond(body=PKG_A))
    result = run(env_with_keys(tmp_path, srv))
    assert result.code == 0, result.stderr[-2000:]
    (hop,) = srv.requests_to("/elsewhere.tgz")
    assert hop.header("Authorization") is None
    assert hop.header("x-amz-security-token") is None
    assert hop.header("x-amz-date") is None
    clean(result)


def test_huge_error_bodies_are_not_read_whole(srv: FaultServer, tmp_path: Path) -> None:
    srv.script(PATH, Respond(status=403, body=b"<Error><Code>AccessDenied</Code>" + b"x" * 20_000_000))
    result = run(env_with_keys(tmp_path, srv))
    assert result.code == contract.EXIT_HTTP_CLIENT
    # The code sits in the first 16 KiB the refusal reads, so it is still recognised.
    assert "access denied" in result.reason["message"]


def test_server_errors_are_retried_then_transport_class(srv: FaultServer, tmp_path: Path) -> None:
    srv.script(PATH, Respond(status=503, body=echo_body("SlowDown"), headers={"Retry-After": "0"}))
    result = run(env_with_keys(tmp_path, srv, PACKAGE_RETRIES="1"))
    assert result.code == contract.EXIT_TRANSPORT
    assert len(srv.requests_to(PATH)) == 2
    clean(result)


def web_identity_env(tmp_path: Path, srv: FaultServer) -> dict[str, str]:
    token = tmp_path / "token"
    token.write_text(JWT)
    env = base_env(tmp_path, URL, AWS_ROLE_ARN="arn:aws:iam::123456789012:role/reader")
    env["AWS_WEB_IDENTITY_TOKEN_FILE"] = str(token)
    env[contract.ENV_S3_ENDPOINT] = srv.url("").rstrip("/")
    env[contract.ENV_STS_ENDPOINT] = srv.url("/sts")
    return env


def sts_ok(token: str) -> bytes:
    return (
        "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
        f"<AccessKeyId>{KEY_ID}</AccessKeyId><SecretAccessKey>{SECRET}</SecretAccessKey>"
        f"<SessionToken>{token}</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration>"
        "</Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
    ).encode()


def test_sts_echoing_the_web_identity_token_is_scrubbed(srv: FaultServer, tmp_path: Path) -> None:
    body = (
        "<ErrorResponse><Error><Code>AccessDenied</Code>"
        f"<Message>token {JWT} rejected</Message></Error></ErrorResponse>"
    )
    srv.script("/sts", Respond(status=403, body=body.encode()))
    result = run(web_identity_env(tmp_path, srv))
    assert result.code == contract.EXIT_HTTP_CLIENT
    assert "trust policy" in result.reason["message"]
    clean(result, JWT, JWT[:24])


def test_sts_session_token_that_no_header_can_carry(srv: FaultServer, tmp_path: Path) -> None:
    srv.script("/sts", Respond(body=sts_ok(TOKEN + "\r\nX-Injected: 1")))
    result = run(web_identity_env(tmp_path, srv))
    assert result.code == contract.EXIT_TRANSPORT
    assert "no HTTP header can carry" in result.reason["message"]
    assert not srv.requests_to(PATH), "nothing may be sent with a token that would split the header"
    clean(result, JWT)


def test_web_identity_request_and_signed_download(srv: FaultServer, tmp_path: Path) -> None:
    srv.script("/sts", Respond(body=sts_ok(TOKEN)))
    srv.script(PATH, Respond(body=PKG_A))
    result = run(web_identity_env(tmp_path, srv))
    assert result.code == 0, result.stderr[-2000:]
    (sts,) = srv.requests_to("/sts")
    assert sts.method == "POST" and "?" not in sts.path, "the token travels in the body, never in the URL"
    assert srv.requests_to(PATH)[0].header("x-amz-security-token") == TOKEN
    clean(result, JWT)
