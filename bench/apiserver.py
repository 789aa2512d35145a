"""Admission overhead seen by a real client: create the same Pods through a real kube-apiserver with and
without the webhook registered.

Uses the test fixtures (tests/support/kube.py: etcd + kube-apiserver of KUBE_VERSION, default the newest
1.37.x, built by scripts/cluster-assets.sh --control-plane;
tests/support/webhook.py: the real `package-injector serve` with a fresh certificate). The webhook is
registered with `clientConfig.url` on 127.0.0.1. Pods are Deployment-shaped (bench/reviews.py, 3 containers,
annotated with package-url), created one at a time over one keep-alive HTTPS connection, in blocks that
alternate "with" and "without" (the MutatingWebhookConfiguration is created/deleted between blocks, and
a server-side dry-run probe confirms the change took effect before timing resumes).
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import WORK, log, machine, percentile, summary, write_result
from bench.reviews import pod

if TYPE_CHECKING:
    from tests.support.kube import Cluster

NAMESPACE = "bench"
CONFIG = "package-injector-bench"


def _experiment_env(experiment: str) -> dict[str, str]:
    if not experiment:
        return {}
    from bench.common import REPO

    return {"PYTHONPATH": f"{SITE}:{REPO}", "BENCH_EXPERIMENT": experiment}


def _pod_body(containers: int = 3) -> dict[str, Any]:
    obj = pod(containers)
    meta = obj["metadata"]
    for k in ("managedFields", "creationTimestamp", "ownerReferences"):
        meta.pop(k, None)
    obj.pop("status", None)
    return obj


def prepare_namespace(cluster: Cluster) -> None:
    """The bench namespace and the ServiceAccount the Pods name, as a real cluster has it: 1.37's
    ServiceAccount plugin refuses Pods whose account does not exist (the 1.20 runs did without it)."""
    cluster.create_namespace(NAMESPACE)
    account = _pod_body()["spec"].get("serviceAccountName")
    if account:
        sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}}
        status, answer = cluster.request("POST", f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts", sa)
        if status not in (201, 409):
            raise RuntimeError(f"creating ServiceAccount {account}: {status} {answer}")


def _webhook_config(url: str, ca_bundle: str) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": CONFIG},
        "webhooks": [
            {
                "name": "inject.package-injector.bench",
                "clientConfig": {"url": f"{url}/mutate", "caBundle": ca_bundle},
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    }
                ],
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 10,
                "reinvocationPolicy": "IfNeeded",
            }
        ],
    }


class Client:
    """One keep-alive HTTPS connection to the apiserver, like a controller's client."""

    def __init__(self, url: str, ca_file: Path, token: str) -> None:
        host_port = url.removeprefix("https://")
        host, port = host_port.split(":")
        ctx = ssl.create_default_context(cafile=str(ca_file))
        self.conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=30)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any, float]:
        data = None if body is None else json.dumps(body).encode()
        t0 = time.perf_counter()
        self.conn.request(method, path, body=data, headers=self.headers)
        resp = self.conn.getresponse()
        raw = resp.read()
        elapsed = time.perf_counter() - t0
        return resp.status, json.loads(raw or b"null"), elapsed


def _injected(obj: Any) -> bool:
    inits = (obj or {}).get("spec", {}).get("initContainers") or []
    return any(c.get("name") == "package-downloader" for c in inits)


def _set_webhook(client: Client, on: bool, config: dict[str, Any], body: dict[str, Any]) -> None:
    path = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
    if on:
        status, answer, _ = client.call("POST", path, config)
        if status not in (201, 409):
            raise RuntimeError(f"registering the webhook: {status} {answer}")
    else:
        status, answer, _ = client.call("DELETE", f"{path}/{CONFIG}")
        if status not in (200, 404):
            raise RuntimeError(f"removing the webhook: {status} {answer}")
    deadline = time.monotonic() + 30
    while True:  # the apiserver picks up webhook configurations asynchronously
        status, answer, _ = client.call("POST", f"/api/v1/namespaces/{NAMESPACE}/pods?dryRun=All", body)
        if status == 201 and _injected(answer) == on:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"webhook {'on' if on else 'off'} did not take effect: {status}")
        time.sleep(0.2)


SITE = Path(__file__).resolve().parent / "experiments" / "site"


