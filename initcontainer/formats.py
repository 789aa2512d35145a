"""Archive format detection by magic bytes.

The format is decided from the first bytes of the body only, never from the
file name or the Content-Type header: servers lie about both (kserve#2938 is a
valid tar.gz refused because of its Content-Type), and an HTML error page
served with status 200 must be recognised as what it is before anything is
written to disk.
"""

from __future__ import annotations

import importlib
import re
from types import ModuleType
from typing import Final

from initcontainer import contract
from initcontainer.errors import ConfigError, IntegrityError

HEAD_BYTES: Final = 512
"""How many leading bytes `detect_format` wants: one tar header block.

Fewer is fine when the whole body is shorter; every magic number except the
plain-tar header sits in the first 6 bytes.
"""

TAR: Final = "tar"
TAR_GZ: Final = "tar.gz"
TAR_BZ2: Final = "tar.bz2"
TAR_XZ: Final = "tar.xz"
TAR_ZST: Final = "tar.zst"
ZIP: Final = "zip"

_GZIP_MAGIC: Final = b"\x1f\x8b"
_XZ_MAGIC: Final = b"\xfd7zXZ\x00"
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
# Local file header, end of central directory (an empty zip), spanning marker.
_ZIP_MAGICS: Final = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")


def zstd_module() -> ModuleType | None:
    """The zstd implementation this Python can use, or None.

    `compression.zstd` is in the standard library from 3.14; `backports.zstd`
    offers the same API to older Pythons when someone chose to install it.
    """
    for name in ("compression.zstd", "backports.zstd"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def _is_tar_header(block: bytes) -> bool:
    """True for a POSIX/GNU tar header, or a v7 header with a valid checksum."""
    if len(block) < 512:
        return False
    if block[257:262] == b"ustar":
        return True
    if block == bytes(512):
        # An archive with no members is only its end marker; let the extractor
        # report "the package is empty" rather than "not an archive".
        return True
    field = block[148:156].replace(b"\x00", b" ").strip()
    if not field or not all(0x30 <= c <= 0x37 for c in field):
        return False
    stored = int(field, 8)
    unsigned = sum(block[:148]) + 8 * 0x20 + sum(block[156:512])
    signed = sum(b - 256 if b > 127 else b for b in block[:148] + b" " * 8 + block[156:512])
    return stored in (unsigned, signed)


def sniff(head: bytes) -> str | None:
    """The format the magic bytes announce, or None when they announce none."""
    if head.startswith(_GZIP_MAGIC):
        return TAR_GZ
    if head.startswith(b"BZh") and len(head) > 3 and 0x31 <= head[3] <= 0x39:
        return TAR_BZ2
    if head.startswith(_XZ_MAGIC):
        return TAR_XZ
    if head.startswith(_ZSTD_MAGIC):
        return TAR_ZST
    if head.startswith(_ZIP_MAGICS):
        return ZIP
    if _is_tar_header(head[:512]):
        return TAR
    return None


def describe(head: bytes) -> str:
    """A short, secret-free description of bytes that are not an archive."""
    if not head:
        return "the response body is empty"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in text[:256]:
        title = re.search(rb"<title>([^<]{1,80})</title>", head, re.IGNORECASE)
        suffix = f" (title {_printable(title.group(1))!r})" if title else ""
        return f"looks like an HTML page{suffix}, not an archive: check the URL and credentials"
    if text.startswith(b"<?xml") or text.startswith(b"<error"):
        code = re.search(rb"<Code>([A-Za-z0-9.]{1,64})</Code>", head)
        suffix = f" (error code {code.group(1).decode()!r})" if code else ""
        return f"looks like an XML document{suffix}, not an archive: check the URL and credentials"
    if text.startswith((b"{", b"[")):
        return "looks like a JSON document, not an archive: check the URL and credentials"
    if all(c in b"\t\r\n" or 0x20 <= c < 0x7F for c in head[:256]):
        return "looks like plain text, not an archive: check the URL and credentials"
    return f"is not a known archive format (first bytes {head[:8].hex()}): expected {_known()}"


def _printable(raw: bytes) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in raw.decode("utf-8", "replace")).strip()


def _known() -> str:
    return ", ".join(f for f in contract.FORMATS if f != "auto")


def detect_format(head: bytes, forced: str = contract.DEFAULT_FORMAT) -> str:
    """Return the archive format of a body starting with `head`.

    `forced` is the PACKAGE_FORMAT setting: `auto` trusts the magic bytes; any
    other value must agree with them, so a misconfigured format or an error page
    fails here with a message instead of deep inside a decompressor. Raises
    IntegrityError for bytes that are not an archive, ConfigError for an unknown
    format name or a zstd archive on a Python without zstd.
    """
    if forced not in contract.FORMATS:
        raise ConfigError(f"{contract.ENV_FORMAT}={forced!r} is not one of {', '.join(contract.FORMATS)}")
    found = sniff(head)
    if found is None:
        raise IntegrityError(f"the downloaded body {describe(head)}")
    if forced != contract.DEFAULT_FORMAT and forced != found:
        raise IntegrityError(
            f"{contract.ENV_FORMAT}={forced} but the downloaded bytes are {found}; "
            f"fix {contract.ENV_FORMAT} or use auto"
        )
    if found == TAR_ZST and zstd_module() is None:
        raise ConfigError(
            "the package is zstd-compressed but this Python cannot read zstd "
            "(it needs Python 3.14+ or backports.zstd): use an image with Python 3.14+ "
            "or publish the package as tar.gz / tar.xz"
        )
    return found
