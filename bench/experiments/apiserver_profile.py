"""Where kube-apiserver spends a patching webhook's cost: its own CPU profile under load.

Registers the Go reference webhook (bench/experiments/gohook) once answering with no patch and once with
a one-label JSONPatch, creates Pods back to back (one client, one keep-alive connection) and meanwhile
takes a CPU profile from the apiserver's /debug/pprof/profile. `go tool pprof -top -cum` of each is
written to bench/results/apiserver-profile-{null,patch}.txt, with the Pods created per second.

Run: .venv/bin/python -m bench.experiments.apiserver_profile [--seconds 15]
Needs go and the control plane of scripts/cluster-assets.sh --control-plane.
"""

from __future__ import annotations

import argparse
import shutil
import ssl
import subprocess
import threading
import urllib.request

from bench.apiserver import Client, _pod_body, prepare_namespace
from bench.common import REPO, WORK, log
from bench.experiments.admission_floor import (
    MWC,
    TRIVIAL_PATCH,
    Variant,
    _config,
    _create,
    _register,
    build_gohook,
    running_gohook,
)
from tests.support.kube import Cluster, binaries, running_cluster

RESULTS = REPO / "bench" / "results"


def _profile(cluster: Cluster, seconds: int) -> bytes:
    ctx = ssl.create_default_context(cafile=str(cluster.ca_file))
    request = urllib.request.Request(
        f"{cluster.url}/debug/pprof/profile?seconds={seconds}",
        headers={"Authorization": f"Bearer {cluster.token}"},
    )
    with urllib.request.urlopen(request, context=ctx, timeout=seconds + 30) as response:
        data: bytes = response.read()
    return data


def _under_load(cluster: Cluster, variant: Variant, seconds: int) -> tuple[bytes, float]:
    """A profile of `seconds` while one client creates `variant`'s Pods; and the Pods per second."""
    stop = threading.Event()
    created: list[float] = []

    def load() -> None:
        client = Client(cluster.url, cluster.ca_file, cluster.token)
        while not stop.is_set():
            created.extend(_create(client, variant, 1))

    thread = threading.Thread(target=load)
    thread.start()
    try:
        profile = _profile(cluster, seconds)
    finally:
        stop.set()
        thread.join()
    return profile, len(created) / seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=15)
    args = parser.parse_args(argv)
    work = WORK / "apiserver-profile"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    gohook = build_gohook(work)
    with running_cluster(work / "cluster") as cluster:
        prepare_namespace(cluster)
        client = Client(cluster.url, cluster.ca_file, cluster.token)
        apiserver = binaries().kube_bin / "kube-apiserver"
        for name, patch, expect in (("null", None, "untouched"), ("patch", TRIVIAL_PATCH, "labelled")):
            with running_gohook(gohook, work / name, patch) as (url, ca):
                variant = Variant(f"go-{name}", _pod_body(3), expect, url, ca)
                _register(client, [variant])
                profile, rate = _under_load(cluster, variant, args.seconds)
                client.call("DELETE", f"{MWC}/{_config(variant)['metadata']['name']}")
            raw = work / f"{name}.pprof"
            raw.write_bytes(profile)
            top = subprocess.run(
                ["go", "tool", "pprof", "-top", "-cum", str(apiserver), str(raw)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            out = RESULTS / f"apiserver-profile-{name}.txt"
            header = f"# {name}: {rate:.0f} Pods/s created during the profile; go tool pprof -top -cum\n"
            out.write_text(header + "\n".join(top.splitlines()[:120]) + "\n")
            log(f"{name}: {rate:.0f} Pods/s, wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
