"""check's API access, against a real HTTPS server: each kubeconfig credential form and in-cluster.

(A real kube-apiserver with token auth and a CA file is in tests/e2e/test_check.py; a stand-in server
here because the test apiserver accepts only tokens, and these tests are about what goes on the wire.)
"""

from __future__ import annotations

import base64
import json
import ssl
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from webhook import certs, kubeapi


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        peer = self.connection.getpeercert()  # type: ignore[attr-defined]
        subject = dict(x[0] for x in peer["subject"]) if peer else {}
        self.server.seen.append(
            {
                "method": self.command,
                "path": self.path,
                "auth": self.headers.get("Authorization"),
                "client_cn": subject.get("commonName"),
                "body": json.loads(body) if body else None,
            }
        )
        out = json.dumps({"kind": "Status", "path": self.path}).encode()
        self.send_response(404 if "missing" in self.path else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = _answer
    do_POST = _answer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    seen: list[dict[str, Any]]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[str, certs.CertBundle, tuple[bytes, bytes], _Server]]:
    """An HTTPS server on 127.0.0.1 that asks for (and verifies) an optional client certificate."""
    bundle = certs.generate("kube-apiserver", "test", ips=["127.0.0.1"])
    client_ca = certs.new_ca("client CA")
    certs.write_bundle(bundle, tmp_path / "server")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "server" / certs.TLS_CERT, tmp_path / "server" / certs.TLS_KEY)
    ctx.load_verify_locations(cadata=client_ca[0].decode())
    ctx.verify_mode = ssl.CERT_OPTIONAL
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.seen = []
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{srv.server_address[1]}", bundle, client_ca, srv
    finally:
        srv.shutdown()
        srv.server_close()


def _client_cert(ca: tuple[bytes, bytes], cn: str) -> tuple[bytes, bytes]:
    ca_cert = x509.load_pem_x509_certificate(ca[0])
    ca_key = serialization.load_pem_private_key(ca[1], None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _kubeconfig(path: Path, server: str, cluster: dict[str, Any], user: dict[str, Any]) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server, **cluster}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [
            {"name": "other", "context": {"cluster": "c"}},
            {"name": "main", "context": {"cluster": "c", "user": "u"}},
        ],
        "current-context": "main",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_token_and_ca_data(api: Any, tmp_path: Path) -> None:
    url, bundle, _, srv = api
    cfg = _kubeconfig(
        tmp_path / "kc", url, {"certificate-authority-data": _b64(bundle.ca_cert)}, {"token": "t1"}
    )
    client = kubeapi.load(str(cfg))
    status, body = client.request("POST", "/api/v1/namespaces/ns/pods?dryRun=All", {"kind": "Pod"})
    assert (status, body["path"]) == (200, "/api/v1/namespaces/ns/pods?dryRun=All")
    assert srv.seen == [
        {
            "method": "POST",
            "path": "/api/v1/namespaces/ns/pods?dryRun=All",
            "auth": "Bearer t1",
            "client_cn": None,
            "body": {"kind": "Pod"},
        }
    ]
    assert client.request("GET", "/missing")[0] == 404
    assert not client.in_cluster


def test_client_certificate_files_relative_to_the_kubeconfig(api: Any, tmp_path: Path) -> None:
    url, bundle, client_ca, srv = api
    cert, key = _client_cert(client_ca, "admin")
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "ca.crt").write_bytes(bundle.ca_cert)
    (tmp_path / "pki" / "admin.crt").write_bytes(cert)
    (tmp_path / "pki" / "admin.key").write_bytes(key)
    user = {"client-certificate": "pki/admin.crt", "client-key": "pki/admin.key"}
    cfg = _kubeconfig(tmp_path / "kc", url, {"certificate-authority": "pki/ca.crt"}, user)
    assert kubeapi.from_kubeconfig(cfg).request("GET", "/version")[0] == 200
    assert srv.seen[-1]["client_cn"] == "admin" and srv.seen[-1]["auth"] is None


