"""The registry client: manifests and blobs over the distribution API, with registry auth.

Every request goes through `transport.Transport`, so redirects, proxies, TLS,
timeouts and status classes are the same as for https:// packages. Registry
credentials go through `RegistryAuth`, the transport's per-request hook: it signs
a request only when its origin (scheme, host, port) is the registry's, so a blob
redirected to object storage (a pre-signed URL on another host) never sees the
registry's token or password.

Manifests are small (at most 4 MiB): read whole, hashed, compared with the pinned
digest (or the registry's `Docker-Content-Digest` for a tag) before being parsed.
Blobs stream through `download.PackageStream` with their digest as the expected
SHA-256, so a blob that does not hash to its descriptor fails at its end, before
anything it produced can become visible.
"""

from __future__ import annotations

import hashlib
import http.client
import threading
import time
import urllib.parse
from dataclasses import dataclass

from initcontainer import contract
from initcontainer.config import Config
from initcontainer.download import PackageStream
from initcontainer.errors import HTTPClientError, IntegrityError, TransportError
from initcontainer.log import Logger
from initcontainer.oci import auth as oci_auth
from initcontainer.oci import manifest as oci_manifest
from initcontainer.oci.keyring import RegistryCredential
from initcontainer.transport import Auth, Origin, OriginAuth, Request, Retry, Transient, Transport, describe


@dataclass(frozen=True)
class FetchedManifest:
    """A manifest's verified bytes, its digest and the Content-Type the registry gave."""

    body: bytes
    digest: str
    content_type: str