def bench_apiserver(pods: int, block: int, experiment: str = "") -> dict[str, Any]:
    from tests.support.kube import running_cluster
    from tests.support.webhook import running_webhook

    workdir = WORK / "apiserver"
    shutil.rmtree(workdir, ignore_errors=True)
    body = _pod_body()
    lat: dict[str, list[float]] = {"without": [], "with": []}
    with (
        running_cluster(workdir / "cluster") as cluster,
        running_webhook(workdir / "webhook", _experiment_env(experiment)) as wh,
    ):
        prepare_namespace(cluster)
        client = Client(cluster.url, cluster.ca_file, cluster.token)
        config = _webhook_config(wh.url, wh.ca_bundle_b64)
        path = f"/api/v1/namespaces/{NAMESPACE}/pods"
        # warm-up in both modes (connections, caches, the webhook's first TLS handshake)
        for mode in ("with", "without"):
            _set_webhook(client, mode == "with", config, body)
            for _ in range(20):
                client.call("POST", path, body)
        blocks = pods // block
        for b in range(2 * blocks):
            # with/without alternate; the pair order flips every other pair (ABBA), so drift cancels
            first = "with" if (b // 2) % 2 == 0 else "without"
            mode = first if b % 2 == 0 else ("without" if first == "with" else "with")
            _set_webhook(client, mode == "with", config, body)
            for _ in range(block):
                status, answer, elapsed = client.call("POST", path, body)
                if status != 201 or _injected(answer) != (mode == "with"):
                    raise RuntimeError(f"create ({mode}): {status} {str(answer)[:500]}")
                lat[mode].append(elapsed * 1000)
            log(f"block {b}: {mode:7} p50 {percentile(sorted(lat[mode][-block:]), 50):6.2f} ms")
        handler = _handler_time(wh.metrics_url)
    table: dict[str, Any] = {}
    for mode, vals in lat.items():
        s = sorted(vals)
        table[mode] = {
            "n": len(s),
            "p50_ms": percentile(s, 50),
            "p90_ms": percentile(s, 90),
            "p99_ms": percentile(s, 99),
            "mean_ms": sum(s) / len(s),
            "min_ms": s[0],
            "max_ms": s[-1],
        }
    table["added_p50_ms"] = table["with"]["p50_ms"] - table["without"]["p50_ms"]
    table["added_p99_ms"] = table["with"]["p99_ms"] - table["without"]["p99_ms"]
    # per-block medians, to show the spread between blocks
    table["block_p50_ms"] = {
        mode: summary(percentile(sorted(vals[i : i + block]), 50) for i in range(0, len(vals), block))
        for mode, vals in lat.items()
    }
    table["webhook_handler_mean_ms"] = handler
    return {"pods_per_mode": pods, "block": block, "table": table, "latencies_ms": lat}


def _handler_time(metrics_url: str) -> float | None:
    """Mean time inside the webhook's /mutate handler for Pods (its own histogram), in ms."""
    import urllib.request

    with urllib.request.urlopen(metrics_url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    total = count = None
    for line in text.splitlines():
        if line.startswith('package_injector_admission_duration_seconds_sum{kind="Pod"}'):
            total = float(line.rsplit(" ", 1)[1])
        if line.startswith('package_injector_admission_duration_seconds_count{kind="Pod"}'):
            count = float(line.rsplit(" ", 1)[1])
    return None if not count or total is None else 1000 * total / count


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench apiserver")
    ap.add_argument("--pods", type=int, default=500, help="pods per mode")
    ap.add_argument("--block", type=int, default=50)
    ap.add_argument("--name", default="apiserver")
    ap.add_argument("--experiment", default="", help="see bench/experiments/site")
    args = ap.parse_args(argv)
    from tests.support.kube import binaries

    out = {
        "machine": machine(),
        "kube_version": binaries().version,
        "command": "python -m bench apiserver " + " ".join(argv or []),
        "experiment": args.experiment or None,
        **bench_apiserver(args.pods, args.block, args.experiment),
    }
    write_result(args.name, out)
    t = out["table"]
    log(
        f"without p50 {t['without']['p50_ms']:.2f} p99 {t['without']['p99_ms']:.2f} | "
        f"with p50 {t['with']['p50_ms']:.2f} p99 {t['with']['p99_ms']:.2f} | "
        f"added p50 {t['added_p50_ms']:.2f} ms p99 {t['added_p99_ms']:.2f} ms | "
        f"mean time in the webhook handler {t['webhook_handler_mean_ms'] or 0:.2f} ms"
    )


if __name__ == "__main__":
    main()
