"""Several packages per Pod: four packages from nginx with a per-connection rate limit, at once vs in turn.

The same program (`python -m initcontainer` with PACKAGE_LIST) runs with PACKAGE_CONCURRENCY=4 and =1,
interleaved round by round, into fresh directories. With a per-connection limit the concurrent run is
bounded by the limit once (each package has its own connection), the serial one by it four times.
Target (issue 13): at least 3x faster concurrently.

Usage: python -m bench.experiments.several_packages [--packages 4] [--mib 200] [--limit-rate 20m] [--rounds 2]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

from bench.common import PYTHON, REPO, WORK, log, machine, rotate, summary, write_result
from bench.nginx import serve
from initcontainer import contract


def make_package(path: Path, mib: int) -> None:
    """An uncompressed tar of random bytes: what is measured is the transfer, not decompression."""
    if path.exists() and path.stat().st_size > mib * 1024 * 1024:
        return
    tmp = path.with_suffix(".tmp")
    with tarfile.open(tmp, "w") as tar:
        info = tarfile.TarInfo("data.bin")
        info.size = mib * 1024 * 1024
        info.mode = 0o644
        chunk = os.urandom(1024 * 1024)
        tar.addfile(info, io.BytesIO(chunk * mib))
    tmp.replace(path)


def run_once(base_url: str, names: list[str], out: Path, concurrency: int) -> float:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    packages = [{"name": n, "url": f"{base_url}/{n}.tar", "dest": str(out / n)} for n in names]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        contract.ENV_PACKAGE_LIST: json.dumps(packages),
        contract.ENV_CONCURRENCY: str(concurrency),
        contract.ENV_ALLOW_HTTP: "true",
        contract.ENV_TERMINATION_LOG: str(out / "termination-log"),
    }
    started = time.monotonic()
    proc = subprocess.run([PYTHON, "-m", "initcontainer"], env=env, cwd=REPO, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"init program failed ({proc.returncode}): {proc.stderr[-2000:]}")
    for n in names:
        if not (out / n / "data.bin").is_file():
            raise RuntimeError(f"package {n} missing after the run")
    shutil.rmtree(out, ignore_errors=True)
    return elapsed


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.experiments.several_packages")
    parser.add_argument("--packages", type=int, default=4)
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--limit-rate", default="20m", help="nginx limit_rate per connection (m = MiB/s)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    root = WORK / "several" / "www"
    root.mkdir(parents=True, exist_ok=True)
    names = [f"pkg{i}" for i in range(args.packages)]
    for n in names:
        make_package(root / f"{n}.tar", args.mib)
    times: dict[str, list[float]] = {"concurrent": [], "serial": []}
    with serve(root, WORK / "several" / "nginx", limit_rate=args.limit_rate) as nginx:
        for r in range(args.rounds):
            for method in rotate(["concurrent", "serial"], r):
                concurrency = args.packages if method == "concurrent" else 1
                seconds = run_once(nginx.throttled_url, names, WORK / "several" / "out", concurrency)
                times[method].append(seconds)
                log(f"round {r + 1} {method}: {seconds:.1f} s")
    result = {
        "packages": args.packages,
        "mib_each": args.mib,
        "limit_rate": args.limit_rate,
        "concurrent_s": summary(times["concurrent"]),
        "serial_s": summary(times["serial"]),
        "speedup_median": summary(times["serial"])["median"] / summary(times["concurrent"])["median"],
        "machine": machine(),
    }
    write_result("several_packages", result)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
