"""A deterministic test package: thousands of small text files plus some large binary files.

Generated fast from a seeded PRNG, straight into the tar stream (no tree on disk), and compressed with
`gzip -6 -n` (what `tar czf` does) on the second core while the tar is written. The content is shaped
so that gzip's ratio is realistic, not absurd:

- text files are slices of a text made of random words from a vocabulary of a few thousand words
  (gzip gets about 3x on it, like source code or config);
- binary files are made of 1 MiB blocks drawn from a pool; each block is part random bytes and part
  low-entropy bytes (16 symbols), so gzip gets roughly 1.5x on it, like executables or model files.
  Blocks repeat only at distances >= 1 MiB, beyond gzip's 32 KiB window, so repetition does not help it.

The result is cached under _work/bench/packages/<name>/ with a manifest (sizes, sha256, file count), and
regenerated only when the generator version or the parameters change.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import subprocess
import tarfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from bench.common import WORK, log

GENERATOR_VERSION = 3
TAR_FORMATS = ("ustar", "posix", "gitarchive")
"""ustar: plain headers. posix: a pax `x` header with mtime, atime and ctime before every member, as
GNU tar's `--format=posix` writes (fractional times). gitarchive: a global pax header holding only
`comment=<commit id>` first, as `git archive` writes."""
MIB = 1024 * 1024
BLOCK = MIB
MTIME = 1_700_000_000


@dataclass(frozen=True)
class PackageSpec:
    """How big a package to make. `scale` 1.0 is about 800 MB extracted."""

    name: str
    scale: float = 1.0
    seed: int = 20240601
    formats: tuple[str, ...] = ("tar", "tar.gz")
    large_files: bool = False
    """Only four large binary files (800 MiB at scale 1): the per-byte path, with no per-file cost."""
    tar_format: str = "ustar"
    """How the headers are written (`TAR_FORMATS`); the members and their data are the same."""

    @property
    def text_files(self) -> int:
        return 0 if self.large_files else int(24_000 * self.scale)

    @property
    def binary_sizes(self) -> list[int]:
        if self.large_files:
            return [max(1, round(s * self.scale)) * MIB for s in (256, 224, 192, 128)]
        # 8 large files (560 MiB at scale 1) and 40 of 1 MiB.
        large = [192, 128, 96, 64, 32, 24, 16, 8]
        return [max(1, round(s * self.scale)) * MIB for s in large] + [MIB] * int(40 * self.scale)


@dataclass
class Package:
    """A generated package on disk."""

    spec: PackageSpec
    directory: Path
    extracted_bytes: int
    files: int
    dirs: int
    archives: dict[str, dict[str, Any]]  # format -> {"file", "bytes", "sha256"}

    def archive(self, fmt: str) -> Path:
        return self.directory / str(self.archives[fmt]["file"])


class _Tee(io.RawIOBase):
    """Write-only stream that hashes and copies to a file and, optionally, to a compressor's stdin."""

    def __init__(self, out: IO[bytes] | None, pipe: IO[bytes] | None) -> None:
        self.out, self.pipe = out, pipe
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.sha.update(data)
        self.size += len(data)
        if self.out is not None:
            self.out.write(data)
        if self.pipe is not None:
            self.pipe.write(data)
        return len(data)


