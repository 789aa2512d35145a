"""Another real mutating webhook for the e2e tests: TLS on 127.0.0.1, answers with a JSON Patch.

Real clusters run several (a service mesh, pod identity, Vault, tracing agents); the apiserver orders
them by configuration name and re-invokes them per `reinvocationPolicy`. `mutate` gets the object of
each AdmissionReview and returns the patch operations (none when it already did its part).
"""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from webhook import certs

Patcher = Callable[[dict[str, Any]], list[dict[str, Any]]]


@dataclass
class OtherWebhook:
    url: str
    ca_bundle_b64: str
    calls: list[str]
    """The name of each container list seen per call, e.g. 'app0,sidecar|package-downloader'."""


def _handler(mutate: Patcher, calls: list[str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            request = review["request"]
            spec = request["object"]["spec"]
            calls.append(
                ",".join(c["name"] for c in spec["containers"])
                + "|"
                + ",".join(c["name"] for c in spec.get("initContainers") or [])
            )
            response: dict[str, Any] = {"uid": request["uid"], "allowed": True}
            ops = mutate(request["object"])
            if ops:
                response["patchType"] = "JSONPatch"
                response["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
            body = json.dumps(
                {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
            )
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@contextlib.contextmanager
def running_other_webhook(workdir: Path, mutate: Patcher) -> Iterator[OtherWebhook]:
    bundle = certs.generate("other-webhook", "e2e", ips=["127.0.0.1"])
    certs.write_bundle(bundle, workdir)
    calls: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(mutate, calls))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(workdir / certs.TLS_CERT, workdir / certs.TLS_KEY)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield OtherWebhook(f"https://127.0.0.1:{server.server_address[1]}", bundle.ca_bundle_b64, calls)
    finally:
        server.shutdown()
        server.server_close()


def append_container(name: str, image: str) -> Patcher:
    """Like a mesh injector: appends a container once."""

    def mutate(obj: dict[str, Any]) -> list[dict[str, Any]]:
        if any(c["name"] == name for c in obj["spec"]["containers"]):
            return []
        return [{"op": "add", "path": "/spec/containers/-", "value": {"name": name, "image": image}}]

    return mutate


def env_and_mount_everywhere(env: dict[str, str], volume: str, mount_path: str) -> Patcher:
    """Like a tracing or identity agent: env and a ConfigMap mount in every container, init ones included."""

    def mutate(obj: dict[str, Any]) -> list[dict[str, Any]]:
        spec = obj["spec"]
        ops: list[dict[str, Any]] = []
        if not any(v["name"] == volume for v in spec.get("volumes") or []):
            entry = {"name": volume, "configMap": {"name": volume}}
            ops.append({"op": "add", "path": "/spec/volumes/-", "value": entry} if "volumes" in spec else
                       {"op": "add", "path": "/spec/volumes", "value": [entry]})  # fmt: skip
        for kind in ("initContainers", "containers"):
            for i, container in enumerate(spec.get(kind) or []):
                base = f"/spec/{kind}/{i}"
                if not any(m["name"] == volume for m in container.get("volumeMounts") or []):
                    mount = {"name": volume, "mountPath": mount_path, "readOnly": True}
                    ops.append({"op": "add", "path": f"{base}/volumeMounts/-", "value": mount}
                               if "volumeMounts" in container else
                               {"op": "add", "path": f"{base}/volumeMounts", "value": [mount]})  # fmt: skip
                names = {e["name"] for e in container.get("env") or []}
                new = [{"name": k, "value": v} for k, v in env.items() if k not in names]
                if new and "env" in container:
                    ops += [{"op": "add", "path": f"{base}/env/-", "value": e} for e in new]
                elif new:
                    ops.append({"op": "add", "path": f"{base}/env", "value": new})
        return ops

    return mutate
