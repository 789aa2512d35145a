"""Certificate hot reload: validation of a pair, and rotation under load with the real server."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import ssl
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from tests.support.runtime import SecretVolume, server_process
from webhook import certs
from webhook.tls import CertificateError, ReloadingCertificate, inspect_pair, load_pair


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    return certs.new_ca("test CA", days=30)


def leaf(ca: tuple[bytes, bytes], **kwargs: object) -> tuple[bytes, bytes]:
    return certs.issue(*ca, ["localhost"], ["127.0.0.1"], **kwargs)  # type: ignore[arg-type]


def fingerprint(cert_pem: bytes) -> str:
    der = ssl.PEM_cert_to_DER_cert(cert_pem.decode())
    return hashlib.sha256(der).hexdigest()


# --- validation of a pair -------------------------------------------------------------------------------


def test_inspect_pair_reports_names_and_validity(ca: tuple[bytes, bytes]) -> None:
    cert, key = leaf(ca)
    info = inspect_pair(cert, key)
    assert info.dns_names == ("localhost",)
    assert info.ip_addresses == ("127.0.0.1",)
    assert info.valid_at()
    assert info.sha256 == fingerprint(cert)


def test_mismatched_key_is_refused(ca: tuple[bytes, bytes]) -> None:
    cert, _ = leaf(ca)
    _, other_key = leaf(ca)
    with pytest.raises(CertificateError, match="does not match"):
        inspect_pair(cert, other_key)


@pytest.mark.parametrize("garbage", [b"", b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"])
def test_unparseable_files_are_refused(ca: tuple[bytes, bytes], garbage: bytes) -> None:
    cert, key = leaf(ca)
    with pytest.raises(CertificateError):
        inspect_pair(garbage, key)
    with pytest.raises(CertificateError) as err:
        inspect_pair(cert, garbage)
    assert "PRIVATE" not in str(err.value)


def test_load_pair_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match="cannot read"):
        load_pair(tmp_path / "tls.crt", tmp_path / "tls.key")


# --- the reloader, in process ---------------------------------------------------------------------------


def test_reload_only_when_content_changes_and_keeps_old_pair_when_new_is_broken(
    tmp_path: Path, ca: tuple[bytes, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    volume = SecretVolume(tmp_path / "tls")
    first_cert, first_key = leaf(ca)
    volume.update({"tls.crt": first_cert, "tls.key": first_key})
    seen: list[str] = []
    cert = ReloadingCertificate(
        volume.cert_file, volume.key_file, on_change=lambda info: seen.append(info.sha256)
    )
    assert not cert.ready()
    assert cert.reload() is True
    assert cert.ready() and seen == [fingerprint(first_cert)]
    assert cert.reload() is False  # same content: nothing to do

    # A broken pair (key of another certificate) is refused once, logged once, and the old one stays.
    second_cert, _ = leaf(ca)
    _, wrong_key = leaf(ca)
    volume.update({"tls.crt": second_cert, "tls.key": wrong_key})
    with caplog.at_level(logging.ERROR, logger="webhook.tls"):
        assert cert.reload() is False
        assert cert.reload() is False
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "keeping the previous certificate" in errors[0].getMessage()
    assert cert.info is not None and cert.info.sha256 == fingerprint(first_cert)
    assert cert.ready() and cert.last_error

    # The fixed pair is picked up.
    third_cert, third_key = leaf(ca)
    volume.update({"tls.crt": third_cert, "tls.key": third_key})
    assert cert.reload() is True
    assert seen == [fingerprint(first_cert), fingerprint(third_cert)]
    assert cert.reloads == 1 and cert.last_error is None


def test_every_load_and_each_distinct_failure_is_reported_once(
    tmp_path: Path, ca: tuple[bytes, bytes]
) -> None:
    volume = SecretVolume(tmp_path / "tls")
    results: list[bool] = []
    cert = ReloadingCertificate(volume.cert_file, volume.key_file, on_result=results.append)
    cert.reload()  # no files yet
    cert.reload()  # still none: the same failure is not reported again
    assert results == [False]
    good = leaf(ca)
    volume.update({"tls.crt": good[0], "tls.key": good[1]})
    cert.reload()
    cert.reload()
    assert results == [False, True]
    volume.update({"tls.crt": leaf(ca)[0], "tls.key": good[1]})  # mismatched pair
    cert.reload()
    cert.reload()
    assert results == [False, True, False]
    volume.update({"tls.crt": leaf(ca)[0], "tls.key": good[1]})  # another broken pair: a new failure
    cert.reload()
    assert results == [False, True, False, False]
    fixed = leaf(ca)
    volume.update({"tls.crt": fixed[0], "tls.key": fixed[1]})
    cert.reload()
    assert results == [False, True, False, False, True] and cert.reloads == 1


def test_ready_follows_the_clock(tmp_path: Path, ca: tuple[bytes, bytes]) -> None:
    now = datetime.now(UTC)
    volume = SecretVolume(tmp_path / "tls")
    c, k = leaf(ca, not_before=now - timedelta(hours=1), not_after=now + timedelta(hours=1))
    volume.update({"tls.crt": c, "tls.key": k})
    cert = ReloadingCertificate(volume.cert_file, volume.key_file)
    cert.reload()
    assert cert.ready(now)
    assert not cert.ready(now + timedelta(hours=2))
    assert not cert.ready(now - timedelta(hours=2))


def test_watch_polls_until_stopped(tmp_path: Path, ca: tuple[bytes, bytes]) -> None:
    volume = SecretVolume(tmp_path / "tls")
    c1, k1 = leaf(ca)
    volume.update({"tls.crt": c1, "tls.key": k1})
    cert = ReloadingCertificate(volume.cert_file, volume.key_file)
    cert.reload()
    c2, k2 = leaf(ca)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(cert.watch(0.05, stop))
        volume.update({"tls.crt": c2, "tls.key": k2})
        for _ in range(100):
            await asyncio.sleep(0.02)
            if cert.reloads:
                break
        stop.set()
        await asyncio.wait_for(task, timeout=1)

    asyncio.run(scenario())
    assert cert.info is not None and cert.info.sha256 == fingerprint(c2)


def test_handshakes_without_sni_get_the_swapped_certificate(tmp_path: Path, ca: tuple[bytes, bytes]) -> None:
    """The apiserver dials IP URLs and sends no SNI: the swap must not depend on it."""
    volume = SecretVolume(tmp_path / "tls")
    c1, k1 = leaf(ca)
    volume.update({"tls.crt": c1, "tls.key": k1})
    cert = ReloadingCertificate(volume.cert_file, volume.key_file)
    cert.reload()

    async def scenario() -> list[str]:
        async def handle(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=cert.listener)
        port = server.sockets[0].getsockname()[1]

        def client() -> str:
            ctx = ssl.create_default_context(cadata=ca[0].decode())
            ctx.check_hostname = False  # no server_hostname below: no SNI sent
            import socket

            with socket.create_connection(("127.0.0.1", port)) as raw, ctx.wrap_socket(raw) as tls:
                return hashlib.sha256(tls.getpeercert(binary_form=True) or b"").hexdigest()

        first = await asyncio.to_thread(client)
        c2, k2 = leaf(ca)
        volume.update({"tls.crt": c2, "tls.key": k2})
        cert.reload()
        second = await asyncio.to_thread(client)
        server.close()
        await server.wait_closed()
        return [first, second, fingerprint(c2)]

    first, second, expected = asyncio.run(scenario())
    assert first == fingerprint(c1)
    assert second == expected


# --- rotation under load, real server -------------------------------------------------------------------


def admission_review(uid: str) -> bytes:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "web-", "annotations": {"package-url": "https://example.com/p.tar.gz"}},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]},
    }
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": uid,
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "default",
                "operation": "CREATE",
                "userInfo": {"username": "test"},
                "object": pod,
                "dryRun": False,
            },
        }
    ).encode()


def test_rotation_under_load_has_zero_failed_requests(tmp_path: Path, ca: tuple[bytes, bytes]) -> None:
    """Clients make fresh TLS connections (a handshake each) while the Secret volume is swapped 3 times."""
    volume = SecretVolume(tmp_path / "tls")
    generations = [leaf(ca) for _ in range(4)]
    volume.update({"tls.crt": generations[0][0], "tls.key": generations[0][1], "ca.crt": ca[0]})
    ca_file = volume.root / "ca.crt"
    served: list[tuple[float, str]] = []
    failures: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    with server_process(tmp_path, volume.cert_file, volume.key_file, real_app=True) as server:
        server.wait_ready()

        def client(n: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    status, body, der = server.https(
                        "/mutate", ca_file, method="POST", body=admission_review(f"c{n}-{i}")
                    )
                    response = json.loads(body)["response"]
                    if status != 200 or not response["allowed"] or "patch" not in response:
                        failures.append(f"{status} {body[:200]!r}")
                    with lock:
                        served.append((time.monotonic(), hashlib.sha256(der).hexdigest()))
                except Exception as exc:
                    failures.append(repr(exc))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        rotated_at: list[float] = []
        for cert_pem, key_pem in generations[1:]:
            time.sleep(0.7)
            volume.update({"tls.crt": cert_pem, "tls.key": key_pem, "ca.crt": ca[0]})
            rotated_at.append(time.monotonic())
        time.sleep(0.7)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert server.terminate() == 0

    assert failures == []
    counts = Counter(fp for _, fp in served)
    expected = [fingerprint(c) for c, _ in generations]
    # Every generation was served, in order, and the last handshakes present the newest certificate.
    assert all(counts[fp] > 0 for fp in expected), counts
    order = list(dict.fromkeys(fp for _, fp in sorted(served)))
    assert order == expected
    last_rotation = rotated_at[-1]
    tail = [fp for t, fp in served if t > last_rotation + 0.5]
    assert tail and set(tail) == {expected[-1]}
    per_cert = [counts[fp] for fp in expected]
    print(f"\nrotation under load: {len(served)} requests on fresh TLS connections, 0 failed, {per_cert=}")
    logs = server.logs()
    assert logs.count("serving certificate reloaded") == 3


def test_broken_rotation_keeps_serving_the_old_certificate(tmp_path: Path, ca: tuple[bytes, bytes]) -> None:
    volume = SecretVolume(tmp_path / "tls")
    good_cert, good_key = leaf(ca)
    volume.update({"tls.crt": good_cert, "tls.key": good_key, "ca.crt": ca[0]})
    with server_process(tmp_path, volume.cert_file, volume.key_file) as server:
        server.wait_ready()
        other_cert, _ = leaf(ca)
        volume.update({"tls.crt": other_cert, "tls.key": good_key, "ca.crt": ca[0]})
        time.sleep(0.5)
        status, _, der = server.https("/slow", volume.root / "ca.crt")
        assert status == 200
        assert hashlib.sha256(der).hexdigest() == fingerprint(good_cert)
        assert server.readyz()[0] == 200
        assert "key does not match the certificate; keeping the previous certificate" in server.logs()
        expiry = x509.load_pem_x509_certificate(good_cert).not_valid_after_utc
        assert server.metric("package_injector_certificate_expiry_timestamp_seconds") == expiry.timestamp()
        reloads = "package_injector_certificate_reloads_total"
        assert server.metric(reloads + '{result="success"}') == 1.0
        assert server.metric(reloads + '{result="failure"}') == 1.0  # counted once, not at every poll
        assert server.terminate() == 0
