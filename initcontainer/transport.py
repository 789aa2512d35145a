"""One HTTP GET done right: redirects, proxies, TLS, credentials and status classes, per hop.

Why not `urllib.request.urlopen`: it forwards Authorization across redirects to
other hosts, follows https->http downgrades, and gives no handle on Range
resumption. `http.client` lets us decide each of those explicitly.

A source plugs in through `Auth`: the transport calls `Auth.sign` for every
request it sends (each redirect hop, each retry, each resume, with the Range
headers already set), so a signer sees the exact URL and headers of the request
(AWS SigV4), and a registry client can refuse to send its token to the object
storage a blob redirects to. `Auth.challenge` sees a 401 once per request and
may fetch fresh credentials (a registry's bearer token) before the one retry.

`Transport.get` returns only 200/206/416 responses; everything else is a
redirect it follows, a `Transient` failure the caller retries with `Retry`, or
an `HTTPClientError` that ends the run.
"""

from __future__ import annotations

import base64
import email.utils
import http.client
import random
import ssl
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from initcontainer import contract, hints, stopping
from initcontainer.config import Config
from initcontainer.errors import HTTPClientError, TransportError
from initcontainer.log import Logger, redact_url, scrub

MAX_REDIRECTS = 10
BACKOFF_BASE = 0.5
BACKOFF_MAX = 30.0
RETRY_AFTER_MAX = 120.0
USER_AGENT = "package-injector-init/0.1"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 507, 509, 520, 521, 522, 523, 524})
"""Worth retrying: the server or a proxy in front of it is overloaded or restarting."""
_URL_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))


class Transient(Exception):
    """A failure worth retrying after a pause (the server may honour Retry-After)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class Origin:
    """Scheme, host and port: credentials go to one origin only (RFC 6454)."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        return cls(scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80))


@dataclass
class Request:
    """What the transport is about to send; `Auth.sign` may add headers."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


class Auth:
    """No credentials. Subclass to add them; the transport calls both hooks on every request."""

    @property
    def configured(self) -> bool:
        """Whether there are credentials at all (only changes the wording of a 401)."""
        return False

    def sign(self, request: Request) -> bool:
        """Add credentials to `request.headers` if its URL may receive them; True when added."""
        return False

    def challenge(self, request: Request, response: http.client.HTTPResponse) -> bool:
        """A 401 answered `request`: True to send it once more (after fetching a fresh token)."""
        return False

    def unauthorized(self, sent_auth: bool) -> str | None:
        """What to tell the user when a request ends in 401; None for the transport's own wording."""
        return None

    def refused(self, request: Request, response: http.client.HTTPResponse) -> Exception | None:
        """Any answer but 200/206/416: an error that words it better (an S3 error code), or None.

        May read the body (bounded); the transport closes the connection after it.
        Returning a `Transient` makes the caller retry.
        """
        return None


class OriginAuth(Auth):
    """A fixed Authorization header, sent to the origin of the package URL and nowhere else."""

    def __init__(self, origin: Origin, authorization: str) -> None:
        self.origin = origin
        self.authorization = authorization

    @property
    def configured(self) -> bool:
        return True

    def sign(self, request: Request) -> bool:
        if Origin.of(request.url) != self.origin:
            return False
        request.headers["Authorization"] = self.authorization
        return True


def auth_from_config(cfg: Config) -> Auth:
    """Basic or Bearer from the mounted Secret, for cfg.url's origin; no credentials: `Auth()`."""
    creds = cfg.credentials
    if creds is None:
        return Auth()
    if creds.token is not None:
        header = f"Bearer {creds.token}"
    else:
        raw = f"{creds.username}:{creds.password}".encode()
        header = "Basic " + base64.b64encode(raw).decode("ascii")
    return OriginAuth(Origin.of(cfg.url), header)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date; return seconds from now, capped."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_MAX)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)


