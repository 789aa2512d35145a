"""JSON Patch (RFC 6902) between an admitted object and its injected copy.

`jsonpatch.make_patch` is a general diff: to detect moves it serialises every
list item with sorted keys and runs `SequenceMatcher` over them, and it compares
scalars through `json.dumps`. Profiled under load, that was most of the
webhook's CPU per review (bench/FINDINGS.md, finding 1, has the figures). An
injector only adds to or replaces parts of a copy of the object, so this diff
prunes equal subtrees with C-speed `==` and matches lists by common prefix and
suffix, which yields the same adds at the same indices, many times faster.
`tests/webhook/test_patch.py` checks it against jsonpatch's own `apply_patch`.

Python's `==` treats `True`, `1` and `1.0` as equal, also inside containers, so
an equal subtree is pruned only when its pickle is equal too (C-speed as well;
pickle tells these apart, and never gives two different values the same bytes).
"""

from __future__ import annotations

import pickle
from typing import Any

Operation = dict[str, Any]
_PROTOCOL = pickle.HIGHEST_PROTOCOL


def make_patch(src: Any, dst: Any) -> list[Operation]:
    """Operations that turn `src` into `dst`: add, remove and replace only."""
    ops: list[Operation] = []
    _diff(src, dst, "", ops)
    return ops


def _escape(key: str) -> str:
    """A JSON Pointer token: `~` and `/` escaped (RFC 6901), e.g. for `example.com/package-url`."""
    return key.replace("~", "~0").replace("/", "~1")


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: `==` first (fast, short-circuits), then the pickles (`True == 1` in Python)."""
    if a is b:
        return True
    if type(a) is not type(b) or a != b:
        return False
    if type(a) is dict or type(a) is list:
        return pickle.dumps(a, _PROTOCOL) == pickle.dumps(b, _PROTOCOL)
    return True


def _diff(src: Any, dst: Any, path: str, ops: list[Operation]) -> None:
    if _equal(src, dst):
        return
    if type(src) is dict and type(dst) is dict:
        _diff_dict(src, dst, path, ops)
    elif type(src) is list and type(dst) is list:
        _diff_list(src, dst, path, ops)
    else:
        ops.append({"op": "replace", "path": path, "value": dst})


def _diff_dict(src: dict[str, Any], dst: dict[str, Any], path: str, ops: list[Operation]) -> None:
    for key in src:
        if key not in dst:
            ops.append({"op": "remove", "path": f"{path}/{_escape(key)}"})
    for key, value in dst.items():
        if key not in src:
            ops.append({"op": "add", "path": f"{path}/{_escape(key)}", "value": value})
        elif (old := src[key]) is not value and not _equal(old, value):
            # Most values are the same object (inject shares what it leaves alone): no call, no path built.
            _diff(old, value, f"{path}/{_escape(key)}", ops)


def _diff_list(src: list[Any], dst: list[Any], path: str, ops: list[Operation]) -> None:
    n, m = len(src), len(dst)
    head = 0
    while head < n and head < m and _equal(src[head], dst[head]):
        head += 1
    tail = 0
    while tail < n - head and tail < m - head and _equal(src[n - 1 - tail], dst[m - 1 - tail]):
        tail += 1
    mid_src, mid_dst = n - head - tail, m - head - tail
    paired = min(mid_src, mid_dst)
    for i in range(head, head + paired):
        _diff(src[i], dst[i], f"{path}/{i}", ops)
    for i in range(head + paired, head + mid_dst):
        ops.append({"op": "add", "path": f"{path}/{i}", "value": dst[i]})
    # Removing at the same index repeatedly drops the surplus items in order.
    ops.extend({"op": "remove", "path": f"{path}/{head + paired}"} for _ in range(mid_dst, mid_src))
