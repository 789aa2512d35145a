"""Flattening image layers: which entries of each layer survive, whiteouts honoured.

Layers are applied top-down (the last layer first), so nothing is ever deleted
or overwritten on disk: an entry is written only when no layer above it has
put something at its path, deleted it (`.wh.NAME`), hidden its directory's
lower content (`.wh..wh..opq`), or replaced one of its parent directories with
a non-directory. The result is what applying the layers bottom-up with
deletions gives (and what `crane export` prints), but every write still goes
through the one safe extraction path, which never replaces or removes.

Whiteout semantics (OCI image spec, "Representing Changes"): a whiteout in
layer N hides the path in layers below N only; an opaque marker in directory D
of layer N hides the lower layers' children of D, keeping D itself and layer N's
own children. Whiteout files themselves are never written. Other `.wh..wh.`
names (aufs bookkeeping such as `.wh..wh.plnk`) are ignored with what is under them.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from initcontainer.errors import UnsafeArchiveError

WHITEOUT_PREFIX: Final = ".wh."
OPAQUE: Final = ".wh..wh..opq"
META_PREFIX: Final = ".wh..wh."


class Decision(Enum):
    WRITE = "write"
    SKIP = "skip"


def normalise(name: str) -> str:
    """A member name as a plain relative path: no leading `./` or `/`, no empty or `.` parts."""
    return "/".join(p for p in name.replace("\\", "/").split("/") if p not in ("", "."))


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


def _ancestors(path: str) -> list[str]:
    """Strict ancestors of `a/b/c`: ['a', 'a/b']."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


class LayerFilter:
    """Decides, for layers fed from the top down, which entries reach the filesystem.

    Call `start_layer()` before each layer's entries (last layer first) and
    `admit()` for every entry in archive order.
    """

    def __init__(self) -> None:
        self._upper: dict[str, bool] = {}  # path -> is_dir, written (or implied) by layers above
        self._deleted: set[str] = set()  # whited out by layers above: the path and all below it
        self._opaque: set[str] = set()  # directories whose lower children are hidden
        self._current: dict[str, bool] = {}
        self._pending_deleted: set[str] = set()
        self._pending_opaque: set[str] = set()
        self._layer = -1
        self.skipped = 0
        self.whiteouts = 0

    def start_layer(self) -> None:
        """Seal the layer just read (its entries and whiteouts now hide lower ones) and begin the next."""
        for path, is_dir in self._current.items():
            self._upper.setdefault(path, is_dir)
        self._deleted |= self._pending_deleted
        self._opaque |= self._pending_opaque
        self._current = {}
        self._pending_deleted = set()
        self._pending_opaque = set()
        self._layer += 1

    def _hidden(self, path: str) -> bool:
        """Whether a layer above deleted, hid or already wrote `path` (then the upper entry wins)."""
        if path in self._upper or path in self._deleted or "" in self._opaque:
            return True
        for ancestor in _ancestors(path):
            if ancestor in self._deleted or ancestor in self._opaque:
                return True
            if self._upper.get(ancestor) is False:  # replaced by a file or link above
                return True
        return False

    def admit(self, name: str, *, is_dir: bool, hardlink_to: str | None = None) -> Decision:
        """WRITE or SKIP for one entry of the current layer; whiteout entries are recorded and skipped.

        A directory that a layer above already has is skipped too: it exists, and
        the lower layer's children of it still merge in.
        """
        path = normalise(name)
        if not path:
            return Decision.SKIP
        base = path.rpartition("/")[2]
        if any(part.startswith(META_PREFIX) for part in path.split("/")[:-1]):
            return Decision.SKIP  # inside aufs bookkeeping (`.wh..wh.plnk/...`)
        if base.startswith(WHITEOUT_PREFIX):
            self.whiteouts += 1
            if base == OPAQUE:
                self._pending_opaque.add(_parent(path))
            elif not base.startswith(META_PREFIX):
                target = base[len(WHITEOUT_PREFIX) :]
                if target in ("", ".", ".."):
                    raise UnsafeArchiveError(f"image layer holds an invalid whiteout {name[:200]!r}")
                parent = _parent(path)
                self._pending_deleted.add(f"{parent}/{target}" if parent else target)
            return Decision.SKIP
        if self._hidden(path):
            self.skipped += 1
            return Decision.SKIP
        if hardlink_to is not None:
            target = normalise(hardlink_to)
            if self._current.get(target) is not False:
                raise UnsafeArchiveError(
                    f"image layer hard link {path[:200]!r} -> {target[:200]!r}: the target is not a file "
                    "of the same layer that survives the layers above (a later layer replaced it); "
                    "flatten the image or avoid hard links across changed files"
                )
        for ancestor in _ancestors(path):
            self._current.setdefault(ancestor, True)
        if is_dir:
            self._current.setdefault(path, True)
        else:
            self._current[path] = False
        return Decision.WRITE
