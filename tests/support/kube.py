"""A real Kubernetes control plane for the tests: etcd + kube-apiserver + kube-controller-manager.

The binaries are the ones the one-node cluster runs (`scripts/cluster-assets.sh --control-plane`: Kubernetes
`KUBE_VERSION`, default the newest 1.37.x, built from Go modules and cached); `scripts/test.sh` passes them
in `E2E_KUBE_BIN` and `E2E_ETCD`. There is no kubelet, so Pods stay Pending, which is all admission needs.
Everything listens on 127.0.0.1 only.

Configured like a real cluster: every admission plugin the version enables by default stays on
(PodSecurity included; the ServiceAccount plugin mounts the projected `kube-api-access-*` token volume
into every container, ours included, and runs again after a webhook's patch), with a signing key; the
controller-manager runs its default controllers with per-controller credentials, so each namespace gets
its default ServiceAccount (`create_namespace` waits for it: a Pod created before it is refused by the
plugin, in real clusters too). Since 1.24 no token Secret is made: the kubelet requests the token.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.net import free_port

REPO = Path(__file__).resolve().parents[2]


class KubeAssetsMissing(RuntimeError):
    """The control-plane binaries are not there: run scripts/cluster-assets.sh --control-plane."""


@dataclass(frozen=True)
class Binaries:
    """Where the control plane's programs live, and which Kubernetes version they are."""

    kube_bin: Path  # kube-apiserver, kube-controller-manager
    etcd: Path
    version: str


def binaries() -> Binaries:
    """From scripts/test.sh's environment, or built (once, cached) by scripts/cluster-assets.sh."""
    kube_bin, etcd = os.environ.get("E2E_KUBE_BIN"), os.environ.get("E2E_ETCD")
    if not (kube_bin and etcd):
        out = subprocess.run(
            ["bash", str(REPO / "scripts" / "cluster-assets.sh"), "--control-plane"],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        found = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
        kube_bin, etcd = found["KUBE_BIN"], found["ETCD"]
    bins = Binaries(Path(kube_bin), Path(etcd), Path(kube_bin).name)
    for path in (bins.etcd, bins.kube_bin / "kube-apiserver", bins.kube_bin / "kube-controller-manager"):
        if not path.exists():
            raise KubeAssetsMissing(f"{path} is missing: run scripts/cluster-assets.sh --control-plane")
    return bins


@dataclass
class Cluster:
    """A running control plane and the credentials to talk to it."""

    url: str
    token: str
    ca_file: Path
    kubeconfig: Path
    workdir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; stdout/stderr captured as text."""
        cmd = ["kubectl", f"--kubeconfig={self.kubeconfig}", *args]
        return subprocess.run(cmd, input=input, capture_output=True, text=True, check=check, timeout=60)

    def create_denied(self, namespace: str, manifest: dict[str, Any]) -> str:
        """`kubectl create` of `manifest`, which an admission webhook must deny: returns kubectl's stderr."""
        result = self.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(manifest), check=False)
        assert result.returncode != 0, f"created, not denied: {result.stdout}"
        assert "denied the request" in result.stderr, result.stderr
        return result.stderr

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """A raw API call: (HTTP status, decoded JSON body)."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        """Create it and wait for its default ServiceAccount (the serviceaccount controller makes it)."""
        meta: dict[str, Any] = {"name": name}
        if labels:
            meta["labels"] = labels
        status, body = self.request("POST", "/api/v1/namespaces", {"metadata": meta})
        if status not in (201, 409):
            raise RuntimeError(f"creating namespace {name}: {status} {body}")
        self.wait_for_default_service_account(name)

    def wait_for_default_service_account(self, namespace: str) -> None:
        """The ServiceAccount plugin refuses Pods until it exists (its token is projected: no Secret)."""

        def ready() -> bool:
            status, _ = self.request("GET", f"/api/v1/namespaces/{namespace}/serviceaccounts/default")
            return status == 200

        self.wait_for(ready, timeout=60, what=f"the default ServiceAccount in {namespace}")

    def wait_for(self, predicate: Any, timeout: float = 60.0, what: str = "condition") -> Any:
        """Poll `predicate()` until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.2)


def _write_key(path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )


