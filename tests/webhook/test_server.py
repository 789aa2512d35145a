"""The server runtime in a real subprocess: probes, metrics, SIGTERM drain, startup failures."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from tests.support.net import free_port
from tests.support.runtime import SecretVolume, server_process
from webhook import certs


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    return certs.new_ca("test CA", days=30)


def make_volume(root: Path, ca: tuple[bytes, bytes], **issue_kwargs: object) -> SecretVolume:
    cert, key = certs.issue(*ca, ["localhost"], ["127.0.0.1"], **issue_kwargs)  # type: ignore[arg-type]
    volume = SecretVolume(root / "tls")
    volume.update({"tls.crt": cert, "tls.key": key, "ca.crt": ca[0]})
    return volume


def test_probes_and_metrics(tmp_path: Path, ca: tuple[bytes, bytes]) -> None:
    volume = make_volume(tmp_path, ca)
    with server_process(tmp_path, volume.cert_file, volume.key_file) as server:
        server.wait_ready()
        assert server.get("/healthz") == (200, b'{"status":"ok"}')
        status, body = server.readyz()
        assert status == 200 and body["ready"] is True
        status, text = server.get("/metrics")
        assert status == 200 and b"# TYPE package_injector_certificate_expiry_timestamp_seconds gauge" in text
        expiry = x509.load_pem_x509_certificate(volume.cert_file.read_bytes()).not_valid_after_utc.timestamp()
        assert server.metric("package_injector_certificate_expiry_timestamp_seconds") == expiry
        # The admission port speaks TLS with the mounted certificate, verified against the CA.
        assert server.https("/slow", volume.root / "ca.crt")[0] == 200
        assert server.terminate() == 0


@pytest.mark.parametrize(
    ("window", "why"),
    [
        ((timedelta(days=-3), timedelta(days=-1)), "expired"),
        ((timedelta(days=1), timedelta(days=3)), "not yet valid"),
    ],
)
def test_not_ready_with_a_certificate_outside_its_validity(
    tmp_path: Path, ca: tuple[bytes, bytes], window: tuple[timedelta, timedelta], why: str
) -> None:
    now = datetime.now(UTC)
    volume = make_volume(tmp_path, ca, not_before=now + window[0], not_after=now + window[1])
    with server_process(tmp_path, volume.cert_file, volume.key_file) as server:
        server.wait_metrics_port()
        time.sleep(0.5)
        status, body = server.readyz()
        assert status == 503, why
        assert "not valid now" in str(body["reason"])
        assert server.get("/healthz")[0] == 200  # alive: a restart would not help
        assert server.terminate() == 0


def test_not_ready_until_the_certificate_appears(tmp_path: Path, ca: tuple[bytes, bytes]) -> None:
    volume = SecretVolume(tmp_path / "tls")
    with server_process(tmp_path, volume.cert_file, volume.key_file) as server:
        server.wait_metrics_port()
        status, body = server.readyz()
        assert status == 503 and "no serving certificate" in str(body["reason"])
        cert, key = certs.issue(*ca, ["localhost"], ["127.0.0.1"])
        volume.update({"tls.crt": cert, "tls.key": key, "ca.crt": ca[0]})
        server.wait_ready(timeout=10)
        assert server.https("/slow", volume.root / "ca.crt")[0] == 200
        assert server.terminate() == 0


def _raw_request_start(port: int, ca_file: Path, path: str) -> socket.socket:
    """Send a request line and headers on a fresh TLS connection, return the socket (response unread)."""
    import ssl

    ctx = ssl.create_default_context(cafile=str(ca_file))
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    return sock


def _read_response(sock: socket.socket) -> bytes:
    chunks = []
    sock.settimeout(15)
    while True:
        data = sock.recv(65536)
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def test_sigterm_finishes_the_in_flight_request_and_exits_0(tmp_path: Path, ca: tuple[bytes, bytes]) -> None:
    volume = make_volume(tmp_path, ca)
    with server_process(tmp_path, volume.cert_file, volume.key_file) as server:
        server.wait_ready()
        sock = _raw_request_start(server.port, volume.root / "ca.crt", "/slow?delay=1.5")
        time.sleep(0.3)  # the request is being handled
        started = time.monotonic()
        server.proc.send_signal(15)
        # The listener closes: new connections are refused while the slow request is still running.
        deadline = time.monotonic() + 1.0
        refused = False
        while time.monotonic() < deadline and not refused:
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=0.5).close()
                time.sleep(0.05)
            except ConnectionRefusedError:
                refused = True
        assert refused, "admission port still accepting after SIGTERM"
        assert server.proc.poll() is None, "exited before the in-flight request finished"
        response = _read_response(sock)
        sock.close()
        assert response.startswith(b"HTTP/1.1 200"), response[:200]
        assert response.endswith(b'{"slept":1.5}')
        assert server.proc.wait(timeout=15) == 0
        assert time.monotonic() - started < 10
        messages = [
            json.loads(line)["message"] for line in server.logs().splitlines() if line.startswith("{")
        ]
        assert "SIGTERM received: draining" in messages
        assert messages[-1] == "stopped"


def test_shutdown_delay_fails_readiness_but_keeps_serving(tmp_path: Path, ca: tuple[bytes, bytes]) -> None:
    volume = make_volume(tmp_path, ca)
    env = {"PACKAGE_INJECTOR_SHUTDOWN_DELAY": "1.5"}
    with server_process(tmp_path, volume.cert_file, volume.key_file, env) as server:
        server.wait_ready()
        server.proc.send_signal(15)
        time.sleep(0.3)
        status, body = server.readyz()
        assert (status, body["reason"]) == (503, "shutting down")
        # Endpoints may still route here during the delay: requests must still succeed.
        assert server.https("/slow", volume.root / "ca.crt")[0] == 200
        assert server.proc.wait(timeout=15) == 0


def _exchange(sock: socket.socket, path: str | None) -> tuple[bytes, bytes]:
    """One request on a kept-alive `sock` (None: the answer to one already sent): (head, lowercase; body)."""
    if path is not None:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(65536)
    return head.lower(), body


def test_a_kept_alive_connection_is_closed_after_its_next_response_once_draining(
    tmp_path: Path, ca: tuple[bytes, bytes]
) -> None:
    """The apiserver's pooled connection to a draining Pod is told to go, cleanly, before the port closes.

    Without `Connection: close` the connection would stay with this Pod until the drain ends and then be
    cut under whatever review the apiserver is writing on it (`failed calling webhook ...: EOF`).
    """
    volume = make_volume(tmp_path, ca)
    env = {"PACKAGE_INJECTOR_SHUTDOWN_DELAY": "5"}
    with server_process(tmp_path, volume.cert_file, volume.key_file, env) as server:
        server.wait_ready()
        sock = _raw_request_start(server.port, volume.root / "ca.crt", "/slow?delay=0")
        for path in (None, "/slow?delay=0"):  # two requests: the connection is kept alive
            head, _ = _exchange(sock, path)
            assert head.startswith(b"http/1.1 200") and b"connection:" not in head
        server.proc.send_signal(15)
        deadline = time.monotonic() + 5
        while server.readyz()[0] != 503:
            assert time.monotonic() < deadline, "readiness never failed after SIGTERM"
            time.sleep(0.05)
        head, body = _exchange(sock, "/slow?delay=0")
        assert head.startswith(b"http/1.1 200") and body == b'{"slept":0.0}'
        assert head.count(b"connection:") == 1 and b"connection: close" in head
        sock.settimeout(2)
        assert sock.recv(1) == b"", "the server kept the connection open after saying it would close it"
        assert server.proc.poll() is None, "the drain is still under way: the close came from the response"
        sock.close()
        assert server.proc.wait(timeout=15) == 0


def test_second_sigint_forces_the_stop(tmp_path: Path, ca: tuple[bytes, bytes]) -> None:
    volume = make_volume(tmp_path, ca)
    with server_process(tmp_path, volume.cert_file, volume.key_file) as server:
        server.wait_ready()
        sock = _raw_request_start(server.port, volume.root / "ca.crt", "/slow?delay=30")
        time.sleep(0.3)
        server.proc.send_signal(2)
        time.sleep(0.5)
        assert server.proc.poll() is None
        server.proc.send_signal(2)
        assert server.proc.wait(timeout=5) == 0
        sock.close()


def test_port_in_use_exits_non_zero(tmp_path: Path, ca: tuple[bytes, bytes]) -> None:
    volume = make_volume(tmp_path, ca)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        env = {"PACKAGE_INJECTOR_METRICS_PORT": str(port), "PACKAGE_INJECTOR_PORT": str(free_port())}
        with server_process(tmp_path, volume.cert_file, volume.key_file, env) as server:
            assert server.proc.wait(timeout=20) == 1
            assert "metrics server failed to start" in server.logs()
    finally:
        blocker.close()


def test_background_requests_never_see_a_500_during_drain(tmp_path: Path, ca: tuple[bytes, bytes]) -> None:
    """Requests running when SIGTERM arrives all complete with 200."""
    volume = make_volume(tmp_path, ca)
    with server_process(tmp_path, volume.cert_file, volume.key_file) as server:
        server.wait_ready()
        results: list[int] = []

        def one() -> None:
            results.append(server.https("/slow?delay=1", volume.root / "ca.crt")[0])

        threads = [threading.Thread(target=one) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        server.proc.send_signal(15)
        for t in threads:
            t.join(timeout=15)
        assert results == [200] * 8
        assert server.proc.wait(timeout=15) == 0
