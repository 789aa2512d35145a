"""oci:// delivery of the bench package against `oras pull` followed by `tar -xzf`, in the same run.

    .venv/bin/python -m bench.experiments.oci_delivery [--rounds 3] [--scale 1.0]

The package (bench/package.py, about 810 MB extracted, .tar.gz) is pushed once with `oras push` as one
`application/vnd.oci.image.layer.v1.tar+gzip` layer to Debian's docker-registry on 127.0.0.1 (plain
HTTP, anonymous: tests/support/registry.py). Each round runs, in rotating order:

- `init`: `python -m initcontainer` with `PACKAGE_URL=oci://127.0.0.1:PORT/bench/pkg@sha256:...`
  (manifest and blob digests verified, every extraction check on, atomic promote);
- `oras+tar`: `oras pull --plain-http` into a directory, then `tar -xzf` of the pulled file into the
  destination, then the file removed (what a shell init container would do);
- `init-url`: the same program given the layer's blob URL on the same registry as a plain package URL
  with its SHA-256 (`http://.../v2/bench/pkg/blobs/sha256:...`): the cost of the oci:// machinery
  (manifest, digest checks, registry client) is the difference between `init` and `init-url`.

Both write into /dev/shm (tmpfs), so the shared disk's write-back does not decide the result. Wall time
and peak RSS come from GNU time around each method (for `oras+tar`, the larger of the two steps).
Results: bench/results/oci-delivery.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import log, rotate, summary, write_result
from bench.package import PackageSpec, ensure_package
from tests.support.registry import run_registry

SHM = Path("/dev/shm/pi-oci-bench")


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one command, from GNU time."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        start = time.monotonic()
        proc = subprocess.run(
            ["/usr/bin/time", "-o", out.name, "-f", "%M", *argv], env=env, capture_output=True, text=True
        )
        wall = time.monotonic() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:3])} failed:\n{proc.stderr[-3000:]}")
        return wall, int(out.read().split()[-1])


def run_init(ref: str, dest: Path, env: dict[str, str], sha256: str | None = None) -> dict[str, Any]:
    run_env = {
        "PATH": env["PATH"],
        "PACKAGE_URL": ref,
        **({"PACKAGE_SHA256": sha256} if sha256 else {}),
        "PACKAGE_DEST": str(dest),
        "PACKAGE_ALLOW_HTTP": "true",
        "PACKAGE_TERMINATION_LOG": str(SHM / "term"),
        "PACKAGE_CREDENTIALS_DIR": str(SHM / "no-creds"),
        "PACKAGE_LOG_FORMAT": "json",
    }
    (SHM / "no-creds").mkdir(exist_ok=True)
    wall, rss = timed([sys.executable, "-m", "initcontainer"], run_env)
    return {"wall": wall, "rss_kib": rss}


def run_oras_tar(ref: str, dest: Path, env: dict[str, str]) -> dict[str, Any]:
    pulled = SHM / "pulled"
    dest.mkdir(parents=True)
    start = time.monotonic()
    _, rss_pull = timed(["oras", "pull", "--plain-http", "-o", str(pulled), ref], env)
    (archive,) = list(pulled.iterdir())
    _, rss_tar = timed(["tar", "-xzf", str(archive), "-C", str(dest)], env)
    shutil.rmtree(pulled)
    return {"wall": time.monotonic() - start, "rss_kib": max(rss_pull, rss_tar)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="package size (1.0: about 810 MB extracted)")
    args = ap.parse_args(argv)

    pkg = ensure_package(PackageSpec(name=f"oci-{args.scale:g}", scale=args.scale, formats=("tar.gz",)))
    archive = pkg.archive("tar.gz")
    shutil.rmtree(SHM, ignore_errors=True)
    SHM.mkdir(parents=True)
    results: dict[str, list[dict[str, Any]]] = {"init": [], "oras+tar": [], "init-url": []}
    with run_registry(SHM / "registry", auth="none", tls=False) as reg:
        env = reg.push_env()
        stage = SHM / "push"
        stage.mkdir()
        shutil.copy(archive, stage / "pkg.tar.gz")
        subprocess.run(
            [
                "oras",
                "push",
                "--plain-http",
                f"{reg.host}/bench/pkg:v1",
                "pkg.tar.gz:application/vnd.oci.image.layer.v1.tar+gzip",
            ],
            cwd=stage,
            env=env,
            check=True,
            capture_output=True,
        )
        shutil.rmtree(stage)
        digest = subprocess.run(
            ["oras", "resolve", "--plain-http", f"{reg.host}/bench/pkg:v1"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        oci_ref = f"oci://{reg.host}/bench/pkg@{digest}"
        manifest = json.loads(
            subprocess.run(
                ["oras", "manifest", "fetch", "--plain-http", f"{reg.host}/bench/pkg@{digest}"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        layer = manifest["layers"][0]["digest"]
        blob_url = f"http://{reg.host}/v2/bench/pkg/blobs/{layer}"
        plain_ref = f"{reg.host}/bench/pkg@{digest}"
        log(f"pushed {archive.stat().st_size} bytes as {plain_ref}")
        for round_ in range(args.rounds):
            for method in rotate(["init", "oras+tar", "init-url"], round_):
                dest = SHM / "dest"
                shutil.rmtree(dest, ignore_errors=True)
                if method == "init":
                    result = run_init(oci_ref, dest, env)
                elif method == "init-url":
                    result = run_init(blob_url, dest, env, sha256=layer.split(":", 1)[1])
                else:
                    result = run_oras_tar(plain_ref, dest, env)
                files = sum(len(f) for _, _, f in os.walk(dest))
                result["files"] = files
                results[method].append(result)
                log(
                    f"round {round_ + 1} {method}: {result['wall']:.1f} s, {result['rss_kib'] / 1024:.0f} MiB"
                )
                shutil.rmtree(dest, ignore_errors=True)
    shutil.rmtree(SHM, ignore_errors=True)
    report = {
        "package": {"tar_gz_bytes": archive.stat().st_size, "extracted_bytes": pkg.extracted_bytes},
        "rounds": args.rounds,
        "runs": results,
        "wall": {m: summary(r["wall"] for r in runs) for m, runs in results.items()},
        "rss_mib": {m: summary(r["rss_kib"] / 1024 for r in runs) for m, runs in results.items()},
        # Paired per round: `oras+tar` wall / `init` wall, so > 1 means oci:// delivery was faster.
        "ratio_oras_tar_over_init": summary(
            o["wall"] / i["wall"] for o, i in zip(results["oras+tar"], results["init"], strict=True)
        ),
    }
    path = write_result("oci-delivery", report)
    print(json.dumps({k: report[k] for k in ("wall", "rss_mib", "ratio_oras_tar_over_init")}, indent=1))
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
