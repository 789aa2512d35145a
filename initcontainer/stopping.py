"""Stopping every download of the run at once, from the SIGTERM/SIGINT handler.

Python runs signal handlers in the main thread only, and the exception the handler raises unwinds only that
thread. A single package downloads in the main thread, so that is enough; several packages download in
worker threads (`initcontainer.several`), which it never reaches. So the handler also sets this process-wide
flag, and every place a worker waits checks it: the consumer of a download between chunks and at least once
a second while it waits for one, a retry's backoff sleep, the start of each package and the start of
`promote`. The worker then unwinds as the main thread does: its staging directory is removed, nothing more
is promoted.
"""

from __future__ import annotations

import threading

from initcontainer.errors import Terminated

_requested = threading.Event()
_reason = ["stopped"]


def request(reason: str) -> None:
    """Ask every worker to stop; `reason` becomes their Terminated message."""
    _reason[0] = reason
    _requested.set()


def requested() -> bool:
    return _requested.is_set()


def check() -> None:
    """Raise Terminated when a stop was requested (an Event read: cheap enough for every chunk)."""
    if _requested.is_set():
        raise Terminated(_reason[0])


def reset() -> None:
    """A new run in the same process (the tests call `main()` more than once)."""
    _requested.clear()
    _reason[0] = "stopped"
