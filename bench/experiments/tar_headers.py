"""Experiment: the tar reader's own CPU time per header format, with and without the pax fast path.

The delivery benchmark measures the whole program (download, header parsing, file creation) by wall
time, which on a loaded shared machine moves more than the header parser's share. This runs only
`untar.TarReader` over the local bench package's .tar (every header parsed, member data skipped, no
files written) in a fresh Python per run, and reports its CPU time (`time.process_time`). `fast` is
the reader as it is; `nopax` has bench/experiments/site/sitecustomize.py's `nopax` experiment loaded
(the reader before `initcontainer/pax.py`). Formats are the packages of `--tar-format` (bench/package.py),
all interleaved with rotating order. Ratios are paired per round: nopax CPU / fast CPU (> 1: the fast
path is cheaper).

Usage: python -m bench.experiments.tar_headers [--rounds 5] [--name tar-headers]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import replace
from typing import Any

from bench.common import REPO, log, machine, rotate, summary, write_result
from bench.delivery import PACKAGES
from bench.package import TAR_FORMATS, ensure_package

_READ = """
import sys, time
from initcontainer import formats, untar
from initcontainer.decompress import TarSource
with open(sys.argv[1], "rb") as f:
    start = time.process_time()
    source = TarSource(f, formats.TAR, 1 << 40)
    reader = untar.TarReader(source)
    members = 0
    while (member := reader.next()) is not None:
        reader.skip_to(reader.offset, member.name)
        members += 1
    print(members, time.process_time() - start)
"""


def read_cpu(path: str, variant: str) -> tuple[int, float]:
    site = f"{REPO / 'bench' / 'experiments' / 'site'}:" if variant == "nopax" else ""
    env = {**os.environ, "PYTHONPATH": f"{site}{REPO}", "BENCH_EXPERIMENT": variant}
    argv = [sys.executable, "-c", _READ, path]
    members, cpu = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout.split()
    return int(members), float(cpu)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--name", default="tar-headers")
    args = ap.parse_args(argv)
    base = PACKAGES["mixed"]
    paths = {}
    for tar_format in TAR_FORMATS:  # the packages `bench delivery --formats tar --tar-format F` uses
        spec = base
        if tar_format != base.tar_format:
            spec = replace(base, name=f"{base.name}-{tar_format}", tar_format=tar_format, formats=("tar",))
        paths[tar_format] = str(ensure_package(spec).archive("tar"))
    runs: list[dict[str, Any]] = []
    out: dict[str, Any] = {"machine": machine(), "rounds": args.rounds, "runs": runs}
    configs = [(f, v) for f in TAR_FORMATS for v in ("fast", "nopax")]
    for r in range(args.rounds):
        for tar_format, variant in rotate(configs, r):
            members, cpu = read_cpu(paths[tar_format], variant)
            runs.append(
                {"round": r, "format": tar_format, "variant": variant, "members": members, "cpu_s": cpu}
            )
            log(f"round {r} {tar_format:10} {variant:5} {members} members  CPU {cpu:.2f} s")
    table: list[dict[str, Any]] = []
    out["table"] = table
    for tar_format in TAR_FORMATS:
        fast, slow = (
            [float(x["cpu_s"]) for x in runs if x["format"] == tar_format and x["variant"] == v]
            for v in ("fast", "nopax")
        )
        ratio = summary(s / f for f, s in zip(fast, slow, strict=True))
        table.append(
            {
                "format": tar_format,
                "fast_cpu_s": summary(fast),
                "nopax_cpu_s": summary(slow),
                "nopax_over_fast": ratio,
            }
        )
        log(
            f"{tar_format:10} CPU fast {summary(fast)['median']:.2f} s, "
            f"nopax {summary(slow)['median']:.2f} s, nopax/fast {ratio['median']:.2f}"
        )
    out["command"] = "python -m bench.experiments.tar_headers " + " ".join(argv or sys.argv[1:])
    write_result(args.name, out)


if __name__ == "__main__":
    main()
