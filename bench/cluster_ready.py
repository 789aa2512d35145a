"""Pod created -> Ready on the one-node cluster: an injected Pod against the seed's shell init container.

    python -m bench.cluster_ready seed-image            # build the seed's image (before `make cluster`)
    CLUSTER_EXTRA_IMAGES=localhost/package-injector-seed-init:bench make cluster
    python -m bench.cluster_ready run --rounds 8 --sizes 10,200 --formats tar.gz

Issue 11 asks: an annotated Pod, created -> Ready, with a 10 MB and a 200 MB package, at least as fast as the
same Pod with the seed's init container (its script: `curl -o package.tar URL && tar -xf package.tar`, in a
small image built here). What makes the comparison fair:

- The same package (bench/package.py's realistic generator, scaled so the archive is about SIZE MB), served
  by the same nginx over TLS; both verify it against the same CA (ours through `ca.crt` of the package
  Secret, the seed through `curl --cacert` on that Secret mounted as a file). Ours also checks the SHA-256
  (the annotation a user sets); the seed checks nothing.
- Both images are loaded the same way (docker save + `ctr images import` by scripts/cluster.sh, see
  CLUSTER_EXTRA_IMAGES), both init containers use `imagePullPolicy: IfNotPresent`, the same UID, the same
  restricted securityContext and the same resources (the chart's defaults for ours), so both Pods have the
  same QoS class and CPU shares.
- The two Pods of a round are created one after the other (order alternating every round), each deleted
  before the next is created, after one untimed warm-up Pod of each kind per package.
- Times come from two clocks: the apiserver's (Pod creationTimestamp -> the Ready condition's
  lastTransitionTime; whole seconds, the resolution of those fields) and this process's (before `kubectl
  create` -> the watch event that shows Ready, including the admission webhook's time). Per round the ratio
  seed/ours (> 1: ours is faster); the medians with min..max are what the README reports.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import yaml

from bench.common import RESULTS, log, machine, summary, write_result
from bench.package import PackageSpec, ensure_package
from tests.cluster.live import ROOT, Live
from tests.cluster.pkgserver import start_package_server
from tests.cluster.pods import MOUNT, package_annotations, pod, restricted_security

SEED_IMAGE = "localhost/package-injector-seed-init:bench"
# The seed's method (../shared/seed README: download the tar with curl, unpack it with tar), in bash.
SEED_SCRIPT = (
    'set -e; cd "$DEST"; curl -f -L -sS --cacert /ca/ca.crt -o package.tar "$PACKAGE_URL"; '
    "tar -xf package.tar; rm -f package.tar"
)
# Ours, as injected by the webhook with the chart's defaults (values.yaml initContainer.resources).
INIT_RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
INIT_UID = 65532
# bench/package.py's scale 1.0 gives an archive of about this many MB (.tar and .tar.gz).
MB_AT_SCALE_1 = {"tar": 830.0, "tar.gz": 530.0}
MILESTONES = ("seen", "scheduled", "init_running", "init_done", "ready")


def seed_image() -> str:
    """Build the seed's image: the project's Debian base (scripts/base-image.sh) plus curl."""
    env = dict(os.environ)
    env["DOCKER_HOST"] = _last_line(["bash", str(ROOT / "scripts" / "dockerd.sh")], env)
    base = _last_line(["bash", str(ROOT / "scripts" / "base-image.sh")], env)
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "Dockerfile").write_text(
            f"FROM {base}\n"
            "RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates "
            "&& rm -rf /var/lib/apt/lists/*\n"
            f"USER {INIT_UID}\n"
        )
        subprocess.run(["docker", "build", "--network", "host", "-t", SEED_IMAGE, d], env=env, check=True)
    return SEED_IMAGE


def _last_line(cmd: list[str], env: dict[str, str]) -> str:
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1]


def seed_pod(name: str, url: str) -> dict[str, Any]:
    """The same busybox Pod as ours, with the seed's init container written in by hand."""
    manifest = pod(name, containers=1)
    manifest["spec"]["initContainers"] = [
        {
            "name": "package-init-container",
            "image": SEED_IMAGE,
            "imagePullPolicy": "IfNotPresent",
            "command": ["bash", "-c", SEED_SCRIPT],
            "env": [{"name": "DEST", "value": MOUNT}, {"name": "PACKAGE_URL", "value": url}],
            "resources": INIT_RESOURCES,
            "volumeMounts": [
                {"name": "shared", "mountPath": MOUNT},
                {"name": "ca", "mountPath": "/ca", "readOnly": True},
            ],
            "securityContext": restricted_security(INIT_UID),
        }
    ]
    manifest["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "shared", "mountPath": MOUNT, "readOnly": True}
    ]
    manifest["spec"]["volumes"] = [
        {"name": "shared", "emptyDir": {}},
        {"name": "ca", "secret": {"secretName": "pkg-ca"}},
    ]
    return manifest