class RegistryAuth(Auth):
    """Registry credentials for one repository: Basic, or Bearer tokens from the realm the registry names.

    `sign` adds `Authorization` only to requests for the registry's own origin.
    `challenge` handles the 401 the registry answers when it wants credentials:
    it fetches a token (anonymous, or with each matching credential in turn until
    the token endpoint accepts one), or switches to Basic, then lets the transport
    send the request once more. Tokens are renewed before they expire.
    """

    def __init__(
        self,
        cfg: Config,
        log: Logger,
        deadline: float | None,
        registry_url: str,
        repository: str,
        candidates: list[RegistryCredential],
        stop: threading.Event,
        static_token: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.log = log
        self.deadline = deadline
        self.origin = Origin.of(registry_url)
        self.scheme = self.origin.scheme
        self.scope = oci_auth.pull_scope(repository)
        self.candidates = candidates
        self.stop = stop
        self._lock = threading.Lock()
        self._token: oci_auth.Token | None = None
        self._challenge: oci_auth.Challenge | None = None
        self._credential: RegistryCredential | None = None
        self._basic: str | None = None
        self._static = f"Bearer {static_token}" if static_token is not None else None
        self.token_requests = 0

    @property
    def configured(self) -> bool:
        return bool(self.candidates) or self._static is not None

    def sign(self, request: Request) -> bool:
        if Origin.of(request.url) != self.origin:
            return False  # object storage behind a blob redirect: never our credentials
        if self._static is not None:
            request.headers["Authorization"] = self._static
            return True
        with self._lock:
            if self._token is not None and not self._token.fresh(time.monotonic()):
                assert self._challenge is not None
                self.log.info("token_renew", "registry token about to expire; fetching a new one")
                self._token = self._fetch_token(self._challenge, [self._credential])
            header = self._token.authorization if self._token is not None else self._basic
        if header is None:
            return False
        request.headers["Authorization"] = header
        return True

    def challenge(self, request: Request, response: http.client.HTTPResponse) -> bool:
        if Origin.of(request.url) != self.origin or self._static is not None:
            return False
        challenges = oci_auth.parse_challenges(response.getheader("WWW-Authenticate") or "")
        by_scheme = {c.scheme: c for c in challenges}
        with self._lock:
            if "bearer" in by_scheme:
                challenge = by_scheme["bearer"]
                if self._token is not None and self._challenge == challenge:
                    return False  # a fresh token for the same challenge was refused: see `refused`
                self._challenge = challenge
                # As the kubelet: the matching credentials in turn, anonymous only when none match.
                self._token = self._fetch_token(challenge, list(self.candidates) or [None])
                return True
            if "basic" in by_scheme:
                if self._basic is not None:
                    return False
                for credential in self.candidates:
                    header = oci_auth.basic_authorization(credential)
                    if header is not None:
                        self._basic, self._credential = header, credential
                        return True
                raise HTTPClientError(self._no_credentials_message("Basic"))
        return False

    def unauthorized(self, sent_auth: bool) -> str | None:
        """The registry's final 401, worded for registries (the transport's wording is for URLs)."""
        if self._token is not None and self._credential is not None:
            return (
                f"the registry refused the token issued for {self._credential.source}: "
                f"that account lacks pull access to {self.scope}"
            )
        if self._basic is not None and self._credential is not None:
            return f"the registry refused the Basic credentials of {self._credential.source}"
        if self._static is not None:
            return f"the registry refused the token in {contract.ENV_CREDENTIALS_DIR}"
        return self._no_credentials_message("token" if self._token is not None else "")

    def _no_credentials_message(self, kind: str) -> str:
        return (
            f"the registry {self.origin.host}:{self.origin.port} requires {kind + ' ' if kind else ''}"
            "authentication and no "
            f"credentials match it: put a .dockerconfigjson with an entry for it (or username and password) "
            f"in the Secret mounted at {contract.ENV_CREDENTIALS_DIR}, or list the pull secret in the Pod's "
            "imagePullSecrets"
        )

    def _fetch_token(
        self, challenge: oci_auth.Challenge, candidates: list[RegistryCredential | None]
    ) -> oci_auth.Token:
        """Ask the realm for a pull token with each credential in turn (None = anonymous)."""
        refused: list[str] = []
        for credential in candidates:
            if credential is not None and credential.username is None:
                refused.append(f"{credential.source}: identity tokens are not supported (use a password)")
                continue
            req = oci_auth.token_request(challenge, self.scope, credential, self.scheme, self.origin.host)
            who = credential.source if credential is not None else "anonymous"
            try:
                body = self._get_token(req)
            except HTTPClientError as exc:  # 401/403/404 from the realm: try the next credential
                refused.append(f"{who}: {exc.message}")
                continue
            self._credential = credential
            return oci_auth.parse_token_response(body, time.monotonic())
        realm = oci_auth.check_realm(challenge.realm, self.scheme, self.origin.host)
        where = urllib.parse.urlsplit(realm).netloc
        if not self.candidates:
            raise HTTPClientError(self._no_credentials_message("token") + f" (token endpoint {where})")
        raise HTTPClientError(
            f"the token endpoint {where} refused every credential for {self.scope}: {'; '.join(refused)}; "
            f"check the registry credentials in {contract.ENV_CREDENTIALS_DIR} and their access to it"
        )

    def _get_token(self, req: oci_auth.TokenRequest) -> bytes:
        """One token request with retries; its credentials go to the realm's origin only."""
        signer: Auth = Auth()
        authorization = req.headers.get("Authorization")
        if authorization is not None:
            signer = OriginAuth(Origin.of(req.url), authorization)
        transport = Transport(self.cfg, self.log, self.deadline, auth=signer)
        retry = Retry(self.cfg, self.log, self.deadline, self.stop)
        self.token_requests += 1
        while True:
            try:
                conn, resp = transport.get(req.url, {"Accept": "application/json"})
            except Transient as exc:
                retry.backoff(f"token endpoint: {exc.message}", exc.retry_after)
                continue
            try:
                if resp.status != 200:
                    raise HTTPClientError(f"the token endpoint answered HTTP {resp.status}")
                return _read_capped(resp, oci_auth.MAX_TOKEN_RESPONSE, "the token endpoint's answer")
            except (OSError, http.client.HTTPException) as exc:
                retry.backoff(f"token endpoint: {describe(exc)}")
            finally:
                conn.close()


def _read_capped(resp: http.client.HTTPResponse, cap: int, what: str) -> bytes:
    length = resp.getheader("Content-Length")
    if length and length.strip().isdigit() and int(length) > cap:
        raise IntegrityError(f"{what} is {int(length)} bytes, more than the {cap} accepted")
    body = resp.read(cap + 1)
    if len(body) > cap:
        raise IntegrityError(f"{what} is more than the {cap} bytes accepted")
    return body


class RegistryClient:
    """Manifests and blobs of one repository."""

    def __init__(
        self,
        cfg: Config,
        log: Logger,
        ref: contract.OCIReference,
        candidates: list[RegistryCredential],
        deadline: float | None,
        static_token: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.log = log
        self.ref = ref
        self.deadline = deadline
        scheme = "http" if cfg.allow_http else "https"
        self.base = f"{scheme}://{ref.api_host}/v2/{ref.repository}"
        self.stop = threading.Event()
        self.auth = RegistryAuth(
            cfg, log, deadline, self.base, ref.repository, candidates, self.stop, static_token
        )
        self.transport = Transport(cfg, log, deadline, auth=self.auth)

    def manifest(self, reference: str, expected_digest: str | None) -> FetchedManifest:
        """GET a manifest by tag or digest; verified against `expected_digest` or the registry's header."""
        url = f"{self.base}/manifests/{reference}"
        retry = Retry(self.cfg, self.log, self.deadline, self.stop)
        while True:
            try:
                conn, resp = self.transport.get(url, {"Accept": oci_manifest.ACCEPT})
            except Transient as exc:
                retry.backoff(exc.message, exc.retry_after)
                continue
            try:
                if resp.status != 200:
                    raise TransportError(f"unexpected HTTP {resp.status} for the manifest {reference}")
                body = _read_capped(resp, oci_manifest.MAX_MANIFEST_BYTES, f"the manifest {reference}")
                content_type = resp.getheader("Content-Type", "") or ""
                header_digest = (resp.getheader("Docker-Content-Digest") or "").strip()
            except (OSError, http.client.HTTPException) as exc:
                retry.backoff(f"reading the manifest {reference}: {describe(exc)}")
                continue
            finally:
                conn.close()
            break
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if expected_digest is not None and digest != expected_digest:
            raise IntegrityError(
                f"the manifest {reference} from {self.ref.registry} hashes to {digest}, not "
                f"{expected_digest} (Content-Type {content_type or 'none'}): not the pinned content"
            )
        if expected_digest is None and header_digest.startswith("sha256:") and header_digest != digest:
            raise IntegrityError(
                f"the manifest {reference} from {self.ref.registry} hashes to {digest} but the registry "
                f"says Docker-Content-Digest {header_digest[:80]}: corrupted in transit or in storage"
            )
        return FetchedManifest(body, digest, content_type)

    def blob(self, descriptor: oci_manifest.Descriptor) -> PackageStream:
        """Start streaming a blob; its bytes are checked against the descriptor's digest at the end."""
        url = f"{self.base}/blobs/{descriptor.digest}"
        stream = PackageStream(
            self.cfg,
            self.log,
            deadline=self.deadline,
            url=url,
            transport=self.transport,
            expected_sha256=descriptor.digest.split(":", 1)[1],
        ).open()
        if stream.total is not None and stream.total != descriptor.size:
            stream.close()
            raise IntegrityError(
                f"blob {descriptor.digest} is {stream.total} bytes on the registry but its descriptor says "
                f"{descriptor.size}"
            )
        return stream

    def close(self) -> None:
        self.stop.set()
