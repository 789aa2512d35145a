"""An oci:// package: resolve the reference, verify every byte, install it like any package.

The steps, each with the guarantee it keeps:

1. Credentials: `.dockerconfigjson` files in PACKAGE_CREDENTIALS_DIR (the top-level
   one, then `*/.dockerconfigjson`, one per image pull secret, in name order),
   matched to the registry as the kubelet does; else `username`+`password`, or a
   `token` sent as a static Bearer token. Only to the registry's origin (and the
   token realm it names).
2. The manifest named by the tag or digest, verified against the pinned digest
   (or the registry's Docker-Content-Digest for a tag); an index resolves to the
   entry for this container's platform, verified against the index's descriptor.
   A re-run whose marker records the same manifest digest does nothing more.
3. The content kind from media types (`manifest.plan`), then each blob streamed
   through the safe extraction into a hidden staging directory; every blob is
   hashed as it streams and a mismatch fails the run before `promote`, so
   nothing unverified ever becomes visible.
"""

from __future__ import annotations

import errno
import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from initcontainer import contract, formats, hints
from initcontainer.config import Config
from initcontainer.decompress import SourceError
from initcontainer.download import PackageStream
from initcontainer.errors import ConfigError, IntegrityError, LocalIOError, PackageError, UnsafeArchiveError
from initcontainer.log import Logger
from initcontainer.oci import keyring
from initcontainer.oci import manifest as m
from initcontainer.oci.client import RegistryClient
from initcontainer.oci.layers import Decision, LayerFilter
from initcontainer.tree import Limits, Tree
from initcontainer.untar import extract_tar

MARKER_VERSION = 1
MAX_INDEX_DEPTH = 2
"""An index may point at another index once (nested platform indexes exist); no deeper."""
FILE_COPY_CHUNK = 1 << 20
EMPTY_DIGEST = "sha256:" + hashlib.sha256(b"").hexdigest()


def credential_files(directory: Path | None) -> list[Path]:
    """The .dockerconfigjson files of the credentials directory, in the order they are searched."""
    if directory is None or not directory.is_dir():
        return []
    files = []
    top = directory / contract.CREDENTIAL_DOCKERCONFIG
    if top.is_file():
        files.append(top)
    for child in sorted(directory.iterdir()):
        # Kubelet-managed volumes hold `..data` and `..<timestamp>` entries: skip them.
        if child.name.startswith("..") or not child.is_dir():
            continue
        candidate = child / contract.CREDENTIAL_DOCKERCONFIG
        if candidate.is_file():
            files.append(candidate)
    return files


def registry_credentials(
    cfg: Config, ref: contract.OCIReference, log: Logger
) -> list[keyring.RegistryCredential]:
    """Candidates for this registry: matching .dockerconfigjson entries, then username/password."""
    files = credential_files(cfg.credentials_dir)
    found = keyring.lookup(keyring.load_keyrings(files), ref.name)
    if files and not found:
        log.info(
            "credentials",
            f"no .dockerconfigjson entry matches {ref.name}; trying without registry credentials",
            files=[str(f) for f in files],
        )
    creds = cfg.credentials
    if creds is not None and creds.username is not None and creds.password is not None:
        found.append(keyring.RegistryCredential(creds.username, creds.password, source=creds.source))
    return found


def _check_config(cfg: Config) -> None:
    if cfg.sha256 is not None:
        raise ConfigError(
            f"{contract.ENV_SHA256} does not apply to oci:// packages: pin the manifest digest in the "
            "reference instead (oci://HOST/REPO@sha256:...; `crane digest` or `oras resolve` prints it)"
        )
    if cfg.fmt != contract.DEFAULT_FORMAT:
        raise ConfigError(
            f"{contract.ENV_FORMAT} does not apply to oci:// packages: the media types say what each layer is"
        )


def already_installed(
    ref: contract.OCIReference, digest: str, cfg: Config, marker: dict[str, Any] | None
) -> bool:
    return bool(
        marker
        and marker.get("url") == str(ref)
        and marker.get("manifestDigest") == digest
        and marker.get("stripComponents", 0) == cfg.strip_components
    )