def milestones(obj: dict[str, Any]) -> set[str]:
    """Which of MILESTONES a Pod object shows (plus "failed" when its init container exited non-zero)."""
    status = obj.get("status", {})
    conds = {c["type"]: c["status"] for c in status.get("conditions", [])}
    out = {"seen"}
    if conds.get("PodScheduled") == "True":
        out.add("scheduled")
    inits = status.get("initContainerStatuses") or []
    if inits:
        state = inits[0].get("state", {})
        if "running" in state:
            out.add("init_running")
        if "terminated" in state:
            out.add("init_running")
            out.add("init_done" if state["terminated"].get("exitCode") == 0 else "failed")
    if conds.get("Ready") == "True":
        out.add("ready")
    return out


def _ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def server_times(obj: dict[str, Any]) -> dict[str, float | None]:
    """Seconds since the Pod's creationTimestamp, by the apiserver's and kubelet's own (whole-second)
    timestamps: scheduled, init container started and finished, Ready."""
    created = _ts(obj["metadata"]["creationTimestamp"])
    assert created is not None
    status = obj.get("status", {})
    conds = {c["type"]: c.get("lastTransitionTime") for c in status.get("conditions", [])}
    inits = status.get("initContainerStatuses") or [{}]
    term = inits[0].get("state", {}).get("terminated", {})

    def since(value: str | None) -> float | None:
        t = _ts(value)
        return None if t is None else t - created

    return {
        "scheduled": since(conds.get("PodScheduled")),
        "init_started": since(term.get("startedAt")),
        "init_finished": since(term.get("finishedAt")),
        "ready": since(conds.get("Ready")),
    }


def in_process_seconds(log_text: str) -> float | None:
    """The `seconds` our init container reports on its `installed` line (its own clock, from the start of
    main(): without the interpreter's start-up and imports)."""
    for line in log_text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == "installed":
            return float(record["seconds"])
    return None


def rfc3339_ns(value: str) -> float:
    """containerd's timestamps (nanoseconds, "2026-12-02T14:50:01.123456789Z") as Unix seconds."""
    m = re.fullmatch(r"(.+T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", value)
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    whole = datetime.fromisoformat(m.group(1) + m.group(3)).timestamp()
    return whole + float("0." + (m.group(2) or "0"))


def container_times(container_id: str) -> dict[str, float]:
    """Start and finish (Unix seconds, nanosecond precision) of a container, from the node's runtime through
    crictl: the apiserver's fields have whole seconds only."""
    cid = container_id.removeprefix("containerd://")
    script = (
        f'source {ROOT}/scripts/cluster.sh; load_crictl_quiet; in_ns "$CRICTL" '
        f'--runtime-endpoint "unix://$DIR/containerd/containerd.sock" inspect {cid}'
    )
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    status = json.loads(out)["status"]
    times = {"started": rfc3339_ns(status["startedAt"])}
    if status.get("finishedAt") and not status["finishedAt"].startswith("0001-"):
        times["finished"] = rfc3339_ns(status["finishedAt"])
    return times


