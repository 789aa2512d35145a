"""Where the admission overhead goes: create the same Pod through a real kube-apiserver 1.20

1. with no webhook registered (annotated Pod, stored as is),
2. with no webhook, the Pod already injected by hand (the bigger stored object alone),
3. with the webhook registered, Pod without package-url (a webhook call answered with no patch),
4. with the webhook registered, annotated Pod (call + patch), as `bench apiserver` measures.

Run: .venv/bin/python -m bench.experiments.admission_breakdown [--pods 150]
Prints the median ms per create for each, and how many TCP connections the apiserver kept to the webhook.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.apiserver import NAMESPACE, Client, _pod_body, _webhook_config
from tests.support.kube import running_cluster
from tests.support.webhook import running_webhook
from webhook.inject import inject
from webhook.settings import Settings


def _median_create_ms(client: Client, body: dict[str, Any], pods: int) -> float:
    times = []
    for _ in range(pods):
        obj = copy.deepcopy(body)
        obj["metadata"].pop("generateName", None)
        obj["metadata"]["name"] = f"p{time.monotonic_ns()}"
        status, out, seconds = client.call("POST", f"/api/v1/namespaces/{NAMESPACE}/pods", obj)
        if status != 201:
            raise RuntimeError(f"create failed: {status} {out}")
        times.append(seconds * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pods", type=int, default=150)
    args = parser.parse_args(argv)
    annotated = _pod_body(3)
    plain = copy.deepcopy(annotated)
    annotations = plain["metadata"].get("annotations", {})
    plain["metadata"]["annotations"] = {k: v for k, v in annotations.items() if not k.startswith("package-")}
    work = Path(tempfile.mkdtemp(prefix="admission-breakdown-"))
    with (
        running_cluster(work / "cluster", controller_manager=False) as cluster,
        running_webhook(work / "w") as hook,
    ):
        client = Client(cluster.url, cluster.ca_file, cluster.token)
        client.call("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
        result: dict[str, Any] = {
            "no webhook, annotated pod": _median_create_ms(client, annotated, args.pods),
            "no webhook, pod injected by hand": _median_create_ms(
                client, inject(annotated, Settings()).pod, args.pods
            ),
        }
        config = _webhook_config(hook.url, hook.ca_bundle_b64)
        status, body, _ = client.call(
            "POST", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", config
        )
        if status != 201:
            raise RuntimeError(f"registering the webhook failed: {status} {body}")
        time.sleep(3)  # the apiserver picks up new configurations asynchronously
        result["webhook, pod without package-url (call, no patch)"] = _median_create_ms(
            client, plain, args.pods
        )
        result["webhook, annotated pod (call + patch)"] = _median_create_ms(client, annotated, args.pods)
        port = hook.url.rsplit(":", 1)[1]
        sockets = subprocess.run(["ss", "-tanH", f"( sport = :{port} )"], capture_output=True, text=True)
        result["connections to the webhook (ESTAB)"] = sockets.stdout.count("ESTAB")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
