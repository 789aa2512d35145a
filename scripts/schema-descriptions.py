"""Copy the `# --` comments of the chart's values.yaml into values.schema.json as `description`s.

values.yaml is where the chart's knobs are explained; editors (yaml-language-server), Artifact Hub and
`helm show` readers of the schema get the same words. Run after editing a `# --` comment:

    .venv/bin/python scripts/schema-descriptions.py          # rewrite the schema
    .venv/bin/python scripts/schema-descriptions.py --check  # exit 1 if it is out of date (the tests do this)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

CHART = Path(__file__).resolve().parents[1] / "charts" / "package-injector"
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):")


def comments(values_yaml: str) -> dict[tuple[str, ...], str]:
    """{path of a key: the `# --` comment block right above it}."""
    found: dict[tuple[str, ...], str] = {}
    stack: list[tuple[int, str]] = []
    block: list[str] = []
    for line in values_yaml.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            block = [stripped[4:].strip()]
            continue
        if stripped.startswith("#") and block:
            block.append(stripped[1:].strip())
            continue
        match = _KEY.match(line)
        if match:
            indent = len(match["indent"])
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, match["key"]))
            if block:
                found[tuple(k for _, k in stack)] = " ".join(block)
        block = []
    return found


def _node(schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    """The schema node of a values path; references are followed on the way (JSON schema 2020-12 lets a
    description sit next to a $ref, so the last step is described where it is used)."""
    node: dict[str, Any] | None = schema
    for i, key in enumerate(path):
        if node is not None and "$ref" in node and i > 0:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        props = (node or {}).get("properties") or {}
        node = props.get(key)
        if node is None:
            return None
    return node


def updated(schema: dict[str, Any], values_yaml: str) -> dict[str, Any]:
    """The schema with every commented key's description set from values.yaml."""
    for path, text in comments(values_yaml).items():
        node = _node(schema, path)
        if node is None:
            raise SystemExit(f"values.yaml key {'.'.join(path)} is not in values.schema.json")
        node["description"] = text
    return schema


def main() -> int:
    schema_path = CHART / "values.schema.json"
    current = schema_path.read_text()
    schema = updated(json.loads(current), (CHART / "values.yaml").read_text())
    new = json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
    if "--check" in sys.argv:
        if new != current:
            print("values.schema.json differs from values.yaml: run scripts/schema-descriptions.py")
            return 1
        return 0
    schema_path.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
