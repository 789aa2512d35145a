"""What one review (or one document of `inject -f`) may cost: caps on its shape, checked before any real work.

Every check here is one linear pass, and every cap is far above what a real Pod or workload carries, so
only hostile or broken input meets them. Where Kubernetes has a limit of its own (annotation key length,
total annotation size) the cap is that limit: the apiserver would refuse such an object anyway.

- JSON: nesting depth (our code and the libraries under it recurse), node count (a YAML alias bomb is a
  small file with billions of paths), NaN/Infinity (not JSON; a patch carrying one is not valid JSON),
  lone UTF-16 surrogates (`"\\ud800"` parses but cannot be encoded back to UTF-8).
- A pod that asks for a package: containers, and entries of the lists the injection walks.
- Annotations: their number, key length, total size.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from typing import Any, Final

from webhook.annotations import Denied

MAX_DEPTH: Final = 100
"""Nesting levels of a whole AdmissionReview; a real one, CronJob managedFields included, has about 25."""
MAX_NODES: Final = 2_000_000
"""Objects and arrays in one document (all values, when strings are checked too); a 3 MiB body holds
fewer. Only `inject -f` can reach it (YAML aliases)."""
MAX_CONTAINERS: Final = 500
"""containers plus initContainers of a pod that asks for a package."""
MAX_ENTRIES: Final = 10_000
"""All entries the injection walks: containers, init containers, volumes, imagePullSecrets, and every
container's volumeMounts and env."""
MAX_ANNOTATIONS: Final = 1000
MAX_KEY_LENGTH: Final = 253 + 1 + 63
"""Kubernetes' own limit for an annotation key: a DNS subdomain prefix, '/', a 63-character name."""
MAX_ANNOTATIONS_BYTES: Final = 256 * 1024
"""Kubernetes' own limit for the total size of an object's annotations (keys plus values)."""

# A \uD800-\uDFFF escape in the raw JSON: the only way a lone surrogate gets into a parsed str (raw bytes
# that are not UTF-8 fail to decode). Bodies without one, i.e. every body an apiserver sends, skip the scan.
SURROGATE_ESCAPE: Final = re.compile(rb"\\u[dD][89a-fA-F]")


class TooComplex(ValueError):
    """The document breaks a cap on its shape; the message names the cap and where it was met."""


def reject_constant(name: str) -> float:
    """`json.loads(parse_constant=...)`: NaN, Infinity and -Infinity are not JSON."""
    raise ValueError(f"{name} is not a JSON number")


def finite_float(text: str) -> float:
    """`json.loads(parse_float=...)`: a number too large for a float (1e999) must not become inf."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:32]} is out of range")
    return value


def check_document(
    value: Any, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES, strings: bool = False
) -> None:
    """Raise TooComplex when `value` nests deeper than `max_depth` or holds more than `max_nodes` values,
    and (with `strings`) when a string or key is not encodable as UTF-8 or a float is NaN or infinite.

    Iterative, so it works on input nested far deeper than Python's recursion limit.
    """
    if strings:
        _check_strings(value, max_nodes)
    # Containers only: scalars are most of a document and cannot nest (the fast path of every review).
    level: list[Any] = [value] if type(value) in _NESTING else []
    depth = nodes = 0
    while level:
        depth += 1
        nodes += len(level)
        if depth > max_depth:
            raise TooComplex(f"is nested more than {max_depth} levels deep")
        if nodes > max_nodes:
            raise TooComplex(f"holds more than {max_nodes} values")
        # islice: a YAML alias bomb's next level could hold billions of (shared) lists.
        children = (
            child
            for node in level
            for child in (node.values() if type(node) is dict else node)
            if type(child) in _NESTING
        )
        level = list(itertools.islice(children, max_nodes - nodes + 1))


_NESTING: Final = (dict, list)


def _check_strings(value: Any, max_nodes: int) -> None:
    stack: list[Any] = [value]
    nodes = 0
    while stack:
        node = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise TooComplex(f"holds more than {max_nodes} values")
        if type(node) is dict:
            for key in node:
                _check_scalar(key)
            stack.extend(node.values())
        elif type(node) is list:
            stack.extend(node)
        else:
            _check_scalar(node)


def _check_scalar(value: Any) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise TooComplex(
                "contains a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text"
            ) from None
    elif isinstance(value, float) and not math.isfinite(value):
        raise TooComplex("contains NaN or Infinity, which JSON cannot carry")


def check_annotations(annotations: Mapping[Any, Any]) -> None:
    """Deny annotations past the caps (before any of them is looked at more closely)."""
    if len(annotations) > MAX_ANNOTATIONS:
        raise _denied(f"the pod has {len(annotations)} annotations, more than the {MAX_ANNOTATIONS} allowed")
    total = 0
    for key, value in annotations.items():
        size = len(key) if isinstance(key, str) else 0
        if size > MAX_KEY_LENGTH:
            raise _denied(
                f"an annotation key is {size} characters long, more than Kubernetes allows ({MAX_KEY_LENGTH})"
            )
        total += size + (len(value) if isinstance(value, str) else 0)
    if total > MAX_ANNOTATIONS_BYTES:
        raise _denied(
            f"the annotations hold {total} characters, more than Kubernetes allows ({MAX_ANNOTATIONS_BYTES})"
        )


def check_pod_spec(spec: Mapping[str, Any]) -> None:
    """Deny a spec whose lists the injection walks are too long or hold wrong types, with the path.

    The apiserver sends typed objects, so wrong types come only from direct calls and hand-written files;
    without this check they would surface deep inside the injection as an internal error.
    """
    entries = 0
    containers = 0
    for field in ("containers", "initContainers", "volumes", "imagePullSecrets"):
        value = spec.get(field)
        if field == "imagePullSecrets":
            # Judged by the injection only when it adds to the list (then it must be objects); the names must
            # be strings either way.
            value = [v for v in value if isinstance(v, dict)] if isinstance(value, list) else None
        items = _objects(value, f"spec.{field}")
        entries += len(items)
        if field in ("containers", "initContainers"):
            containers += len(items)
            if containers > MAX_CONTAINERS:
                raise _denied(f"the pod has more than {MAX_CONTAINERS} containers and init containers")
        for i, item in enumerate(items):
            where = f"spec.{field}[{i}]"
            _string(item, "name", where)
            if field not in ("containers", "initContainers"):
                continue
            mounts = _objects(item.get("volumeMounts"), f"{where}.volumeMounts")
            env = _objects(item.get("env"), f"{where}.env")
            entries += len(mounts) + len(env)
            if entries > MAX_ENTRIES:
                break
            for j, mount in enumerate(mounts):
                _string(mount, "name", f"{where}.volumeMounts[{j}]")
                _string(mount, "mountPath", f"{where}.volumeMounts[{j}]")
            for j, var in enumerate(env):
                _string(var, "name", f"{where}.env[{j}]")
        if entries > MAX_ENTRIES:
            raise _denied(
                f"the pod has more than {MAX_ENTRIES} containers, volumes, volume mounts, env entries "
                "and image pull secrets together"
            )


def _objects(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _denied(f"{where} must be a list of objects", "malformed-object")
    return value


def _string(item: Mapping[str, Any], field: str, where: str) -> None:
    value = item.get(field)
    if value is not None and not isinstance(value, str):
        raise _denied(f"{where}.{field} must be a string", "malformed-object")


def _denied(message: str, reason: str = "too-large") -> Denied:
    return Denied(message, 400, reason)
