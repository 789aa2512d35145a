"""Attack a running `package-injector serve` with real sockets and report what it costs the webhook.

Starts the real server (tests/support/webhook.py, default limits unless PACKAGE_INJECTOR_* says otherwise)
and runs each scenario in turn, while a separate process probes /healthz every 100 ms and another sends an
annotated Pod's review every 250 ms (the apiserver's share):

- idle-tls: N TLS connections opened and held idle (issue 10: 4,000 took RSS from 133 to 281 MB);
- no-handshake: N TCP connections that never send a byte (held for up to the handshake timeout);
- slowloris: S TLS connections sending one header byte per second (issue 10: held 120 s);
- slow-body: S TLS connections sending their body at 100 bytes per second;
- huge-header: 4 connections streaming a header line until the server stops them (issue 10: 64 MiB +66 MB);
- large-reviews: 4 clients posting ~2.5 MiB reviews (500 containers) back to back for 10 s;
- many-containers: the review of issue 10 (3,000 containers, all named in package-containers).

For each: the webhook's RSS before, at peak and after; how many attack connections the server closed and
after how long; the probes' and the Pod reviews' worst latency and failures. Latencies follow the
machine's load; what matters is that probes and reviews keep answering and memory stays bounded.

Run: .venv/bin/python -m bench.experiments.abuse [--connections 4000] [--slow 500] [--only idle-tls ...]
Writes bench/results/abuse.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import ssl
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.common import log, machine, rss_kib, write_result
from tests.support.webhook import WebhookProcess, running_webhook

URL = "https://files.example.com/site.tar.gz"


def review_body(containers: int = 3, env_bytes: int = 0, listed: bool = False) -> bytes:
    names = [f"c{i}" for i in range(containers)]
    annotations = {"package-url": URL}
    if listed:
        annotations["package-containers"] = ",".join(names)
    env = [{"name": "A", "value": "x" * env_bytes}] if env_bytes else []
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "web-", "annotations": annotations},
        "spec": {"containers": [{"name": n, "image": "nginx", "env": env} for n in names]},
    }
    request = {
        "uid": "u",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "operation": "CREATE",
        "namespace": "shop",
        "object": pod,
    }
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    return json.dumps(body).encode()


# --- the background load: probes and the apiserver's reviews, each in its own process -----------------


def _probe(url: str, interval: float, stop: Any, out: Any) -> None:
    latencies, failures = [], 0
    while not stop.is_set():
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                response.read()
            latencies.append(time.perf_counter() - started)
        except OSError:
            failures += 1
        time.sleep(interval)
    out.put((latencies, failures))


def _reviewer(url: str, ca_file: str, interval: float, stop: Any, out: Any) -> None:
    body, latencies, failures = review_body(), [], 0
    context = ssl.create_default_context(cafile=ca_file)
    while not stop.is_set():
        started = time.perf_counter()
        try:
            # A new connection each time, as an apiserver whose idle connection was closed would make.
            with httpx.Client(verify=context, timeout=10) as client:
                response = client.post(url, content=body, headers={"content-type": "application/json"})
            if response.status_code == 200 and response.json()["response"]["allowed"]:
                latencies.append(time.perf_counter() - started)
            else:
                failures += 1
        except httpx.HTTPError:
            failures += 1
        time.sleep(interval)
    out.put((latencies, failures))


class Watch:
    """RSS sampling of the webhook plus the probe and review processes, for one scenario."""

    def __init__(self, server: WebhookProcess) -> None:
        self.server = server
        ctx = multiprocessing.get_context("spawn")
        self.stop, self.probes, self.reviews = ctx.Event(), ctx.Queue(), ctx.Queue()
        self.processes = [
            ctx.Process(target=_probe, args=(server.metrics_url + "/healthz", 0.1, self.stop, self.probes)),
            ctx.Process(
                target=_reviewer,
                args=(server.url + "/mutate", str(server.ca_file), 0.25, self.stop, self.reviews),
            ),
        ]
        self.peak = self.before = rss_kib(server.proc.pid)
        self._sampling = True
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while self._sampling:
            self.peak = max(self.peak, rss_kib(self.server.proc.pid))
            time.sleep(0.05)

    def __enter__(self) -> Watch:
        for process in self.processes:
            process.start()
        self._sampler.start()
        time.sleep(1)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.result: dict[str, Any] = {}
        for name, queue in (("healthz", self.probes), ("review", self.reviews)):
            latencies, failures = queue.get(timeout=60)
            self.result[name] = {
                "count": len(latencies),
                "failures": failures,
                "max_ms": round(max(latencies, default=0) * 1000, 1),
                "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
            }
        for process in self.processes:
            process.join(timeout=30)
        self._sampling = False
        self._sampler.join()
        time.sleep(1)
        self.result["rss_mib"] = {
            "before": round(self.before / 1024, 1),
            "peak": round(self.peak / 1024, 1),
            "after": round(rss_kib(self.server.proc.pid) / 1024, 1),
        }


# --- attacks ---------------------------------------------------------------------------------------


async def _closed_after(reader: asyncio.StreamReader, started: float, limit: float) -> float | None:
    """Seconds until the server closed the connection, or None if it still held it after `limit`."""
    try:
        while await asyncio.wait_for(
            reader.read(65536), timeout=max(0.01, limit - (time.monotonic() - started))
        ):
            pass
    except TimeoutError:
        return None
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    return time.monotonic() - started


async def _open(server: WebhookProcess, tls: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = server.url.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=str(server.ca_file)) if tls else None
    return await asyncio.open_connection(host, int(port), ssl=context, server_hostname=host if tls else None)


async def _hold(
    server: WebhookProcess, n: int, tls: bool, hold: float, send: Callable[..., Any] | None
) -> dict[str, Any]:
    """Open n connections (in batches), run `send(writer)` on each, report who the server closed when."""
    opened, failed = [], 0
    for start in range(0, n, 200):
        results = await asyncio.gather(
            *(_open(server, tls) for _ in range(start, min(n, start + 200))), return_exceptions=True
        )
        opened += [r for r in results if isinstance(r, tuple)]
        failed += sum(1 for r in results if not isinstance(r, tuple))
    started = time.monotonic()
    senders = [asyncio.ensure_future(send(w)) for _, w in opened] if send else []
    closed = await asyncio.gather(*(_closed_after(r, started, hold) for r, _ in opened))
    for sender in senders:
        sender.cancel()
    for _, writer in opened:
        writer.transport.abort()
    held = [c for c in closed if c is not None]
    return {
        "opened": len(opened),
        "refused_at_open": failed,
        "closed_by_server": len(held),
        "still_open_after_s": hold if len(held) < len(opened) else None,
        "still_open": len(opened) - len(held),
        "closed_after_s_median": round(statistics.median(held), 1) if held else None,
        "closed_after_s_max": round(max(held), 1) if held else None,
    }


async def _slow_header(writer: asyncio.StreamWriter) -> None:
    writer.write(b"POST /mutate HTTP/1.1\r\nHost: x\r\n")
    while True:
        await asyncio.sleep(1)
        writer.write(b"X")


async def _slow_body(writer: asyncio.StreamWriter) -> None:
    writer.write(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
    writer.write(b"Content-Length: 1000000\r\n\r\n")
    while True:
        await asyncio.sleep(1)
        writer.write(b"x" * 100)


async def _huge_header(writer: asyncio.StreamWriter) -> None:
    writer.write(b"POST /mutate HTTP/1.1\r\nHost: x\r\nX-Big: ")
    chunk = b"a" * 65536
    for _ in range(1024):  # up to 64 MiB
        writer.write(chunk)
        await writer.drain()


def _large_reviews(server: WebhookProcess, seconds: float) -> dict[str, Any]:
    body = review_body(500, env_bytes=4800)
    statuses: list[int] = []
    deadline = time.monotonic() + seconds

    def client() -> None:
        context = ssl.create_default_context(cafile=str(server.ca_file))
        with httpx.Client(verify=context, timeout=60) as http:
            while time.monotonic() < deadline:
                statuses.append(
                    http.post(
                        server.url + "/mutate", content=body, headers={"content-type": "application/json"}
                    ).status_code
                )

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "body_mib": round(len(body) / 2**20, 2),
        "answered": len(statuses),
        "statuses": sorted(set(statuses)),
    }


def _many_containers(server: WebhookProcess) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=str(server.ca_file))
    out = {}
    with httpx.Client(verify=context, timeout=60) as http:
        for n in (500, 3000):
            body = review_body(n, listed=True)
            started = time.perf_counter()
            answer = http.post(
                server.url + "/mutate", content=body, headers={"content-type": "application/json"}
            )
            elapsed = time.perf_counter() - started
            response = answer.json()["response"]
            out[f"{n}_containers"] = {
                "ms": round(elapsed * 1000, 1),
                "allowed": response["allowed"],
                "message": response.get("status", {}).get("message", ""),
            }
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as work, running_webhook(Path(work)) as server:
        time.sleep(1)
        scenarios: dict[str, Callable[[], Any]] = {
            "idle-tls": lambda: _hold(server, args.connections, True, 8, None),
            "no-handshake": lambda: _hold(server, args.connections, False, 15, None),
            "slowloris": lambda: _hold(server, args.slow, True, 20, _slow_header),
            "slow-body": lambda: _hold(server, args.slow, True, 20, _slow_body),
            "huge-header": lambda: _hold(server, 4, True, 30, _huge_header),
            "large-reviews": lambda: _large_reviews(server, 10),
            "many-containers": lambda: _many_containers(server),
        }
        for number, name in enumerate(args.only or scenarios):
            scenario = scenarios[name]
            log(f"abuse: {name}")
            with Watch(server) as watch:
                outcome = scenario()
                if asyncio.iscoroutine(outcome):
                    outcome = asyncio.run(outcome)
            key = name if name not in results else f"{name}-{number}"
            results[key] = {**outcome, **watch.result}
            log(f"  {json.dumps(results[key])}")
        results["server_alive"] = server.proc.poll() is None
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.experiments.abuse")
    parser.add_argument("--connections", type=int, default=4000)
    parser.add_argument("--slow", type=int, default=500)
    parser.add_argument("--name", default="abuse")
    parser.add_argument("--only", nargs="*", help="scenario names in order, repeats allowed (default: all)")
    args = parser.parse_args(argv)
    results = run(args)
    write_result(args.name, {"machine": machine(), "args": vars(args), "results": results})


if __name__ == "__main__":
    main()
