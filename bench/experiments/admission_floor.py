"""The floor of admission overhead: what any webhook costs a Pod create on a real kube-apiserver, and ours.

Creates the same Deployment-shaped Pod (bench/reviews.py, 3 containers) through one kube-apiserver
(tests/support/kube.py: KUBE_VERSION, default the newest 1.37.x) for each variant:

- none: no webhook matches the Pod;
- none-injected-by-hand: no webhook, the Pod sent already injected (`webhook.inject`): the bigger object;
- go-null: a minimal Go webhook (bench/experiments/gohook/main.go) that allows without a patch; like all
  the Go variants it speaks HTTP/1.1, as uvicorn does;
- go-null-h2: the same over HTTP/2 (what net/http offers by default, and the apiserver takes);
- go-trivial-patch: the Go webhook returning a one-label JSONPatch;
- go-our-patch: the Go webhook returning exactly the patch our webhook returns for this Pod;
- ours-skip: the real `package-injector serve` (tests/support/webhook.py), Pod without package-url (no patch);
- ours: the real webhook, annotated Pod (our patch);
- with --baseline REV also ours-skip@REV and ours@REV: the webhook/ package as committed at REV (extracted
  with `git archive` into _work/bench/, run with `python -P` so it shadows the working tree), to compare
  a change with the code before it in the same command.

Every webhook is registered once, at the start, in its own MutatingWebhookConfiguration with an
objectSelector on the label `bench-variant`; each variant's Pods carry their variant's name in it, so
nothing is reconfigured while measuring (none, whose label matches no webhook, still pays for the selector
checks: microseconds). Pods are created one at a time over one keep-alive HTTPS connection
(bench/apiserver.py's Client): --warmup seconds of untimed creates, then rounds of --pods timed creates
per variant, the order of the variants reversed every other round. Within a round the variants take turns
Pod by Pod: the apiserver's own latency drifts from second to second, and each webhook then waits for
the other variants' creates between two calls, as in a cluster where Pods come now and then. --block N
creates N Pods per turn instead, after 10 untimed ones (webhooks called back to back, as
`bench apiserver` does). Every created Pod is checked (injected, labelled or untouched, as its variant
says). Reports the median ms per create, what it adds to none's median, and the median over rounds of
the difference to none's median in the same round (drift between rounds cancels there).

Needs go (the reference webhook is built into _work/bench/) and the control plane of
scripts/cluster-assets.sh --control-plane.

Run: .venv/bin/python -m bench.experiments.admission_floor [--rounds 3] [--pods 100] [--baseline HEAD]
(plus --warmup 60 s before round 0: 3 x 100 with --baseline take about 3 minutes)
Writes bench/results/admission-floor.json (--name to change).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import itertools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.apiserver import (
    CONFIG,
    NAMESPACE,
    Client,
    _injected,
    _pod_body,
    _webhook_config,
    prepare_namespace,
)
from bench.common import REPO, WORK, log, machine, percentile, write_result
from bench.reviews import review
from tests.support.kube import binaries, running_cluster
from tests.support.net import free_port
from tests.support.webhook import running_webhook
from webhook import admission, certs
from webhook.inject import inject
from webhook.settings import Settings

GOHOOK_SRC = Path(__file__).resolve().parent / "gohook" / "main.go"
LABEL = "bench-variant"
MWC = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
_SERIAL = itertools.count()
TRIVIAL_PATCH = [{"op": "add", "path": "/metadata/labels/bench-patched", "value": "yes"}]


@dataclass
class Variant:
    name: str
    body: dict[str, Any]
    expect: str  # what the created Pod must show: "untouched", "labelled" or "injected"
    url: str | None = None  # the webhook, None for "none"
    ca_bundle: str = ""

    def __post_init__(self) -> None:
        self.body = copy.deepcopy(self.body)
        self.body["metadata"].pop("generateName", None)
        self.body["metadata"].setdefault("labels", {})[LABEL] = self.slug

    @property
    def slug(self) -> str:
        """The name as a label value and DNS label (ours@abc1234 -> ours-abc1234)."""
        return self.name.replace("@", "-")


def build_gohook(work: Path) -> Path:
    """`go build` the reference webhook into `work`; a clear error when go is missing."""
    go = shutil.which("go")
    if go is None:
        raise SystemExit("admission_floor needs go to build the reference webhook: apt-get install golang-go")
    binary = work / "gohook"
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": ""}
    subprocess.run([go, "build", "-o", str(binary), str(GOHOOK_SRC)], check=True, env=env)
    return binary


@contextlib.contextmanager
def running_gohook(
    binary: Path, workdir: Path, patch: list[Any] | None, http2: bool = False, unless: str = ""
) -> Iterator[tuple[str, str]]:
    """The Go webhook, HTTP/1.1 unless `http2`, with a fresh certificate for 127.0.0.1; yields (url, CA)."""
    workdir.mkdir(parents=True, exist_ok=True)
    bundle = certs.generate("gohook", "bench", ips=["127.0.0.1"], dns=["localhost"])
    certs.write_bundle(bundle, workdir)
    port = free_port()
    env = {
        **os.environ,
        "ADDR": f"127.0.0.1:{port}",
        "CERT": str(workdir / certs.TLS_CERT),
        "KEY": str(workdir / certs.TLS_KEY),
    }
    if patch is not None:
        (workdir / "patch.json").write_text(json.dumps(patch, separators=(",", ":")))
        env["PATCH_FILE"] = str(workdir / "patch.json")
        env["PATCH_UNLESS"] = unless
    if http2:
        env["HTTP2"] = "1"
    log_file = workdir / "gohook.log"
    with log_file.open("wb") as out:
        proc = subprocess.Popen([str(binary)], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:  # listening once a TCP connect succeeds
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"gohook did not start: {log_file.read_text(errors='replace')}"
                    ) from None
                time.sleep(0.05)
        yield f"https://127.0.0.1:{port}", bundle.ca_bundle_b64
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def baseline_tree(rev: str, work: Path) -> Path:
    """webhook/ as committed at `rev`, extracted (read-only git) into a directory to put first on sys.path."""
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", rev], check=True, capture_output=True, text=True
    ).stdout.strip()
    tree = work / f"baseline-{sha}"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", sha, "webhook"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def _without_package_url(body: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(body)
    annotations = out["metadata"].get("annotations", {})
    out["metadata"]["annotations"] = {k: v for k, v in annotations.items() if not k.startswith("package-")}
    return out


def our_patch(body: dict[str, Any]) -> list[Any]:
    """The JSONPatch our webhook answers for `body` (as the apiserver sends it, defaults included)."""
    outcome = admission.review(review(body), Settings())
    patch: list[Any] = json.loads(base64.b64decode(outcome.review["response"]["patch"]))
    return patch


def _config(variant: Variant) -> dict[str, Any]:
    assert variant.url is not None
    config = _webhook_config(variant.url, variant.ca_bundle)
    config["metadata"]["name"] = f"{CONFIG}-{variant.slug}"
    hook = config["webhooks"][0]
    hook["name"] = f"{variant.slug}.floor.bench"
    hook["objectSelector"] = {"matchLabels": {LABEL: variant.slug}}
    return config


def _check(variant: Variant, status: int, answer: Any) -> None:
    labels = (answer or {}).get("metadata", {}).get("labels", {})
    seen = "injected" if _injected(answer) else "labelled" if "bench-patched" in labels else "untouched"
    if status != 201 or seen != variant.expect:
        raise RuntimeError(
            f"{variant.name}: {status}, pod {seen}, expected {variant.expect}: {str(answer)[:300]}"
        )


def _create(client: Client, variant: Variant, n: int, dry_run: bool = False) -> list[float]:
    path = f"/api/v1/namespaces/{NAMESPACE}/pods" + ("?dryRun=All" if dry_run else "")
    times = []
    for _ in range(n):
        # A name of our own: thousands of generateName suffixes (5 characters) would collide now and then.
        variant.body["metadata"]["name"] = f"{variant.slug}-{next(_SERIAL)}"
        status, answer, seconds = client.call("POST", path, variant.body)
        _check(variant, status, answer)
        times.append(seconds * 1000)
    return times


def _register(client: Client, variants: list[Variant]) -> None:
    for variant in variants:
        if variant.url is None:
            continue
        status, answer, _ = client.call("POST", MWC, _config(variant))
        if status != 201:
            raise RuntimeError(f"registering {variant.name}: {status} {answer}")
    deadline = time.monotonic() + 30
    pending = [v for v in variants if v.expect != "untouched"]
    while pending:  # the apiserver picks up configurations asynchronously; dry-run until they act
        for variant in list(pending):
            try:
                _create(client, variant, 1, dry_run=True)
                pending.remove(variant)
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.2)
    time.sleep(1)  # the untouched variants' configurations came in the same informer sync


def measure(rounds: int, pods: int, block: int, warmup: float, baseline: str | None) -> dict[str, Any]:
    work = WORK / "admission-floor"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    gohook = build_gohook(work)
    annotated = _pod_body(3)
    plain = _without_package_url(annotated)
    go_patch = Variant("go-our-patch", annotated, "injected")
    patch = our_patch(go_patch.body)
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(running_cluster(work / "cluster"))
        go_null = stack.enter_context(running_gohook(gohook, work / "go-null", None))
        go_null_h2 = stack.enter_context(running_gohook(gohook, work / "go-null-h2", None, http2=True))
        go_trivial = stack.enter_context(running_gohook(gohook, work / "go-trivial", TRIVIAL_PATCH))
        go_patch.url, go_patch.ca_bundle = stack.enter_context(
            # Re-invoked after the ServiceAccount plugin mounts its token into our init container (1.37):
            # then no patch, as ours answers a Pod it already injected.
            running_gohook(gohook, work / "go-patch", patch, unless='"name":"package-downloader"')
        )
        ours = stack.enter_context(running_webhook(work / "ours"))
        variants = [
            Variant("none", annotated, "untouched"),
            # No webhook, the Pod injected by hand: what the bigger object alone costs the apiserver.
            Variant("none-injected-by-hand", inject(annotated, Settings()).pod, "injected"),
            Variant("go-null", annotated, "untouched", *go_null),
            Variant("go-null-h2", annotated, "untouched", *go_null_h2),
            Variant("go-trivial-patch", annotated, "labelled", *go_trivial),
            go_patch,
            Variant("ours-skip", plain, "untouched", ours.url, ours.ca_bundle_b64),
            Variant("ours", annotated, "injected", ours.url, ours.ca_bundle_b64),
        ]
        if baseline is not None:
            tree = baseline_tree(baseline, work)
            sha = tree.name.removeprefix("baseline-")
            # -P: no cwd on sys.path, so the extracted webhook/ comes first and shadows the working tree's
            python = [sys.executable, "-P"]
            env = {"PYTHONPATH": f"{tree}{os.pathsep}{REPO}"}
            where = subprocess.run(
                [*python, "-c", "import webhook; print(webhook.__file__)"],
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            if not where.startswith(str(tree)):
                raise RuntimeError(f"the baseline imports webhook from {where}, not from {tree}")
            old = stack.enter_context(
                running_webhook(work / "baseline", env, [*python, "-m", "webhook", "serve"])
            )
            variants += [
                Variant(f"ours-skip@{sha}", plain, "untouched", old.url, old.ca_bundle_b64),
                Variant(f"ours@{sha}", annotated, "injected", old.url, old.ca_bundle_b64),
            ]
        prepare_namespace(cluster)
        client = Client(cluster.url, cluster.ca_file, cluster.token)
        _register(client, variants)
        # Untimed creates first: for its first minute the new apiserver is busy with its own start-up work.
        deadline = time.monotonic() + warmup
        while time.monotonic() < deadline:
            for variant in variants:
                _create(client, variant, 10)
        times: dict[str, list[float]] = {v.name: [] for v in variants}
        round_medians: dict[str, list[float]] = {v.name: [] for v in variants}
        for r in range(rounds):
            order = variants if r % 2 == 0 else variants[::-1]
            this_round: dict[str, list[float]] = {v.name: [] for v in variants}
            for start in range(0, pods, block):
                for variant in order:
                    if block > 1:
                        _create(client, variant, min(block, 10))  # untimed: back from idle
                    this_round[variant.name] += _create(client, variant, min(block, pods - start))
            for name, vals in this_round.items():
                times[name] += vals
                round_medians[name].append(statistics.median(vals))
            log(f"round {r}: " + ", ".join(f"{v.name} {round_medians[v.name][-1]:.2f}" for v in variants))
    base = statistics.median(times["none"])
    table = {
        name: {
            "n": len(vals),
            "median_ms": statistics.median(vals),
            "added_ms": statistics.median(vals) - base,
            # Drift between rounds cancels in a difference taken within each round.
            "added_paired_ms": statistics.median(
                m - n for m, n in zip(round_medians[name], round_medians["none"], strict=True)
            ),
            "p10_ms": percentile(sorted(vals), 10),
            "p90_ms": percentile(sorted(vals), 90),
            "round_medians_ms": [round(m, 3) for m in round_medians[name]],
        }
        for name, vals in times.items()
    }
    return {
        "rounds": rounds,
        "pods_per_round": pods,
        "block": block,
        "warmup_s": warmup,
        "patch_bytes": len(json.dumps(patch)),
        "table": table,
        "latencies_ms": {name: [round(v, 3) for v in vals] for name, vals in times.items()},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.experiments.admission_floor",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pods", type=int, default=100, help="timed creates per variant and round")
    parser.add_argument(
        "--block",
        type=int,
        default=1,
        help="consecutive creates per variant (1: the variants take turns Pod by Pod; more: blocks, each "
        "after 10 untimed creates)",
    )
    parser.add_argument(
        "--warmup", type=float, default=60, help="seconds of untimed creates (all variants) before round 0"
    )
    parser.add_argument("--baseline", help="also run webhook/ as committed at this git revision")
    parser.add_argument("--name", default="admission-floor", help="bench/results/NAME.json")
    args = parser.parse_args(argv)
    args_text = " ".join(argv if argv is not None else sys.argv[1:])
    out = {
        "machine": machine(),
        "kube_version": binaries().version,
        "command": f"python -m bench.experiments.admission_floor {args_text}".strip(),
        **measure(args.rounds, args.pods, args.block, args.warmup, args.baseline),
    }
    write_result(args.name, out)
    for name, row in out["table"].items():
        rounds = " ".join(f"{m:.2f}" for m in row["round_medians_ms"])
        print(
            f"{name:20} median {row['median_ms']:6.2f} ms, added {row['added_ms']:+5.2f} "
            f"(within rounds {row['added_paired_ms']:+5.2f}), "
            f"p10 {row['p10_ms']:5.2f} p90 {row['p90_ms']:6.2f}, "
            f"round medians {rounds}"
        )


if __name__ == "__main__":
    main()
