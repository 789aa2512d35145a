"""Stand-ins for what real clusters do to a Pod around our webhook, for unit and golden tests.

The e2e tests run the real kube-apiserver (its ServiceAccount plugin included); these functions let the
unit tests state the same situations without one, each named after what it imitates:

- `service_account_plugin`: kube-apiserver's ServiceAccount admission plugin as 1.20 ran it, with a token
  Secret: a Secret volume and a read-only mount at the token path in every container and init container
  that has no mount there yet (1.24+ mount a projected `kube-api-access-*` volume instead, as the e2e tests'
  apiserver does; the same shape for us: one more volume and a mount at the same path).
- `eks_pod_identity`: the EKS pod-identity webhook: env AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE and a
  projected token volume mounted in every container, init containers included.
- `env_and_mount_webhook`: a generic webhook (Vault-, tracing-like) adding env, envFrom and a mount.
- `always_pull_images`: the AlwaysPullImages plugin (in-tree, common in multi-tenant clusters).
- `image_mirror` / `digest_pin`: webhooks that rewrite every image to a mirror, or pin it by digest.
- `admit`: the apiserver's mutating chain with reinvocation: in-tree plugins, then webhooks in name
  order; when any webhook changed the object, the in-tree plugins run again and webhooks with
  `IfNeeded` that ran before are called once more.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

Obj = dict[str, Any]
Mutator = Callable[[Obj], Obj]

TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_VOLUME = "default-token-8x2qk"
AWS_TOKEN_PATH = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
ROLE_ARN = "arn:aws:iam::111122223333:role/app"


def _all_containers(spec: Obj) -> Iterator[Obj]:
    yield from spec.get("initContainers") or []
    yield from spec.get("containers") or []


def service_account_plugin(pod: Obj) -> Obj:
    pod = copy.deepcopy(pod)
    spec = pod["spec"]
    if spec.get("automountServiceAccountToken") is False:
        return pod
    spec.setdefault("serviceAccountName", "default")
    volumes = spec.setdefault("volumes", [])
    if not any(v["name"] == TOKEN_VOLUME for v in volumes):
        volumes.append({"name": TOKEN_VOLUME, "secret": {"secretName": TOKEN_VOLUME}})
    for container in _all_containers(spec):
        mounts = container.setdefault("volumeMounts", [])
        if not any(m.get("mountPath") == TOKEN_PATH for m in mounts):
            mounts.append({"name": TOKEN_VOLUME, "readOnly": True, "mountPath": TOKEN_PATH})
    return pod


def eks_pod_identity(pod: Obj) -> Obj:
    pod = copy.deepcopy(pod)
    spec = pod["spec"]
    volumes = spec.setdefault("volumes", [])
    if not any(v["name"] == "aws-iam-token" for v in volumes):
        source = {"audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"}
        volumes.append({"name": "aws-iam-token", "projected": {"sources": [{"serviceAccountToken": source}]}})
    for container in _all_containers(spec):
        env = container.setdefault("env", [])
        if not any(e["name"] == "AWS_ROLE_ARN" for e in env):
            env += [
                {"name": "AWS_ROLE_ARN", "value": ROLE_ARN},
                {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": f"{AWS_TOKEN_PATH}/token"},
            ]
            container.setdefault("volumeMounts", []).append(
                {"name": "aws-iam-token", "mountPath": AWS_TOKEN_PATH, "readOnly": True}
            )
    return pod


def env_and_mount_webhook(pod: Obj) -> Obj:
    pod = copy.deepcopy(pod)
    spec = pod["spec"]
    volumes = spec.setdefault("volumes", [])
    if not any(v["name"] == "agent-config" for v in volumes):
        volumes.append({"name": "agent-config", "configMap": {"name": "agent"}})
    for container in _all_containers(spec):
        env = container.setdefault("env", [])
        if not any(e["name"] == "TRACE_AGENT" for e in env):
            env.append({"name": "TRACE_AGENT", "value": "$(NODE_IP):4317"})
            container.setdefault("envFrom", []).append({"configMapRef": {"name": "agent-env"}})
            container.setdefault("volumeMounts", []).append(
                {"name": "agent-config", "mountPath": "/etc/agent"}
            )
    return pod


def always_pull_images(pod: Obj) -> Obj:
    pod = copy.deepcopy(pod)
    for container in _all_containers(pod["spec"]):
        container["imagePullPolicy"] = "Always"
    return pod


def image_mirror(pod: Obj) -> Obj:
    pod = copy.deepcopy(pod)
    for container in _all_containers(pod["spec"]):
        if not container["image"].startswith("mirror.example/"):
            container["image"] = "mirror.example/" + container["image"]
    return pod


def digest_pin(pod: Obj) -> Obj:
    pod = copy.deepcopy(pod)
    for container in _all_containers(pod["spec"]):
        if "@" not in container["image"]:
            container["image"] += "@sha256:" + "ab" * 32
    return pod


def admit(
    pod: Obj,
    webhooks: list[tuple[str, Mutator, str]],
    in_tree: tuple[Mutator, ...] = (service_account_plugin,),
) -> Obj:
    """Run the mutating chain; `webhooks` are (configuration name, mutate, reinvocationPolicy).

    As the apiserver does: a webhook's change marks every IfNeeded webhook called before it for one
    more call; any change re-runs the in-tree plugins, then the marked webhooks, in order, once."""
    ordered = sorted(webhooks, key=lambda w: w[0])
    for plugin in in_tree:
        pod = plugin(pod)
    earlier: list[str] = []
    again: set[str] = set()
    changed = False
    for name, mutate, policy in ordered:
        after = mutate(pod)
        if after != pod:
            again.update(earlier)
            changed = True
        pod = after
        if policy == "IfNeeded":
            earlier.append(name)
    if not changed:
        return pod
    for plugin in in_tree:
        pod = plugin(pod)
    for name, mutate, _ in ordered:
        if name in again:
            pod = mutate(pod)
    return pod
