"""Experiment: a JSON Patch diff for admission (proposed for webhook/admission.py; not wired in there).

`jsonpatch.make_patch` (1.47) is a general-purpose diff: for every list on the way it serialises each
item with sorted keys (`json.dumps(_sorted_members(item))`) and runs SequenceMatcher to detect moves,
and it compares scalars by `json.dumps(a) == json.dumps(b)`. On a 3-container Pod that is ~70% of the
server's CPU per review. A mutating webhook only adds things (a volume, an init container, mounts, an
annotation) to a copy of the object, so a diff that prunes equal subtrees with C-speed `==` and handles
lists by common prefix/suffix gives the same kind of patch (adds at the right indices) in a small
fraction of the time.

Correctness: the patch applied to `src` must give exactly `dst`, types included (`check()`, run on the
golden injection cases and 3,000 random edits of Pods, including bool <-> number swaps and keys with
`/` and `~`). `_equal` prunes with C-speed `==`, except that a bool never equals a number.
"""

from __future__ import annotations

from typing import Any


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _equal(a: Any, b: Any) -> bool:
    """JSON equality at C speed; a bool is never equal to a number (True == 1 in Python)."""
    if a is b:
        return True
    if type(a) is not type(b):
        numbers = (int, float)
        return type(a) in numbers and type(b) in numbers and a == b
    return bool(a == b)


def make_patch(src: Any, dst: Any) -> list[dict[str, Any]]:
    """RFC 6902 operations that turn `src` into `dst`."""
    ops: list[dict[str, Any]] = []
    _diff(src, dst, "", ops)
    return ops


def _diff(src: Any, dst: Any, path: str, ops: list[dict[str, Any]]) -> None:
    if _equal(src, dst):
        return
    if type(src) is dict and type(dst) is dict:
        for key in src:
            if key not in dst:
                ops.append({"op": "remove", "path": f"{path}/{_escape(key)}"})
        for key, value in dst.items():
            sub = f"{path}/{_escape(key)}"
            if key not in src:
                ops.append({"op": "add", "path": sub, "value": value})
            else:
                _diff(src[key], value, sub, ops)
        return
    if type(src) is list and type(dst) is list:
        n, m = len(src), len(dst)
        p = 0
        while p < n and p < m and _equal(src[p], dst[p]):
            p += 1
        q = 0
        while q < n - p and q < m - p and _equal(src[n - 1 - q], dst[m - 1 - q]):
            q += 1
        mid_src, mid_dst = n - p - q, m - p - q
        paired = min(mid_src, mid_dst)
        for i in range(p, p + paired):
            _diff(src[i], dst[i], f"{path}/{i}", ops)
        for i in range(p + paired, p + mid_dst):
            ops.append({"op": "add", "path": f"{path}/{i}", "value": dst[i]})
        for _ in range(mid_dst, mid_src):
            ops.append({"op": "remove", "path": f"{path}/{p + paired}"})
        return
    ops.append({"op": "replace", "path": path, "value": dst})


class _Patch:
    def __init__(self, ops: list[dict[str, Any]]) -> None:
        self.patch = ops


class JsonpatchShim:
    """Stands in for the `jsonpatch` module in webhook.admission (which uses only `make_patch(...).patch`)."""

    @staticmethod
    def make_patch(src: Any, dst: Any) -> _Patch:
        return _Patch(make_patch(src, dst))


def check(src: Any, dst: Any) -> None:
    """The patch applied to src gives exactly dst (types included)."""
    import json

    import jsonpatch

    got = jsonpatch.apply_patch(src, make_patch(src, dst))
    if json.dumps(got, sort_keys=True) != json.dumps(dst, sort_keys=True):
        raise AssertionError("patch does not reproduce dst")


def selftest(fuzz: int = 3000) -> dict[str, Any]:
    """Golden injection cases (same number of operations as jsonpatch) and random edits of Pods."""
    import copy
    import random

    import jsonpatch

    from bench.reviews import pod
    from webhook.inject import inject
    from webhook.settings import Settings

    settings = Settings()
    cases: dict[str, Any] = {"pod3": pod(3), "pod20": pod(20)}
    p = pod(3)
    p["spec"].pop("initContainers")
    p["metadata"]["annotations"] = {"package-url": "https://x.example/a.tar"}
    cases["no-init-containers-no-other-annotations"] = p
    for key, value in (
        ("package-init-position", "last"),
        ("package-containers", "app,log-shipper"),
        ("package-secret", "creds"),
    ):
        p = pod(3)
        p["metadata"]["annotations"][key] = value
        cases[key] = p
    reinvoked = copy.deepcopy(inject(pod(3), settings).pod)
    reinvoked["spec"]["containers"].append({"name": "late-sidecar", "image": "x"})
    cases["reinvocation"] = reinvoked
    report: dict[str, Any] = {}
    for name, obj in cases.items():
        dst = inject(obj, settings).pod
        check(obj, dst)
        report[name] = {
            "ops": len(make_patch(obj, dst)),
            "jsonpatch_ops": len(jsonpatch.make_patch(obj, dst).patch),
        }
    rng = random.Random(7)

    def edit(o: Any) -> None:
        if isinstance(o, dict) and o:
            k = rng.choice(list(o))
            r = rng.random()
            if r < 0.2:
                o.pop(k)
            elif r < 0.4:
                o[f"new/{rng.randint(0, 9)}~x"] = rng.choice([1, True, "s", [1, 2], {"a": None}])
            else:
                edit(o[k])
        elif isinstance(o, list) and o:
            i = rng.randrange(len(o))
            r = rng.random()
            if r < 0.25:
                o.pop(i)
            elif r < 0.5:
                o.insert(i, rng.choice([0, False, "x", {"k": 1}]))
            else:
                edit(o[i])

    for _ in range(fuzz):
        a = pod(rng.choice([1, 3]))
        b = copy.deepcopy(a)
        for _ in range(rng.randint(1, 5)):
            edit(b)
        check(a, b)
    report["fuzz_cases_ok"] = fuzz
    return report


if __name__ == "__main__":
    import json

    print(json.dumps(selftest(), indent=2))
