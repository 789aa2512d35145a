"""A webhook rollout under load, through a Service-like address, with a real kube-apiserver.

Run as `python -m tests.support.drain_probe WORKDIR` inside a network namespace of its own (`unshare -n`,
see `tests/e2e/test_drain_service.py`): it rewrites that namespace's iptables. Prints one JSON object.

The apiserver calls `https://127.0.0.1:SERVICE_PORT/mutate`; an iptables DNAT rule (what kube-proxy's
iptables mode writes for a ClusterIP) sends new connections to the ready webhook Pod, and conntrack keeps
each established connection with the Pod it first reached, as in a cluster. Two webhook processes stand
for the old and the new Pod. While workers create annotated Pods (dryRun=All, which still calls the
webhook) the old one gets SIGTERM and, at the same moment, the rule is pointed at the new one (the
endpoint is removed as the Pod starts terminating). Every create must succeed.

Differs from a cluster: one endpoint at a time (kube-proxy picks among several at random), loopback
instead of a Pod network, and the endpoint switch is instant rather than a few hundred ms later.
"""

from __future__ import annotations

import itertools
import json
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import _wait_until_active, namespace_for, pod, webhook_configuration
from tests.support.kube import running_cluster
from tests.support.webhook import WebhookProcess, running_webhook
from webhook import certs

SERVICE_PORT = 18443
DRAIN = {"PACKAGE_INJECTOR_SHUTDOWN_DELAY": "5"}  # the chart's shutdownDelaySeconds
WORKERS = 24


def point_service_at(port: int) -> None:
    """Replace the DNAT rule in one step (-R): a flush and re-add would refuse connections in between."""
    rules = subprocess.run(
        ["iptables", "-t", "nat", "-S", "OUTPUT"], check=True, capture_output=True, text=True
    )
    where = ["-R", "OUTPUT", "1"] if "DNAT" in rules.stdout else ["-A", "OUTPUT"]
    match = ["-d", "127.0.0.1", "-p", "tcp", "--dport", str(SERVICE_PORT)]
    target = ["-j", "DNAT", "--to-destination", f"127.0.0.1:{port}"]
    subprocess.run(["iptables", "-t", "nat", *where, *match, *target], check=True)


def _port(webhook: WebhookProcess) -> int:
    return int(webhook.url.rsplit(":", 1)[1])


def reviews(log: Path, after: str = "") -> int:
    """Reviews a webhook answered (after the first log line containing `after`)."""
    lines = log.read_text(errors="replace").splitlines()
    start = next(i for i, line in enumerate(lines) if after in line)
    return sum('"decision"' in line for line in lines[start:])


def main(workdir: Path) -> dict[str, Any]:
    ca = certs.new_ca("drain test CA", 30)
    with (
        running_cluster(workdir / "kube") as cluster,
        running_webhook(workdir / "old", DRAIN, ca=ca) as old,
        running_webhook(workdir / "new", DRAIN, ca=ca) as new,
    ):
        point_service_at(_port(old))
        label = f"drain-{secrets.token_hex(3)}"
        mwc = webhook_configuration("a-drain", f"https://127.0.0.1:{SERVICE_PORT}", old.ca_bundle_b64, label)
        status, body = cluster.request(
            "POST", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", mwc
        )
        assert status == 201, body
        ns = namespace_for(cluster, label)
        _wait_until_active(cluster, ns)
        failures: list[str] = []
        creates = itertools.count()
        stop = threading.Event()

        def worker(i: int) -> None:
            while not stop.is_set():
                manifest = pod(f"p{next(creates)}", {"package-url": "https://packages.example.com/x.tar"})
                try:
                    status, body = cluster.request(
                        "POST", f"/api/v1/namespaces/{ns}/pods?dryRun=All", manifest
                    )
                except OSError as exc:
                    status, body = 0, repr(exc)
                if status != 201 or not body["spec"].get("initContainers"):
                    failures.append(f"{status} {json.dumps(body)[:400]}")
                # Bursts and pauses: the apiserver's pool keeps idle connections of different ages.
                if i >= 2:
                    time.sleep(0.5 + (i % 5) * 0.3)

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(WORKERS)]
        for thread in threads:
            thread.start()
        time.sleep(10)  # steady state: the apiserver holds kept-alive connections to the old Pod
        before = next(creates)
        old.proc.send_signal(15)
        point_service_at(_port(new))
        exit_code = old.proc.wait(timeout=60)
        time.sleep(3)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        new.proc.terminate()
        new.proc.wait(timeout=40)
        return {
            "old_exit": exit_code,
            "creates_during_rollout": next(creates) - before,
            "failures": failures,
            "old_reviews_after_sigterm": reviews(workdir / "old" / "webhook.log", "SIGTERM received"),
            "new_reviews": reviews(workdir / "new" / "webhook.log"),
        }


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
