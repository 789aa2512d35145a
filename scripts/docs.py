"""Write the generated parts of docs/ from the code: the settings table of docs/configuration.md comes from
the settings model (webhook/settings.py: names, defaults, descriptions).

    .venv/bin/python scripts/docs.py          # rewrite the generated parts
    .venv/bin/python scripts/docs.py --check  # exit 1 if they are out of date (tests/test_docs.py does this)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from webhook.settings import CONFIG_FILE_ENV, ENV_PREFIX, Settings  # noqa: E402

BEGIN = "<!-- BEGIN GENERATED: settings (scripts/docs.py) -->"
END = "<!-- END GENERATED: settings -->"


def _default(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, list | dict):
        return f"`{json.dumps(value, separators=(',', ':'))}`"
    if isinstance(value, str) and value == "":
        return '`""`'
    return f"`{value}`"


def settings_table() -> str:
    """One row per setting: file key, variable, default, meaning."""
    rows = [
        "| file key | environment variable | default | meaning |",
        "|---|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{name}` | `{ENV_PREFIX}{name.upper()}` | {_default(default)} | {description} |")
    rows.append(
        f"| | `{CONFIG_FILE_ENV}` | unset | The settings file (YAML or JSON) to read; `--config FILE` too. |"
    )
    return "\n".join(rows)


def render(doc: str) -> str:
    """`doc` with the text between the markers replaced by the current table."""
    head, sep, rest = doc.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise SystemExit(f"docs/configuration.md lacks the markers {BEGIN} ... {END}")
    return f"{head}{BEGIN}\n{settings_table()}\n{END}{tail}"


def main() -> int:
    path = REPO / "docs" / "configuration.md"
    current = path.read_text()
    new = render(current)
    if "--check" in sys.argv:
        if new != current:
            print("docs/configuration.md is out of date: run scripts/docs.py")
            return 1
        return 0
    path.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
