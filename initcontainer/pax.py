"""A fast path for the pax headers common archivers write; every other pax header goes to tarfile.

GNU tar's `--format=posix` puts a pax extended header (`x`) with mtime, atime
and ctime before every member, and `git archive` starts with a global header
(`g`) holding only `comment=<commit id>`. With only `ustar.parse_plain`, both
sent every member through tarfile's general parser. This module accepts a
narrow, strictly checked subset and builds exactly the TarInfo tarfile builds
(name, size, mtime, linkname, type, pax_headers, offsets); for anything else it
returns None and the reader hands the same bytes to tarfile, which parses them
or refuses them as before. It never raises and never refuses by itself.

Accepted (`parse_extended`), all of it inside the reader's current chunk:

- an `x` header block in `ustar.py`'s grammar (type `x`), its records at most
  `RECORDS_LIMIT` bytes, the padding after them all NULs;
- records tiling the declared size exactly, each `LENGTH SP KEY "=" VALUE LF`
  with LENGTH 1-7 ASCII digits, no leading zero, at least 5, ending inside the
  records (no record straddles the end, no length is trusted beyond a bound);
- each KEY at most once and in `_KEYS`: path, linkpath (UTF-8, no NUL),
  uname, gname, comment (UTF-8), size, uid, gid (1-18 digits), mtime, atime,
  ctime (1-18 digits, optionally `.` and 1-18 digits: no sign, exponent,
  spaces or underscores, which Python's int()/float() would take);
- no `hdrcharset=` anywhere in the records (Pythons before the 2025 tarfile
  fixes search the whole header for it, values included);
- then one header block in `ustar.py`'s grammar; a pax size other than 0 only
  for a regular file (tarfile would keep a directory's, without data).

Not accepted, so tarfile's: hdrcharset, GNU.sparse.* and every other key,
duplicate keys, leading zeros, non-UTF-8 values, an `x` header followed by
another extension header (a pax size then applies to the next real member
only in some readers: the desync attacks), `X` (Solaris) headers, headers
split across chunks. The parser scans each record once with bounded
`find`s: no regular expression (tarfile's backtracking one was
CVE-2024-6232), no length of zero or below 5 (CVE-2019-20907 looped), no
sign (negative sizes made tarfile seek backwards, CVE-2025-8194).

Global headers: `GlobalHeaders.harmless` is True while every global key is
in `HARMLESS_GLOBAL_KEYS`, keys tarfile only copies into each member's
`pax_headers` and never reads; the reader keeps its fast paths then.
"""

from __future__ import annotations

import tarfile
from collections.abc import Mapping
from typing import Final

from initcontainer import ustar

RECORDS_LIMIT: Final = 64 << 10
"""Largest records area taken here; bigger ones go to tarfile (which the reader caps further)."""
HARMLESS_GLOBAL_KEYS: Final = frozenset(("comment",))
"""Global pax keys tarfile keeps in `pax_headers` only: no attribute, encoding or sparse rule reads them."""
_TEXT, _NAME, _INT, _TIME = range(4)
_KEYS: Final = {
    b"path": _NAME,
    b"linkpath": _NAME,
    b"uname": _TEXT,
    b"gname": _TEXT,
    b"comment": _TEXT,
    b"size": _INT,
    b"uid": _INT,
    b"gid": _INT,
    b"mtime": _TIME,
    b"atime": _TIME,
    b"ctime": _TIME,
}
_TEXT_ATTRIBUTES: Final = {"linkpath": "linkname", "uname": "uname", "gname": "gname"}
_NUMBER_DIGITS: Final = 18
_LENGTH_DIGITS: Final = 7


def _digits(raw: bytes) -> bool:
    return 0 < len(raw) <= _NUMBER_DIGITS and raw.isdigit()  # bytes.isdigit(): ASCII 0-9 only


