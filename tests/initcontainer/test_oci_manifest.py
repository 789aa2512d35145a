"""Manifest/index parsing, platform selection and content kinds (initcontainer.oci.manifest)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from initcontainer.errors import IntegrityError
from initcontainer.oci import manifest as m

D1, D2, D3 = ("sha256:" + c * 64 for c in "123")
EMPTY = "application/vnd.oci.empty.v1+json"


def desc(media_type: str, digest: str = D1, size: int = 10, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def oci_manifest(config_type: str, *layers: dict[str, Any], media_type: str | None = m.OCI_MANIFEST) -> bytes:
    body: dict[str, Any] = {"schemaVersion": 2, "config": desc(config_type, D3, 2), "layers": list(layers)}
    if media_type:
        body["mediaType"] = media_type
    return json.dumps(body).encode()


def parsed(body: bytes, content_type: str = "") -> m.Manifest:
    result = m.parse(body, content_type)
    assert isinstance(result, m.Manifest)
    return result


def index(*entries: dict[str, Any], media_type: str = m.OCI_INDEX) -> m.Index:
    result = m.parse(
        json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": list(entries)}).encode(), ""
    )
    assert isinstance(result, m.Index)
    return result


def plat(os_: str, arch: str, variant: str | None = None) -> dict[str, str]:
    p = {"os": os_, "architecture": arch}
    if variant:
        p["variant"] = variant
    return p


# ---- parse


def test_parse_oci_and_docker_manifests() -> None:
    oci = parsed(
        oci_manifest(
            "application/vnd.oci.image.config.v1+json", desc("application/vnd.oci.image.layer.v1.tar+gzip")
        )
    )
    assert oci.media_type == m.OCI_MANIFEST and oci.layers[0].media_type.endswith("tar+gzip")
    docker = parsed(
        oci_manifest(
            "application/vnd.docker.container.image.v1+json",
            desc("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            media_type=m.DOCKER_MANIFEST,
        )
    )
    assert docker.media_type == m.DOCKER_MANIFEST
    # No mediaType field: the Content-Type header or the fields tell.
    untyped = parsed(oci_manifest(EMPTY, desc("x"), media_type=None), "")
    assert untyped.media_type == m.OCI_MANIFEST
    assert isinstance(m.parse(json.dumps({"schemaVersion": 2, "manifests": []}).encode(), ""), m.Index)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"<!DOCTYPE html><html>Sign in</html>", "not a JSON manifest (starts with '<!DOCTYPE html>"),
        (b"[1]", "not a JSON object"),
        (json.dumps({"schemaVersion": 1, "fsLayers": []}).encode(), "schema 1"),
        (json.dumps({"schemaVersion": 3}).encode(), "schemaVersion 3"),
        (
            json.dumps({"schemaVersion": 2, "mediaType": "text/plain"}).encode(),
            "unsupported manifest media type",
        ),
        (
            json.dumps({"schemaVersion": 2, "mediaType": m.OCI_MANIFEST, "config": desc(EMPTY)}).encode(),
            "no layers",
        ),
        (oci_manifest(EMPTY, {"mediaType": "x", "digest": "sha512:" + "a" * 128, "size": 1}), "only sha256"),
        (oci_manifest(EMPTY, {"mediaType": "x", "digest": D1, "size": -1}), "no valid size"),
        (oci_manifest(EMPTY, {"mediaType": "x", "digest": D1, "size": True}), "no valid size"),
        (oci_manifest(EMPTY, {"digest": D1, "size": 1}), "no mediaType"),
        (oci_manifest(EMPTY, desc("x", annotations={"a": 1})), "not strings"),
        (b" " * (m.MAX_MANIFEST_BYTES + 1), "larger than"),
        (oci_manifest(EMPTY, *[desc("x")] * (m.MAX_LAYERS + 1)), "more than"),
        (b"[" * 100_000 + b"]" * 100_000, "not a JSON manifest"),
        (oci_manifest(EMPTY, desc("text/plain; x=a b")), "malformed mediaType"),
        (oci_manifest(EMPTY, desc("x" * 256)), "malformed mediaType"),
        (
            json.dumps(
                {"schemaVersion": 2, "mediaType": m.OCI_INDEX, "manifests": [desc("x")] * 1001}
            ).encode(),
            "more than 1000",
        ),
    ],
)
def test_parse_refuses(body: bytes, fragment: str) -> None:
    with pytest.raises(IntegrityError) as info:
        m.parse(body, "application/json")
    assert fragment in info.value.message


# ---- platforms


def test_select_own_platform_with_variants_and_attestations() -> None:
    idx = index(
        desc(
            m.OCI_MANIFEST,
            D1,
            platform=plat("unknown", "unknown"),
            annotations={"vnd.docker.reference.type": "attestation-manifest"},
        ),
        desc(m.OCI_MANIFEST, D2, platform=plat("linux", "arm", "v6")),
        desc(m.OCI_MANIFEST, D3, platform=plat("linux", "arm", "v7")),
        desc(m.OCI_MANIFEST, D1, platform=plat("linux", "amd64")),
    )
    assert m.select(idx, m.Platform("linux", "arm", "v7")).digest == D3
    assert m.select(idx, m.Platform("linux", "amd64")).digest == D1
    arm64 = index(desc(m.DOCKER_MANIFEST, D2, platform=plat("linux", "arm64")), media_type=m.DOCKER_LIST)
    assert m.select(arm64, m.Platform("linux", "arm64", "v8")).digest == D2


def test_no_matching_platform_names_what_there_is() -> None:
    idx = index(
        desc(m.OCI_MANIFEST, D1, platform=plat("linux", "s390x")),
        desc(m.OCI_MANIFEST, D2, platform=plat("windows", "amd64")),
    )
    with pytest.raises(IntegrityError) as info:
        m.select(idx, m.Platform("linux", "amd64"))
    assert "no manifest for platform linux/amd64 (it has: linux/s390x, windows/amd64)" in info.value.message


def test_artifact_index_without_platforms() -> None:
    assert m.select(index(desc(m.OCI_MANIFEST, D2)), m.own_platform()).digest == D2
    with pytest.raises(IntegrityError, match="2 manifests without platforms"):
        m.select(index(desc(m.OCI_MANIFEST, D1), desc(m.OCI_MANIFEST, D2)), m.own_platform())
    with pytest.raises(IntegrityError, match="lists no manifest"):
        m.select(index(desc("application/vnd.example+json")), m.own_platform())


def test_own_platform_is_linux_in_oci_terms() -> None:
    p = m.own_platform()
    assert p.os == "linux" and p.architecture in {
        "amd64",
        "arm64",
        "arm",
        "386",
        "ppc64le",
        "s390x",
        "riscv64",
    }


# ---- kinds


IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"


def test_image_kind() -> None:
    man = parsed(
        oci_manifest(
            IMAGE_CONFIG,
            desc("application/vnd.oci.image.layer.v1.tar"),
            desc("application/vnd.oci.image.layer.v1.tar+gzip"),
            desc("application/vnd.oci.image.layer.v1.tar+zstd"),
        )
    )
    plan = m.plan(man)
    assert plan.kind is m.Kind.IMAGE
    assert [layer.archive_format for layer in plan.layers] == ["tar", "tar.gz", "tar.zst"]
    docker = parsed(
        oci_manifest(
            "application/vnd.docker.container.image.v1+json",
            desc("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            media_type=m.DOCKER_MANIFEST,
        )
    )
    assert m.plan(docker).layers[0].archive_format == "tar.gz"


def test_image_with_a_non_tar_layer_or_none_is_refused() -> None:
    with pytest.raises(IntegrityError, match="not tar archives: application/json"):
        m.plan(parsed(oci_manifest(IMAGE_CONFIG, desc("application/json"))))
    with pytest.raises(IntegrityError, match="no layers"):
        m.plan(parsed(oci_manifest(IMAGE_CONFIG)))


@pytest.mark.parametrize(
    "layer",
    [
        desc(m.FLUX_CONTENT),
        desc("application/vnd.cncf.helm.chart.content.v1.tar+gzip"),
        desc(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            annotations={m.TITLE: "site", m.ORAS_UNPACK: "true"},
        ),
        desc("application/vnd.oci.image.layer.v1.tar+gzip", annotations={m.TITLE: "pkg.tar.gz"}),
        desc("application/vnd.oci.image.layer.v1.tar"),
    ],
)
def test_single_archive_layer(layer: dict[str, Any]) -> None:
    plan = m.plan(parsed(oci_manifest("application/vnd.cncf.flux.config.v1+json", layer)))
    assert plan.kind is m.Kind.ARCHIVE and plan.layers[0].title is None


def test_titled_file_layers_as_oras_pushes_them() -> None:
    man = parsed(
        oci_manifest(
            EMPTY,
            desc("application/vnd.oci.image.layer.v1.tar", D1, annotations={m.TITLE: "a.txt"}),
            desc("text/plain", D2, annotations={m.TITLE: "dir/b.json"}),
        )
    )
    plan = m.plan(man)
    assert plan.kind is m.Kind.FILES
    assert [layer.title for layer in plan.layers] == ["a.txt", "dir/b.json"]
    m.check_titles(plan.layers)


@pytest.mark.parametrize(
    ("layers", "fragment"),
    [
        (
            [desc("application/json")],
            "cannot tell how to install this artifact "
            "(config application/vnd.oci.empty.v1+json; layers application/json)",
        ),
        ([], "layers no layers"),
        ([desc(m.FLUX_CONTENT), desc(m.FLUX_CONTENT, D2)], "mixes 2 archive layer(s)"),
        (
            [desc(m.FLUX_CONTENT), desc("text/plain", D2, annotations={m.TITLE: "x"})],
            "mixes 1 archive layer(s)",
        ),
        ([desc("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip")], "foreign"),
        ([desc("application/vnd.oci.image.layer.v1.tar", urls=["https://x"])], "foreign"),
    ],
)
def test_what_cannot_be_installed_names_the_media_types(layers: list[dict[str, Any]], fragment: str) -> None:
    with pytest.raises(IntegrityError) as info:
        m.plan(parsed(oci_manifest(EMPTY, *layers)))
    assert fragment in info.value.message


@pytest.mark.parametrize(
    "title", ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "a\\b", "a\x00b", "a\nb", "x" * 256]
)
def test_unsafe_titles(title: str) -> None:
    assert m.title_problem(title) is not None


def test_duplicate_titles() -> None:
    layers = (m.Layer(m.Descriptor("t", D1, 1), None, "a"), m.Layer(m.Descriptor("t", D2, 1), None, "a"))
    with pytest.raises(IntegrityError, match="two file layers"):
        m.check_titles(layers)


def test_types_text_is_bounded() -> None:
    assert m.types_text(["b", "a", "a"]) == "a, b"
    assert m.types_text([f"t{i:02}" for i in range(20)], most=3) == "t00, t01, t02 and 17 more"
