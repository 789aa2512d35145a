"""What a failed connection or a full volume most likely means, in words that name the fix.

The exception text alone ("[Errno 111] Connection refused", "No space left on device") sends people to the
wrong place: inside a Pod the usual causes are the network around it (a mesh proxy not running yet, a
NetworkPolicy, a proxy the cluster requires) or a URL with the wrong scheme or port, and a full package
volume is about the Pod's emptyDir, not the node's disk in general. Each function returns the text that
goes into the error; the caller picks the class (and so the exit code and whether it is retried).
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
from typing import Final

from initcontainer import contract
from initcontainer.log import human_bytes

MESH: Final = (
    "a service-mesh proxy not running yet (a classic sidecar starts after init containers: use the mesh's "
    "native-sidecar mode, run the downloader as the proxy's UID, or exclude the package host from capture)"
)
POLICY: Final = "a NetworkPolicy blocking the Pod's egress"
PROXY_VARS: Final = "HTTPS_PROXY/HTTP_PROXY/NO_PROXY (set through the webhook's init_proxy_env)"
PROXY: Final = "a proxy the network requires (HTTPS_PROXY/HTTP_PROXY/NO_PROXY, set through init_proxy_env)"

# OpenSSL's reasons when the peer's first bytes are not a TLS record ("HTTP/1.1 400 ..." from a plain server):
# OpenSSL 3.0 and 3.5 both say WRONG_VERSION_NUMBER (text never has TLS's 0x03 version byte). Not
# PACKET_LENGTH_TOO_LONG or RECORD_LAYER_FAILURE: those come from TLS framing with a bad length or MAC (a
# record corrupted in transit, which heals), and 3.2+ reports every fatal record error as the latter.
_PLAIN_REASONS: Final = frozenset({"WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "HTTP_REQUEST"})
# What TLS servers answer to a plain HTTP request: nginx, Apache httpd, Go's net/http.
_TLS_SERVER_ANSWERS: Final = (
    b"plain http request was sent to https port",
    b"speaking plain http to an ssl-enabled server port",
    b"client sent an http request to an https server",
)
TLS_ANSWER_PEEK: Final = 1024
"""How much of a 400 body is read to recognise a TLS server's answer to plain HTTP."""


def connect_failure(exc: OSError, host: str, port: int, proxy: str | None) -> str:
    """`exc` from opening a connection, with the likely causes of its kind; `proxy` is HOST:PORT or None."""
    target = f"{host}:{port}" if proxy is None else f"the proxy {proxy} (for {host}:{port})"
    text = f"cannot connect to {target}: {exc.strerror or exc}"
    if isinstance(exc, socket.gaierror):
        if proxy is not None:
            return f"{text} (DNS); check the proxy's host name in {PROXY_VARS}"
        return (
            f"{text} (DNS): check the host in {contract.ENV_URL} (an in-cluster Service is "
            f"NAME.NAMESPACE.svc); else {POLICY} to the cluster DNS (port 53, UDP and TCP), {MESH}, or "
            "a network where only a proxy resolves outside names (HTTPS_PROXY/HTTP_PROXY/NO_PROXY, set "
            "through init_proxy_env)"
        )
    if isinstance(exc, ConnectionRefusedError):
        if proxy is not None:
            return f"{text}: nothing accepts connections there; check {PROXY_VARS}"
        return (
            f"{text}: nothing accepts connections there; check the port and scheme in {contract.ENV_URL}; "
            f"else {MESH}, {POLICY} with a reject rule, or {PROXY}"
        )
    if isinstance(exc, TimeoutError):
        return f"{text}: no answer; likely {POLICY} or a firewall dropping the packets, or {PROXY}"
    return text


def is_plain_answer_to_tls(exc: BaseException) -> bool:
    """The TLS handshake failed because the server answered in plain text (https:// on an http port)."""
    return (
        isinstance(exc, ssl.SSLError)
        and not isinstance(exc, ssl.SSLCertVerificationError)
        and exc.reason in _PLAIN_REASONS
    )


def tls_to_plain_server(host: str, port: int, exc: ssl.SSLError) -> str:
    """The message for an https:// URL whose server speaks plain HTTP (never heals: not retried)."""
    return (
        f"{host}:{port} answered the TLS handshake in plain HTTP ({exc.reason}): the URL says https:// but "
        "that port serves http; fix the scheme or port in the URL (the https port, usually 443); for an "
        f"oci:// registry that serves plain http, list it in the webhook's plain_http_registries. Not retried"
    )


def is_tls_answer_to_plain(body: bytes) -> bool:
    """A plain HTTP request reached a TLS port: the server's "use https" page (OpenSSL-based servers that
    just close the connection cannot be told from a server that went away, so that stays retried)."""
    lowered = body.lower()
    return any(answer in lowered for answer in _TLS_SERVER_ANSWERS)


def plain_to_tls_server(host: str, port: int) -> str:
    """The message for an http:// URL (or plain-http registry) whose server speaks TLS; not retried."""
    return (
        f"{host}:{port} speaks TLS but the request was plain http: use an https:// URL (or the server's "
        "plain-http port); for an oci:// registry, remove it from the webhook's plain_http_registries. "
        "Not retried"
    )


def _mount_of(path: str) -> tuple[str, str] | None:
    """(mount point, filesystem type) of the mount holding `path`, from /proc/self/mountinfo."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    real = os.path.realpath(path)
    best: tuple[str, str] | None = None
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right.split():
            continue
        point = fields[4].replace("\\040", " ")
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best[0])):
            best = (point, right.split()[0])
    return best


def full_volume(exc: OSError, dest: os.PathLike[str] | str) -> str:
    """ENOSPC or EDQUOT while writing the package into `dest`: which limit was hit, the setting behind it."""
    dest = os.fspath(dest)
    try:
        st = os.statvfs(dest)
        size = f"{human_bytes(st.f_blocks * st.f_frsize)}"
    except OSError:
        size = "unknown size"
    mount = _mount_of(dest)
    fstype = mount[1] if mount else "unknown"
    limit = 'its sizeLimit (the "package-size-limit" annotation; cluster default: default_size_limit)'
    if exc.errno == errno.EDQUOT:
        return (
            f"the quota of the package volume {dest} ({size}) is used up: the package does not fit; where "
            f"the node enforces the emptyDir's sizeLimit as a quota, raise {limit[4:]}"
        )
    if fstype == "tmpfs":
        return (
            f"the package volume {dest} is full: it is a memory-backed emptyDir, a tmpfs of {size} sized by "
            f"{limit}, and the package does not fit; raise the limit"
        )
    return (
        f"no space left on the package volume {dest} ({fstype}, {size}): this disk-backed emptyDir shares "
        f"the node's disk, and that is full; {limit} never fails a write (past it the kubelet evicts the "
        "Pod), so free space on the node, or give the Pod an ephemeral-storage request so it is scheduled "
        "where there is room"
    )
