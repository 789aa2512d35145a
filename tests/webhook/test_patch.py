"""webhook.patch with jsonpatch as the oracle: applied to the original, the patch gives the copy."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import jsonpatch
import pytest

from tests.webhook.conftest import PodFactory, build_pod
from webhook.inject import inject
from webhook.patch import make_patch
from webhook.settings import Settings

URL = "https://files.example.com/site.tar.gz"


def assert_reproduces(src: Any, dst: Any) -> list[dict[str, Any]]:
    ops = make_patch(src, dst)
    before = json.dumps(src, sort_keys=True)
    got = jsonpatch.apply_patch(src, ops)
    assert json.dumps(got, sort_keys=True) == json.dumps(dst, sort_keys=True)
    assert json.dumps(src, sort_keys=True) == before, "make_patch must not touch its inputs"
    return ops


def injection_cases() -> dict[str, dict[str, Any]]:
    base = {"package-url": URL}
    sidecar = {"name": "istio-proxy", "image": "proxy", "restartPolicy": "Always"}
    cases = {
        "plain": build_pod(base),
        "three-containers": build_pod(base, containers=("app", "log", "metrics")),
        "no-volumes-no-init": build_pod(base),
        "init-last": build_pod(
            {**base, "package-init-position": "last"}, init_containers=[{"name": "migrate"}]
        ),
        "after-native-sidecar": build_pod(base, init_containers=[sidecar, {"name": "migrate"}]),
        "subset": build_pod({**base, "package-containers": "log"}, containers=("app", "log")),
        "secret-and-size": build_pod({**base, "package-secret": "creds", "package-size-limit": "1Gi"}),
    }
    del cases["no-volumes-no-init"]["spec"]["volumes"]
    cases["no-volumes-no-init"]["spec"]["containers"][0].pop("volumeMounts")
    del cases["plain"]["metadata"]["labels"]
    return cases


@pytest.mark.parametrize("name", sorted(injection_cases()))
def test_injection_patches_reproduce_the_injected_pod(name: str, settings: Settings) -> None:
    pod = injection_cases()[name]
    injected = inject(pod, settings).pod
    ops = assert_reproduces(pod, injected)
    assert {op["op"] for op in ops} == {"add"}, "injection only adds"
    assert len(ops) == len(jsonpatch.make_patch(pod, injected).patch)


def test_reinvocation_adds_only_the_new_containers_mount(make_pod: PodFactory, settings: Settings) -> None:
    injected = inject(make_pod({"package-url": URL}), settings).pod
    later = copy.deepcopy(injected)
    later["spec"]["containers"].append({"name": "late-sidecar", "image": "mesh"})
    ops = assert_reproduces(later, inject(later, settings).pod)
    assert sorted(op["path"] for op in ops) == [
        "/metadata/annotations/package-status",
        "/spec/containers/1/volumeMounts",
    ]


def test_prefixed_keys_are_escaped(make_pod: PodFactory) -> None:
    settings = Settings(annotation_prefix="example.com/")
    pod = make_pod({"example.com/package-url": URL})
    ops = assert_reproduces(pod, inject(pod, settings).pod)
    assert "/metadata/annotations/example.com~1package-status" in [op["path"] for op in ops]
    tilde = assert_reproduces({"a~b": 1}, {"a~b": 2, "c/d": 3})
    assert [op["path"] for op in tilde] == ["/a~0b", "/c~1d"]


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ([1, 2, 3, 4], [1, 4]),
        ([1, 2], [3, 1, 2, 4]),
        ({"a": True}, {"a": 1}),
        ([{"x": [True, 2]}], [{"x": [1, 2]}]),
        ({"a": ["s", "s"]}, {"a": ["s", "t"]}),
        ({"a": 1}, {"a": 1.5}),
        ({"a": [1]}, {"a": {"0": 1}}),
        ({"a": None}, {}),
        ([], [{"x": [1, {"y": 2}]}]),
        ({"k": "v"}, {"k": "v"}),
    ],
)
def test_edge_cases(src: Any, dst: Any) -> None:
    assert_reproduces(src, dst)


def _random_edit(obj: Any, rng: random.Random) -> None:
    """Remove, insert or replace somewhere inside `obj` (a pod), in place."""
    if isinstance(obj, dict) and obj:
        key = rng.choice(sorted(obj))
        roll = rng.random()
        if roll < 0.2:
            obj.pop(key)
        elif roll < 0.4:
            obj[f"new/{rng.randint(0, 9)}~x"] = rng.choice([1, "s", [1, 2], {"a": None}])
        else:
            _random_edit(obj[key], rng)
    elif isinstance(obj, list) and obj:
        i = rng.randrange(len(obj))
        roll = rng.random()
        if roll < 0.25:
            obj.pop(i)
        elif roll < 0.5:
            obj.insert(i, rng.choice([0, "x", {"k": 1}]))
        else:
            _random_edit(obj[i], rng)


def test_random_edits_of_pods() -> None:
    rng = random.Random(20261128)
    for _ in range(1500):
        src = build_pod({"package-url": URL}, containers=("a", "b", "c")[: rng.randint(1, 3)])
        dst = copy.deepcopy(src)
        for _ in range(rng.randint(1, 5)):
            _random_edit(dst, rng)
        assert_reproduces(src, dst)