def _resolve(client: RegistryClient, ref: contract.OCIReference, log: Logger) -> tuple[str, m.Manifest, str]:
    """(top-level digest, the image manifest to install, its digest)."""
    fetched = client.manifest(ref.manifest_ref, ref.digest)
    top = fetched.digest
    parsed = m.parse(fetched.body, fetched.content_type)
    depth = 0
    while isinstance(parsed, m.Index):
        depth += 1
        if depth > MAX_INDEX_DEPTH:
            raise IntegrityError(f"indexes nested deeper than {MAX_INDEX_DEPTH} levels")
        platform = m.own_platform()
        entry = m.select(parsed, platform)
        log.info(
            "platform",
            f"index {fetched.digest} -> {entry.digest} for platform {platform}",
            index=fetched.digest,
            manifest=entry.digest,
            platform=str(platform),
        )
        if entry.size > m.MAX_MANIFEST_BYTES:
            raise IntegrityError(
                f"the index entry {entry.digest} claims {entry.size} bytes, too big for a manifest"
            )
        fetched = client.manifest(entry.digest, entry.digest)
        if len(fetched.body) != entry.size:
            raise IntegrityError(
                f"manifest {entry.digest} is {len(fetched.body)} bytes, the index says {entry.size}"
            )
        parsed = m.parse(fetched.body, entry.media_type)
    return top, parsed, fetched.digest


def _check_sizes(cfg: Config, plan: m.Plan) -> int:
    total = sum(layer.descriptor.size for layer in plan.layers)
    if total > cfg.max_download_bytes:
        raise IntegrityError(
            f"the artifact's layers add up to {total} bytes, more than {contract.ENV_MAX_DOWNLOAD_BYTES}="
            f"{cfg.max_download_bytes}; raise the limit if this size is expected"
        )
    return total


def _layer_format(stream: PackageStream, layer: m.Layer) -> str:
    """The magic bytes must agree with the media type (a mislabelled or HTML blob fails here)."""
    head = stream.peek(formats.HEAD_BYTES)
    found = formats.detect_format(head)
    declared = layer.archive_format
    if declared is not None and found != declared:
        raise IntegrityError(
            f"layer {layer.descriptor.digest} is {layer.descriptor.media_type} but its bytes are {found}"
        )
    return found


def _write_file(tree: Tree, title: str, stream: PackageStream, size: int) -> None:
    rel = tree.relpath(title, "file layer title")
    if rel is None:
        raise UnsafeArchiveError(f"file layer title {title!r} names no file")

    def fill(fd: int) -> None:
        written = 0
        while True:
            chunk = stream.read(FILE_COPY_CHUNK)
            if not chunk:
                break
            written += len(chunk)
            if written > size:
                raise IntegrityError(
                    f"file layer {title!r} holds more than the {size} bytes its descriptor says"
                )
            view = memoryview(chunk)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        if written != size:
            raise IntegrityError(f"file layer {title!r} holds {written} bytes, its descriptor says {size}")

    tree.add_file(rel, size, 0o644, None, fill)


def _write_empty(tree: Tree, layer: m.Layer) -> None:
    """An empty file layer: nothing to fetch, but the digest must still be that of no bytes."""
    assert layer.title is not None
    if layer.descriptor.digest != EMPTY_DIGEST:
        raise IntegrityError(f"file layer {layer.title!r} has size 0 but digest {layer.descriptor.digest}")
    rel = tree.relpath(layer.title, "file layer title")
    if rel is None:
        raise UnsafeArchiveError(f"file layer title {layer.title!r} names no file")
    tree.add_file(rel, 0, 0o644, None, lambda _fd: None)


