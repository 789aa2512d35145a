"""moto's S3/IAM/STS server with request signatures checked: a real S3 implementation we did not write.

    with run_moto(tmp_path, {"packages/app/pkg.tar.gz": data}) as s3:   # or s3.create_bucket, s3.put_object
        s3.reader        # S3Keys of an IAM user allowed s3:GetObject
        s3.url           # http://127.0.0.1:PORT, the endpoint (path-style)

Signature checking: moto checks nothing until told to; `run_moto` creates the
users and the role while it is off, then turns it on through moto's
`/moto-api/reset-auth` with 0 unauthenticated actions left. From then on moto
recomputes every request's SigV4 signature with botocore from the secret it
holds for the access key and answers 403 SignatureDoesNotMatch when ours
differs, InvalidAccessKeyId for an unknown key, InvalidToken for a session
token that does not belong to the key, AccessDenied where IAM policy says no.
`tests/initcontainer/test_s3_server.py` proves each of those.

Where moto differs from AWS (said here so tests can say it too): its STS asks a
signature even of AssumeRoleWithWebIdentity, which AWS does not (the token is the
proof), so `allow_unsigned(1)` lets exactly that one call through; and it does
not verify the web identity token itself. Objects live in memory: each GET
reads the whole object, so large-object tests stay in the low GiB.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import subprocess
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from initcontainer import sigv4
from initcontainer.sigv4 import AwsCredentials
from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[2]
MOTO_SERVER = ROOT / ".venv-s3" / "bin" / "moto_server"
ACCOUNT = "123456789012"
REGION = "us-east-1"
ROLE_NAME = "package-reader"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE_NAME}"
_BOOTSTRAP = AwsCredentials("AKIABOOTSTRAPEXAMPLE", "not-checked-while-auth-is-off")


@dataclass(frozen=True)
class S3Keys:
    access_key_id: str
    secret_access_key: str

    def creds(self) -> AwsCredentials:
        return AwsCredentials(self.access_key_id, self.secret_access_key)


class MotoS3:
    """A running moto server; see the module docstring."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{port}"
        self.admin = S3Keys("", "")
        self.reader = S3Keys("", "")

    # ---- raw signed requests ------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        creds: AwsCredentials,
        service: str = "s3",
        body: bytes | IO[bytes] | Iterable[bytes] = b"",
        length: int | None = None,
        headers: dict[str, str] | None = None,
        base: str | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """Send a request signed with `creds`; response header names come back lowercase."""
        url = (base or self.url) + path
        hdrs = dict(headers or {})
        payload = "UNSIGNED-PAYLOAD" if not isinstance(body, bytes) else hashlib.sha256(body).hexdigest()
        hdrs.update(
            sigv4.sign(method, url, hdrs, creds, region=REGION, service=service, payload_hash=payload)
        )
        if length is not None:
            hdrs["Content-Length"] = str(length)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def _query(self, service: str, params: dict[str, str], creds: AwsCredentials) -> bytes:
        body = urllib.parse.urlencode(params).encode()
        status, _, data = self.request(
            "POST",
            "/",
            creds=creds,
            service=service,
            body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        if status != 200:
            raise RuntimeError(f"moto {service} {params.get('Action')}: HTTP {status} {data[:300]!r}")
        return data

    def _moto_api(self, path: str, body: bytes) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("POST", path, body=body)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200, resp.status
        finally:
            conn.close()

    def allow_unsigned(self, actions: int) -> None:
        """Let the next `actions` actions through unchecked, then check signatures again."""
        self._moto_api("/moto-api/reset-auth", str(actions).encode())

    # ---- setup --------------------------------------------------------------------

    def _bootstrap(self) -> None:
        """Users, keys and the role, while moto checks nothing; then switch checking on."""
        anyone = _BOOTSTRAP
        self.admin = self._user("package-admin", {"Effect": "Allow", "Action": "*", "Resource": "*"}, anyone)
        self.reader = self._user(
            "package-reader",
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::*/*"},
            anyone,
        )
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/package-admin", "Federated": "*"},
                    "Action": ["sts:AssumeRole", "sts:AssumeRoleWithWebIdentity"],
                }
            ],
        }
        self._query(
            "iam",
            {
                "Action": "CreateRole",
                "Version": "2010-05-08",
                "RoleName": ROLE_NAME,
                "AssumeRolePolicyDocument": json.dumps(trust),
            },
            anyone,
        )
        self._query(
            "iam",
            {
                "Action": "PutRolePolicy",
                "Version": "2010-05-08",
                "RoleName": ROLE_NAME,
                "PolicyName": "read",
                "PolicyDocument": json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
                    }
                ),
            },
            anyone,
        )
        self.allow_unsigned(0)

    def _user(self, name: str, statement: dict[str, object], creds: AwsCredentials) -> S3Keys:
        version = "2010-05-08"
        self._query("iam", {"Action": "CreateUser", "Version": version, "UserName": name}, creds)
        self._query(
            "iam",
            {
                "Action": "PutUserPolicy",
                "Version": version,
                "UserName": name,
                "PolicyName": "p",
                "PolicyDocument": json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
            },
            creds,
        )
        data = self._query("iam", {"Action": "CreateAccessKey", "Version": version, "UserName": name}, creds)
        return S3Keys(_xml_text(data, "AccessKeyId"), _xml_text(data, "SecretAccessKey"))

    # ---- S3 helpers (signed with the admin's keys) -----------------------------------

    def create_bucket(self, bucket: str) -> None:
        status, _, data = self.request("PUT", f"/{bucket}", creds=self.admin.creds())
        assert status == 200, (status, data[:300])

    def put_object(self, bucket: str, key: str, body: bytes | Path | Iterable[bytes], length: int = 0) -> str:
        """Upload; return the ETag. A Path is streamed from disk, an iterable of `length` bytes as made."""
        path = f"/{bucket}/{urllib.parse.quote(key, safe='/~')}"
        if not isinstance(body, (bytes, Path)):
            status, headers, data = self.request(
                "PUT", path, creds=self.admin.creds(), body=body, length=length
            )
        elif isinstance(body, Path):
            with open(body, "rb") as f:
                status, headers, data = self.request(
                    "PUT", path, creds=self.admin.creds(), body=f, length=body.stat().st_size
                )
        else:
            status, headers, data = self.request("PUT", path, creds=self.admin.creds(), body=body)
        assert status == 200, (status, data[:300])
        return headers.get("etag", "")

    def assume_role(self) -> AwsCredentials:
        """Temporary credentials (with a session token) for the role, through a signed sts:AssumeRole."""
        data = self._query(
            "sts",
            {
                "Action": "AssumeRole",
                "Version": "2011-06-15",
                "RoleArn": ROLE_ARN,
                "RoleSessionName": "test",
            },
            self.admin.creds(),
        )
        return AwsCredentials(
            _xml_text(data, "AccessKeyId"),
            _xml_text(data, "SecretAccessKey"),
            session_token=_xml_text(data, "SessionToken"),
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _xml_text(data: bytes, name: str) -> str:
    m = re.search(rf"<{name}>([^<]*)</{name}>".encode(), data)
    if not m:
        raise RuntimeError(f"no {name} in moto's answer: {data[:300]!r}")
    return m.group(1).decode()


def moto_available() -> bool:
    return os.access(MOTO_SERVER, os.X_OK)


@contextlib.contextmanager
def run_moto(workdir: Path, objects: Mapping[str, bytes] | None = None) -> Iterator[MotoS3]:
    """Start moto on 127.0.0.1, create users and role, switch signature checking on; stop at exit.

    `objects` ("BUCKET/KEY" -> body) are stored first, their buckets created.
    """
    if not moto_available():
        raise RuntimeError(f"{MOTO_SERVER} is missing: run `make setup` (scripts/setup.sh installs it)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = workdir / "moto.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
    env["MOTO_ALLOW_NONEXISTENT_REGION"] = "false"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = MotoS3(proc, port, log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited {proc.returncode}: {server.log()[-2000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/moto-api/")
                ok = conn.getresponse().status == 200
                conn.close()
                if ok:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("moto_server did not answer within 60 s")
            time.sleep(0.2)
        server._bootstrap()
        for bucket in dict.fromkeys(path.split("/", 1)[0] for path in objects or {}):
            server.create_bucket(bucket)
        for path, body in (objects or {}).items():
            server.put_object(*path.split("/", 1), body)
        yield server
    finally:
        server.stop()