class _BlockReader(io.RawIOBase):
    """A file-like object that produces `size` bytes from pool blocks chosen by a PRNG."""

    def __init__(self, pool: list[bytes], rng: random.Random, size: int) -> None:
        self.pool, self.rng, self.left = pool, rng, size
        self.buf = b""

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = self.left + len(self.buf)
        while len(self.buf) < n and self.left > 0:
            block = self.pool[self.rng.randrange(len(self.pool))]
            take = min(len(block), self.left)
            self.buf += block[:take]
            self.left -= take
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def _vocabulary(rng: random.Random, n: int = 4000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz_"
    words = {"".join(rng.choices(letters, k=rng.randint(2, 11))) for _ in range(n)}
    words.update(["def", "return", "import", "class", "self", "None", "if", "else", "for", "in", "=", ":"])
    return sorted(words)


def _text_blob(rng: random.Random, size: int) -> bytes:
    """About `size` bytes of lines of random words with indentation, like source or config files."""
    vocab = _vocabulary(rng)
    weights = [1.0 / (i + 1) for i in range(len(vocab))]  # Zipf-like, as in real text
    words = rng.choices(vocab, weights=weights, k=size // 6)
    lines: list[str] = []
    i = 0
    while i < len(words):
        k = rng.randint(3, 12)
        lines.append("    " * rng.randint(0, 3) + " ".join(words[i : i + k]))
        i += k
    return ("\n".join(lines) + "\n").encode()


def _binary_pool(rng: random.Random, n: int = 48) -> list[bytes]:
    """Blocks of 1 MiB: 25% random bytes, 75% bytes from a 16-symbol alphabet, in 4 KiB runs."""
    table = bytes(rng.sample(range(256), 16) * 16)  # maps every byte to one of 16 symbols
    pool = []
    for _ in range(n):
        parts = []
        for _ in range(BLOCK // 4096):
            chunk = rng.randbytes(4096)
            parts.append(chunk if rng.random() < 0.25 else chunk.translate(table))
        pool.append(b"".join(parts))
    return pool


def _info(name: str, size: int, mode: int, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime, ti.type = size, mode, MTIME, kind
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def _with_times(addfile: Any) -> Any:
    """`addfile` giving each member the pax times GNU tar's --format=posix writes."""

    def add(info: tarfile.TarInfo, fileobj: Any = None) -> None:
        stamp = f"{MTIME}.{len(info.name) * 7919 % 10**9:09d}"
        info.pax_headers = {"mtime": stamp, "atime": stamp, "ctime": stamp}
        addfile(info, fileobj)

    return add


def _write_tar(spec: PackageSpec, tee: _Tee) -> tuple[int, int, int]:
    """Write the tar stream; return (extracted bytes, regular files, directories)."""
    rng = random.Random(spec.seed)
    blob = _text_blob(rng, 8 * MIB)
    pool = _binary_pool(rng)
    total = files = dirs = 0
    global_headers = {"comment": f"{spec.seed:040x}"} if spec.tar_format == "gitarchive" else {}
    with tarfile.open(
        fileobj=tee, mode="w|", format=tarfile.PAX_FORMAT, bufsize=64 * 1024, pax_headers=global_headers
    ) as tar:
        if spec.tar_format == "posix":
            tar.addfile = _with_times(tar.addfile)  # type: ignore[method-assign]
        tar.addfile(_info("pkg", 0, 0o755, tarfile.DIRTYPE))
        dirs += 1
        exts = (".py", ".txt", ".json", ".yaml", ".conf", ".md")
        emitted = {"pkg"}
        per_dir = 200
        for i in range(spec.text_files):
            if i % per_dir == 0:
                d = f"pkg/src/mod{i // per_dir // 20:03d}/sub{i // per_dir % 20:02d}"
                parts = d.split("/")
                for j in range(2, len(parts) + 1):
                    parent = "/".join(parts[:j])
                    if parent not in emitted:
                        emitted.add(parent)
                        tar.addfile(_info(parent, 0, 0o755, tarfile.DIRTYPE))
                        dirs += 1
            # log-uniform sizes from 200 B to 40 KiB (mean about 8 KiB)
            size = int(200 * (200 ** rng.random()))
            start = rng.randrange(len(blob) - size)
            data = blob[start : start + size]
            tar.addfile(_info(f"{d}/f{i:06d}{exts[i % len(exts)]}", size, 0o644), io.BytesIO(data))
            total += size
            files += 1
        tar.addfile(_info("pkg/bin", 0, 0o755, tarfile.DIRTYPE))
        tar.addfile(_info("pkg/data", 0, 0o755, tarfile.DIRTYPE))
        dirs += 2
        for k, size in enumerate(spec.binary_sizes):
            name = f"pkg/bin/tool{k:02d}" if size > MIB else f"pkg/data/blob{k:03d}.bin"
            mode = 0o755 if size > MIB else 0o644
            tar.addfile(_info(name, size, mode), _BlockReader(pool, rng, size))
            total += size
            files += 1
    return total, files, dirs


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * MIB):
            h.update(chunk)
    return h.hexdigest()


def ensure_package(spec: PackageSpec) -> Package:
    """Return the cached package for `spec`, generating it when missing or stale."""
    directory = WORK / "packages" / spec.name
    manifest = directory / "manifest.json"
    key = asdict(spec)
    if spec.tar_format == "ustar":  # packages cached before the field existed stay valid
        del key["tar_format"]
    want = {"generator": GENERATOR_VERSION, "spec": key}
    if manifest.exists():
        data = json.loads(manifest.read_text())
        if data.get("key") == json.loads(json.dumps(want)) and all(
            (directory / a["file"]).exists() and (directory / a["file"]).stat().st_size == a["bytes"]
            for a in data["archives"].values()
        ):
            return Package(
                spec, directory, data["extracted_bytes"], data["files"], data["dirs"], data["archives"]
            )
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.iterdir():
        old.unlink()
    log(f"generating package {spec.name} (scale {spec.scale}) in {directory}")
    t0 = time.monotonic()
    tar_path, gz_path = directory / "package.tar", directory / "package.tar.gz"
    out = tar_path.open("wb") if "tar" in spec.formats else None
    gz: subprocess.Popen[bytes] | None = None
    if "tar.gz" in spec.formats:
        with gz_path.open("wb") as gz_out:
            gz = subprocess.Popen(["gzip", "-6", "-n", "-c"], stdin=subprocess.PIPE, stdout=gz_out)
    tee = _Tee(out, gz.stdin if gz else None)
    try:
        total, files, dirs = _write_tar(spec, tee)
    finally:
        if out is not None:
            out.close()
        if gz is not None and gz.stdin is not None:
            gz.stdin.close()
            if gz.wait() != 0:
                raise RuntimeError("gzip failed")
    archives: dict[str, dict[str, Any]] = {}
    if "tar" in spec.formats:
        archives["tar"] = {"file": tar_path.name, "bytes": tee.size, "sha256": tee.sha.hexdigest()}
    if "tar.gz" in spec.formats:
        archives["tar.gz"] = {
            "file": gz_path.name,
            "bytes": gz_path.stat().st_size,
            "sha256": _sha256_file(gz_path),
        }
    data = {
        "key": want,
        "extracted_bytes": total,
        "files": files,
        "dirs": dirs,
        "tar_bytes": tee.size,
        "archives": archives,
        "generated_in_s": round(time.monotonic() - t0, 1),
    }
    manifest.write_text(json.dumps(data, indent=2) + "\n")
    log(
        f"package {spec.name}: {total / 1e6:.0f} MB in {files} files, tar {tee.size / 1e6:.0f} MB"
        + (f", tar.gz {archives['tar.gz']['bytes'] / 1e6:.0f} MB" if "tar.gz" in archives else "")
        + f" ({data['generated_in_s']} s)"
    )
    return Package(spec, directory, total, files, dirs, archives)


if __name__ == "__main__":
    import sys

    scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    pkg = ensure_package(PackageSpec(name=f"scale{scale:g}", scale=scale))
    print(json.dumps({"dir": str(pkg.directory), "archives": pkg.archives, "files": pkg.files}, indent=2))