def _install(
    client: RegistryClient, plan: m.Plan, staging: Path, cfg: Config, log: Logger
) -> tuple[Tree, int]:
    limits = Limits(max_extracted_bytes=cfg.max_extracted_bytes, max_files=cfg.max_files)
    strip = 0 if plan.kind is m.Kind.FILES else cfg.strip_components
    tree = Tree(staging, limits, strip)
    resumes = 0
    if plan.kind is m.Kind.FILES:
        m.check_titles(plan.layers)
        for layer in plan.layers:
            assert layer.title is not None
            if layer.descriptor.size == 0:
                _write_empty(tree, layer)
                continue
            with client.blob(layer.descriptor) as stream:
                _write_file(tree, layer.title, stream, layer.descriptor.size)
                stream.drain()  # to the end, where the blob digest is checked
                resumes += stream.resumes
        return tree, resumes
    if plan.kind is m.Kind.ARCHIVE:
        (layer,) = plan.layers
        with client.blob(layer.descriptor) as stream:
            fmt = _layer_format(stream, layer)
            extract_tar(stream, fmt, tree)
            stream.drain()  # to the end, where the blob digest is checked
            resumes += stream.resumes
        return tree, resumes
    # An image: top layer first, so nothing on disk is ever replaced or deleted (see layers.py).
    flatten = LayerFilter()
    count = len(plan.layers)
    for position, layer in enumerate(reversed(plan.layers)):
        flatten.start_layer()
        log.info(
            "layer",
            f"layer {count - position}/{count} {layer.descriptor.digest} ({layer.descriptor.size} bytes)",
            digest=layer.descriptor.digest,
            size=layer.descriptor.size,
        )

        def admit(member: Any, flatten: LayerFilter = flatten) -> bool:
            link = member.linkname if member.islnk() else None
            return flatten.admit(member.name, is_dir=member.isdir(), hardlink_to=link) is Decision.WRITE

        with client.blob(layer.descriptor) as stream:
            fmt = _layer_format(stream, layer)
            extract_tar(stream, fmt, tree, admit)
            stream.drain()  # to the end, where the blob digest is checked
            resumes += stream.resumes
    log.info("flatten", f"{flatten.whiteouts} whiteouts, {flatten.skipped} entries hidden by upper layers")
    return tree, resumes


def _local_io_error(exc: OSError, dest: Path) -> PackageError:
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return LocalIOError(hints.full_volume(exc, dest))
    if exc.errno in (errno.ENAMETOOLONG, errno.EILSEQ):
        return UnsafeArchiveError(f"the artifact holds a name this filesystem cannot store{where}")
    return LocalIOError(f"cannot write the destination{where}: {exc.strerror or exc}")


def install_once(
    cfg: Config, log: Logger, deadline: float, marker_before: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Resolve, then (unless already installed) fetch and extract into staging and promote; the marker."""
    from initcontainer.install import discard, prepare_staging, promote, remove_leftovers

    _check_config(cfg)
    ref = contract.parse_oci_reference(cfg.url)
    candidates = registry_credentials(cfg, ref, log)
    token = cfg.credentials.token if cfg.credentials is not None else None
    client = RegistryClient(cfg, log, ref, candidates, deadline, static_token=token)
    try:
        if ref.digest is not None and already_installed(ref, ref.digest, cfg, marker_before):
            remove_leftovers(cfg.dest)
            log.info(
                "already_installed", f"{ref} is already installed in {cfg.dest}; nothing to do", url=str(ref)
            )
            return None
        top, manifest, manifest_digest = _resolve(client, ref, log)
        if already_installed(ref, top, cfg, marker_before):
            remove_leftovers(cfg.dest)
            log.info(
                "already_installed",
                f"{ref} ({top}) is already installed in {cfg.dest}; nothing to do",
                url=str(ref),
                manifestDigest=top,
            )
            return None
        plan = m.plan(manifest)
        size = _check_sizes(cfg, plan)
        log.info(
            "artifact",
            f"{ref}: {plan.kind.value}, {len(plan.layers)} layer(s), {size} bytes",
            manifestDigest=top,
            kind=plan.kind.value,
            layers=len(plan.layers),
            size=size,
            mediaTypes=sorted({layer.descriptor.media_type for layer in plan.layers}),
        )
        staging = prepare_staging(cfg.dest)
        try:
            try:
                tree, resumes = _install(client, plan, staging, cfg, log)
            except SourceError as exc:
                raise exc.original from None
            except OSError as exc:
                raise _local_io_error(exc, cfg.dest) from exc
            if tree.stats.files == 0:
                raise IntegrityError("the artifact holds no regular file")
            marker: dict[str, Any] = {
                "version": MARKER_VERSION,
                "url": str(ref),
                "manifestDigest": top,
                "sha256": top.split(":", 1)[1],
                "sha256Pinned": ref.digest is not None,
                "platformManifestDigest": manifest_digest,
                "kind": plan.kind.value,
                "mediaTypes": sorted({layer.descriptor.media_type for layer in plan.layers}),
                "size": size,
                "files": tree.stats.files,
                "extractedBytes": tree.stats.bytes,
                "stripComponents": cfg.strip_components,
                "installedAt": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            }
            promote(staging, cfg.dest, marker)
            marker["resumes"] = resumes
            return marker
        finally:
            discard(staging)
    finally:
        client.close()
