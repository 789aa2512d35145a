"""`POST /mutate` through a real uvicorn over real TLS on 127.0.0.1, with apiserver-shaped bodies."""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import CollectorRegistry

from tests.webhook.reviews import apply_response, review
from webhook import certs
from webhook.app import create_app
from webhook.inject import inject
from webhook.metrics import Metrics
from webhook.settings import Settings

URL = "https://files.example.com/site.tar.gz"
PodFactory = Callable[..., dict[str, Any]]
MAX_BODY = 64 * 1024


def serving_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a serving certificate for 127.0.0.1, made by `package-injector certs`' own code."""
    bundle = certs.generate("package-injector", "test", ips=["127.0.0.1"], days=1)
    certs.write_bundle(bundle, directory)
    return directory / certs.TLS_CERT, directory / certs.TLS_KEY, directory / certs.CA_CERT


@dataclass
class Served:
    url: str
    client: httpx.Client
    metrics: Metrics

    def post(self, body: Any, **kwargs: Any) -> httpx.Response:
        return self.client.post(self.url + "/mutate", json=body, **kwargs)

    def count(self, name: str, labels: dict[str, str]) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


def admission_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The review's log line, written by the server thread just after it sent the answer."""
    deadline = time.monotonic() + 5
    while True:
        records = [r for r in caplog.records if r.name == "package_injector.admission"]
        if records or time.monotonic() > deadline:
            return records
        time.sleep(0.01)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    cert_file, key_file, ca_file = serving_files(tmp_path_factory.mktemp("tls"))
    metrics = Metrics(CollectorRegistry())
    app = create_app(Settings(max_body_bytes=MAX_BODY), metrics)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        ssl_certfile=str(cert_file),
        ssl_keyfile=str(key_file),
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    context = ssl.create_default_context(cafile=str(ca_file))
    with httpx.Client(verify=context, timeout=10) as client:
        yield Served(f"https://127.0.0.1:{port}", client, metrics)
    server.should_exit = True
    thread.join(timeout=10)


def test_plain_http_is_not_served(served: Served) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.post(served.url.replace("https://", "http://") + "/mutate", json={}, timeout=5)


def test_controller_made_pod_is_injected(served: Served, make_pod: PodFactory) -> None:
    pod = make_pod({"package-url": URL})
    body = review(pod, namespace="shop")
    before = served.count(
        "package_injector_admission_requests_total",
        {"kind": "Pod", "result": "injected", "reason": "package-url"},
    )
    response = served.post(body)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    answer = response.json()
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == body["request"]["uid"]
    assert apply_response(pod, answer["response"]) == inject(pod, Settings(), "shop").pod
    after = served.count(
        "package_injector_admission_requests_total",
        {"kind": "Pod", "result": "injected", "reason": "package-url"},
    )
    assert after == before + 1
    assert served.count("package_injector_admission_duration_seconds_count", {"kind": "Pod"}) >= 1


def test_dry_run_v1beta1(served: Served, make_pod: PodFactory) -> None:
    body = review(make_pod({"package-url": URL}), dry_run=True, api_version="admission.k8s.io/v1beta1")
    answer = served.post(body).json()
    assert answer["apiVersion"] == "admission.k8s.io/v1beta1"
    assert answer["response"]["allowed"] is True and answer["response"]["patchType"] == "JSONPatch"


def test_denial_over_http(served: Served, make_pod: PodFactory) -> None:
    answer = served.post(review(make_pod({"package-url": URL, "package-mount-path": "/etc"}))).json()
    assert answer["response"]["allowed"] is False
    assert answer["response"]["status"]["code"] == 400
    assert answer["response"]["status"]["message"].startswith(
        'package-injector: annotation "package-mount-path"'
    )


