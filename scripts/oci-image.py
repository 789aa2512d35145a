"""Write a one-layer OCI image archive (image layout in a tar) from a few local files.

Used for the test cluster's pause, busybox and CoreDNS images, which must be built here (no registry is
reachable) and are imported with `ctr images import`. Standard library only.

  python3 scripts/oci-image.py --out pause.tar --name localhost/pause:local \
      --file build/pause:/pause --entrypoint /pause --user 65535:65535
  ... --cap /coredns=net_bind_service   (file capability, as upstream's `setcap cap_net_bind_service=+ep`)
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import struct
import tarfile
from pathlib import Path

# Capability numbers (linux/capability.h) of the file capabilities an image may need.
CAPABILITIES = {"net_bind_service": 10}


def _file_caps(names: list[str]) -> str:
    """The security.capability xattr for `setcap NAMES=+ep`: vfs_cap_data revision 2, effective bit set.

    Every byte is below 0x80 for these capability numbers, so the value survives as a UTF-8 PAX record.
    """
    permitted = 0
    for name in names:
        permitted |= 1 << CAPABILITIES[name]
    raw = struct.pack("<5I", 0x02000001, permitted & 0xFFFFFFFF, 0, permitted >> 32, 0)
    return raw.decode("ascii")


def _layer(files: list[tuple[Path, str]], caps: dict[str, list[str]] | None = None) -> bytes:
    """A tar holding each file at its path, owned by root, mode kept, mtime 0 (reproducible); files named
    in `caps` carry those file capabilities (a SCHILY.xattr record, which containerd applies)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for src, dest in files:
            info = tar.gettarinfo(str(src), arcname=dest.lstrip("/"))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if caps and dest in caps:
                info.pax_headers = {"SCHILY.xattr.security.capability": _file_caps(caps[dest])}
            with src.open("rb") as fh:
                tar.addfile(info, fh)
    return raw.getvalue()


def build(
    out: Path,
    name: str,
    files: list[tuple[Path, str]],
    entrypoint: list[str],
    user: str,
    caps: dict[str, list[str]] | None = None,
) -> None:
    """Write the archive: blobs (layer, config, manifest), index.json naming the image, oci-layout."""
    diff = _layer(files, caps)
    layer = gzip.compress(diff, mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": entrypoint, "User": user, "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(diff).hexdigest()]},
            "history": [{"created_by": "scripts/oci-image.py"}],
        },
        sort_keys=True,
    ).encode()

    def desc(media: str, blob: bytes) -> dict[str, object]:
        return {"mediaType": media, "digest": "sha256:" + hashlib.sha256(blob).hexdigest(), "size": len(blob)}

    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": desc("application/vnd.oci.image.config.v1+json", config),
            "layers": [desc("application/vnd.oci.image.layer.v1.tar+gzip", layer)],
        },
        sort_keys=True,
    ).encode()
    mdesc = desc("application/vnd.oci.image.manifest.v1+json", manifest)
    mdesc["annotations"] = {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name}
    index = json.dumps({"schemaVersion": 2, "manifests": [mdesc]}, sort_keys=True).encode()
    entries = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index}
    for blob in (layer, config, manifest):
        entries["blobs/sha256/" + hashlib.sha256(blob).hexdigest()] = blob
    tmp = out.with_suffix(out.suffix + ".tmp")
    with tarfile.open(tmp, "w") as tar:
        for path, data in entries.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--name", required=True, help="image reference recorded in index.json")
    parser.add_argument("--file", action="append", required=True, help="SRC:DEST (repeatable)")
    parser.add_argument("--entrypoint", action="append", required=True)
    parser.add_argument("--user", default="65535:65535")
    parser.add_argument(
        "--cap",
        action="append",
        default=[],
        help=f"DEST=NAME[,NAME] file capabilities (+ep) of an image file; NAME in {sorted(CAPABILITIES)}",
    )
    args = parser.parse_args()
    files = [(Path(f.split(":", 1)[0]), f.split(":", 1)[1]) for f in args.file]
    caps: dict[str, list[str]] = {}
    for spec in args.cap:
        dest, _, names = spec.partition("=")
        unknown = [n for n in names.split(",") if n not in CAPABILITIES]
        if unknown or dest not in {d for _, d in files}:
            parser.error(
                f"--cap {spec}: DEST must be a --file destination and NAME one of {sorted(CAPABILITIES)}"
            )
        caps[dest] = names.split(",")
    build(args.out, args.name, files, args.entrypoint, args.user, caps)


if __name__ == "__main__":
    main()
