"""Webhook: `/mutate` against `/bare` in the same server process, over HTTPS on 127.0.0.1.

1. Peak throughput and latency: `wrk` (one thread, N connections, a Lua script that posts the body),
   /bare and /mutate interleaved, order rotating each round.
2. Latency at half of /mutate's peak: `hey` with a fixed rate (`-q` per worker x `-c` workers), the same
   offered load for /bare and /mutate, interleaved; p50/p99 from hey's per-request CSV.
3. Memory: a fresh server, 100,000 reviews (pod3, pod20, denied, skipped), VmRSS every 10,000.
4. Profile: py-spy on the server while wrk drives /mutate; the top frames by own and total time.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import csv
import io
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import (
    PYTHON,
    REPO,
    WORK,
    log,
    machine,
    percentile,
    require,
    rotate,
    rss_kib,
    summary,
    write_result,
)
from bench.reviews import write_bodies
from tests.support.webhook import WebhookProcess, running_webhook

LUA = """\
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"socket_errors":%d,"non2xx":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


Server = WebhookProcess


@contextlib.contextmanager
def bench_server(workdir: Path, extra_env: dict[str, str] | None = None) -> Iterator[Server]:
    """`python -m bench.webhook_server` (production serve_app + /bare) with a fresh certificate."""
    env = {"PYTHONPATH": str(REPO), **(extra_env or {})}
    with running_webhook(workdir, env, command=[PYTHON, "-m", "bench.webhook_server"]) as server:
        yield server


def wrk(url: str, body: Path, lua: Path, seconds: float, connections: int) -> dict[str, Any]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{round(seconds)}s", "--timeout", "10s", "-s", str(lua), url],
        env={**os.environ, "BENCH_BODY": str(body)},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    m = re.search(r"^BENCHJSON (.*)$", out.stdout, re.M)
    if out.returncode != 0 or m is None:
        raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")
    data: dict[str, Any] = json.loads(m.group(1))
    data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
    return data


