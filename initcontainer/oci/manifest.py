"""Manifests, indexes and media types: what an OCI artifact is, and which parts to fetch.

Pure functions over bytes already verified against their digest. The content
kinds, decided from media types and annotations only (never by guessing):

- IMAGE: the config is an OCI image config or a Docker container config; every
  layer is applied in order with whiteouts, giving the image's filesystem.
- ARCHIVE layer: a tar, tar+gzip or tar+zstd media type (OCI and Docker layer
  types, Flux's `application/vnd.cncf.flux.content.v1.tar+gzip`, Helm charts...),
  extracted. ORAS marks directories it packed with `io.deis.oras.content.unpack`.
- FILE layer: one with an `org.opencontainers.image.title` annotation that is not
  an archive, written under that name (what `oras push file.txt` makes; ORAS gives
  such files the generic `application/vnd.oci.image.layer.v1.tar` type whatever
  they hold, so a titled layer of exactly that type is a file, as `oras pull` treats it).
"""

from __future__ import annotations

import json
import platform as _platform
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final

from initcontainer.errors import IntegrityError

MAX_MANIFEST_BYTES: Final = 4 * 1024 * 1024
"""Largest manifest or index accepted (distribution and containerd use the same 4 MiB bound)."""
MAX_LAYERS: Final = 1000

OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_SCHEMA1: Final = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)
INDEX_TYPES: Final = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES: Final = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
ACCEPT: Final = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))
"""What we ask for: a registry answers an OCI manifest request without a matching Accept with 404."""

IMAGE_CONFIG_TYPES: Final = frozenset(
    {"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"}
)
ORAS_DEFAULT_LAYER: Final = "application/vnd.oci.image.layer.v1.tar"
FLUX_CONTENT: Final = "application/vnd.cncf.flux.content.v1.tar+gzip"
TITLE: Final = "org.opencontainers.image.title"
ORAS_UNPACK: Final = "io.deis.oras.content.unpack"

