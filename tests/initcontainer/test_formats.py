"""Format detection by magic bytes only."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import zipfile

import pytest

from initcontainer import contract, formats
from initcontainer.errors import ConfigError, IntegrityError
from tests.initcontainer.corpus import reg, tar_bytes, zip_bytes

TAR = tar_bytes([reg("a", b"x")], fmt=tarfile.USTAR_FORMAT)


def _v7_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info, data = reg("a", b"x")
        tar.addfile(info, io.BytesIO(data or b""))
    raw = bytearray(buf.getvalue())
    raw[257:265] = bytes(8)  # remove the ustar magic and version: a v7 header
    raw[148:156] = b" " * 8
    raw[148:156] = b"%06o\x00 " % sum(raw[:512])
    return bytes(raw)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (TAR, "tar"),
        (tar_bytes([reg("a")], fmt=tarfile.GNU_FORMAT), "tar"),
        (_v7_tar(), "tar"),
        (bytes(10240), "tar"),
        (gzip.compress(TAR), "tar.gz"),
        (bz2.compress(TAR), "tar.bz2"),
        (lzma.compress(TAR), "tar.xz"),
        (zip_bytes([("a", b"x")]), "zip"),
        (zip_bytes([]), "zip"),
    ],
    ids=["ustar", "gnu", "v7", "zeros", "gz", "bz2", "xz", "zip", "empty-zip"],
)
def test_detects_by_magic(data: bytes, expected: str) -> None:
    assert formats.detect_format(data[: formats.HEAD_BYTES]) == expected


def test_zstd_magic() -> None:
    assert formats.sniff(b"\x28\xb5\x2f\xfd\x00\x00") == "tar.zst"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<!DOCTYPE html><html><head><title>Login</title>", "HTML page \\(title 'Login'\\)"),
        (b"  \n<html><body>502 Bad Gateway</body></html>", "HTML page"),
        (
            b'<?xml version="1.0"?><Error><Code>AccessDenied</Code><Message>no</Message></Error>',
            "XML document \\(error code 'AccessDenied'\\)",
        ),
        (b'{"error": "not found"}', "JSON document"),
        (b"Not Found\n", "plain text"),
        (b"", "body is empty"),
        (b"\x00\x01\x02\x03binary" + bytes(600), "not a known archive format \\(first bytes 00010203"),
    ],
)
def test_not_an_archive_says_what_it_looks_like(body: bytes, message: str) -> None:
    with pytest.raises(IntegrityError, match=message) as raised:
        formats.detect_format(body)
    assert raised.value.exit_code == contract.EXIT_INTEGRITY


def test_corrupt_tar_checksum_is_not_tar() -> None:
    raw = bytearray(_v7_tar())
    raw[0] ^= 0x01
    with pytest.raises(IntegrityError):
        formats.detect_format(bytes(raw[:512]))


def test_forced_format_must_match_magic() -> None:
    gz = gzip.compress(TAR)
    assert formats.detect_format(gz, "tar.gz") == "tar.gz"
    with pytest.raises(IntegrityError, match=r"PACKAGE_FORMAT=zip but the downloaded bytes are tar\.gz"):
        formats.detect_format(gz, "zip")
    with pytest.raises(IntegrityError, match="HTML"):
        formats.detect_format(b"<html>", "tar.gz")


def test_unknown_forced_format_is_config_error() -> None:
    with pytest.raises(ConfigError):
        formats.detect_format(TAR, "rar")


def test_name_and_content_type_play_no_part() -> None:
    """Only bytes are passed in: a zip stays a zip whatever the URL says."""
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as zf:
        zf.writestr("package.tar.gz", b"not really")
    assert formats.detect_format(data.getvalue()) == "zip"
