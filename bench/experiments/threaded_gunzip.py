"""Experiment: decompress .tar.gz in a second thread instead of inside the extracting thread.

Today `initcontainer` decompresses in the main thread (`decompress.TarSource.read`), so gunzip and the
per-member Python work (tar headers, checks, open/write) run one after the other; GNU tar runs gzip as a
separate process, so the seed uses both cores. zlib releases the GIL while inflating, so a producer
thread that inflates (the download thread already hashes there) overlaps the two on 2 cores.

Compared here, in one process, on a tmpfs at a shallow path, interleaved: `tar -xzf` (local file),
`extract(file, fmt="tar.gz")` (as today) and `extract(ThreadedGunzip(file), fmt="tar")` (proposed).
The real change belongs in initcontainer/download.py + decompress.py (see bench/FINDINGS.md).

Usage: python -m bench.experiments.threaded_gunzip [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import queue
import shutil
import subprocess
import threading
import time
import zlib
from pathlib import Path
from typing import IO, Any

from bench.common import log, rotate, summary
from bench.package import PackageSpec, ensure_package
from initcontainer import extract as ex

_EOF = object()


class ThreadedGunzip:
    """A Readable of the inflated bytes, inflated by a producer thread into a bounded queue."""

    def __init__(self, raw: IO[bytes], in_chunk: int = 256 << 10, out_chunk: int = 1 << 20) -> None:
        self._q: queue.Queue[Any] = queue.Queue(maxsize=16)
        self._cur = b""
        self._pos = 0
        self._eof = False
        self._t = threading.Thread(target=self._run, args=(raw, in_chunk, out_chunk), daemon=True)
        self._t.start()

    def _run(self, raw: IO[bytes], in_chunk: int, out_chunk: int) -> None:
        try:
            d = zlib.decompressobj(wbits=31)
            while True:
                data = raw.read(in_chunk)
                if not data:
                    break
                while data:
                    out = d.decompress(data, out_chunk)
                    if out:
                        self._q.put(out)
                    data = d.unconsumed_tail
                    if d.eof:
                        # multi-member gzip: start over on what follows
                        rest = d.unused_data + data
                        d = zlib.decompressobj(wbits=31)
                        data = rest
            if not d.eof:
                raise ValueError("truncated gzip stream")
            self._q.put(_EOF)
        except BaseException as exc:
            self._q.put(exc)

    def read(self, n: int = -1) -> bytes:
        if self._pos >= len(self._cur):
            if self._eof:
                return b""
            item = self._q.get()
            if item is _EOF:
                self._eof = True
                return b""
            if isinstance(item, BaseException):
                raise item
            self._cur, self._pos = item, 0
        start = self._pos
        out = self._cur if start == 0 and (n < 0 or n >= len(self._cur)) else self._cur[start : start + n]
        self._pos = start + len(out)
        return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    pkg = ensure_package(PackageSpec(name="p800"))
    archive = pkg.archive("tar.gz")
    base = Path("/tmp/pkgbench-x")
    subprocess.run(["umount", str(base)], capture_output=True)
    base.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3g", "tmpfs", str(base)], check=True)
    subprocess.run(["cat", str(archive)], stdout=subprocess.DEVNULL, check=True)
    limits = ex.Limits(max_files=10**6, max_extracted_bytes=1 << 40)
    times: dict[str, list[float]] = {
        "tar -xzf": [],
        "extract(tar.gz) today": [],
        "extract(threaded gunzip)": [],
    }
    try:
        for r in range(args.rounds):
            for name in rotate(list(times), r):
                dest = base / "d"
                dest.mkdir()
                t0 = time.perf_counter()
                if name == "tar -xzf":
                    subprocess.run(["tar", "-xzf", str(archive), "-C", str(dest)], check=True)
                elif name == "extract(tar.gz) today":
                    with archive.open("rb") as f:
                        stats = ex.extract(f, dest, fmt="tar.gz", limits=limits)
                        assert stats.bytes == pkg.extracted_bytes
                else:
                    with archive.open("rb") as f:
                        stats = ex.extract(ThreadedGunzip(f), dest, fmt="tar", limits=limits)
                        assert stats.bytes == pkg.extracted_bytes
                times[name].append(time.perf_counter() - t0)
                shutil.rmtree(dest)
                log(f"round {r} {name:26} {times[name][-1]:6.2f} s")
    finally:
        subprocess.run(["umount", str(base)], check=False)
    print(json.dumps({k: summary(v) for k, v in times.items()}, indent=2))


if __name__ == "__main__":
    main()