def test_exec_plugin_token_and_certificate(api: Any, tmp_path: Path) -> None:
    url, bundle, client_ca, srv = api
    cert, key = _client_cert(client_ca, "from-exec")
    status = {"token": "exec-token", "clientCertificateData": cert.decode(), "clientKeyData": key.decode()}
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import json, os, sys\n"
        "info = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
        "assert info['kind'] == 'ExecCredential' and os.environ['EXTRA'] == 'yes' and sys.argv[1:] == ['a']\n"
        f"print(json.dumps({{'apiVersion': info['apiVersion'], 'status': {status!r}}}))\n"
    )
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(plugin), "a"],
            "env": [{"name": "EXTRA", "value": "yes"}],
        }
    }
    cfg = _kubeconfig(tmp_path / "kc", url, {"certificate-authority-data": _b64(bundle.ca_cert)}, user)
    assert kubeapi.from_kubeconfig(cfg).request("GET", "/version")[0] == 200
    assert srv.seen[-1]["auth"] == "Bearer exec-token"
    assert srv.seen[-1]["client_cn"] == "from-exec"


def test_basic_auth_and_a_context_without_user(api: Any, tmp_path: Path) -> None:
    url, bundle, _, srv = api
    cfg = _kubeconfig(
        tmp_path / "kc",
        url,
        {"certificate-authority-data": _b64(bundle.ca_cert)},
        {"username": "u", "password": "p"},
    )
    kubeapi.from_kubeconfig(cfg).request("GET", "/a")
    kubeapi.from_kubeconfig(cfg, "other").request("GET", "/b")
    assert [s["auth"] for s in srv.seen] == ["Basic " + _b64(b"u:p"), None]


def test_the_server_certificate_is_verified(api: Any, tmp_path: Path) -> None:
    url, _, _, srv = api
    foreign = certs.generate("other", "ca").ca_cert
    cfg = _kubeconfig(tmp_path / "kc", url, {"certificate-authority-data": _b64(foreign)}, {"token": "t"})
    with pytest.raises(ssl.SSLCertVerificationError):
        kubeapi.from_kubeconfig(cfg).request("GET", "/version")
    assert srv.seen == []


def test_in_cluster_service_account(api: Any, tmp_path: Path) -> None:
    url, bundle, _, srv = api
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("sa-token\n")
    (sa / "ca.crt").write_bytes(bundle.ca_cert)
    port = url.rsplit(":", 1)[1]
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port}
    client = kubeapi.in_cluster(sa, env)
    assert client.in_cluster
    assert client.request("GET", "/version")[0] == 200
    assert srv.seen[-1]["auth"] == "Bearer sa-token"


@pytest.mark.parametrize(
    ("cluster", "user", "match"),
    [
        ({"server": "http://plain"}, {}, "https:// URL"),
        ({"proxy-url": "http://proxy:3128"}, {}, "proxy-url"),
        ({}, {"auth-provider": {"name": "gcp"}}, "legacy auth-provider"),
        ({}, {"exec": {"command": "/nonexistent/plugin"}}, "cannot run the exec credential plugin"),
        ({}, {"client-certificate-data": "not base64!"}, "not valid base64"),
    ],
)
def test_unusable_kubeconfigs_say_why(
    tmp_path: Path, cluster: dict[str, Any], user: dict[str, Any], match: str
) -> None:
    cfg = _kubeconfig(tmp_path / "kc", "https://127.0.0.1:1", cluster, user)
    with pytest.raises(kubeapi.KubeConfigError, match=match):
        kubeapi.from_kubeconfig(cfg)
    with pytest.raises(kubeapi.KubeConfigError, match="no context named 'nope'"):
        kubeapi.from_kubeconfig(cfg, "nope")


def test_no_kubeconfig_and_not_in_a_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(kubeapi.KubeConfigError, match="not in a cluster"):
        kubeapi.load()
