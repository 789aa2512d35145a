"""Flattening image layers top-down with whiteouts (initcontainer.oci.layers).

Each case is checked against a naive bottom-up model: apply layers in order on a
dict, deleting for whiteouts, which is what the OCI spec describes.
"""

from __future__ import annotations

import pytest

from initcontainer.errors import UnsafeArchiveError
from initcontainer.oci.layers import Decision, LayerFilter, normalise

# An entry: (name, kind) with kind "d" (directory), "f" (file) or "h:TARGET" (hard link).
Layer = list[tuple[str, str]]


def top_down(layers: list[Layer]) -> dict[str, str]:
    """What LayerFilter lets through, fed from the last layer to the first; name -> (kind, layer)."""
    f = LayerFilter()
    out: dict[str, str] = {}
    for index in reversed(range(len(layers))):
        f.start_layer()
        for name, kind in layers[index]:
            link = kind[2:] if kind.startswith("h:") else None
            if f.admit(name, is_dir=kind == "d", hardlink_to=link) is Decision.WRITE:
                out[normalise(name)] = f"{kind[0]}{index}"
    return out


def bottom_up(layers: list[Layer]) -> dict[str, str]:
    """The spec's model: apply in order; a whiteout deletes the path and everything below it."""
    tree: dict[str, str] = {}

    def delete(path: str) -> None:
        for key in [k for k in tree if k == path or k.startswith(path + "/")]:
            del tree[key]

    for index, layer in enumerate(layers):
        opaque = [normalise(n).rpartition("/")[0] for n, _ in layer if n.endswith(".wh..wh..opq")]
        for d in opaque:
            for key in [k for k in tree if k.startswith(d + "/")]:
                del tree[key]
        for name, kind in layer:
            path = normalise(name)
            parent, _, base = path.rpartition("/")
            if base.startswith(".wh."):
                if not base.startswith(".wh..wh."):
                    delete(f"{parent}/{base[4:]}" if parent else base[4:])
                continue
            if path in tree and (kind != "d" or tree[path][0] != "d"):
                delete(path)  # a non-directory replaces whatever was there
            # a file replacing a parent directory's ancestor: remove what was under it
            for i in range(1, len(path.split("/"))):
                ancestor = "/".join(path.split("/")[:i])
                if ancestor in tree and tree[ancestor][0] != "d":
                    delete(ancestor)
            if kind == "d" and path in tree:
                continue  # an existing directory keeps its lower-layer identity for this model
            tree[path] = f"{kind[0]}{index}"
    return tree


CASES: dict[str, list[Layer]] = {
    "override a file": [[("a", "d"), ("a/x", "f")], [("a/x", "f")]],
    "whiteout a file": [[("a", "d"), ("a/x", "f"), ("a/y", "f")], [("a/.wh.x", "f")]],
    "whiteout a directory": [[("a", "d"), ("a/b", "d"), ("a/b/c", "f"), ("k", "f")], [("a/.wh.b", "f")]],
    "whiteout then recreate in a higher layer": [
        [("a", "d"), ("a/x", "f")],
        [(".wh.a", "f")],
        [("a", "d"), ("a/y", "f")],
    ],
    "opaque directory keeps its own layer's children": [
        [("a", "d"), ("a/old", "f"), ("a/sub", "d"), ("a/sub/z", "f")],
        [("a", "d"), ("a/.wh..wh..opq", "f"), ("a/new", "f")],
    ],
    "file replaces directory": [[("a", "d"), ("a/x", "f")], [("a", "f")]],
    "directory replaces file": [[("a", "f")], [(".wh.a", "f"), ("a", "d"), ("a/x", "f")]],
    "merged directories": [[("d", "d"), ("d/1", "f")], [("d", "d"), ("d/2", "f")], [("d/3", "f")]],
    "implicit parents": [[("x/y/z", "f")], [("x/y/w", "f")]],
    "leading ./ and trailing slashes": [[("./a/", "d"), ("./a/x", "f")], [("a/.wh.x", "f"), ("./a/y", "f")]],
    "aufs metadata ignored": [[("a", "f")], [(".wh..wh.plnk", "d"), (".wh..wh.plnk/1", "f")]],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_top_down_equals_bottom_up(name: str) -> None:
    layers = CASES[name]
    expected = with_parents({k: v for k, v in bottom_up(layers).items() if ".wh..wh." not in k})
    got = with_parents(top_down(layers))
    # Directories are compared by presence (the writer creates parents itself); files by layer too.
    assert {k: v[0] for k, v in got.items()} == {k: v[0] for k, v in expected.items()}
    for key, value in got.items():
        if value[0] != "d":
            assert value == expected[key], key


def with_parents(tree: dict[str, str]) -> dict[str, str]:
    out = dict(tree)
    for path in tree:
        parts = path.split("/")
        for i in range(1, len(parts)):
            out.setdefault("/".join(parts[:i]), "d")
    return out


def test_counts() -> None:
    f = LayerFilter()
    f.start_layer()
    f.admit("a/.wh.x", is_dir=False)
    f.admit("a/y", is_dir=False)
    f.start_layer()
    assert f.admit("a/x", is_dir=False) is Decision.SKIP
    assert f.admit("a/y", is_dir=False) is Decision.SKIP
    assert f.admit("a/z", is_dir=False) is Decision.WRITE
    assert (f.whiteouts, f.skipped) == (1, 2)


def test_hard_links_within_a_layer() -> None:
    f = LayerFilter()
    f.start_layer()
    assert f.admit("bin/perl", is_dir=False) is Decision.WRITE
    assert f.admit("bin/perl5", is_dir=False, hardlink_to="bin/perl") is Decision.WRITE


def test_hard_link_to_a_file_a_later_layer_replaced_is_refused() -> None:
    f = LayerFilter()
    f.start_layer()  # top layer replaced bin/perl only
    f.admit("bin/perl", is_dir=False)
    f.start_layer()
    assert f.admit("bin/perl", is_dir=False) is Decision.SKIP
    with pytest.raises(UnsafeArchiveError, match="hard link"):
        f.admit("bin/perl5", is_dir=False, hardlink_to="bin/perl")


@pytest.mark.parametrize("name", [".wh.", "a/.wh..", "a/.wh.."])
def test_invalid_whiteouts(name: str) -> None:
    f = LayerFilter()
    f.start_layer()
    with pytest.raises(UnsafeArchiveError, match="invalid whiteout"):
        f.admit(name, is_dir=False)


def test_whiteout_of_the_root_opaque() -> None:
    f = LayerFilter()
    f.start_layer()
    f.admit(".wh..wh..opq", is_dir=False)
    f.admit("top", is_dir=False)
    f.start_layer()
    assert f.admit("lower", is_dir=False) is Decision.SKIP
