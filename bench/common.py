"""Shared helpers: statistics, machine description, result files, processes."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WORK = Path(os.environ.get("BENCH_WORK", REPO / "_work" / "bench"))
RESULTS = REPO / "bench" / "results"
PYTHON = sys.executable


def log(msg: str) -> None:
    """Progress on stderr, so stdout stays for results."""
    print(f"[bench {dt.datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def summary(values: Iterable[float]) -> dict[str, float]:
    """Median, min, max and the number of samples."""
    vals = list(values)
    if not vals:
        return {"n": 0}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def percentile(sorted_vals: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (q in 0..100)."""
    if not sorted_vals:
        return float("nan")
    rank = max(1, min(len(sorted_vals), round(q / 100 * len(sorted_vals) + 0.5)))
    return sorted_vals[rank - 1]


def rotate(items: Sequence[Any], n: int) -> list[Any]:
    """Items rotated by n, so run order changes from round to round (A B C, B C A, C A B...)."""
    k = n % len(items)
    return list(items[k:]) + list(items[:k])


def _tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "missing"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "?"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    free = subprocess.run(["free", "-h"], capture_output=True, text=True).stdout.strip()
    loadavg = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    git = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "webhook", "initcontainer"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "free_h": free,
        "loadavg_at_start": loadavg,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "git_head": git,
        "webhook_or_initcontainer_uncommitted": bool(dirty),
        "tools": {
            "curl": _tool_version(["curl", "--version"]),
            "tar": _tool_version(["tar", "--version"]),
            "nginx": _tool_version(["nginx", "-v"]),
            "wrk": _tool_version(["wrk", "-v"]),
        },
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    """Write bench/results/NAME.json (the latest run) and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    log(f"wrote {path.relative_to(REPO)}")
    return path


def require(*tools: str) -> None:
    """Fail early with the command that installs what is missing."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise SystemExit(f"missing tools: {' '.join(missing)}; run: bash bench/setup.sh")


def rss_kib(pid: int) -> int:
    """Resident set size of a process, in KiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")
