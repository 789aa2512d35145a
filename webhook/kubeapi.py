"""Just enough of the Kubernetes API for `package-injector check`: credentials, then JSON over HTTPS.

`check` makes two calls (read a MutatingWebhookConfiguration, dry-run create a Pod). The `kubernetes`
client package would make up much of the webhook image for that, so this module reads the same
credentials the client reads, in the same order: the kubeconfig given (`--kubeconfig`, `--context`),
else the first file of $KUBECONFIG or ~/.kube/config when it exists, else the Pod's service account
(the chart's `helm test` Pod). From a kubeconfig: the server, its CA (file or data, or
insecure-skip-tls-verify), and a bearer token (inline or tokenFile), a client certificate (files or
data), basic auth, or an `exec` credential plugin (client.authentication.k8s.io, as EKS, GKE and AKS
kubeconfigs use). Legacy `auth-provider` entries and `proxy-url` are refused with a clear message.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import subprocess
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

SERVICE_ACCOUNT_DIR: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
EXEC_TIMEOUT: Final = 60.0


class KubeConfigError(Exception):
    """The credentials cannot be loaded; the message says which file or field."""


@dataclass
class ApiClient:
    """One API server and the credentials for it."""

    server: str
    context: ssl.SSLContext
    headers: dict[str, str] = field(default_factory=dict)
    in_cluster: bool = False
    timeout: float = 30.0

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One call; returns the status and the decoded JSON body (a dict with `message` if not JSON)."""
        parts = urllib.parse.urlsplit(self.server)
        conn = http.client.HTTPSConnection(
            parts.hostname or "", parts.port or 443, timeout=self.timeout, context=self.context
        )
        prefix = parts.path.rstrip("/")
        headers = {"Accept": "application/json", "User-Agent": "package-injector-check", **self.headers}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, prefix + path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            decoded: Any = json.loads(raw) if raw else {}
        except ValueError:
            decoded = {"message": raw.decode("utf-8", "replace")[:500]}
        return resp.status, decoded


def load(kubeconfig: str | None = None, context: str | None = None) -> ApiClient:
    """Credentials in the `kubernetes` client's order: explicit kubeconfig, default file, in-cluster."""
    default_file = os.path.expanduser(os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0])
    if kubeconfig or context or os.path.exists(default_file):
        return from_kubeconfig(Path(kubeconfig or default_file), context)
    return in_cluster()


def in_cluster(sa_dir: Path = SERVICE_ACCOUNT_DIR, environ: dict[str, str] | None = None) -> ApiClient:
    """The Pod's service account: KUBERNETES_SERVICE_HOST/PORT, its token and the cluster CA."""
    env = os.environ if environ is None else environ
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise KubeConfigError(
            "no kubeconfig found and not in a cluster (KUBERNETES_SERVICE_HOST/PORT unset); use --kubeconfig"
        )
    try:
        token = (sa_dir / "token").read_text().strip()
        ctx = ssl.create_default_context(cafile=str(sa_dir / "ca.crt"))
    except OSError as exc:
        raise KubeConfigError(f"cannot read the service account in {sa_dir}: {exc.strerror or exc}") from None
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    return ApiClient(server, ctx, {"Authorization": f"Bearer {token}"}, in_cluster=True)


def from_kubeconfig(path: Path, context_name: str | None = None) -> ApiClient:
    """The server and credentials of `context_name` (default: current-context) in the kubeconfig `path`."""
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise KubeConfigError(f"cannot read kubeconfig {path}: {exc}") from None
    base = path.parent
    name = context_name or config.get("current-context")
    if not name:
        raise KubeConfigError(f"{path} has no current-context; use --context")
    ctx = _named(config, "contexts", name, path)["context"] or {}
    cluster = _named(config, "clusters", ctx.get("cluster"), path)["cluster"] or {}
    user: dict[str, Any] = {}
    if ctx.get("user"):
        user = _named(config, "users", ctx["user"], path).get("user") or {}
    server = cluster.get("server")
    if not server or not str(server).startswith("https://"):
        raise KubeConfigError(f"context {name} in {path}: the cluster server must be an https:// URL")
    if cluster.get("proxy-url"):
        raise KubeConfigError(f"context {name} in {path}: proxy-url is not supported by check")
    tls = _ssl_context(cluster, base)
    headers: dict[str, str] = {}
    if user.get("auth-provider"):
        raise KubeConfigError(
            f"user {ctx.get('user')} in {path} uses a legacy auth-provider, which check does not run; "
            "use an exec credential plugin (what current cloud CLIs write)"
        )
    if user.get("exec"):
        user = {**user, **_exec_credential(user["exec"], base)}
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = _read(_path(user["tokenFile"], base), "tokenFile").decode().strip()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    elif user.get("username"):
        raw = f"{user['username']}:{user.get('password', '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
    cert = _pem(user, "client-certificate", base)
    key = _pem(user, "client-key", base)
    if cert and key:
        _load_client_cert(tls, cert, key)
    return ApiClient(str(server), tls, headers)


