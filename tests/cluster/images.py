"""Images in the node's containerd store (scripts/cluster.sh ctr), for tests that need one of their own.

A test that pulls an image with credentials must not pull one whose image ID (config digest) is also a
preloaded image's: the kubelet (KubeletEnsureSecretPulledImages, on by default since 1.35) then records
that ID as pulled with a Secret, and from then on makes every Pod without that Secret pull it again, from a
registry nobody can reach here. `derive` makes a copy that differs only by a label, so its ID is new.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from tests.cluster.live import ROOT

CTR = ["bash", str(ROOT / "scripts" / "cluster.sh"), "ctr"]


def ctr(*args: str, timeout: float = 300) -> str:
    """`ctr -n k8s.io ARGS` against the node's containerd; raises with its stderr on failure."""
    proc = subprocess.run([*CTR, *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"ctr {' '.join(args)} -> {proc.returncode}: {proc.stderr[-2000:]}")
    return proc.stdout


def refs() -> set[str]:
    """Every image reference in the node's store."""
    return set(ctr("images", "ls", "-q").split())


def derive(src: str, dest: str, label: str, workdir: Path) -> None:
    """Store `dest`: image `src` with one more config label (`label`=`dest`), hence another image ID."""
    exported, out = workdir / "src.tar", workdir / "dest.tar"
    # --local: in this process. Through containerd's transfer service (ctr's default) a goroutine copies the
    # stream into the file and ctr exits when the transfer ends, not when that copy does: under load the
    # tail was lost, exit status 0 (a 1.34.4 run: the tar ended inside its last member, `oci-layout`).
    ctr("images", "export", "--local", "--platform", "linux/amd64", str(exported), src)
    blobs: dict[str, bytes] = {}
    with tarfile.open(exported) as tar:
        for member in tar.getmembers():
            fh = tar.extractfile(member)
            if fh is not None:
                blobs[member.name] = fh.read()

    def blob(digest: str) -> bytes:
        return blobs["blobs/" + digest.replace(":", "/")]

    def put(data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs["blobs/" + digest.replace(":", "/")] = data
        return digest

    desc: dict[str, Any] = json.loads(blobs["index.json"])["manifests"][0]
    manifest: dict[str, Any] = json.loads(blob(desc["digest"]))
    while "manifests" in manifest:  # an index: take the amd64 manifest
        desc = next(m for m in manifest["manifests"] if m.get("platform", {}).get("architecture") == "amd64")
        manifest = json.loads(blob(desc["digest"]))
    config: dict[str, Any] = json.loads(blob(manifest["config"]["digest"]))
    config.setdefault("config", {}).setdefault("Labels", {})[label] = dest
    config_bytes = json.dumps(config, sort_keys=True).encode()
    manifest["config"] = {**manifest["config"], "digest": put(config_bytes), "size": len(config_bytes)}
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    new_desc = {
        "mediaType": desc["mediaType"],
        "digest": put(manifest_bytes),
        "size": len(manifest_bytes),
        "annotations": {"io.containerd.image.name": dest, "org.opencontainers.image.ref.name": dest},
    }
    blobs["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [new_desc]}).encode()
    with tarfile.open(out, "w") as tar:
        for name, data in blobs.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    ctr("images", "import", "--platform", "linux/amd64", str(out))
    exported.unlink()
    out.unlink()
