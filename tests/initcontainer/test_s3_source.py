"""s3:// packages end to end: the init container as the kubelet runs it, against moto with signatures checked.

Every failing run is also checked for leaks: no secret key, session token, web
identity token or signature in stderr or the termination message.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from initcontainer import contract
from tests.initcontainer.test_main import base_env, run
from tests.support.faultproxy import FaultProxy
from tests.support.init_process import Run
from tests.support.nginx import NginxServer, run_nginx
from tests.support.packages import PKG_A, PKG_B, SHA_A, SHA_B, assert_package_a, leftovers
from tests.support.s3server import ROLE_ARN, MotoS3, run_moto

BUCKET = "packages"
KEY = "releases/app 1.0/pkg.tar.gz"
URL = f"s3://{BUCKET}/releases/app%201.0/pkg.tar.gz"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGVmYXVsdDphcHAifQ.c2lnbmF0dXJlLXRlc3Q"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    with run_moto(tmp_path_factory.mktemp("moto"), {f"{BUCKET}/{KEY}": PKG_A}) as server:
        yield server


@pytest.fixture(scope="module")
def tls_front(s3: MotoS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxServer]:
    """nginx terminating TLS (certificate from a private CA) in front of moto, which speaks plain HTTP."""
    empty = tmp_path_factory.mktemp("empty-root")
    with run_nginx(empty, tmp_path_factory.mktemp("nginx-s3"), tls=True, proxy_to=s3.port) as srv:
        yield srv


def secret(tmp_path: Path, **files: str) -> None:
    creds = tmp_path / "creds"
    creds.mkdir(exist_ok=True)
    for name, value in files.items():
        (creds / name).write_text(value + "\n")


def s3_env(tmp_path: Path, endpoint: str, **extra: str) -> dict[str, str]:
    env = base_env(tmp_path, URL, **extra)
    env[contract.ENV_S3_ENDPOINT] = endpoint
    return env


def assert_no_leaks(result: Run, *secrets: str) -> None:
    for text in (result.stderr, result.termination):
        for value in secrets:
            assert value not in text
        assert not re.search(r"Signature=|AWS4-HMAC-SHA256|Credential=", text), text[-2000:]
        assert "x-amz-security-token" not in text.lower()


def test_good_keys_install_and_a_pinned_rerun_is_a_no_op(s3: MotoS3, tmp_path: Path) -> None:
    secret(
        tmp_path, AWS_ACCESS_KEY_ID=s3.reader.access_key_id, AWS_SECRET_ACCESS_KEY=s3.reader.secret_access_key
    )
    env = s3_env(tmp_path, s3.url, PACKAGE_SHA256=SHA_A)
    result = run(env)
    assert result.code == 0, result.stderr[-3000:]
    assert_package_a(tmp_path / "dest")
    marker = json.loads((tmp_path / "dest" / contract.MARKER_NAME).read_text())
    assert marker["url"] == URL
    start = next(json.loads(x) for x in result.stderr.splitlines() if '"event":"start"' in x)
    assert start["auth"] == "aws-keys"
    assert_no_leaks(result, s3.reader.secret_access_key)
    again = run(env)
    assert again.code == 0
    assert "already_installed" in again.events()


def test_wrong_secret_exit_4_with_a_clear_message(s3: MotoS3, tmp_path: Path) -> None:
    wrong = s3.reader.secret_access_key[::-1]
    secret(tmp_path, AWS_ACCESS_KEY_ID=s3.reader.access_key_id, AWS_SECRET_ACCESS_KEY=wrong)
    result = run(s3_env(tmp_path, s3.url))
    assert result.code == contract.EXIT_HTTP_CLIENT, result.stderr[-3000:]
    reason = result.reason
    assert reason["reason"] == "HTTPClientError"
    assert "SignatureDoesNotMatch" in reason["message"]
    assert "AWS_SECRET_ACCESS_KEY" in reason["message"]
    assert not (tmp_path / "dest").exists() or not leftovers(tmp_path / "dest")
    assert_no_leaks(result, wrong, s3.reader.secret_access_key, s3.reader.access_key_id)


def test_unknown_key_id(s3: MotoS3, tmp_path: Path) -> None:
    secret(tmp_path, AWS_ACCESS_KEY_ID="AKIAUNKNOWNEXAMPLE00", AWS_SECRET_ACCESS_KEY="whatever-secret")
    result = run(s3_env(tmp_path, s3.url))
    assert result.code == contract.EXIT_HTTP_CLIENT
    assert "InvalidAccessKeyId" in result.reason["message"]
    assert_no_leaks(result, "whatever-secret", "AKIAUNKNOWNEXAMPLE00")


def test_missing_object(s3: MotoS3, tmp_path: Path) -> None:
    secret(
        tmp_path, AWS_ACCESS_KEY_ID=s3.reader.access_key_id, AWS_SECRET_ACCESS_KEY=s3.reader.secret_access_key
    )
    env = s3_env(tmp_path, s3.url)
    env[contract.ENV_URL] = f"s3://{BUCKET}/releases/nope.tar.gz"
    result = run(env)
    assert result.code == contract.EXIT_HTTP_CLIENT
    assert "NoSuchKey" in result.reason["message"]
    assert f"s3://{BUCKET}/releases/nope.tar.gz does not exist" in result.reason["message"]
    assert_no_leaks(result, s3.reader.secret_access_key)


def test_session_token_good_and_forged(s3: MotoS3, tmp_path: Path) -> None:
    temp = s3.assume_role()
    assert temp.session_token
    secret(
        tmp_path,
        AWS_ACCESS_KEY_ID=temp.access_key_id,
        AWS_SECRET_ACCESS_KEY=temp.secret_access_key,
        AWS_SESSION_TOKEN=temp.session_token,
    )
    result = run(s3_env(tmp_path, s3.url))
    assert result.code == 0, result.stderr[-3000:]
    assert_package_a(tmp_path / "dest")
    assert_no_leaks(result, temp.secret_access_key, temp.session_token)
    forged = temp.session_token[:-8] + "AAAAAAAA"
    secret(tmp_path, AWS_SESSION_TOKEN=forged)
    result = run(s3_env(tmp_path, s3.url))
    assert result.code == contract.EXIT_HTTP_CLIENT
    assert "session token was refused" in result.reason["message"]
    assert_no_leaks(result, temp.secret_access_key, temp.session_token, forged)


def test_web_identity_through_sts(s3: MotoS3, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(JWT)
    env = s3_env(
        tmp_path,
        s3.url,
        AWS_ROLE_ARN=ROLE_ARN,
        AWS_WEB_IDENTITY_TOKEN_FILE=str(token),
        PACKAGE_STS_ENDPOINT=s3.url,
    )
    # moto's STS wants a signature on AssumeRoleWithWebIdentity, AWS's does not: let that one call through.
    s3.allow_unsigned(1)
    result = run(env)
    assert result.code == 0, result.stderr[-3000:]
    assert_package_a(tmp_path / "dest")
    start = next(json.loads(x) for x in result.stderr.splitlines() if '"event":"start"' in x)
    assert start["auth"] == "aws-web-identity"
    assert_no_leaks(result, JWT, JWT[:20])


def test_private_ca_endpoint_over_tls(s3: MotoS3, tls_front: NginxServer, tmp_path: Path) -> None:
    files = {
        "AWS_ACCESS_KEY_ID": s3.reader.access_key_id,
        "AWS_SECRET_ACCESS_KEY": s3.reader.secret_access_key,
    }
    endpoint = tls_front.https_base_url
    secret(tmp_path, AWS_ENDPOINT_URL_S3=endpoint, **files)
    env = base_env(tmp_path, URL, PACKAGE_ALLOW_HTTP="false")
    result = run(env)
    assert result.code == contract.EXIT_TRANSPORT, result.stderr[-3000:]
    assert "not trusted" in result.reason["message"]
    (tmp_path / "creds" / "ca.crt").write_text(tls_front.ca_pem)
    result = run(env)
    assert result.code == 0, result.stderr[-3000:]
    assert_package_a(tmp_path / "dest")
    assert_no_leaks(result, s3.reader.secret_access_key)


def test_resume_after_a_dropped_connection_is_signed_and_guarded(s3: MotoS3, tmp_path: Path) -> None:
    secret(
        tmp_path, AWS_ACCESS_KEY_ID=s3.reader.access_key_id, AWS_SECRET_ACCESS_KEY=s3.reader.secret_access_key
    )
    # A clean close half-way (a RST could make the kernel drop all of a 2 MB body before it is read).
    with FaultProxy(s3.port, cut_after=[len(PKG_A) // 2], reset=False) as proxy:
        result = run(s3_env(tmp_path, f"http://127.0.0.1:{proxy.port}", PACKAGE_SHA256=SHA_A))
    assert result.code == 0, result.stderr[-3000:]
    assert proxy.cut == 1 and proxy.connections == 2
    assert "download_resumed" in result.events()
    assert_package_a(tmp_path / "dest")
    marker = json.loads((tmp_path / "dest" / contract.MARKER_NAME).read_text())
    assert marker["sha256"] == SHA_A


def test_object_replaced_during_the_download_starts_over(s3: MotoS3, tmp_path: Path) -> None:
    # The object changes between the cut and the resume: If-Match makes moto answer 412 (it ignores
    # If-Range), and the download starts over from byte 0 instead of splicing two versions.

    key = "replaced/pkg.tar.gz"
    s3.put_object(BUCKET, key, PKG_A)
    secret(
        tmp_path, AWS_ACCESS_KEY_ID=s3.reader.access_key_id, AWS_SECRET_ACCESS_KEY=s3.reader.secret_access_key
    )
    env = s3_env(tmp_path, "", PACKAGE_SHA256=SHA_B)
    env[contract.ENV_URL] = f"s3://{BUCKET}/{key}"

    class Swap(FaultProxy):
        def _serve(self, client, limit):  # type: ignore[no-untyped-def]
            if self.connections == 2:
                s3.put_object(BUCKET, key, PKG_B)
            super()._serve(client, limit)

    with Swap(s3.port, cut_after=[len(PKG_A) // 2], reset=False) as proxy:
        env[contract.ENV_S3_ENDPOINT] = f"http://127.0.0.1:{proxy.port}"
        result = run(env)
    assert result.code == 0, result.stderr[-3000:]
    assert "restart" in result.events()
    assert "its ETag no longer matches" in result.stderr
    marker = json.loads((tmp_path / "dest" / contract.MARKER_NAME).read_text())
    assert marker["sha256"] == SHA_B


LARGE_BYTES = int(os.environ.get("S3_TEST_LARGE_OBJECT_BYTES", str(1024**3)))
"""Size of the member of the large-object test: 1 GiB in CI; the issue's 5 GB was run by hand with
S3_TEST_LARGE_OBJECT_BYTES=5368709120 (moto holds each object in memory, so CI stays at 1 GiB)."""


def large_tar(size: int) -> tuple[list[bytes], int, str]:
    """A plain tar with one `size`-byte member of incompressible data, as a list of blocks (one block
    object repeated, so memory stays small), its length and SHA-256."""
    block = os.urandom(1 << 20)
    info = tarfile.TarInfo("big.bin")
    info.size = size
    info.mode = 0o644
    head = info.tobuf(format=tarfile.GNU_FORMAT)
    blocks = [head] + [block] * (size >> 20)
    if size % (1 << 20):
        blocks.append(block[: size % (1 << 20)])
    blocks.append(b"\0" * ((512 - size % 512) % 512) + b"\0" * 1024)
    digest = hashlib.sha256()
    for b in blocks:
        digest.update(b)
    return blocks, sum(map(len, blocks)), digest.hexdigest()


def test_large_object_resumes_after_a_reset_at_half_way(s3: MotoS3, tmp_path: Path) -> None:
    blocks, length, sha = large_tar(LARGE_BYTES)
    s3.put_object(BUCKET, "large/big.tar", iter(blocks), length=length)
    del blocks
    secret(
        tmp_path, AWS_ACCESS_KEY_ID=s3.reader.access_key_id, AWS_SECRET_ACCESS_KEY=s3.reader.secret_access_key
    )
    with FaultProxy(s3.port, cut_after=[length // 2]) as proxy:
        env = s3_env(
            tmp_path,
            f"http://127.0.0.1:{proxy.port}",
            PACKAGE_SHA256=sha,
            PACKAGE_MAX_DOWNLOAD_BYTES="16Gi",
            PACKAGE_MAX_EXTRACTED_BYTES="16Gi",
            PACKAGE_READ_TIMEOUT="120",
        )
        env[contract.ENV_URL] = f"s3://{BUCKET}/large/big.tar"
        result = run(env, timeout=1800)
    assert result.code == 0, result.stderr[-3000:]
    assert (proxy.cut, proxy.connections) == (1, 2)
    resumed = [json.loads(x) for x in result.stderr.splitlines() if '"event":"download_resumed"' in x]
    # A RST drops what the client had not read yet: at most its socket buffer and our queue.
    assert len(resumed) == 1 and length // 2 - 64 * 1024**2 < resumed[0]["offset"] <= length // 2
    assert "Connection reset" in resumed[0]["msg"]
    assert (tmp_path / "dest" / "big.bin").stat().st_size == LARGE_BYTES
    marker = json.loads((tmp_path / "dest" / contract.MARKER_NAME).read_text())
    assert (marker["sha256"], marker["size"]) == (sha, length)