def _named(config: dict[str, Any], section: str, name: Any, path: Path) -> dict[str, Any]:
    for entry in config.get(section) or []:
        if entry.get("name") == name:
            return dict(entry)
    raise KubeConfigError(f"{path} has no {section[:-1]} named {name!r}")


def _path(value: str, base: Path) -> Path:
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else base / p


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KubeConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _pem(entry: dict[str, Any], key: str, base: Path) -> bytes | None:
    """`key-data` (base64 of PEM) or the file `key` (relative to the kubeconfig), or None."""
    data = entry.get(f"{key}-data")
    if data:
        try:
            return base64.b64decode(data, validate=True)
        except ValueError:
            raise KubeConfigError(f"{key}-data is not valid base64") from None
    if entry.get(key):
        return _read(_path(entry[key], base), key)
    return None


def _ssl_context(cluster: dict[str, Any], base: Path) -> ssl.SSLContext:
    if cluster.get("insecure-skip-tls-verify"):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ca = _pem(cluster, "certificate-authority", base)
    ctx = ssl.create_default_context(cadata=ca.decode("ascii", "replace") if ca else None)
    return ctx


def _load_client_cert(ctx: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """ssl loads a certificate only from files: a private directory, removed right after."""
    with tempfile.TemporaryDirectory(prefix="package-injector-") as tmp:
        cert_file, key_file = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        for target, data in ((cert_file, cert), (key_file, key)):
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        try:
            ctx.load_cert_chain(cert_file, key_file)
        except ssl.SSLError as exc:
            raise KubeConfigError(f"the client certificate or key is not usable: {exc}") from None


def _exec_credential(spec: dict[str, Any], base: Path) -> dict[str, Any]:
    """Run a client.authentication.k8s.io exec plugin; its token or client certificate, as user fields."""
    command = spec.get("command")
    if not command:
        raise KubeConfigError("exec credential plugin without a command")
    env = dict(os.environ)
    env.update({e["name"]: e["value"] for e in spec.get("env") or []})
    api_version = spec.get("apiVersion", "client.authentication.k8s.io/v1")
    info = {"apiVersion": api_version, "kind": "ExecCredential", "spec": {"interactive": False}}
    env["KUBERNETES_EXEC_INFO"] = json.dumps(info)
    if "/" in command and not os.path.isabs(command):
        command = str(base / command)
    try:
        proc = subprocess.run(
            [command, *(spec.get("args") or [])],
            env=env,
            capture_output=True,
            timeout=EXEC_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        hint = spec.get("installHint") or ""
        raise KubeConfigError(
            f"cannot run the exec credential plugin {command}: {exc} {hint}".strip()
        ) from None
    if proc.returncode != 0:
        raise KubeConfigError(
            f"exec credential plugin {command} exited {proc.returncode}: "
            f"{proc.stderr.decode(errors='replace')[-500:].strip()}"
        )
    try:
        status = json.loads(proc.stdout).get("status") or {}
    except ValueError:
        raise KubeConfigError(f"exec credential plugin {command} printed no ExecCredential JSON") from None
    fields: dict[str, Any] = {}
    if status.get("token"):
        fields["token"] = status["token"]
    if status.get("clientCertificateData") and status.get("clientKeyData"):
        fields["client-certificate-data"] = base64.b64encode(
            status["clientCertificateData"].encode()
        ).decode()
        fields["client-key-data"] = base64.b64encode(status["clientKeyData"].encode()).decode()
    if not fields:
        raise KubeConfigError(f"exec credential plugin {command} returned neither a token nor a certificate")
    return fields
