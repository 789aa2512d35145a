"""Two small test packages, A and B (.tgz under app/), and what a finished delivery leaves in its destination.

Every suite that delivers "a package" (the init container alone, the webhook's rendering run for real, the
apiserver end to end, the images) uses these, so a file set or checksum is written down once.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

from initcontainer import contract


def make_tgz(files: dict[str, bytes], prefix: str = "") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


BIG = os.urandom(2 * 1024 * 1024)  # incompressible: the .tgz is ~2 MiB, several chunks
PKG_A = make_tgz({"a.txt": b"package A\n", "common/config.ini": b"[a]\n", "blob.bin": BIG}, prefix="app/")
PKG_B = make_tgz({"b.txt": b"package B\n", "common/other.ini": b"[b]\n"}, prefix="app/")
SHA_A = hashlib.sha256(PKG_A).hexdigest()
SHA_B = hashlib.sha256(PKG_B).hexdigest()
FILES_A = {"app/a.txt", "app/common/config.ini", "app/blob.bin"}
FILES_B = {"app/b.txt", "app/common/other.ini"}


def write_packages(root: Path) -> Path:
    """`root` with a.tgz (PKG_A) and b.tgz (PKG_B), ready for a web server."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "a.tgz").write_bytes(PKG_A)
    (root / "b.tgz").write_bytes(PKG_B)
    return root


def visible(dest: Path) -> set[str]:
    """Files the app sees (marker excluded)."""
    return {
        str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file() and p.name != contract.MARKER_NAME
    }


def leftovers(dest: Path) -> list[str]:
    """Staging directories a delivery left behind (none after success or a clean failure)."""
    return (
        [p.name for p in dest.iterdir() if p.name.startswith(contract.STAGING_PREFIX)]
        if dest.exists()
        else []
    )


def assert_package_a(dest: Path) -> None:
    assert visible(dest) == FILES_A
    assert (dest / "app/blob.bin").read_bytes() == BIG
    marker = json.loads((dest / contract.MARKER_NAME).read_text())
    assert marker["sha256"] == SHA_A
    assert marker["files"] == 3
    assert marker["size"] == len(PKG_A)
    assert leftovers(dest) == []
