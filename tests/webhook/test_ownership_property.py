"""Random sequences of what clusters do to an injected Pod: our answers converge and keep others' pieces.

Seeded (the same cases every run). Each case injects, lets random stand-in plugins and webhooks act (token
mounts, pod identity, env/mount agents, list sorting, image mirrors, AlwaysPullImages, edits of our own
fields, changed annotations or settings), injects again, and checks: never an exception other than a
denial; a fixed point after one more call; every env entry and mount someone else added to our init
container still there, in order.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any

import pytest

from initcontainer import contract
from tests.support import admission_chain as chain
from tests.webhook.conftest import build_pod
from webhook.inject import Denied, inject, our_env_names
from webhook.settings import Settings

Obj = dict[str, Any]
URL = "https://files.example.com/site.tar.gz"
SETTINGS = [
    Settings(),
    Settings(default_size_limit="1Gi"),
    Settings(init_image="registry.example/package-init:2", init_image_pull_policy="Always"),
    Settings(init_proxy_env={"HTTPS_PROXY": "http://proxy:3128"}, init_env={"PACKAGE_RETRIES": "3"}),
]


def _downloader(pod: Obj) -> Obj | None:
    found = [
        c for c in pod["spec"].get("initContainers") or [] if c.get("name") == contract.INIT_CONTAINER_NAME
    ]
    return found[0] if found else None


def _sort_lists(pod: Obj) -> Obj:
    pod = copy.deepcopy(pod)
    for container in chain._all_containers(pod["spec"]):
        for key in ("env", "volumeMounts"):
            if key in container:
                container[key].sort(key=lambda e: str(e.get("name")))
    return pod


def _edit_our_env(pod: Obj) -> Obj:
    pod = copy.deepcopy(pod)
    init = _downloader(pod)
    if init is not None:
        init["env"][0]["value"] = "https://elsewhere.example/x.tar"
    return pod


def _new_url(pod: Obj) -> Obj:
    pod = copy.deepcopy(pod)
    pod["metadata"]["annotations"]["package-url"] = URL + "?v=$(X)$$2"
    return pod


def _add_secret(pod: Obj) -> Obj:
    pod = copy.deepcopy(pod)
    pod["metadata"]["annotations"]["package-secret"] = "creds"
    return pod


ACTIONS: list[Callable[[Obj], Obj]] = [
    chain.service_account_plugin,
    chain.eks_pod_identity,
    chain.env_and_mount_webhook,
    chain.always_pull_images,
    chain.image_mirror,
    chain.digest_pin,
    _sort_lists,
    _edit_our_env,
    _new_url,
    _add_secret,
]


def _theirs(container: Obj | None, settings: Settings) -> tuple[list[Any], list[Any]]:
    """Env names and mount names in our init container that belong to others, in order."""
    if container is None:
        return [], []
    ours_env = our_env_names(settings)
    env = [e["name"] for e in container.get("env") or [] if e["name"] not in ours_env]
    mounts = [
        m["name"]
        for m in container.get("volumeMounts") or []
        if m["name"] not in {contract.VOLUME_NAME, "package-credentials"}
    ]
    return env, mounts


@pytest.mark.parametrize("seed", range(300))
def test_random_cluster_activity_converges_and_keeps_others_pieces(seed: int) -> None:
    rng = random.Random(seed)
    pod = build_pod({"package-url": URL}, containers=("app", "b")[: rng.randint(1, 2)])
    settings = rng.choice(SETTINGS)
    pod = inject(pod, settings).pod
    for _ in range(rng.randint(1, 6)):
        pod = rng.choice(ACTIONS)(pod)
        if rng.random() < 0.3:
            settings = rng.choice(SETTINGS)
        before = _theirs(_downloader(pod), settings)
        try:
            result = inject(pod, settings)
        except Denied as denied:  # never expected here: every actor only adds or edits our own values
            pytest.fail(f"seed {seed}: denied {denied.message}")
        pod = result.pod
        assert _theirs(_downloader(pod), settings) == before, f"seed {seed}: others' entries changed"
        again = inject(pod, settings)
        assert not again.changed and again.pod == pod, f"seed {seed}: not a fixed point"
