"""The class tree drawn in errors.py's docstring is the real one, with the real exit codes."""

from __future__ import annotations

import re

from initcontainer import contract, errors


def _drawn() -> dict[str, tuple[int, str | None]]:
    """Class name -> (exit code, parent drawn above it) from the docstring's tree."""
    tree: dict[str, tuple[int, str | None]] = {}
    stack: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        m = re.match(r"^[\s|]*(?:\+-- )?(\w+)\s*(?:\.+\s*(\d+))?", line)
        if m is None or not (m.group(2) or m.group(1) == "Exception"):
            continue
        depth = m.start(1)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parent = stack[-1][1] if stack else None
        if m.group(2):
            tree[m.group(1)] = (int(m.group(2)), parent)
        stack.append((depth, m.group(1)))
    return tree


def test_docstring_tree_matches_the_classes() -> None:
    drawn = _drawn()
    defined = {
        name: cls
        for name, cls in vars(errors).items()
        if isinstance(cls, type) and issubclass(cls, errors.PackageError)
    }
    assert set(drawn) == set(defined)
    for name, (code, parent) in drawn.items():
        cls = defined[name]
        assert cls.exit_code == code, name
        assert cls.__bases__[0].__name__ == parent, name
        assert cls.reason == name or name == "PackageError"


def test_exit_codes_are_the_contract() -> None:
    assert errors.ConfigError.exit_code == contract.EXIT_CONFIG
    assert errors.TransportError.exit_code == contract.EXIT_TRANSPORT
    assert errors.HTTPClientError.exit_code == contract.EXIT_HTTP_CLIENT
    assert errors.IntegrityError.exit_code == contract.EXIT_INTEGRITY
    assert errors.UnsafeArchiveError.exit_code == contract.EXIT_UNSAFE_ARCHIVE
    assert errors.LocalIOError.exit_code == contract.EXIT_LOCAL_IO
