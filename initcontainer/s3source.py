"""s3:// as a package source: one object, streamed like any https:// package, signed per request.

The object is one HTTP resource, so the download machinery is the same as for
https:// (Range resume, retries, timeouts, limits, digest, atomic promote);
what S3 adds lives in `S3Auth`, the transport's per-request hook:

- every request to the object's origin is signed with SigV4 (each retry and each
  resume signs anew, with its own Range header and a fresh date);
- a resume carries `If-Match` with the ETag as well as `If-Range`: S3-compatible
  stores differ in honouring If-Range, and If-Match turns a changed object into a
  412, which starts the download over instead of splicing two versions;
- S3's XML error codes become messages that say what to fix
  (SignatureDoesNotMatch: the secret is wrong; a region redirect: which region).

Nothing secret is logged: the Authorization header, the session token and the
signature exist only in the request headers; the Secret's key id is not quoted.
"""

from __future__ import annotations

import http.client

from initcontainer import contract, sigv4
from initcontainer.awscreds import MAX_RESPONSE_BYTES, StaticSource, WebIdentity, parse_error_code
from initcontainer.config import Config
from initcontainer.download import PackageStream
from initcontainer.errors import HTTPClientError, PackageError, RestartDownload, TransportError
from initcontainer.log import Logger, redact_url
from initcontainer.s3 import S3Config
from initcontainer.transport import Auth, Origin, Request, Transient, Transport

MAX_ERROR_BYTES = 16 * 1024
"""S3 error documents are small; a larger body is not one."""


class S3Auth(Auth):
    """Signs requests to the object's origin; explains S3's refusals."""

    def __init__(self, s3: S3Config, source: StaticSource | WebIdentity | None) -> None:
        self.s3 = s3
        self.source = source
        self.origin = Origin.of(s3.object_url)
        self.where = str(s3.location)

    @property
    def configured(self) -> bool:
        return self.source is not None

    def sign(self, request: Request) -> bool:
        if Origin.of(request.url) != self.origin:
            return False  # a redirect elsewhere gets neither signature nor token
        validator = request.headers.get("If-Range", "")
        if validator.startswith('"'):
            request.headers["If-Match"] = validator
        if self.source is None:
            return False
        try:
            creds = self.source.get()
        except PackageError as exc:
            if exc.retryable:
                raise Transient(exc.message) from None
            raise
        request.headers.update(
            sigv4.sign(request.method, request.url, request.headers, creds, region=self.s3.region)
        )
        return True

    def refused(self, request: Request, response: http.client.HTTPResponse) -> Exception | None:
        status = response.status
        if status == 412 and "If-Match" in request.headers:
            return RestartDownload(
                f"{self.where} changed during the download (its ETag no longer matches); starting over"
            )
        try:
            body = response.read(MAX_ERROR_BYTES)
        except (OSError, http.client.HTTPException):
            body = b""
        code, _ = parse_error_code(body)
        region = response.getheader("x-amz-bucket-region") or _region_in(body)
        return self._explain(status, code, region)

    def _explain(self, status: int, code: str | None, region: str | None) -> Exception | None:
        s3, where = self.s3, self.where
        secret = f"the Secret mounted at {contract.ENV_CREDENTIALS_DIR}"
        if (
            region
            and region != s3.region
            and (status in (301, 307) or code == "AuthorizationHeaderMalformed")
        ):
            return HTTPClientError(
                f"{where}: the bucket is in region {region}, not {s3.region} (from {s3.region_source}); "
                f"set {contract.CREDENTIAL_AWS_REGION} in {secret} or the cluster's s3 region"
            )
        said = f"S3 said {code}" if code else f"HTTP {status}"
        if code == "SignatureDoesNotMatch":
            return HTTPClientError(
                f"{where}: the server refused our signature ({said}); "
                f"{contract.CREDENTIAL_AWS_SECRET_ACCESS_KEY} in {secret} does not belong to its "
                f"{contract.CREDENTIAL_AWS_ACCESS_KEY_ID}"
            )
        if code in ("InvalidAccessKeyId", "InvalidClientTokenId"):
            return HTTPClientError(
                f"{where}: the server does not know the access key ({said}); check "
                f"{contract.CREDENTIAL_AWS_ACCESS_KEY_ID} in {secret}, and that it belongs to this endpoint "
                f"({redact_url(s3.endpoint) if s3.endpoint else 'AWS'})"
            )
        if code in ("InvalidToken", "ExpiredToken", "TokenRefreshRequired"):
            fix = (
                "the role's credentials expired or were revoked"
                if s3.web_identity is not None
                else f"renew {contract.CREDENTIAL_AWS_SESSION_TOKEN} in {secret} (they expire)"
            )
            return HTTPClientError(f"{where}: the session token was refused ({said}); {fix}")
        if code == "RequestTimeTooSkewed":
            return HTTPClientError(
                f"{where}: this node's clock is too far from the server's ({said}); fix the node's time sync"
            )
        if code == "NoSuchKey" or (status == 404 and code is None):
            return HTTPClientError(f"{where} does not exist ({said}); check the key in {contract.ENV_URL}")
        if code == "NoSuchBucket":
            place = redact_url(s3.endpoint) if s3.endpoint else f"AWS region {s3.region}"
            return HTTPClientError(f"{where}: there is no bucket {s3.location.bucket} at {place} ({said})")
        if code == "AccessDenied" or status == 403:
            who = {
                "anonymous": "anonymous requests (no credentials)",
                "aws-web-identity": f"the role {s3.web_identity.role_arn if s3.web_identity else ''}",
            }.get(s3.auth_kind, f"the credentials in {secret}")
            return HTTPClientError(
                f"{where}: access denied ({said}); {who} may not s3:GetObject "
                f"arn:aws:s3:::{s3.location.bucket}/{s3.location.key} (IAM policy, bucket policy or KMS key)"
            )
        if status >= 500 or status in (408, 429) or code in ("SlowDown", "RequestTimeout"):
            return None  # the transport's retry with backoff
        if code is not None:
            return HTTPClientError(f"{where}: HTTP {status} ({said})")
        return None


def _region_in(body: bytes) -> str | None:
    """<Region> of an AuthorizationHeaderMalformed or PermanentRedirect error, when it looks like one."""
    start = body.find(b"<Region>")
    end = body.find(b"</Region>")
    if start < 0 or end < start:
        return None
    region = body[start + 8 : end].decode("ascii", "replace").strip()
    return region if region.replace("-", "").isalnum() and len(region) <= 32 else None


def open_s3_object(cfg: Config, log: Logger, *, deadline: float | None = None) -> PackageStream:
    """Start downloading cfg.s3's object; configuration and first-answer errors are raised here."""
    s3 = cfg.s3
    if s3 is None:
        raise TransportError("not an s3:// package")
    source: StaticSource | WebIdentity | None = None
    if s3.static is not None:
        source = StaticSource(s3.static)
    elif s3.web_identity is not None:
        sts = Transport(cfg, log, deadline)
        source = WebIdentity(
            s3.web_identity, lambda url, body: sts.post_form(url, body, limit=MAX_RESPONSE_BYTES)
        )
    log.info(
        "s3_source",
        f"{s3.location} at {redact_url(s3.object_url)} (region {s3.region}, credentials: {s3.auth_kind})",
        region=s3.region,
        regionSource=s3.region_source,
        endpoint=redact_url(s3.endpoint) if s3.endpoint else None,
        auth=s3.auth_kind,
    )
    transport = Transport(cfg, log, deadline, auth=S3Auth(s3, source))
    return PackageStream(cfg, log, deadline=deadline, url=s3.object_url, transport=transport).open()