def test_one_structured_log_line_per_review(
    served: Served, make_pod: PodFactory, caplog: pytest.LogCaptureFixture
) -> None:
    secret_url = "https://files.example.com/a.tgz?X-Amz-Signature=topsecret"
    body = review(make_pod({"package-url": secret_url}), namespace="shop")
    with caplog.at_level(logging.INFO, logger="package_injector.admission"):
        assert served.post(body).status_code == 200
        (record,) = admission_records(caplog)
    fields = vars(record)
    assert fields["uid"] == body["request"]["uid"] and fields["namespace"] == "shop"
    assert fields["pod"] == "web-5d4f8b7c9-*"
    assert (fields["decision"], fields["reason"]) == ("injected", "package-url")
    assert "topsecret" not in json.dumps({k: str(v) for k, v in fields.items()}) + record.getMessage()


@pytest.mark.parametrize(
    ("content", "headers", "status", "reason"),
    [
        (b"{not json", {"content-type": "application/json"}, 400, "malformed-json"),
        (b"\xff\xfe", {"content-type": "application/json"}, 400, "malformed-json"),
        (b"[" * 100_00 + b"]" * 100_00, {"content-type": "application/json"}, 400, "malformed-json"),
        (b'{"kind": "Pod"}', {"content-type": "application/json"}, 400, "not-a-review"),
        (b"{}", {"content-type": "text/plain"}, 415, "content-type"),
        (b"{}", {}, 415, "content-type"),
        (b" " * (MAX_BODY + 1), {"content-type": "application/json"}, 413, "too-large"),
    ],
)
def test_bad_requests_get_4xx_json(
    served: Served, content: bytes, headers: dict[str, str], status: int, reason: str
) -> None:
    before = served.count("package_injector_bad_requests_total", {"reason": reason})
    response = served.client.post(served.url + "/mutate", content=content, headers=headers)
    assert response.status_code == status
    assert response.json()["error"] == reason and "Traceback" not in response.text
    assert served.count("package_injector_bad_requests_total", {"reason": reason}) == before + 1


def test_oversized_chunked_body_is_cut_off(served: Served) -> None:
    """No Content-Length: the limit is enforced while reading."""

    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b" " * 4096

    response = served.client.post(
        served.url + "/mutate", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


def test_other_paths_and_methods_are_json_4xx(served: Served) -> None:
    assert served.client.get(served.url + "/mutate").status_code == 405
    response = served.client.get(served.url + "/")
    assert response.status_code == 404 and response.headers["content-type"] == "application/json"
    assert served.client.get(served.url + "/docs").status_code == 404


def test_denial_log_line_names_keys_not_values(
    served: Served, make_pod: PodFactory, caplog: pytest.LogCaptureFixture
) -> None:
    annotations = {
        "package-url": "https://files.example.com/a.tgz?token=topsecret",
        "package-mount-path": "/etc/very-private",
        "package-secret": "ghp_PastedTokenValue",
    }
    body = review(make_pod(annotations), namespace="shop")
    with caplog.at_level(logging.INFO, logger="package_injector.admission"):
        answer = served.post(body).json()
        (record,) = admission_records(caplog)
    assert "very-private" in answer["response"]["status"]["message"]  # the user is told
    line = record.getMessage() + json.dumps({k: str(v) for k, v in vars(record).items()})
    assert record.getMessage() == (
        "admission denied: invalid annotations: package-mount-path, package-secret"
    )
    for value in ("topsecret", "very-private", "ghp_PastedTokenValue", "files.example.com"):
        assert value not in line


def test_client_gone_mid_body_gets_no_answer_and_no_traceback(
    served: Served, make_pod: PodFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """An apiserver that times out and closes mid-request: nothing to answer, nothing to log as an error."""
    host, port = served.url.removeprefix("https://").split(":")
    raw = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # a raw socket: what is said matters, not who answers
    raw.check_hostname, raw.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((host, int(port))) as plain, raw.wrap_socket(plain) as tls:
        tls.sendall(
            b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000\r\n\r\n" + b'{"apiVersion": "admission.k8s.io/v1", '
        )
    time.sleep(0.3)
    response = served.post(review(make_pod({"package-url": URL})))
    assert response.status_code == 200 and response.json()["response"]["allowed"] is True
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