@dataclass
class PodWatch:
    """One `kubectl get pods -w` of the namespace: when (this process's monotonic clock) each Pod first
    showed each milestone, and its latest object. Restarted if the watch ends."""

    live: Live
    namespace: str
    seen: dict[str, dict[str, float]] = field(default_factory=dict)
    latest: dict[str, dict[str, Any]] = field(default_factory=dict)
    cond: threading.Condition = field(default_factory=threading.Condition)
    stopping: bool = False
    proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while not self.stopping:
            args = ["get", "pods", "-n", self.namespace, "-w", "-o", "json", "--output-watch-events"]
            self.proc = subprocess.Popen(
                self.live.in_netns(self.live.kubectl_bin, *args),
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                env={
                    "KUBECONFIG": self.live.kubeconfig,
                    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                    "HOME": "/root",
                },
            )
            assert self.proc.stdout is not None
            self._read(self.proc.stdout)
            self.proc.wait()

    def _read(self, stream: IO[str]) -> None:
        buf = ""
        for line in stream:
            # One event per line (kubectl 1.37) or pretty-printed over several: parse when it is complete.
            buf += line
            try:
                event = json.loads(buf)
            except ValueError:
                continue
            now = time.time()
            buf = ""
            obj = event.get("object", {})
            if event.get("type") not in ("ADDED", "MODIFIED") or obj.get("kind") != "Pod":
                continue
            name = obj["metadata"]["name"]
            with self.cond:
                marks = self.seen.setdefault(name, {})
                for m in milestones(obj):
                    marks.setdefault(m, now)
                self.latest[name] = obj
                self.cond.notify_all()

    def wait_ready(self, name: str, timeout: float) -> tuple[dict[str, float], dict[str, Any]]:
        deadline = time.time() + timeout
        with self.cond:
            while True:
                marks = self.seen.get(name, {})
                if "ready" in marks or "failed" in marks:
                    break
                left = deadline - time.time()
                if left <= 0:
                    raise TimeoutError(f"pod {name} not Ready within {timeout:.0f} s")
                self.cond.wait(left)
            if "failed" in marks:
                detail = self.live.describe(self.namespace, name)
                raise RuntimeError(f"pod {name}: init container failed:\n{detail}")
            return dict(marks), self.latest[name]

    def stop(self) -> None:
        self.stopping = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()


def same_as_seed(injected: dict[str, Any]) -> None:
    """Fail unless the webhook injected what the seed's container is given: resources, pull policy, UID."""
    got = (
        injected.get("resources"),
        injected.get("imagePullPolicy"),
        injected["securityContext"]["runAsUser"],
    )
    want = (INIT_RESOURCES, "IfNotPresent", INIT_UID)
    if got != want:
        raise SystemExit(f"the injected init container has {got}, the seed's {want}: update INIT_RESOURCES")


def time_pod(live: Live, watch: PodWatch, ns: str, manifest: dict[str, Any], ours: bool) -> dict[str, Any]:
    """Create the Pod, wait until Ready, read its times, delete it (and wait until it is gone)."""
    name = manifest["metadata"]["name"]
    load = os.getloadavg()[0]
    start = time.time()
    live.kubectl("create", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))
    marks, obj = watch.wait_ready(name, timeout=600)
    inits = obj["spec"].get("initContainers", [])
    assert len(inits) == 1 and (ours == (inits[0]["name"] == "package-downloader")), inits
    if ours:
        same_as_seed(inits[0])
    init = container_times(obj["status"]["initContainerStatuses"][0]["containerID"])
    app = container_times(obj["status"]["containerStatuses"][0]["containerID"])
    result: dict[str, Any] = {
        "client_s": round(marks["ready"] - start, 3),
        "server_s": server_times(obj),
        # One clock (this machine's): create -> init started -> init exited -> app started -> Ready seen.
        "steps_s": {
            "to_init_start": round(init["started"] - start, 3),
            "init_run": round(init["finished"] - init["started"], 3),
            "init_exit_to_app_start": round(app["started"] - init["finished"], 3),
            "app_start_to_ready_seen": round(marks["ready"] - app["started"], 3),
        },
        "watch_s": {m: round(marks[m] - start, 3) for m in MILESTONES if m in marks},
        "load1": load,
    }
    if ours:
        logs = live.kubectl("logs", "-n", ns, name, "-c", "package-downloader").stdout
        result["in_process_s"] = in_process_seconds(logs)
        result["init_log"] = logs.splitlines()[-20:]  # its own phases, with millisecond timestamps
    live.kubectl("delete", "pod", "-n", ns, name, "--wait=true", timeout=180)
    return result