def hey(url: str, body: Path, seconds: float, workers: int, qps_per_worker: float) -> dict[str, Any]:
    out = subprocess.run(
        [
            "hey",
            "-z", f"{round(seconds)}s",
            "-c", str(workers),
            "-q", f"{qps_per_worker:g}",
            "-m", "POST",
            "-T", "application/json",
            "-D", str(body),
            "-o", "csv",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"hey failed: {out.stderr}")
    times: list[float] = []
    status = collections.Counter[str]()
    for row in csv.DictReader(io.StringIO(out.stdout)):
        times.append(float(row["response-time"]) * 1000)
        status[row["status-code"]] += 1
    times.sort()
    return {
        "requests": len(times),
        "rps": len(times) / seconds,
        "offered_rps": workers * qps_per_worker,
        "status": dict(status),
        "p50_ms": percentile(times, 50),
        "p90_ms": percentile(times, 90),
        "p99_ms": percentile(times, 99),
        "max_ms": times[-1] if times else float("nan"),
    }


def hey_count(url: str, body: Path, n: int, workers: int) -> None:
    out = subprocess.run(
        [
            "hey",
            "-n",
            str(n),
            "-c",
            str(workers),
            "-m",
            "POST",
            "-T",
            "application/json",
            "-D",
            str(body),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode != 0 or "[200]" not in out.stdout:
        raise RuntimeError(f"hey failed: {out.stdout[-2000:]}\n{out.stderr}")
    bad = re.findall(r"\[(\d{3})\]\s+(\d+) responses", out.stdout)
    if any(code != "200" for code, _ in bad):
        raise RuntimeError(f"non-200 answers: {bad}")


def admission_count(metrics_url: str) -> int:
    with urllib.request.urlopen(metrics_url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("package_injector_admission_requests_total{")
        )
    )


def _check_bodies(srv: Server, bodies: dict[str, Path]) -> dict[str, Any]:
    """One request of each body: /mutate must inject (pod3/pod20), deny, skip; /bare must echo."""
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    seen = {}
    for name, path in bodies.items():
        for ep in ("mutate", "bare"):
            req = urllib.request.Request(
                f"{srv.url}/{ep}", data=path.read_bytes(), headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                answer = json.loads(r.read())
            if ep == "bare":
                assert answer == json.loads(path.read_bytes()), "bare must echo"
            else:
                resp = answer["response"]
                seen[name] = {"allowed": resp["allowed"], "patch": "patch" in resp}
    assert seen["pod3"]["patch"] and seen["pod20"]["patch"], seen
    assert not seen["denied"]["allowed"] and not seen["skip"]["patch"], seen
    return seen


def bench_throughput(
    srv: Server, bodies: dict[str, Path], lua: Path, rounds: int, seconds: float, connections: int
) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for name in ("pod3", "pod20"):
        for ep in ("bare", "mutate"):  # warm-up, not recorded
            wrk(f"{srv.url}/{ep}", bodies[name], lua, 2, connections)
    for r in range(rounds):
        for name in ("pod3", "pod20"):
            for ep in rotate(("bare", "mutate"), r):
                res = wrk(f"{srv.url}/{ep}", bodies[name], lua, seconds, connections)
                res.update(round=r, body=name, endpoint=ep)
                runs.append(res)
                log(
                    f"wrk round {r} {name:5} /{ep:6} {res['rps']:7.0f} req/s  "
                    f"p50 {res['p50_us'] / 1000:6.2f} ms  p99 {res['p99_us'] / 1000:6.2f} ms  "
                    f"errors {res['socket_errors']}/{res['non2xx']}"
                )
    table = {}
    for name in ("pod3", "pod20"):
        sel = [x for x in runs if x["body"] == name]
        ratios = []
        for r in range(rounds):
            pair = {x["endpoint"]: x for x in sel if x["round"] == r}
            ratios.append(pair["mutate"]["rps"] / pair["bare"]["rps"])
        table[name] = {
            ep: {
                "rps": summary(x["rps"] for x in sel if x["endpoint"] == ep),
                "p50_ms": summary(x["p50_us"] / 1000 for x in sel if x["endpoint"] == ep),
                "p99_ms": summary(x["p99_us"] / 1000 for x in sel if x["endpoint"] == ep),
                "errors": sum(x["socket_errors"] + x["non2xx"] for x in sel if x["endpoint"] == ep),
            }
            for ep in ("bare", "mutate")
        }
        table[name]["ratio_mutate_over_bare"] = summary(ratios)
    return {"connections": connections, "seconds": seconds, "runs": runs, "table": table}


def bench_half_load(
    srv: Server, bodies: dict[str, Path], peak: dict[str, Any], rounds: int, seconds: float, workers: int
) -> dict[str, Any]:
    runs = []
    rates = {}
    for name in ("pod3", "pod20"):
        rate = 0.5 * peak[name]["mutate"]["rps"]["median"]
        rates[name] = rate
        for r in range(rounds):
            for ep in rotate(("bare", "mutate"), r):
                res = hey(f"{srv.url}/{ep}", bodies[name], seconds, workers, rate / workers)
                res.update(round=r, body=name, endpoint=ep)
                runs.append(res)
                log(
                    f"hey round {r} {name:5} /{ep:6} offered {rate:6.0f}/s got {res['rps']:6.0f}/s  "
                    f"p50 {res['p50_ms']:6.2f} ms  p99 {res['p99_ms']:6.2f} ms  {res['status']}"
                )
    table = {}
    for name in ("pod3", "pod20"):
        sel = [x for x in runs if x["body"] == name]
        ratios = []
        for r in range(rounds):
            pair = {x["endpoint"]: x for x in sel if x["round"] == r}
            ratios.append(pair["mutate"]["p99_ms"] / pair["bare"]["p99_ms"])
        table[name] = {
            "offered_rps": rates[name],
            **{
                ep: {
                    "achieved_rps": summary(x["rps"] for x in sel if x["endpoint"] == ep),
                    "p50_ms": summary(x["p50_ms"] for x in sel if x["endpoint"] == ep),
                    "p99_ms": summary(x["p99_ms"] for x in sel if x["endpoint"] == ep),
                }
                for ep in ("bare", "mutate")
            },
            "p99_ratio_mutate_over_bare": summary(ratios),
        }
    return {"workers": workers, "seconds": seconds, "runs": runs, "table": table}


def bench_memory(
    workdir: Path, bodies: dict[str, Path], total: int, every: int, env: dict[str, str]
) -> dict[str, Any]:
    """A fresh server; VmRSS after each `every` reviews (mix: 40% pod3, 40% pod20, 10% denied, 10% skip)."""
    mix = {"pod3": 0.4, "pod20": 0.4, "denied": 0.1, "skip": 0.1}
    samples = []
    with bench_server(workdir / "memory", env) as srv:
        samples.append({"reviews": 0, "rss_mib": rss_kib(srv.proc.pid) / 1024})
        done = 0
        while done < total:
            for name, share in mix.items():
                hey_count(f"{srv.url}/mutate", bodies[name], int(every * share), 8)
            done += every
            counted = admission_count(srv.metrics_url)
            rss = rss_kib(srv.proc.pid) / 1024
            samples.append({"reviews": done, "counted_by_metrics": counted, "rss_mib": round(rss, 2)})
            log(f"memory: {done} reviews ({counted} counted), RSS {rss:.1f} MiB")
    after_first = [s["rss_mib"] for s in samples[1:]]
    return {
        "mix": mix,
        "samples": samples,
        "growth_after_first_batch_mib": round(after_first[-1] - after_first[0], 2),
        "max_minus_min_after_first_batch_mib": round(max(after_first) - min(after_first), 2),
    }


def py_spy_bin() -> str | None:
    local = WORK / "tools" / "bin" / "py-spy"
    if local.exists():
        return str(local)
    return shutil.which("py-spy")


def profile(srv: Server, bodies: dict[str, Path], lua: Path, seconds: int, out_dir: Path) -> dict[str, Any]:
    """py-spy (raw collapsed stacks) on the server while wrk drives /mutate with pod3, then pod20."""
    spy = py_spy_bin()
    if spy is None:
        return {"skipped": "py-spy not installed (bash bench/setup.sh)"}
    result: dict[str, Any] = {}
    for name in ("pod3", "pod20"):
        raw = out_dir / f"py-spy-{name}.txt"
        spy_proc = subprocess.Popen(
            [
                spy,
                "record",
                "-p",
                str(srv.proc.pid),
                "-d",
                str(seconds),
                "-r",
                "250",
                "-f",
                "raw",
                "-o",
                str(raw),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(1)
        wrk(f"{srv.url}/mutate", bodies[name], lua, seconds - 2, 8)
        _, err = spy_proc.communicate(timeout=seconds + 30)
        if not raw.exists():
            result[name] = {"error": err.decode(errors="replace")[-1000:]}
            continue
        result[name] = summarise_stacks(raw)
    return result


def _frame_label(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"
    m = re.match(r"(.*) \((.*?):\d+\)$", frame)
    if not m:
        return frame
    fn, path = m.groups()
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{fn} ({path})"


BUCKETS = [
    ("admission.review (inject + JSON patch + response)", "review (webhook/admission.py)"),
    ("  jsonpatch.make_patch (up to b267add)", "make_patch (jsonpatch.py)"),
    ("  webhook.patch.make_patch (from a33aff8)", "make_patch (webhook/patch.py)"),
    ("  copy.deepcopy", "deepcopy (copy.py)"),
    ("  inject()", "inject (webhook/inject.py)"),
    ("json.loads of the request", "loads (json/__init__.py)"),
    ("JSONResponse render (json.dumps)", "render (starlette/responses.py)"),
    ("logging (one line per review)", "(logging/__init__.py)"),
    ("prometheus metrics", "prometheus_client/"),
    ("TLS (ssl read/write)", "(ssl.py)"),
    ("uvicorn httptools protocol", "uvicorn/protocols/http/httptools_impl.py"),
    ("starlette/fastapi routing + middleware", "starlette/routing.py"),
]


def summarise_stacks(raw: Path) -> dict[str, Any]:
    """Share of samples by own frame and by chosen inclusive buckets."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_s)
        frames = stack.split(";")
        total += count
        own[_frame_label(frames[-1])] += count
        labels = [_frame_label(f) for f in frames]
        for title, needle in BUCKETS:
            if any(needle in lab for lab in labels):
                incl[title] += count
    idle = sum(c for f, c in own.items() if "select (" in f or "run_forever" in f or "_run_once" in f)
    return {
        "samples": total,
        "idle_share": round(idle / total, 3) if total else 0,
        "inclusive_share": {t: round(incl[t] / total, 3) for t, _ in BUCKETS} if total else {},
        "top_own": [(f, round(c / total, 3)) for f, c in own.most_common(25)] if total else [],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench webhook")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--hey-workers", type=int, default=4)
    ap.add_argument("--reviews", type=int, default=100_000)
    ap.add_argument("--every", type=int, default=10_000)
    ap.add_argument("--skip", default="", help="comma list of: throughput,halfload,memory,profile")
    ap.add_argument("--name", default="webhook")
    ap.add_argument("--experiment", default="", help="see bench/experiments/site")
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    require("wrk", "hey")
    workdir = WORK / "webhook"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    bodies = write_bodies(workdir / "bodies")
    lua = workdir / "post.lua"
    lua.write_text(LUA)
    out: dict[str, Any] = {
        "machine": machine(),
        "command": "python -m bench webhook " + " ".join(argv or []),
        "body_bytes": {k: v.stat().st_size for k, v in bodies.items()},
    }
    out["experiment"] = args.experiment or None
    exp_env = {"BENCH_EXPERIMENT": args.experiment}
    with bench_server(workdir / "server", exp_env) as srv:
        out["check"] = _check_bodies(srv, bodies)
        if "throughput" not in skip:
            out["throughput"] = bench_throughput(
                srv, bodies, lua, args.rounds, args.seconds, args.connections
            )
            if "halfload" not in skip:
                out["half_load"] = bench_half_load(
                    srv, bodies, out["throughput"]["table"], args.rounds, args.seconds, args.hey_workers
                )
        if "profile" not in skip:
            out["profile"] = profile(srv, bodies, lua, 15, workdir)
            for f in workdir.glob("py-spy-*.txt"):
                shutil.copy(f, REPO / "bench" / "results" / f"{args.name}-{f.name}")
    if "memory" not in skip:
        out["memory"] = bench_memory(workdir, bodies, args.reviews, args.every, exp_env)
    write_result(args.name, out)


if __name__ == "__main__":
    main()
