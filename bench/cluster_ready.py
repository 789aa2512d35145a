"""Pod created -> Ready on the one-node cluster: an injected Pod against the seed's shell init container.

`python -m bench.cluster_ready [--rounds N] [--sizes 10,200]` (needs a running `make cluster`). For each
package size (MB of incompressible data in a .tar.gz) and round, the two Pods are created alternately, each
timed from `kubectl create` until `kubectl wait --for=condition=Ready` returns; the ratio seed/ours > 1
means ours is faster. The seed's init container is its script (curl -o, tar -xf, rm) in a small image built
here from the same Debian base plus curl; both verify TLS against the same CA (ours through `ca.crt` of the
package Secret, the seed through `curl --cacert`). Results: bench/results/cluster-ready.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.cluster.live import ROOT, Live
from tests.cluster.pkgserver import PackageServer, make_package, start_package_server
from tests.cluster.pods import MOUNT, package_annotations, pod, restricted_security

SEED_IMAGE = "localhost/seed-init:bench"
SEED_SCRIPT = (
    'cd "$DEST" && curl -f -L -sS --cacert /ca/ca.crt -o package.tar "$URL" '
    "&& tar -xf package.tar && rm package.tar"
)


def _exports() -> dict[str, str]:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "cluster.sh"), "env"], capture_output=True, text=True, check=True
    )
    return dict(
        line.removeprefix("export ").split("=", 1)
        for line in out.stdout.splitlines()
        if line.startswith("export ")
    )


def build_seed_image() -> None:
    """curl + tar on the project's Debian base, imported into the node's containerd."""
    env = dict(os.environ)
    host = subprocess.run(
        ["bash", str(ROOT / "scripts" / "dockerd.sh")], capture_output=True, text=True, check=True
    )
    env["DOCKER_HOST"] = host.stdout.strip().splitlines()[-1]
    base = subprocess.run(
        ["bash", str(ROOT / "scripts" / "base-image.sh")], env=env, capture_output=True, text=True, check=True
    )
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "Dockerfile").write_text(
            f"FROM {base.stdout.strip().splitlines()[-1]}\n"
            "RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates tar "
            "&& rm -rf /var/lib/apt/lists/*\nUSER 65532\n"
        )
        subprocess.run(
            ["docker", "build", "--network", "host", "-t", SEED_IMAGE, d],
            env=env,
            check=True,
            capture_output=True,
        )
        tar = Path(d) / "seed.tar"
        subprocess.run(["docker", "save", SEED_IMAGE, "-o", str(tar)], env=env, check=True)
        subprocess.run(
            ["bash", str(ROOT / "scripts" / "cluster.sh"), "ctr", "images", "import", str(tar)],
            check=True,
            capture_output=True,
        )


def seed_pod(name: str, url: str) -> dict[str, Any]:
    manifest = pod(name, containers=1)
    init = {
        "name": "package-init-container",
        "image": SEED_IMAGE,
        "imagePullPolicy": "Never",
        "command": ["bash", "-c", SEED_SCRIPT],
        "env": [{"name": "DEST", "value": "/shared"}, {"name": "URL", "value": url}],
        "volumeMounts": [
            {"name": "shared", "mountPath": "/shared"},
            {"name": "ca", "mountPath": "/ca", "readOnly": True},
        ],
        "securityContext": restricted_security(65532),
    }
    manifest["spec"]["initContainers"] = [init]
    manifest["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "shared", "mountPath": MOUNT, "readOnly": True}
    ]
    manifest["spec"]["volumes"] = [
        {"name": "shared", "emptyDir": {}},
        {"name": "ca", "secret": {"secretName": "pkg-ca"}},
    ]
    return manifest


def time_to_ready(live: Live, ns: str, manifest: dict[str, Any]) -> float:
    import yaml

    name = manifest["metadata"]["name"]
    start = time.monotonic()
    live.kubectl("create", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))
    live.kubectl("wait", "-n", ns, f"pod/{name}", "--for=condition=Ready", "--timeout=600s", timeout=660)
    elapsed = time.monotonic() - start
    live.kubectl("delete", "pod", "-n", ns, name, "--wait=true", timeout=120)
    return elapsed


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="10,200", help="package sizes in MB")
    args = parser.parse_args(argv)
    ex = _exports()
    live = Live(
        ex["KUBECONFIG"],
        ex["CLUSTER_HOST_IP"],
        ex["CLUSTER_NETNS"],
        ex["CLUSTER_KUBECTL"],
        ex["CLUSTER_HELM"],
        ex["CLUSTER_VERSION"],
    )
    build_seed_image()
    work = Path(tempfile.mkdtemp(prefix="bench-ready-"))
    (work / "pkgs").mkdir()
    srv: PackageServer = start_package_server(live.netns, live.host_ip, 9443, work / "pkgs", work / "nginx")
    ns = f"bench-{os.urandom(3).hex()}"
    live.namespace(ns)
    ca = base64.b64encode(srv.ca_pem.encode()).decode()
    live.apply(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pkg-ca"}, "data": {"ca.crt": ca}},
        namespace=ns,
    )
    results: dict[str, Any] = {"version": live.version, "rounds": args.rounds, "sizes": {}}
    try:
        for mb in (int(s) for s in args.sizes.split(",")):
            pkg = make_package(
                work / "pkgs", f"p{mb}.tar.gz", {f"data/{i}.bin": os.urandom(1 << 20) for i in range(mb)}
            )
            url = srv.url(pkg.name)
            ours, seed = [], []
            for r in range(args.rounds):
                seed.append(time_to_ready(live, ns, seed_pod(f"seed-{mb}-{r}", url)))
                ours.append(
                    time_to_ready(
                        live, ns, pod(f"ours-{mb}-{r}", package_annotations(url, pkg.sha256), containers=1)
                    )
                )
            ratios = [s / o for s, o in zip(seed, ours, strict=True)]
            results["sizes"][f"{mb}MB"] = {
                "ours_s": ours,
                "seed_s": seed,
                "ratio_seed_over_ours_median": statistics.median(ratios),
            }
            print(
                f"{mb} MB: ours {statistics.median(ours):.2f} s, seed {statistics.median(seed):.2f} s, "
                f"seed/ours {statistics.median(ratios):.2f}x"
            )
    finally:
        live.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        srv.stop()
    out = ROOT / "bench" / "results" / "cluster-ready.json"
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
