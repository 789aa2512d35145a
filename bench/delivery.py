"""Package delivery: `python -m initcontainer` against two references, in the same run.

The references: the seed's `curl -o && tar -xf` (what we replace), and the limit of this machine: `curl |
igzip -dc | tar -x` for .tar.gz (ISA-L's inflater, Debian package `isal`), `curl | tar -x` for .tar.

Every run downloads the same file from the same nginx (the archive is read once before the runs, so all
methods are served from the page cache) into an empty directory on a dedicated ext4 filesystem (a sparse
loop-mounted image), so that `statvfs` of that filesystem measures exactly what the run put on disk.
Methods are interleaved and their order rotates every round. Between runs (not timed): the directory is
removed and the filesystem synced, so no run pays for the previous run's write-back.

Per run: wall time, CPU time, peak RSS (GNU time's %M: the largest single process of the run), peak disk
use above the empty filesystem (sampled every 5 ms), and a check that the extracted tree is complete.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.common import PYTHON, REPO, WORK, log, machine, require, rotate, summary, write_result
from bench.nginx import serve
from bench.package import TAR_FORMATS, Package, PackageSpec, ensure_package

METHODS = ("seed", "stream", "limit", "contender")
PACKAGES = {
    "mixed": PackageSpec(name="p800", scale=1.0),
    "large": PackageSpec(name="p800large", scale=1.0, large_files=True),
}
"""`mixed`: 24,000 small files and 48 binaries; `large`: four large files."""
GNU_TIME = "/usr/bin/time"


@dataclass
class Target:
    """Where runs extract: a directory on a filesystem we can measure."""

    mount: Path
    isolated: bool  # True when the filesystem holds nothing but our runs


MOUNT = Path("/tmp/pkgbench")
"""Short on purpose: the real destination is /shared-data/diff-var-files (2 levels), and path depth is
part of the per-member cost of realpath()-based checks."""


@contextlib.contextmanager
def scratch_fs(size_gb: int, kind: str = "tmpfs") -> Iterator[Target]:
    """A fresh, dedicated filesystem at MOUNT: tmpfs (default) or ext4 in a sparse loop-mounted image.

    tmpfs by default: the machine's disk is shared with other jobs, whose write-back and journal
    commits made file creation vary 10x from run to run on ext4; tmpfs keeps the comparison on what the
    methods themselves do. It favours the seed, if anything (its extra archive copy costs only memory).
    Without root (no mount), a plain directory on the shared filesystem, and disk figures are noisy.
    """
    image = WORK / "delivery" / "fs.img"
    subprocess.run(["umount", str(MOUNT)], capture_output=True)
    MOUNT.mkdir(parents=True, exist_ok=True)
    mounted = False
    if os.geteuid() == 0:
        if kind == "ext4":
            image.parent.mkdir(parents=True, exist_ok=True)
            image.unlink(missing_ok=True)
            with image.open("wb") as f:
                f.truncate(size_gb * 1024**3)
            subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
            cmd = ["mount", "-o", "loop,noatime", str(image), str(MOUNT)]
        else:
            cmd = ["mount", "-t", "tmpfs", "-o", f"size={size_gb}g,mode=0755", "tmpfs", str(MOUNT)]
        mounted = subprocess.run(cmd, capture_output=True).returncode == 0
    if not mounted:
        log("no dedicated mount (not root?): disk use is measured on a shared filesystem and is noisy")
    try:
        yield Target(MOUNT, mounted)
    finally:
        if mounted:
            subprocess.run(["umount", str(MOUNT)], check=False)
        image.unlink(missing_ok=True)


def used_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


class DiskSampler(threading.Thread):
    """Peak of `used_bytes(path)` while running."""

    def __init__(self, path: Path, interval: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.path, self.interval = path, interval
        self.peak = used_bytes(path)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, used_bytes(self.path))
            time.sleep(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, used_bytes(self.path))
        return self.peak


def command(method: str, url: str, fmt: str, dest: Path, pkg: Package) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of one method."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": str(WORK)}
    if method == "seed":
        # The seed (V1): download package.tar into the shared dir, `tar -xf` it in place (GNU tar sniffs
        # the compression), delete it.
        script = 'cd "$DEST" && curl -f -L -sS -o package.tar "$URL" && tar -xf package.tar && rm package.tar'
        return ["bash", "-c", script], {**env, "DEST": str(dest), "URL": url}
    if method == "stream":
        z = "z" if fmt == "tar.gz" else ""
        script = f'set -o pipefail; curl -f -L -sS "$URL" | tar -x{z} -C "$DEST"'
        return ["bash", "-c", script], {**env, "DEST": str(dest), "URL": url}
    if method == "limit":
        # Three processes on two cores, each doing one job with the fastest tool there is; for .tar the
        # same as `stream`, so it only runs for .tar.gz (the table takes `stream` as the .tar limit).
        inflate = "igzip -dc | " if fmt == "tar.gz" else ""
        script = f'set -o pipefail; curl -f -L -sS "$URL" | {inflate}tar -x -C "$DEST"'
        return ["bash", "-c", script], {**env, "DEST": str(dest), "URL": url}
    if method.startswith("contender"):
        # contender-EXPERIMENT: the same program with bench/experiments/site/sitecustomize.py loaded
        experiment = method.partition("-")[2]
        site = f"{REPO / 'bench' / 'experiments' / 'site'}:" if experiment else ""
        return [PYTHON, "-m", "initcontainer"], {
            **env,
            "PYTHONPATH": f"{site}{REPO}",
            "BENCH_EXPERIMENT": experiment,
            "PACKAGE_URL": url,
            "PACKAGE_SHA256": str(pkg.archives[fmt]["sha256"]),
            "PACKAGE_DEST": str(dest),
            "PACKAGE_ALLOW_HTTP": "true",
            "PACKAGE_TERMINATION_LOG": str(WORK / "delivery" / "termination-log"),
            "PACKAGE_MAX_DOWNLOAD_BYTES": str(max(4 * 1024**3, int(pkg.archives[fmt]["bytes"]) + 1)),
            "PACKAGE_MAX_EXTRACTED_BYTES": str(max(16 * 1024**3, pkg.extracted_bytes + 1)),
            "PACKAGE_MAX_FILES": str(max(200_000, pkg.files + pkg.dirs + 10)),
        }
    raise ValueError(method)


def tree_stats(dest: Path) -> tuple[int, int]:
    """(regular files, bytes) under dest, skipping hidden top-level entries (marker, staging)."""
    files = size = 0
    for top in os.scandir(dest):
        if top.name.startswith("."):
            continue
        for root, _dirs, names in os.walk(top.path):
            for n in names:
                st = os.lstat(os.path.join(root, n))
                files += 1
                size += st.st_size
    return files, size


def run_once(method: str, url: str, fmt: str, pkg: Package, target: Target, timeout: float) -> dict[str, Any]:
    """One timed run into an empty directory; the directory is removed afterwards."""
    work = WORK / "delivery"
    work.mkdir(parents=True, exist_ok=True)
    dest = target.mount / "dest"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    timefile = work / "time.txt"
    argv, env = command(method, url, fmt, dest, pkg)
    full = [GNU_TIME, "-f", "%e %U %S %M", "-o", str(timefile), *argv]
    subprocess.run(["sync", "-f", str(target.mount)], check=False)
    base = used_bytes(target.mount)
    sampler = DiskSampler(target.mount)
    sampler.start()
    t0 = time.perf_counter()
    proc = subprocess.run(full, env=env, capture_output=True, timeout=timeout)
    wall = time.perf_counter() - t0
    peak = sampler.stop()
    _elapsed, user, system, maxrss = timefile.read_text().strip().splitlines()[-1].split()
    files, size = tree_stats(dest)
    ok = proc.returncode == 0 and files == pkg.files and size == pkg.extracted_bytes
    result = {
        "method": method,
        "format": fmt,
        "url": url,
        "rc": proc.returncode,
        "wall_s": round(wall, 3),
        "cpu_s": round(float(user) + float(system), 2),
        "maxrss_mib": round(int(maxrss) / 1024, 1),
        "peak_disk_mb": round((peak - base) / 1e6, 1),
        "extracted_ok": ok,
        "throughput_mb_s": round(pkg.extracted_bytes / 1e6 / wall, 1),
    }
    if not ok:
        result["stderr_tail"] = proc.stderr.decode(errors="replace")[-2000:]
        result["found"] = {"files": files, "bytes": size}
        log(f"  {method} {fmt}: FAILED rc={proc.returncode} files={files}/{pkg.files}")
    shutil.rmtree(dest)
    subprocess.run(["sync", "-f", str(target.mount)], check=False)
    return result


def _warm(url: str) -> None:
    subprocess.run(["curl", "-f", "-sS", "-o", "/dev/null", url], check=True)


def bench_delivery(
    rounds: int,
    big: bool,
    methods: tuple[str, ...],
    formats: tuple[str, ...],
    throttled: bool,
    fs: str = "tmpfs",
    package: str = "mixed",
    tar_format: str = "ustar",
) -> dict[str, Any]:
    require("nginx", "curl", "tar", GNU_TIME, *(["igzip"] if "limit" in methods else []))
    spec = PACKAGES[package]
    if tar_format != spec.tar_format:  # a package of its own, only in the formats measured
        spec = replace(spec, name=f"{spec.name}-{tar_format}", tar_format=tar_format, formats=formats)
    pkg = ensure_package(spec)
    big_pkg = ensure_package(PackageSpec(name="p4g", scale=5.3, formats=("tar.gz",))) if big else None
    # The 800 MB seed run needs archive + tree (< 2 GB); the 4 GB case runs only methods that need the tree.
    size_gb = 4 if big_pkg is None else 2 + big_pkg.extracted_bytes // 1024**3
    configs = [(fmt, False) for fmt in formats] + ([(fmt, True) for fmt in formats] if throttled else [])
    runs: list[dict[str, Any]] = []
    out: dict[str, Any] = {
        "machine": machine(),
        "package": {
            "kind": package,
            "tar_format": tar_format,
            "extracted_bytes": pkg.extracted_bytes,
            "files": pkg.files,
            "dirs": pkg.dirs,
            "archives": pkg.archives,
        },
        "rounds": rounds,
    }
    with (
        scratch_fs(int(size_gb), fs) as target,
        serve(WORK / "packages", WORK / "nginx") as web,
    ):
        out["dest_fs"] = {"kind": fs if target.isolated else "shared", "mount": str(target.mount)}
        out["limit_rate"] = web.limit_rate
        for fmt in formats:
            _warm(f"{web.url}/{pkg.spec.name}/{pkg.archives[fmt]['file']}")
        for r in range(rounds):
            for fmt, slow in configs:
                base = web.throttled_url if slow else web.url
                url = f"{base}/{pkg.spec.name}/{pkg.archives[fmt]['file']}"
                for method in rotate(_methods_for(methods, fmt), r):
                    res = run_once(method, url, fmt, pkg, target, timeout=600)
                    res.update(round=r, throttled=slow)
                    runs.append(res)
                    log(
                        f"round {r} {fmt:6} {'100MB/s' if slow else 'unthrottled':11} {method:9} "
                        f"{res['wall_s']:6.2f} s  {res['maxrss_mib']:6.1f} MiB  "
                        f"disk {res['peak_disk_mb']:7.1f} MB"
                    )
        out["runs"] = runs
        out["table"] = _table(runs, configs, methods)
        if big_pkg is not None:
            _warm(f"{web.url}/p4g/package.tar.gz")
            big_runs = []
            for method in ("contender", "stream"):
                url = f"{web.url}/p4g/package.tar.gz"
                res = run_once(method, url, "tar.gz", big_pkg, target, timeout=1800)
                big_runs.append(res)
                log(f"4 GB {method}: {res}")
            out["big"] = {
                "package": {
                    "extracted_bytes": big_pkg.extracted_bytes,
                    "files": big_pkg.files,
                    "archives": big_pkg.archives,
                },
                "runs": big_runs,
            }
    return out


def _methods_for(methods: tuple[str, ...], fmt: str) -> tuple[str, ...]:
    """`limit` of a .tar is `stream`'s command: run it once."""
    if fmt == "tar.gz" or "stream" not in methods:
        return methods
    return tuple(m for m in methods if m != "limit")


