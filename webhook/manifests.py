"""Manifest input for the offline commands (`inject`, `explain`): files, directories and stdin, like kubectl.

`-f` may be repeated; a directory contributes its `.yaml`, `.yml` and `.json` files in name order (not
recursively, as `kubectl apply -f DIR` without `-R`); `-` is stdin. Every source is read before anything
is written, so an unreadable file stops the run with nothing half-printed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

MANIFEST_SUFFIXES: Final = (".yaml", ".yml", ".json")


class ManifestError(Exception):
    """A source cannot be read: the message names it."""


@dataclass(frozen=True)
class Source:
    """One manifest file's text and the name to show in messages."""

    name: str
    text: str


def expand(paths: list[str]) -> list[str]:
    """The files behind `paths`, in order: directories give their manifest files sorted by name."""
    files: list[str] = []
    for path in paths:
        if path == "-":
            files.append(path)
            continue
        p = Path(path)
        if p.is_dir():
            found = sorted(str(c) for c in p.iterdir() if c.is_file() and c.suffix in MANIFEST_SUFFIXES)
            if not found:
                raise ManifestError(f"{path}: the directory holds no {', '.join(MANIFEST_SUFFIXES)} files")
            files += found
        else:
            files.append(path)
    if files.count("-") > 1:
        raise ManifestError("stdin (-) can be read only once")
    return files


def read_sources(paths: list[str]) -> list[Source]:
    """The text of every file named by `paths` (see `expand`)."""
    sources = []
    for name in expand(paths):
        if name == "-":
            try:
                sources.append(Source("<stdin>", sys.stdin.buffer.read().decode("utf-8")))
            except UnicodeDecodeError:
                raise ManifestError("cannot read <stdin>: not UTF-8 text") from None
            continue
        try:
            sources.append(Source(name, Path(name).read_text(encoding="utf-8")))
        except OSError as exc:
            raise ManifestError(f"cannot read {name}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ManifestError(f"cannot read {name}: not UTF-8 text") from None
    return sources
