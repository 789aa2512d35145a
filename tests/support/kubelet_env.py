"""A stand-in for the kubelet's env handling: what a container's process sees for `env[].value`.

There is no kubelet in the e2e control plane, so the tests reproduce its rule here, faithfully: the
kubelet (pkg/kubelet, third_party/forked/golang/expansion) walks each value byte by byte; `$$` becomes
`$`, `$(NAME)` becomes NAME's value when NAME was defined by an earlier entry of the same container (or by
its envFrom), otherwise it stays as written; an unclosed `$(` and a `$` before any other byte are kept.
Entries are processed in order, each one's expanded value becoming visible to the later ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def _read_reference(rest: bytes) -> tuple[bytes, bool, int]:
    """After a `$`: (what to emit or the variable name, whether it is a name, bytes consumed)."""
    if rest[:1] == b"$":
        return b"$", False, 1
    if rest[:1] == b"(":
        close = rest.find(b")", 1)
        if close != -1:
            return rest[1:close], True, close + 1
        return b"$(", False, 1
    # Go's string(byte) makes a rune of the byte's value: a non-ASCII byte comes out re-encoded.
    return b"$" + chr(rest[0]).encode(), False, 1


def expand(value: str, lookup: Callable[[str], str | None]) -> str:
    """One value expanded as the kubelet does; `lookup` returns None for a name that is not defined."""
    data, out, checkpoint, cursor = value.encode(), bytearray(), 0, 0
    while cursor < len(data):
        if data[cursor : cursor + 1] == b"$" and cursor + 1 < len(data):
            out += data[checkpoint:cursor]
            read, is_name, advance = _read_reference(data[cursor + 1 :])
            if is_name:
                found = lookup(read.decode(errors="surrogateescape"))
                out += found.encode() if found is not None else b"$(" + read + b")"
            else:
                out += read
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out += data[checkpoint:]
    return out.decode(errors="replace")


def container_env(container: Mapping[str, Any], env_from: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the kubelet gives `container` (plain `value` entries; valueFrom is not resolved)."""
    seen: dict[str, str] = dict(env_from or {})
    for entry in container.get("env") or []:
        if "value" in entry:
            seen[entry["name"]] = expand(entry["value"], seen.get)
    return seen
