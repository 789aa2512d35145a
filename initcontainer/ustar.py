"""A fast parser for the plain tar header forms; everything else goes to the standard library.

Most packages are made of plain ustar headers (no pax or GNU extension
headers), and for a package of many small files tarfile's general header
parser was the largest cost of the reader's main thread (bench/FINDINGS.md,
finding 8). `parse_plain`
parses one 512-byte block in a few C-level calls, but only when the block is in
the grammar below; for any other block it returns None and the caller hands
the same bytes to tarfile (`untar.TarReader.next`). It never raises and never
refuses anything: every refusal, and every header form not listed here, is
tarfile's and the reader's, exactly as before. On the blocks it accepts it
builds the same TarInfo tarfile's `TarInfo.fromtarfile` builds (every
attribute, and the offset of the next header), which
tests/initcontainer/test_ustar.py checks block by block against tarfile.

The accepted grammar, as offsets into the 512-byte block (`*` = repetition):

- checksum (148, 8 bytes): a NUMBER equal to 256 plus the unsigned sum of the
  other 504 bytes (a signed-char checksum, which tarfile also accepts, is
  left to tarfile);
- mode (100, 8), uid (108, 8), gid (116, 8), size (124, 12), mtime (136, 12),
  devmajor (329, 8), devminor (337, 8): each a NUMBER;
- NUMBER: `" "* [0-7]* ("\\0" | " ")*` filling the whole field; no digits
  reads as 0. Base-256 fields (first byte 0x80 or 0xff), signs, `0o`,
  underscores, tabs or bytes after a NUL are not NUMBERs;
- magic and version (257, 8): `ustar\\0` `00` (POSIX) or `ustar  \\0` (GNU);
- type (156, 1): `0` (regular file), `5` (directory), `1` (hard link) or `2`
  (symbolic link), or only `x` (a pax extended header, for `pax.py`); only a
  regular file or an `x` header may have a size other than 0;
- name (0, 100), linkname (157, 100), uname (265, 32), gname (297, 32),
  prefix (345, 155): any bytes; each is cut at its first NUL and decoded with
  the reader's encoding and error handler (as tarfile does); a GNU-magic
  block's prefix must be empty (GNU tar keeps other data there);
- bytes 500..511: ignored, as by tarfile.

An all-zero block (end of archive) is not in the grammar. The caller
(`untar.TarReader.next`) also leaves to tarfile any block read while a global
pax header with a key other than those of `pax.HARMLESS_GLOBAL_KEYS` is in
force (tarfile applies it to every member) and any block not wholly inside the
current chunk of the stream; `pax.py` uses this parser for a pax `x` header's
own block and for the member header after it. The resulting name follows tarfile's rules: a
directory's trailing slashes are removed, a non-empty prefix is joined with
`/`, then a directory's trailing slashes are removed again. Names are not
judged here: `tree.Tree.relpath` does that for both parsers.
"""

from __future__ import annotations

import struct
import tarfile
import zlib
from typing import Final

BLOCK: Final = tarfile.BLOCKSIZE
_FIELDS: Final = struct.Struct("100s8s8s8s12s12s8sc100s8s32s32s8s8s155s")
_NUMBER_BYTES: Final = b"01234567 \x00"
_POSIX_MAGIC: Final = b"ustar\x0000"
_GNU_MAGIC: Final = b"ustar  \x00"
PLAIN_TYPES: Final = frozenset((tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.LNKTYPE, tarfile.SYMTYPE))
PAX_TYPES: Final = frozenset((tarfile.XHDTYPE,))
_SIZED_TYPES: Final = (tarfile.REGTYPE, tarfile.XHDTYPE)  # the only kinds whose size is data that follows
_CHKSUM_SPACES: Final = 8 * 0x20


def _byte_sum(block: bytes) -> int:
    """sum(block) for 512 bytes, several times faster: adler32's low half is 1 + the byte sum
    modulo 65521, exact for 256 bytes (at most 65,280)."""
    return (zlib.adler32(block[:256]) & 0xFFFF) + (zlib.adler32(block[256:]) & 0xFFFF) - 2


def parse_plain(
    block: bytes, offset: int, encoding: str, errors: str, kinds: frozenset[bytes] = PLAIN_TYPES
) -> tuple[tarfile.TarInfo, int] | None:
    """The member of the header `block` found at stream `offset` and the offset of the next header,
    or None when the block is not in the grammar of the module docstring (tarfile must parse it).

    `kinds` = `PAX_TYPES`: the block of a pax extended header (`pax.py`), whose size is its records'.
    """
    if len(block) != BLOCK:
        return None
    fields: tuple[bytes, ...] = _FIELDS.unpack_from(block)
    name, mode, uid, gid, size, mtime, chksum, kind, linkname, magic, uname, gname, major, minor, prefix = (
        fields
    )
    if kind not in kinds or (magic != _POSIX_MAGIC and magic != _GNU_MAGIC):
        return None
    if block[100:156].translate(None, _NUMBER_BYTES) or block[329:345].translate(None, _NUMBER_BYTES):
        return None  # a byte no NUMBER may hold: base-256, signs, letters, underscores, tabs...
    try:
        # With only digits, spaces and NULs left, int() accepts exactly `" "* [0-7]+` once the
        # trailing NULs and spaces are gone: a NUL or space between digits, or a leading NUL, is a
        # ValueError (tarfile would stop at that NUL, or refuse the space).
        declared = int(chksum.rstrip(b"\x00 ") or b"0", 8)
        numbers = [int(f.rstrip(b"\x00 ") or b"0", 8) for f in (mode, uid, gid, size, mtime, major, minor)]
    except ValueError:
        return None
    if declared != _byte_sum(block) - sum(chksum) + _CHKSUM_SPACES:
        return None  # not the unsigned checksum (a signed one, or none at all): tarfile decides
    regular = kind in _SIZED_TYPES
    if numbers[3] and not regular:
        return None
    text_prefix = prefix.partition(b"\x00")[0].decode(encoding, errors)
    if text_prefix and magic == _GNU_MAGIC:
        return None
    path = name.partition(b"\x00")[0].decode(encoding, errors)
    if kind == tarfile.DIRTYPE:
        path = path.rstrip("/")
    if text_prefix:
        path = text_prefix + "/" + path
    if kind == tarfile.DIRTYPE:
        path = path.rstrip("/")
    info = tarfile.TarInfo(path)
    info.mode, info.uid, info.gid, info.size, info.mtime, info.devmajor, info.devminor = numbers
    info.chksum = declared
    info.type = kind
    info.linkname = linkname.partition(b"\x00")[0].decode(encoding, errors)
    info.uname = uname.partition(b"\x00")[0].decode(encoding, errors)
    info.gname = gname.partition(b"\x00")[0].decode(encoding, errors)
    info.offset = offset
    info.offset_data = data = offset + BLOCK
    return info, data + (-(-info.size // BLOCK) * BLOCK if regular else 0)