# Archive media types by suffix: `...tar`, `...tar+gzip`, `...tar+zstd`, and Docker's `.tar.gzip`.
_ARCHIVE_SUFFIXES: Final = {
    ".tar": "tar",
    "+tar": "tar",
    ".tar+gzip": "tar.gz",
    ".tar.gzip": "tar.gz",
    ".tar+zstd": "tar.zst",
}
_FOREIGN: Final = frozenset(
    {
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)
_DIGEST_RE: Final = re.compile(r"sha256:[0-9a-f]{64}")
_MEDIA_TYPE_RE: Final = re.compile(r"[\x21-\x7e]{1,255}")
"""RFC 6838 names: type/subtype of at most 127 characters each, no spaces (parameters too here)."""


class Kind(Enum):
    IMAGE = "image"
    ARCHIVE = "archive"
    FILES = "files"


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor: media type, digest (sha256 only), size, annotations, platform."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: dict[str, Any] | None = None
    urls: tuple[str, ...] = ()

    @property
    def title(self) -> str | None:
        return self.annotations.get(TITLE)


@dataclass(frozen=True)
class Manifest:
    """An image manifest: its config descriptor and its layers, in order."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    artifact_type: str | None = None


@dataclass(frozen=True)
class Index:
    """An OCI index or Docker manifest list."""

    media_type: str
    manifests: tuple[Descriptor, ...]


@dataclass(frozen=True)
class Layer:
    """One layer and what to do with it: `archive_format` (a formats.* name) or `title` (a file)."""

    descriptor: Descriptor
    archive_format: str | None
    title: str | None


@dataclass(frozen=True)
class Plan:
    """What the manifest holds and how to install it."""

    kind: Kind
    layers: tuple[Layer, ...]


def archive_format(media_type: str) -> str | None:
    """`tar`, `tar.gz` or `tar.zst` for an archive media type, else None."""
    base = media_type.split(";", 1)[0].strip().lower()
    for suffix, fmt in _ARCHIVE_SUFFIXES.items():
        if base.endswith(suffix):
            return fmt
    return None


def _descriptor(raw: Any, where: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise IntegrityError(f"{where} is not a descriptor object")
    media_type, digest, size = raw.get("mediaType"), raw.get("digest"), raw.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise IntegrityError(f"{where} has no mediaType")
    if not _MEDIA_TYPE_RE.fullmatch(media_type):
        raise IntegrityError(f"{where} has a malformed mediaType {media_type[:80]!r}")
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        algorithm = digest.split(":", 1)[0] if isinstance(digest, str) else "none"
        raise IntegrityError(
            f"{where} has digest algorithm {algorithm[:20]!r}; only sha256 (lowercase hex) is supported"
        )
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise IntegrityError(f"{where} has no valid size")
    annotations = raw.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise IntegrityError(f"{where} has annotations that are not strings")
    platform = raw.get("platform")
    if platform is not None and not isinstance(platform, dict):
        raise IntegrityError(f"{where} has a platform that is not an object")
    urls = raw.get("urls") or []
    if not isinstance(urls, list):
        raise IntegrityError(f"{where} has urls that are not a list")
    return Descriptor(media_type, digest, size, dict(annotations), platform, tuple(str(u) for u in urls))


def parse(body: bytes, content_type: str) -> Manifest | Index:
    """Parse a manifest or index (digest already verified); the media type comes from the body when set."""
    if len(body) > MAX_MANIFEST_BYTES:
        raise IntegrityError(f"the manifest is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        head = body[:60].decode("utf-8", "replace").strip()
        raise IntegrityError(
            f"the registry answered something that is not a JSON manifest (starts with {head!r})"
        ) from None
    if not isinstance(data, dict):
        raise IntegrityError("the manifest is not a JSON object")
    header_type = content_type.split(";", 1)[0].strip().lower()
    media_type = data.get("mediaType") or header_type
    if not isinstance(media_type, str):
        raise IntegrityError("the manifest's mediaType is not a string")
    if media_type in DOCKER_SCHEMA1 or data.get("schemaVersion") == 1:
        raise IntegrityError(
            "the registry holds a Docker schema 1 manifest (deprecated, unverifiable); push it again "
            "with a current tool"
        )
    if data.get("schemaVersion") != 2:
        raise IntegrityError(f"unsupported manifest schemaVersion {data.get('schemaVersion')!r}")
    if media_type not in INDEX_TYPES and media_type not in MANIFEST_TYPES:
        # An OCI manifest may omit mediaType: tell index from manifest by their fields.
        if "manifests" in data and "layers" not in data:
            media_type = OCI_INDEX
        elif "layers" in data or "config" in data:
            media_type = OCI_MANIFEST
        else:
            raise IntegrityError(f"unsupported manifest media type {media_type[:100]!r}")
    if media_type in INDEX_TYPES:
        entries = data.get("manifests")
        if not isinstance(entries, list):
            raise IntegrityError("the index has no manifests list")
        if len(entries) > MAX_LAYERS:
            raise IntegrityError(f"the index lists {len(entries)} manifests, more than {MAX_LAYERS}")
        return Index(media_type, tuple(_descriptor(e, f"index entry {i}") for i, e in enumerate(entries)))
    layers = data.get("layers")
    if not isinstance(layers, list):
        raise IntegrityError("the manifest has no layers list")
    if len(layers) > MAX_LAYERS:
        raise IntegrityError(f"the manifest has {len(layers)} layers, more than {MAX_LAYERS}")
    artifact_type = data.get("artifactType")
    return Manifest(
        media_type,
        _descriptor(data.get("config"), "the manifest's config"),
        tuple(_descriptor(layer, f"layer {i}") for i, layer in enumerate(layers)),
        artifact_type if isinstance(artifact_type, str) else None,
    )


# ---------------------------------------------------------------- platforms

_ARCH: Final = {
    "x86_64": ("amd64", None),
    "amd64": ("amd64", None),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i386": ("386", None),
    "i686": ("386", None),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def own_platform() -> Platform:
    """The platform this process runs on, in OCI terms (GOOS/GOARCH names)."""
    machine = _platform.machine().lower()
    arch, variant = _ARCH.get(machine, (machine, None))
    return Platform("linux", arch, variant)


def _entry_platform(d: Descriptor) -> Platform | None:
    p = d.platform
    if not p:
        return None
    os_, arch = p.get("os"), p.get("architecture")
    if not isinstance(os_, str) or not isinstance(arch, str):
        return None
    variant = p.get("variant")
    return Platform(os_, arch, variant if isinstance(variant, str) else None)


def _is_attestation(d: Descriptor) -> bool:
    """BuildKit's provenance/SBOM entries: platform unknown/unknown, a reference-type annotation."""
    p = _entry_platform(d)
    return d.annotations.get("vnd.docker.reference.type") == "attestation-manifest" or (
        p is not None and p.os == "unknown" and p.architecture == "unknown"
    )


def select(index: Index, want: Platform) -> Descriptor:
    """The index entry for `want`; an index without platforms must hold exactly one manifest."""
    entries = [d for d in index.manifests if d.media_type in MANIFEST_TYPES | INDEX_TYPES]
    entries = [d for d in entries if not _is_attestation(d)]
    with_platform = [d for d in entries if _entry_platform(d) is not None]
    if not with_platform:
        if len(entries) == 1:
            return entries[0]
        if not entries:
            types = sorted({d.media_type for d in index.manifests}) or ["none"]
            raise IntegrityError(f"the index lists no manifest (entry media types: {', '.join(types)})")
        raise IntegrityError(
            f"the index lists {len(entries)} manifests without platforms; pin one of them with @sha256:..."
        )
    matches = []
    for d in with_platform:
        p = _entry_platform(d)
        assert p is not None
        if p.os == want.os and p.architecture == want.architecture:
            matches.append((d, p))
    if not matches:
        found = ", ".join(sorted({str(_entry_platform(d)) for d in with_platform}))
        raise IntegrityError(f"the index has no manifest for platform {want} (it has: {found})")
    for d, p in matches:
        if p.variant == want.variant:
            return d
    for d, p in matches:
        if p.variant is None or want.variant is None:
            return d
    return matches[0][0]


# ---------------------------------------------------------------- content kind


def _unpack(d: Descriptor) -> bool:
    return d.annotations.get(ORAS_UNPACK, "").lower() == "true"


def plan(manifest: Manifest) -> Plan:
    """Decide what the manifest holds and how each layer is installed; IntegrityError names the types."""
    layers = manifest.layers
    for d in layers:
        if d.urls or d.media_type in _FOREIGN:
            raise IntegrityError(
                f"layer {d.digest[:19]} is a foreign/non-distributable layer ({d.media_type}); "
                "its content is not in the registry"
            )
    if manifest.config.media_type in IMAGE_CONFIG_TYPES:
        bad = [d.media_type for d in layers if archive_format(d.media_type) is None]
        if bad:
            raise IntegrityError(f"the image has layers that are not tar archives: {types_text(bad)}")
        if not layers:
            raise IntegrityError("the image has no layers")
        return Plan(Kind.IMAGE, tuple(Layer(d, archive_format(d.media_type), None) for d in layers))
    planned: list[Layer] = []
    for d in layers:
        fmt = archive_format(d.media_type)
        generic = fmt is None or d.media_type == ORAS_DEFAULT_LAYER
        if d.title is not None and not _unpack(d) and generic:
            planned.append(Layer(d, None, d.title))
        elif fmt is not None:
            planned.append(Layer(d, fmt, None))
        else:
            planned = []
            break
    archives = [layer for layer in planned if layer.archive_format is not None]
    if planned and len(archives) == len(planned) == 1:
        return Plan(Kind.ARCHIVE, tuple(planned))
    if planned and not archives:
        return Plan(Kind.FILES, tuple(planned))
    described = _describe_types(manifest)
    if len(archives) > 1 or (archives and len(planned) > len(archives)):
        raise IntegrityError(
            f"the artifact mixes {len(archives)} archive layer(s) with other layers ({described}); "
            "expected an image, one archive layer, or titled file layers"
        )
    raise IntegrityError(
        f"cannot tell how to install this artifact ({described}): expected an image, one archive layer "
        f"(tar, tar+gzip, tar+zstd), or file layers with an {TITLE} annotation"
    )


def types_text(types: Sequence[str], most: int = 8) -> str:
    """Distinct media types, sorted, at most `most` of them: for messages and logs."""
    distinct = sorted(set(types))
    text = ", ".join(distinct[:most])
    return text + f" and {len(distinct) - most} more" if len(distinct) > most else text


def _describe_types(manifest: Manifest) -> str:
    layer_types = types_text([d.media_type for d in manifest.layers]) or "no layers"
    return f"config {manifest.config.media_type}; layers {layer_types}"


def title_problem(title: str) -> str | None:
    """None when `title` is a safe relative path (ORAS keeps `dir/file.txt` as given), else why not."""
    if not title or "\0" in title or "\\" in title:
        return "must be a relative file path"
    if title.startswith("/"):
        return "must be relative, not absolute"
    parts = title.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "must not hold empty, '.' or '..' components"
    if any(len(part.encode()) > 255 for part in parts):
        return "has a component longer than 255 bytes"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in title):
        return "contains control characters"
    return None


def check_titles(layers: Sequence[Layer]) -> None:
    seen: set[str] = set()
    for layer in layers:
        if layer.title is None:
            continue
        problem = title_problem(layer.title)
        if problem:
            raise IntegrityError(f"file layer title {layer.title[:80]!r} {problem}")
        if layer.title in seen:
            raise IntegrityError(f"two file layers have the title {layer.title[:80]!r}")
        seen.add(layer.title)