def _wait_ready(url: str, ca_file: Path, token: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    deadline = time.monotonic() + 90
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"kube-apiserver exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        req = urllib.request.Request(url + "/readyz", headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:
                if resp.status == 200:
                    return
        except (OSError, ssl.SSLError) as err:
            last = err
        time.sleep(0.3)
    raise TimeoutError(f"kube-apiserver not ready: {last}\n{log.read_text()[-3000:]}")


def _spawn(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _start_etcd(bins: Binaries, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    client, peer = free_port(), free_port()
    client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    proc = _spawn(
        [
            str(bins.etcd),
            "--data-dir", str(workdir / "etcd"),
            "--listen-client-urls", client_url,
            "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url,
            "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"default={peer_url}",
            "--unsafe-no-fsync",
        ],
        workdir / "etcd.log",
    )  # fmt: skip
    return proc, client_url


def _start_apiserver(
    bins: Binaries, workdir: Path, etcd_url: str, token: str
) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    (workdir / "tokens.csv").write_text(f'{token},admin,admin-uid,"system:masters"\n')
    _write_key(workdir / "sa.key")
    cert_dir = workdir / "apiserver-certs"
    proc = _spawn(
        [
            str(bins.kube_bin / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            # Unlike production: no Endpoints for the `kubernetes` Service (1.24+ refuse a loopback address
            # there, and this apiserver has no other). Nothing here runs in a Pod, so nothing dials it.
            "--endpoint-reconciler-type=none",
            f"--secure-port={port}",
            f"--cert-dir={cert_dir}",
            f"--token-auth-file={workdir / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={workdir / 'sa.key'}",
            f"--service-account-signing-key-file={workdir / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
        ],
        workdir / "kube-apiserver.log",
    )
    # The apiserver writes its self-signed serving cert (with its CA) on start.
    ca_file = cert_dir / "apiserver.crt"
    deadline = time.monotonic() + 30
    while not ca_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((workdir / "kube-apiserver.log").read_text()[-3000:])
        time.sleep(0.1)
    return proc, f"https://127.0.0.1:{port}", ca_file


def _write_kubeconfig(path: Path, url: str, ca_file: Path, token: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": url, "certificate-authority": str(ca_file)}}],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
        "current-context": "test",
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)


def _start_controller_manager(bins: Binaries, cluster: Cluster) -> subprocess.Popen[bytes]:
    # The version's default controllers (no --controllers), each with its own ServiceAccount's credentials,
    # as kubeadm runs them: the serviceaccount and root-ca-cert-publisher controllers give each namespace
    # what the ServiceAccount plugin and the projected token volume refer to.
    return _spawn(
        [
            str(bins.kube_bin / "kube-controller-manager"),
            f"--kubeconfig={cluster.kubeconfig}",
            "--leader-elect=false",
            f"--secure-port={free_port()}",
            "--bind-address=127.0.0.1",
            f"--service-account-private-key-file={cluster.workdir / 'sa.key'}",
            f"--root-ca-file={cluster.ca_file}",
            "--use-service-account-credentials=true",
            "--service-cluster-ip-range=10.0.0.0/24",
        ],
        cluster.workdir / "kube-controller-manager.log",
    )


@contextlib.contextmanager
def running_cluster(workdir: Path) -> Iterator[Cluster]:
    """Start etcd, kube-apiserver and kube-controller-manager; stop them on exit.

    The controller-manager is not optional: without its ServiceAccount controllers the apiserver's
    ServiceAccount plugin refuses every Pod, as it would in a real cluster."""
    bins = binaries()
    workdir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        etcd, etcd_url = _start_etcd(bins, workdir)
        procs.append(etcd)
        api, url, ca_file = _start_apiserver(bins, workdir, etcd_url, token)
        procs.append(api)
        _wait_ready(url, ca_file, token, api, workdir / "kube-apiserver.log")
        cluster = Cluster(url, token, ca_file, workdir / "kubeconfig", workdir, procs)
        _write_kubeconfig(cluster.kubeconfig, url, ca_file, token)
        procs.append(_start_controller_manager(bins, cluster))
        yield cluster
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


MWC_PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"


def inert_service_webhook(cluster: Cluster, name: str, service: str, namespace: str) -> None:
    """Register a Service-mode configuration that is read (by check, explain) but never called.

    Its namespaceSelector matches a label nobody has, so no Pod ever reaches the Service.
    """
    mwc = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "pods.package-injector.dev",
                "clientConfig": {"service": {"name": service, "namespace": namespace, "path": "/mutate"}},
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                    }
                ],
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Ignore",
                "namespaceSelector": {"matchLabels": {f"{name}-nobody": "x"}},
            }
        ],
    }
    status, body = cluster.request("POST", MWC_PATH, mwc)
    assert status == 201, body
