"""Every failure class of the init container, with the exit code the container ends with.

    Exception
     +-- PackageError ................ 1  base class; also what a bug is reported as (InternalError)
          +-- ConfigError ............ 2  PACKAGE_* variables, credentials dir, Python too old
          +-- TransportError ......... 3  DNS, TLS, http/https mismatch, timeouts, resets, 5xx/429 (retries)
          |    +-- RestartDownload ... 3  the server cannot resume: the caller starts over (internal)
          +-- HTTPClientError ........ 4  401, 403, 404, 410, other 4xx, refused redirects
          +-- IntegrityError ......... 5  checksum mismatch, not an archive, truncated, empty
          +-- UnsafeArchiveError ..... 6  traversal, escaping links, devices, bombs
          +-- LocalIOError ........... 7  destination read-only, full, no permission
          +-- Terminated ........... 143  SIGTERM/SIGINT: the Pod is being deleted

Raise the most specific class with a message that tells the user what to fix;
`main` turns it into the exit code and the one-line termination message
(`reason` is the class name users see there). The codes are part of the
contract (`contract.EXIT_*`, README "Exit codes").
"""

from __future__ import annotations

from typing import Any

from initcontainer import contract


class PackageError(Exception):
    """Base class: a failure the user can act on, with an exit code for its class."""

    exit_code: int = 1
    reason: str = "Error"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every subclass's `reason` is its own name, so a new class cannot forget or misspell it."""
        super().__init_subclass__(**kwargs)
        cls.reason = cls.__name__

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class ConfigError(PackageError):
    """The environment is wrong: missing or malformed PACKAGE_* variable, bad credentials dir."""

    exit_code = contract.EXIT_CONFIG


class TransportError(PackageError):
    """The server could not be reached or kept failing: DNS, TLS, timeouts, resets, 5xx, 429."""

    exit_code = contract.EXIT_TRANSPORT


class RestartDownload(TransportError):
    """The server cannot continue where we stopped: start over with a clean staging dir."""


class HTTPClientError(PackageError):
    """The server said no for good: 401, 403, 404, 410 and other 4xx."""

    exit_code = contract.EXIT_HTTP_CLIENT


class IntegrityError(PackageError):
    """The bytes are not the package: checksum mismatch, not an archive, truncated, empty."""

    exit_code = contract.EXIT_INTEGRITY


class UnsafeArchiveError(PackageError):
    """The archive tries something dangerous: traversal, escaping links, devices, bombs."""

    exit_code = contract.EXIT_UNSAFE_ARCHIVE


class LocalIOError(PackageError):
    """The destination cannot be written: read-only, full, permissions."""

    exit_code = contract.EXIT_LOCAL_IO


class Terminated(PackageError):
    """SIGTERM/SIGINT: the pod is being deleted; clean up and leave (128 + SIGTERM, as a shell reports it)."""

    exit_code = 143
