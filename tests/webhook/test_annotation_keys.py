"""The annotation keys module: dependency-free, each key documented where it is defined, and the only place
the webhook spells a key."""

from __future__ import annotations

import ast
import inspect
import itertools
import re
from pathlib import Path

from webhook import annotation_keys, annotations

WEBHOOK = Path(annotations.__file__).parent


def test_every_key_has_a_one_line_doc_under_its_definition() -> None:
    tree = ast.parse(inspect.getsource(annotation_keys))
    body = tree.body
    documented = {}
    for stmt, after in itertools.pairwise(body):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            doc = (
                after.value.value
                if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                else None
            )
            documented[stmt.target.id] = doc
    keys = {name for name, value in vars(annotation_keys).items() if value in annotation_keys.ALL_KEYS}
    assert keys == {"URL", "SHA256", "MOUNT_PATH", "CONTAINERS", "STRIP_COMPONENTS", "SECRET", "SIZE_LIMIT",
                    "INIT_POSITION", "STATUS"}  # fmt: skip
    for name in keys:
        doc = documented.get(name)
        assert isinstance(doc, str) and doc.strip() and "\n" not in doc.strip(), name


def test_the_module_imports_nothing_of_ours() -> None:
    imports = [
        n for n in ast.walk(ast.parse(inspect.getsource(annotation_keys))) if isinstance(n, ast.ImportFrom)
    ]
    assert {n.module for n in imports if isinstance(n, ast.ImportFrom)} <= {"__future__", "typing"}


def test_no_other_webhook_module_spells_a_key() -> None:
    """A key written out as a string elsewhere drifts from the contract; import it instead."""
    spelled = re.compile("|".join(re.escape(f'"{k}"') for k in annotation_keys.ALL_KEYS))
    for path in sorted(WEBHOOK.glob("*.py")):
        if path.name == "annotation_keys.py":
            continue
        source = path.read_text()
        found = [m.group(0) for m in spelled.finditer(source)]
        # admission.py's decision reasons name the trigger ("package-url"), a metrics label, not a key lookup.
        if path.name == "admission.py":
            found = [f for f in found if f == '"package-url"']
            assert len(found) <= 2, found
            continue
        assert not found, f"{path.name} spells {found}: use webhook.annotation_keys"