def make_ssl_context(cfg: Config) -> ssl.SSLContext:
    """System CAs plus the Secret's ca.crt; verification off only on explicit request."""
    ctx = ssl.create_default_context()
    if cfg.ca_pem:
        ctx.load_verify_locations(cadata=cfg.ca_pem)
    if cfg.insecure_skip_tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Retry:
    """The retry budget (PACKAGE_RETRIES failures in a row) and jittered exponential backoff."""

    def __init__(self, cfg: Config, log: Logger, deadline: float | None, stop: threading.Event) -> None:
        self.cfg = cfg
        self.log = log
        self.deadline = deadline
        self.stop = stop
        self.failures = 0

    def success(self) -> None:
        """Progress was made: the budget counts failures without progress."""
        self.failures = 0

    def backoff(self, reason: str, retry_after: float | None = None) -> None:
        """Count a failure; give up past the retry budget, else sleep with jittered backoff."""
        self.failures += 1
        if self.failures > self.cfg.retries:
            raise TransportError(f"giving up after {self.failures} attempt(s): {reason}")
        if retry_after is not None:
            delay = retry_after
        else:
            delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (self.failures - 1))
            delay *= random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto
        if self.deadline is not None and time.monotonic() + delay > self.deadline:
            raise TransportError(
                f"{contract.ENV_TOTAL_TIMEOUT}={self.cfg.total_timeout:g}s would be exceeded while "
                f"waiting to retry: {reason}"
            )
        self.log.warning(
            "retry",
            f"{reason}; retry {self.failures}/{self.cfg.retries} in {delay:.1f}s",
            attempt=self.failures,
            delaySeconds=round(delay, 2),
        )
        end = time.monotonic() + delay
        while (left := end - time.monotonic()) > 0:
            if self.stop.wait(min(left, 0.25)):
                raise TransportError("download cancelled")
            stopping.check()