def _value(kind: int, raw: bytes) -> str | None:
    """The text tarfile keeps for a record's value, or None when it is outside this module's grammar."""
    if kind == _INT:
        return raw.decode("ascii") if _digits(raw) else None
    if kind == _TIME:
        whole, dot, fraction = raw.partition(b".")
        if not _digits(whole) or (dot and not _digits(fraction)):
            return None
        return raw.decode("ascii")
    if kind == _NAME and b"\x00" in raw:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _records(data: bytes, start: int, end: int) -> dict[str, str] | None:
    """The records in data[start:end], in order, or None when they are outside the grammar."""
    if data.find(b"hdrcharset=", start, end) >= 0:
        return None
    found: dict[str, str] = {}
    pos = start
    while pos < end:
        space = data.find(b" ", pos, min(pos + _LENGTH_DIGITS + 1, end))
        if space <= pos:
            return None
        length_field = data[pos:space]
        if not length_field.isdigit() or length_field[0] == 0x30:  # "0": a leading zero
            return None
        record_end = pos + int(length_field)
        if record_end - pos < 5 or record_end > end or data[record_end - 1] != 0x0A:
            return None
        equals = data.find(b"=", space + 1, record_end - 1)
        if equals < 0:
            return None
        raw_key = data[space + 1 : equals]
        kind = _KEYS.get(raw_key)
        if kind is None:
            return None
        key = raw_key.decode("ascii")  # one of _KEYS
        if key in found:
            return None
        value = _value(kind, data[equals + 1 : record_end - 1])
        if value is None:
            return None
        found[key] = value
        pos = record_end
    return found


def parse_extended(
    data: bytes, pos: int, base: int, global_headers: Mapping[str, str], encoding: str, errors: str
) -> tuple[tarfile.TarInfo, int, int] | None:
    """The member described by the `x` header at data[pos:] (stream offset `base + pos`), the stream
    offset of the next header and the position in `data` after the member's header block; None when
    tarfile must parse it (see the module docstring)."""
    if not HARMLESS_GLOBAL_KEYS.issuperset(global_headers):
        return None
    head = ustar.parse_plain(data[pos : pos + ustar.BLOCK], base + pos, encoding, errors, ustar.PAX_TYPES)
    if head is None:
        return None
    extended, after = head
    start = pos + ustar.BLOCK
    end = start + extended.size
    header = after - base  # the member's own header block
    if extended.size > RECORDS_LIMIT or header + ustar.BLOCK > len(data):
        return None
    if data[end:header].count(0) != header - end:  # tarfile would parse the padding as records
        return None
    records = _records(data, start, end)
    if records is None:
        return None
    found = ustar.parse_plain(data[header : header + ustar.BLOCK], after, encoding, errors)
    if found is None:
        return None
    member, following = found
    headers = dict(global_headers)
    headers.update(records)
    # What tarfile's TarInfo._apply_pax_info does with these keys (atime, ctime, comment: nothing).
    if "path" in records:
        member.name = records["path"].rstrip("/")  # tarfile strips a pax path's slashes, any type
    for key, attribute in _TEXT_ATTRIBUTES.items():
        if key in records:
            setattr(member, attribute, records[key])
    for key in ("uid", "gid"):
        if key in records:
            setattr(member, key, int(records[key]))
    if "mtime" in records:
        member.mtime = float(records["mtime"])
    if "size" in records:
        member.size = int(records["size"])
        if member.type != tarfile.REGTYPE:
            if member.size:
                return None
        else:
            following = member.offset_data + -(-member.size // ustar.BLOCK) * ustar.BLOCK
    member.pax_headers = headers
    member.offset = base + pos
    return member, following, header + ustar.BLOCK


class GlobalHeaders(dict[str, str]):
    """Global pax keywords as tarfile sets them (one by one with `[]=`), remembering whether all of
    them are harmless (`HARMLESS_GLOBAL_KEYS`): then the fast paths stay on."""

    harmless = True

    def __setitem__(self, key: str, value: str) -> None:
        if key not in HARMLESS_GLOBAL_KEYS:
            self.harmless = False
        super().__setitem__(key, value)