def manifest(kind: str, name: str, url: str, sha256: str) -> dict[str, Any]:
    """Ours (annotated, the webhook injects) or the seed's (its init container in the manifest)."""
    if kind == "ours":
        return pod(name, package_annotations(url, sha256), containers=1)
    return seed_pod(name, url)


def paired(seed: list[float], ours: list[float]) -> dict[str, Any]:
    """Per-round ratios seed/ours (> 1: ours is faster), summarised, next to both sides' summaries."""
    ratios = [s / o for s, o in zip(seed, ours, strict=True) if o > 0]
    return {"ours": summary(ours), "seed": summary(seed), "ratio_seed_over_ours": summary(ratios)}


def steps(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Each step of steps_s (and our in-process time, where there is one) summarised over the rounds."""
    names = list(runs[0]["steps_s"]) if runs else []
    out = {n: summary(r["steps_s"][n] for r in runs) for n in names}
    inproc = [r["in_process_s"] for r in runs if r.get("in_process_s") is not None]
    if inproc:
        out["in_process"] = summary(inproc)
    return out


def scale_for(mb: float, fmt: str) -> float:
    return mb / MB_AT_SCALE_1[fmt]


def run_case(
    live: Live, watch: PodWatch, ns: str, case: str, url: str, sha256: str, rounds: int
) -> dict[str, list[dict[str, Any]]]:
    """One untimed warm-up Pod of each kind, then `rounds` pairs, the order alternating every round."""

    def make(kind: str, tag: str) -> dict[str, Any]:
        return manifest(kind, f"{kind}-{case.lower().replace('.', '')}-{tag}", url, sha256)

    time_pod(live, watch, ns, make("seed", "warm"), ours=False)
    time_pod(live, watch, ns, make("ours", "warm"), ours=True)
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "seed": []}
    for r in range(rounds):
        order = ("ours", "seed") if r % 2 == 0 else ("seed", "ours")
        for kind in order:
            runs[kind].append(time_pod(live, watch, ns, make(kind, str(r)), ours=kind == "ours"))
        o, s = runs["ours"][-1], runs["seed"][-1]
        log(
            f"{case} round {r + 1}/{rounds}: ours {o['client_s']:.2f} s, seed {s['client_s']:.2f} s "
            f"(server {o['server_s']['ready']:.0f} s / {s['server_s']['ready']:.0f} s), "
            f"load {os.getloadavg()[0]:.1f}"
        )
    return runs


def run(args: argparse.Namespace) -> None:
    ex = _exports()
    live = Live(
        ex["KUBECONFIG"],
        ex["CLUSTER_HOST_IP"],
        ex["CLUSTER_NETNS"],
        ex["CLUSTER_KUBECTL"],
        ex["CLUSTER_HELM"],
        ex["CLUSTER_VERSION"],
    )
    images = subprocess.run(
        ["bash", str(ROOT / "scripts" / "cluster.sh"), "ctr", "images", "ls", "-q"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if SEED_IMAGE not in images:
        raise SystemExit(
            f"{SEED_IMAGE} is not in the node's containerd: run `python -m bench.cluster_ready seed-image`, "
            f"then `CLUSTER_EXTRA_IMAGES={SEED_IMAGE} make cluster`"
        )
    sizes = [float(s) for s in args.sizes.split(",")]
    formats = args.formats.split(",")
    pkgs = {
        (mb, fmt): ensure_package(
            PackageSpec(name=f"ready-{mb:g}mb-{fmt}", scale=scale_for(mb, fmt), formats=(fmt,))
        )
        for mb in sizes
        for fmt in formats
    }
    work = Path(tempfile.mkdtemp(prefix="bench-ready-"))
    root = work / "pkgs"
    root.mkdir()
    for (mb, fmt), pkg in pkgs.items():
        os.link(pkg.archive(fmt), root / f"p{mb:g}.{fmt}")
    srv = start_package_server(live.netns, live.host_ip, 9443, root, work / "nginx")
    ns = f"bench-ready-{os.urandom(3).hex()}"
    live.namespace(ns, {"pod-security.kubernetes.io/enforce": "restricted"})
    ca = base64.b64encode(srv.ca_pem.encode()).decode()
    live.apply(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pkg-ca"}, "data": {"ca.crt": ca}},
        namespace=ns,
    )
    watch = PodWatch(live, ns)
    watch.start()
    results: dict[str, Any] = {
        "command": "python -m bench.cluster_ready run " + " ".join(sys.argv[2:]),
        "machine": machine(),
        "kubernetes": live.version,
        "rounds": args.rounds,
        "seed_script": SEED_SCRIPT,
        "cases": {},
    }
    try:
        for (mb, fmt), pkg in pkgs.items():
            url = srv.url(f"p{mb:g}.{fmt}")
            sha = str(pkg.archives[fmt]["sha256"])
            case = f"{mb:g}MB-{fmt}"
            log(f"{case}: {pkg.archives[fmt]['bytes'] / 1e6:.1f} MB archive, {pkg.files} files; warm-up")

            runs = run_case(live, watch, ns, case, url, sha, args.rounds)
            results["cases"][case] = {
                "archive_bytes": pkg.archives[fmt]["bytes"],
                "extracted_bytes": pkg.extracted_bytes,
                "files": pkg.files,
                "client": paired(*([x["client_s"] for x in runs[k]] for k in ("seed", "ours"))),
                "server": paired(*([x["server_s"]["ready"] for x in runs[k]] for k in ("seed", "ours"))),
                "steps": {k: steps(runs[k]) for k in ("seed", "ours")},
                "load1": summary(x["load1"] for k in runs for x in runs[k]),
                "runs": runs,
            }
            c = results["cases"][case]["client"]
            log(
                f"{case}: ours {c['ours']['median']:.2f} s, seed {c['seed']['median']:.2f} s, "
                f"seed/ours {c['ratio_seed_over_ours']['median']:.2f}x"
            )
    finally:
        watch.stop()
        live.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        srv.stop()
    results["loadavg_at_end"] = list(os.getloadavg())
    write_result(args.out, results)


def _exports() -> dict[str, str]:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "cluster.sh"), "env"], capture_output=True, text=True, check=True
    )
    return dict(
        line.removeprefix("export ").split("=", 1)
        for line in out.stdout.splitlines()
        if line.startswith("export ")
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster_ready")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("seed-image", help="build the seed's init image (before `make cluster`)")
    r = sub.add_parser("run", help="time Pods on the running cluster")
    r.add_argument("--rounds", type=int, default=6)
    r.add_argument("--sizes", default="10,200", help="archive sizes in MB")
    r.add_argument("--formats", default="tar.gz", help="tar.gz, tar or both (comma-separated)")
    r.add_argument("--out", default="cluster-ready", help=f"result name under {RESULTS}")
    args = parser.parse_args(argv)
    if args.cmd == "seed-image":
        print(seed_image())
    else:
        run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
