"""Safe, streaming extraction of tar (plain, gz, bz2, xz, zst) and zip packages: the entry point.

The work is split by responsibility:

- `decompress.py`: the decompressed byte stream (codecs, truncation, size cap);
- `untar.py`: tar headers and member data, straight from the stream's chunks;
- `unzip.py`: the zip path (spooled, since zip's directory is at its end);
- `tree.py`: the destination, where every safety rule on names, links, modes and
  budgets is enforced before anything touches the disk.

Durability: nothing is fsynced here; see `install.py` for why none is needed.
"""

from __future__ import annotations

import errno
import tarfile
from pathlib import Path

from initcontainer import contract, formats, hints
from initcontainer.decompress import Readable, SourceError
from initcontainer.errors import ConfigError, IntegrityError, LocalIOError, PackageError, UnsafeArchiveError
from initcontainer.tree import ExtractStats, Limits, Tree
from initcontainer.untar import extract_tar
from initcontainer.unzip import extract_zip

__all__ = ["ExtractStats", "Limits", "Readable", "extract", "require_data_filter"]


def require_data_filter() -> None:
    """Refuse to run on a Python whose tarfile has no extraction filters (< 3.11.4)."""
    if not hasattr(tarfile, "data_filter"):
        raise ConfigError(
            "this Python's tarfile has no data_filter (needs Python 3.11.4+ or 3.12+); "
            "refusing to extract without it"
        )


def extract(
    stream: Readable,
    staging: Path,
    *,
    fmt: str,
    limits: Limits | None = None,
    strip_components: int = 0,
) -> ExtractStats:
    """Extract the archive read from `stream` into the existing directory `staging`.

    `fmt` is what `formats.detect_format` returned for the stream's first bytes
    (those bytes must still be readable from `stream`). The stream is read
    sequentially and only as far as the archive goes (plus read-ahead of at most
    ~1 MiB); the caller drains and hashes the rest. Exceptions raised by
    `stream.read` propagate unchanged. Raises UnsafeArchiveError, IntegrityError,
    LocalIOError or ConfigError; on error, `staging` holds a partial tree for the
    caller to discard.
    """
    require_data_filter()
    limits = limits or Limits()
    if not 0 <= strip_components <= contract.MAX_STRIP_COMPONENTS:
        raise ConfigError(f"strip_components must be 0..{contract.MAX_STRIP_COMPONENTS}")
    tree = Tree(staging, limits, strip_components)
    try:
        if fmt == formats.ZIP:
            extract_zip(stream, tree, staging)
        else:
            extract_tar(stream, fmt, tree)
    except SourceError as exc:
        raise exc.original from None
    except OSError as exc:
        raise _local_io_error(exc, staging.parent) from exc
    if tree.stats.files == 0:
        raise IntegrityError("the package is empty: the archive holds no regular file")
    return tree.stats


def _local_io_error(exc: OSError, dest: Path) -> PackageError:
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.ENAMETOOLONG, errno.EILSEQ):
        return UnsafeArchiveError(f"the archive holds a name this filesystem cannot store{where}: {exc}")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return LocalIOError(hints.full_volume(exc, dest))
    return LocalIOError(f"cannot write the destination{where}: {exc.strerror or exc}")
