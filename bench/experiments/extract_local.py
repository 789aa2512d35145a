"""Experiment: where does `initcontainer.extract.extract` spend its time, without HTTP?

Extracts the local bench package (no network, no download thread) with the real extract(), next to
`tar -xf` of the same file, interleaved, into fresh directories on the same filesystem; then the same
with variants patched in-process (nothing in initcontainer/ is edited):

- `no-data-filter`: `tree.Tree.second_opinion` skipped, to price tarfile.data_filter's realpath() per member;
- `cprofile`: one run under cProfile, top functions by own time.

Usage: python -m bench.experiments.extract_local [--format tar|tar.gz] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import pstats
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.common import log, rotate, summary
from bench.package import PackageSpec, ensure_package
from initcontainer import extract as ex
from initcontainer import tree


@contextlib.contextmanager
def patched(variant: str) -> Iterator[None]:
    if variant == "no-data-filter":
        orig = tree.Tree.second_opinion
        tree.Tree.second_opinion = lambda self, info: None  # type: ignore[method-assign]
        try:
            yield
        finally:
            tree.Tree.second_opinion = orig  # type: ignore[method-assign]
    else:
        yield


def run_python(archive: Path, fmt: str, dest: Path, variant: str) -> float:
    dest.mkdir(parents=True)
    with patched(variant), archive.open("rb") as f:
        t0 = time.perf_counter()
        ex.extract(f, dest, fmt=fmt, limits=ex.Limits(max_files=10**6, max_extracted_bytes=1 << 40))
        return time.perf_counter() - t0


def run_tar(archive: Path, fmt: str, dest: Path, variant: str) -> float:
    dest.mkdir(parents=True)
    t0 = time.perf_counter()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(dest)], check=True)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--format", default="tar")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    pkg = ensure_package(PackageSpec(name="p800"))
    archive = pkg.archive(args.format)
    fmt = "tar.gz" if args.format == "tar.gz" else "tar"
    base = Path("/tmp/pkgbench-x")  # shallow, like /shared-data/diff-var-files
    subprocess.run(["umount", str(base)], capture_output=True)
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    # tmpfs: the shared disk's contention (other jobs, write-back) must not dominate a CPU comparison
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4g", "tmpfs", str(base)], check=True)
    subprocess.run(["cat", str(archive)], stdout=subprocess.DEVNULL, check=True)  # page cache
    contenders: dict[str, tuple[Callable[[Path, str, Path, str], float], str]] = {
        "tar -xf": (run_tar, ""),
        "extract()": (run_python, ""),
        "extract() no-data-filter": (run_python, "no-data-filter"),
    }
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for r in range(args.rounds):
        for name in rotate(list(contenders), r):
            fn, variant = contenders[name]
            dest = base / "d"
            times[name].append(fn(archive, fmt, dest, variant))
            shutil.rmtree(dest)
            log(f"round {r} {name:26} {times[name][-1]:6.2f} s")
    prof = cProfile.Profile()
    dest = base / "d"
    dest.mkdir()
    with archive.open("rb") as f:
        prof.runcall(
            ex.extract, f, dest, fmt=fmt, limits=ex.Limits(max_files=10**6, max_extracted_bytes=1 << 40)
        )
    shutil.rmtree(dest)
    subprocess.run(["umount", str(base)], check=True)
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(18)
    out: dict[str, Any] = {k: summary(v) for k, v in times.items()}
    print(json.dumps(out, indent=2))
    print(s.getvalue())


if __name__ == "__main__":
    main()