def _paired(by_round: dict[int, dict[str, dict[str, Any]]], ref: str, m: str) -> list[float]:
    """Per round, ref's wall time / m's (> 1: m is faster), over the rounds where both completed."""
    return [
        rr[ref]["wall_s"] / rr[m]["wall_s"]
        for rr in by_round.values()
        if ref in rr and m in rr and rr[ref]["extracted_ok"] and rr[m]["extracted_ok"]
    ]


def _table(
    runs: list[dict[str, Any]], configs: list[tuple[str, bool]], methods: tuple[str, ...]
) -> list[Any]:
    rows = []
    for fmt, slow in configs:
        sel = [r for r in runs if r["format"] == fmt and r["throttled"] == slow]
        by_round: dict[int, dict[str, dict[str, Any]]] = {}
        for r in sel:
            by_round.setdefault(r["round"], {})[r["method"]] = r
        limit = "limit" if fmt == "tar.gz" else "stream"
        for m in _methods_for(methods, fmt):
            mine = [r for r in sel if r["method"] == m]
            ratios = _paired(by_round, "seed", m)
            rows.append(
                {
                    "format": fmt,
                    "throttled": slow,
                    "method": m,
                    "all_ok": all(r["extracted_ok"] for r in mine),
                    "wall_s": summary(r["wall_s"] for r in mine),
                    "throughput_mb_s": summary(r["throughput_mb_s"] for r in mine),
                    "ratio_vs_seed": summary(ratios),
                    "limit": limit,
                    "ratio_vs_limit": summary(_paired(by_round, limit, m)),
                    "maxrss_mib": summary(r["maxrss_mib"] for r in mine),
                    "peak_disk_mb": summary(r["peak_disk_mb"] for r in mine),
                    "cpu_s": summary(r["cpu_s"] for r in mine),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench delivery")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--big", action="store_true", help="also the 4 GB package (one run each)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--formats", default="tar.gz,tar")
    ap.add_argument("--no-throttled", action="store_true")
    ap.add_argument("--name", default="delivery")
    ap.add_argument("--fs", choices=("tmpfs", "ext4"), default="tmpfs", help="destination filesystem")
    ap.add_argument("--package", choices=tuple(PACKAGES), default="mixed", help="mixed files, or a few large")
    ap.add_argument(
        "--tar-format", choices=TAR_FORMATS, default="ustar", help="headers as written by (bench/package.py)"
    )
    args = ap.parse_args(argv)
    out = bench_delivery(
        args.rounds,
        args.big,
        tuple(args.methods.split(",")),
        tuple(args.formats.split(",")),
        not args.no_throttled,
        args.fs,
        args.package,
        args.tar_format,
    )
    out["command"] = "python -m bench delivery " + " ".join(argv or [])
    write_result(args.name, out)
    for row in out["table"]:
        keys = ("wall_s", "ratio_vs_seed", "ratio_vs_limit", "maxrss_mib", "peak_disk_mb")
        med = {k: row[k].get("median", 0) for k in keys}
        log(
            f"{row['format']:6} {'100MB/s' if row['throttled'] else 'fast':5} {row['method']:9} "
            f"wall {med['wall_s']:6.2f} s  vs seed {med['ratio_vs_seed']:5.2f}  vs limit "
            f"{med['ratio_vs_limit']:5.2f} "
            f"rss {med['maxrss_mib']:6.1f} MiB  disk {med['peak_disk_mb']:7.1f} MB"
        )


if __name__ == "__main__":
    main()
