"""Our SigV4 signatures against a real S3 implementation (moto) that recomputes and checks them.

The wrong-secret, unknown-key and wrong-token cases prove the server really
checks: if it did not, they would get 200 like the good ones.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from initcontainer.awscreds import WebIdentity, WebIdentityConfig
from initcontainer.sigv4 import AwsCredentials
from tests.support.s3server import ROLE_ARN, MotoS3, run_moto

BODY = b"package bytes\n" * 100
KEYS = ["app/pkg.tar.gz", "dir with space/p+q=r&s.tgz", "unicod\u00e9/\u1234.tar", "a//b/./c/../d"]


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    with run_moto(tmp_path_factory.mktemp("moto"), {f"packages/{key}": BODY for key in KEYS}) as server:
        yield server


def path(key: str) -> str:
    return "/packages/" + urllib.parse.quote(key, safe="/~")


@pytest.mark.parametrize("key", KEYS)
def test_good_keys_read_every_kind_of_key(s3: MotoS3, key: str) -> None:
    status, _, data = s3.request("GET", path(key), creds=s3.reader.creds())
    assert (status, data) == (200, BODY)


def test_range_and_if_match_are_signed_and_honoured(s3: MotoS3) -> None:
    status, headers, _ = s3.request("GET", path(KEYS[0]), creds=s3.reader.creds())
    etag = headers["etag"]
    status, headers, data = s3.request(
        "GET",
        path(KEYS[0]),
        creds=s3.reader.creds(),
        headers={"Range": "bytes=10-", "If-Range": etag, "If-Match": etag},
    )
    assert status == 206
    assert data == BODY[10:]
    assert headers["content-range"] == f"bytes 10-{len(BODY) - 1}/{len(BODY)}"
    # moto ignores If-Range; If-Match (which the S3 source sends with it) refuses a changed object.
    status, _, data = s3.request(
        "GET", path(KEYS[0]), creds=s3.reader.creds(), headers={"Range": "bytes=10-", "If-Match": '"changed"'}
    )
    assert status == 412
    assert b"PreconditionFailed" in data


def test_wrong_secret_is_refused(s3: MotoS3) -> None:
    secret = s3.reader.secret_access_key
    # Another last character, whatever the random secret ends with (one in ~60 ended in "x": no change).
    bad = AwsCredentials(s3.reader.access_key_id, secret[:-1] + ("y" if secret.endswith("x") else "x"))
    status, _, data = s3.request("GET", path(KEYS[0]), creds=bad)
    assert status == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in data


def test_a_header_changed_after_signing_is_refused(s3: MotoS3) -> None:
    # Sign a Range, then send another: what a tampering proxy would do.
    from initcontainer import sigv4

    url = s3.url + path(KEYS[0])
    signed = sigv4.sign("GET", url, {"Range": "bytes=0-9"}, s3.reader.creds(), region="us-east-1")
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", s3.port, timeout=30)
    conn.request("GET", path(KEYS[0]), headers={**signed, "Range": "bytes=0-99"})
    resp = conn.getresponse()
    assert resp.status == 403
    assert b"SignatureDoesNotMatch" in resp.read()
    conn.close()


def test_unknown_access_key_is_refused(s3: MotoS3) -> None:
    status, _, data = s3.request("GET", path(KEYS[0]), creds=AwsCredentials("AKIAUNKNOWNEXAMPLE00", "x"))
    assert status == 403
    assert b"<Code>InvalidAccessKeyId</Code>" in data


def test_missing_object_is_404_no_such_key(s3: MotoS3) -> None:
    status, _, data = s3.request("GET", path("nope.tar"), creds=s3.reader.creds())
    assert status == 404
    assert b"<Code>NoSuchKey</Code>" in data


def test_session_token_must_belong_to_the_key(s3: MotoS3) -> None:
    temp = s3.assume_role()
    assert temp.session_token
    status, _, data = s3.request("GET", path(KEYS[0]), creds=temp)
    assert (status, data) == (200, BODY)
    forged = AwsCredentials(
        temp.access_key_id, temp.secret_access_key, session_token=temp.session_token[::-1]
    )
    status, _, data = s3.request("GET", path(KEYS[0]), creds=forged)
    assert status == 400
    assert b"<Code>InvalidToken</Code>" in data


def test_web_identity_credentials_sign_for_s3(s3: MotoS3, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGVmYXVsdDphcHAifQ.c2ln\n"
    )
    import http.client

    def post(url: str, body: bytes) -> tuple[int, bytes]:
        # Test-side POST; the init container's own goes through its transport (test_s3_source.py).
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=30)
        conn.request(
            "POST",
            parts.path or "/",
            body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        resp = conn.getresponse()
        return resp.status, resp.read()

    # moto's STS wants a signature even here (AWS does not): let this one call through unsigned.
    s3.allow_unsigned(1)
    web = WebIdentity(WebIdentityConfig(ROLE_ARN, token_file, "test-session", s3.url + "/"), post)
    creds = web.get()
    assert creds.access_key_id.startswith("ASIA")
    assert creds.session_token and creds.expires_at
    status, _, data = s3.request("GET", path(KEYS[0]), creds=creds)
    assert (status, data) == (200, BODY)
    assert web.get() is creds  # cached while valid
