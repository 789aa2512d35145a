"""Edit YAML manifests in place: comments, key order, quoting and block scalars survive.

`inject` works on plain JSON-like data (the same function as the webhook), then the difference is applied
as a JSON Patch (`webhook.patch`, the webhook's own diff) to the round-trip document ruamel.yaml loaded.
Only what injection changed is rewritten, so a GitOps diff of an injected manifest shows the injection and
nothing else.
"""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from webhook.patch import Operation

__all__ = ["YAMLError", "apply_patch", "dump_all", "load_all", "plain"]


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap long lines the user wrote
    yaml.indent(mapping=2, sequence=2, offset=0)
    return yaml


def load_all(text: str) -> list[Any]:
    """The round-trip documents of a YAML stream (empty documents dropped); raises YAMLError."""
    return [d for d in _yaml().load_all(text) if d is not None]


def plain(node: Any, _memo: dict[int, Any] | None = None) -> Any:
    """A plain copy (dict, list, str, int, float, bool, None, dates) of a round-trip node, as PyYAML loads.

    Aliases stay shared (one copy per anchored node, as PyYAML's own loader does), so an alias bomb stays
    small here and `webhook.limits` can refuse it."""
    memo = {} if _memo is None else _memo
    if isinstance(node, dict | list):
        if id(node) in memo:
            return memo[id(node)]
        if isinstance(node, dict):
            out: Any = {}
            memo[id(node)] = out
            out.update((k if not isinstance(k, str) else str(k), plain(v, memo)) for k, v in node.items())
        else:
            out = []
            memo[id(node)] = out
            out.extend(plain(v, memo) for v in node)
        return out
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, str):
        return str(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node  # dates and timestamps, as PyYAML loads them


def _token(raw: str) -> str:
    return raw.replace("~1", "/").replace("~0", "~")


def apply_patch(doc: Any, ops: list[Operation]) -> Any:
    """Apply add/remove/replace operations (what `webhook.patch.make_patch` emits) in place; the new root."""
    for op in ops:
        path = op["path"]
        if path == "":
            if op["op"] in ("add", "replace"):
                doc = op["value"]
            continue
        *parents, last = (_token(t) for t in path[1:].split("/"))
        node = doc
        for token in parents:
            node = node[int(token)] if isinstance(node, list) else node[token]
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if op["op"] == "add":
                node.insert(index, op["value"])
            elif op["op"] == "remove":
                del node[index]
            else:
                node[index] = op["value"]
        elif op["op"] == "remove":
            del node[last]
        else:
            node[last] = op["value"]
    return doc


def dump_all(docs: list[Any], indent: tuple[int, int] = (2, 0), explicit_start: bool = False) -> str:
    """The documents as one YAML stream, with the given (mapping indent, dash offset)."""
    yaml = _yaml()
    mapping, offset = indent
    yaml.indent(mapping=mapping, sequence=mapping + offset, offset=offset)
    yaml.explicit_start = explicit_start or len(docs) > 1
    out = io.StringIO()
    yaml.dump_all(docs, out)
    return out.getvalue()