class Transport:
    """GETs with redirects, proxies, TLS and credentials decided per hop; classifies the status."""

    def __init__(self, cfg: Config, log: Logger, deadline: float | None, auth: Auth | None = None) -> None:
        self.cfg = cfg
        self.log = log
        self.deadline = deadline
        self.auth = auth_from_config(cfg) if auth is None else auth
        self._ssl_context: ssl.SSLContext | None = None
        self.proxies = urllib.request.getproxies_environment()

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """Built on first https use (loading the system CAs is not free): also for http->https."""
        if self._ssl_context is None:
            self._ssl_context = make_ssl_context(self.cfg)
        return self._ssl_context

    def _timeout(self, base: float) -> float:
        if self.deadline is None:
            return base
        return max(0.1, min(base, self.deadline - time.monotonic()))

    def _proxy_for(self, scheme: str, host: str) -> urllib.parse.SplitResult | None:
        proxy = self.proxies.get(scheme)
        if not proxy or urllib.request.proxy_bypass(host):
            return None
        try:
            # The contract's rule; load_config already refused a bad *_PROXY variable at start.
            return contract.parse_proxy(f"the proxy for {scheme}://", proxy)
        except contract.ValueProblem as exc:
            raise TransportError(str(exc)) from None

    def _connect(self, url: str) -> tuple[http.client.HTTPConnection, str, dict[str, str]]:
        """Open a connection for `url`; return it, the request target and hop-by-hop proxy headers."""
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        proxy = self._proxy_for(scheme, host)
        proxy_headers: dict[str, str] = {}
        if proxy is not None and proxy.username is not None:
            raw = f"{urllib.parse.unquote(proxy.username)}:{urllib.parse.unquote(proxy.password or '')}"
            proxy_headers["Proxy-Authorization"] = "Basic " + base64.b64encode(raw.encode()).decode("ascii")
        timeout = self._timeout(self.cfg.connect_timeout)
        conn: http.client.HTTPConnection
        if scheme == "https":
            if proxy is not None:
                conn = http.client.HTTPSConnection(
                    proxy.hostname or "", proxy.port or 80, timeout=timeout, context=self.ssl_context
                )
                conn.set_tunnel(host, port, headers=proxy_headers)
                proxy_headers = {}
            else:
                conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=self.ssl_context)
        elif proxy is not None:
            conn = http.client.HTTPConnection(proxy.hostname or "", proxy.port or 80, timeout=timeout)
            target = urllib.parse.urlunsplit((scheme, parts.netloc, parts.path or "/", parts.query, ""))
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.connect()
        except ssl.SSLCertVerificationError as exc:
            conn.close()
            raise TransportError(
                f"TLS certificate of {host} not trusted ({exc.verify_message}); if the server uses a private "
                f"CA, put it as ca.crt in the Secret mounted at {contract.ENV_CREDENTIALS_DIR}"
            ) from None
        except ssl.SSLError as exc:
            conn.close()
            if hints.is_plain_answer_to_tls(exc):
                # A wrong scheme or port never heals: fail now instead of after every retry.
                raise TransportError(hints.tls_to_plain_server(host, port, exc)) from None
            raise Transient(f"TLS handshake with {host}:{port} failed: {describe(exc)}") from None
        except OSError as exc:
            conn.close()
            via = None if proxy is None else f"{proxy.hostname}:{proxy.port or 80}"
            raise Transient(hints.connect_failure(exc, host, port, via)) from None
        except http.client.HTTPException as exc:
            conn.close()
            raise Transient(f"cannot connect to {host}:{port}: {describe(exc)}") from None
        if conn.sock is not None:
            conn.sock.settimeout(self._timeout(self.cfg.read_timeout))
        return conn, target, proxy_headers

    def get(
        self, url: str, extra: dict[str, str] | None = None
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """GET `url`, following redirects; return only 200/206/416 responses (the caller closes `conn`)."""
        start = url
        challenged = False
        hops = 0
        while hops <= MAX_REDIRECTS:
            conn, target, headers = self._connect(url)
            headers.update({"User-Agent": USER_AGENT, "Accept": "*/*", "Accept-Encoding": "identity"})
            headers.update(extra or {})
            request = Request("GET", url, headers)
            sent_auth = self.auth.sign(request)
            try:
                conn.request("GET", target, headers=request.headers)
                resp = conn.getresponse()
            except http.client.InvalidURL as exc:
                conn.close()
                raise HTTPClientError(f"cannot request {redact_url(url)}: {describe(exc, url)}") from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise Transient(f"request to {redact_url(url)} failed: {describe(exc, url)}") from None
            status = resp.status
            if status not in (200, 206, 416):
                better = self.auth.refused(request, resp)
                if better is not None:
                    conn.close()
                    raise better
            if status == 400 and self._may_be_tls_answer(url, resp):
                try:
                    head = resp.read(hints.TLS_ANSWER_PEEK)
                except (OSError, http.client.HTTPException, ValueError):
                    head = b""  # a body cut or stalled: no "use https" page, the server's own 400
                conn.close()
                self._check_plain_to_tls(url, head)
            if status in REDIRECT_STATUSES:
                location = resp.getheader("Location")
                conn.close()
                url = self._follow(url, location, status)
                hops += 1
                continue
            if status in (200, 206, 416):
                return conn, resp
            if status == 401 and not challenged and self.auth.challenge(request, resp):
                conn.close()
                challenged = True
                continue
            retry_after = parse_retry_after(resp.getheader("Retry-After"))
            conn.close()
            self._raise_for_status(status, resp.reason, url, sent_auth, retry_after)
        raise HTTPClientError(f"more than {MAX_REDIRECTS} redirects starting at {redact_url(start)}")

    def post_form(self, url: str, body: bytes, *, limit: int) -> tuple[int, bytes]:
        """POST a form to `url` (no redirects, no credentials: the body is the proof); status and body.

        For token exchanges such as STS AssumeRoleWithWebIdentity: same TLS, CA,
        proxies and timeouts as the download. At most `limit` bytes of the body are read.
        """
        conn, target, headers = self._connect(url)
        headers.update(
            {
                "User-Agent": USER_AGENT,
                "Accept": "*/*",
                "Content-Type": "application/x-www-form-urlencoded",
                "Content-Length": str(len(body)),
            }
        )
        try:
            conn.request("POST", target, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read(limit)
        except (OSError, http.client.HTTPException) as exc:
            raise Transient(f"request to {redact_url(url)} failed: {describe(exc, url)}") from None
        finally:
            conn.close()

    @staticmethod
    def _may_be_tls_answer(url: str, resp: http.client.HTTPResponse) -> bool:
        """A 400 to plain http that may be a TLS server's "use https" page (not an S3 or registry error)."""
        if urllib.parse.urlsplit(url).scheme.lower() != "http":
            return False
        ctype = (resp.getheader("Content-Type") or "").split(";")[0].strip().lower()
        return ctype in ("", "text/html", "text/plain")

    @staticmethod
    def _check_plain_to_tls(url: str, answer: bytes) -> None:
        """Raise the not-retried mismatch error when a plain http request was answered by a TLS server."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme.lower() == "http" and hints.is_tls_answer_to_plain(answer):
            raise TransportError(hints.plain_to_tls_server(parts.hostname or "", parts.port or 80))

    def _follow(self, url: str, location: str | None, status: int) -> str:
        if not location:
            raise HTTPClientError(f"HTTP {status} redirect without a Location header from {redact_url(url)}")
        new = urllib.parse.urljoin(url, _requote(location.strip()))
        old_scheme = urllib.parse.urlsplit(url).scheme.lower()
        new_scheme = urllib.parse.urlsplit(new).scheme.lower()
        if new_scheme not in ("http", "https"):
            raise HTTPClientError(f"redirect to unsupported scheme {new_scheme!r} refused")
        if old_scheme == "https" and new_scheme == "http":
            raise HTTPClientError(
                f"redirect from {redact_url(url)} to plain http ({redact_url(new)}) refused: "
                "it would expose the download to tampering"
            )
        if new_scheme == "http" and not self.cfg.allow_http:
            raise HTTPClientError(f"redirect to plain http ({redact_url(new)}) refused")
        self.log.info(
            "redirect", f"HTTP {status} redirect to {redact_url(new)}", status=status, to=redact_url(new)
        )
        return new

    def _raise_for_status(
        self, status: int, reason: str, url: str, sent_auth: bool, retry_after: float | None
    ) -> None:
        where = redact_url(url)
        if status in TRANSIENT_STATUSES:
            raise Transient(f"HTTP {status} {reason} from {where}", retry_after)
        if status == 401:
            hint = self.auth.unauthorized(sent_auth)
            if hint is not None:
                raise HTTPClientError(f"HTTP 401 from {where}: {hint}")
            if sent_auth:
                msg = (
                    f"HTTP 401 from {where}: the server rejected the credentials; check username/password "
                    f"or token in the Secret mounted at {contract.ENV_CREDENTIALS_DIR}"
                )
            elif self.auth.configured:
                msg = (
                    f"HTTP 401 from {where}: credentials are only sent to the host of {contract.ENV_URL}, "
                    "not to the redirect target; point the URL at the final host"
                )
            else:
                msg = (
                    f"HTTP 401 from {where}: the server requires authentication; put username+password or "
                    f"token in a Secret mounted at {contract.ENV_CREDENTIALS_DIR}"
                )
            raise HTTPClientError(msg)
        if status == 403:
            raise HTTPClientError(
                f"HTTP 403 from {where}: access denied; the credentials lack permission, "
                "or a pre-signed URL has expired"
            )
        if status in (404, 410):
            raise HTTPClientError(
                f"HTTP {status} from {where}: the package does not exist; check {contract.ENV_URL}"
            )
        raise HTTPClientError(f"HTTP {status} {reason} from {where}")


def _requote(location: str) -> str:
    """Percent-encode spaces, controls and raw non-ASCII bytes of a Location header, as browsers do.

    http.client decodes header bytes as latin-1 and refuses such characters in the
    request line with an error that quotes the whole target (query token included).
    """
    if all(0x21 <= ord(c) < 0x7F for c in location):
        return location
    return urllib.parse.quote(location.encode("latin-1", "replace"), safe=_URL_SAFE)


def describe(exc: BaseException, url: str | None = None) -> str:
    """Class and text of an exception, without the query string or userinfo of `url`.

    Some exceptions quote the request target (http.client.InvalidURL does), and a
    pre-signed URL carries its token there.
    """
    text = scrub(str(exc), url) if url else str(exc)
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__
