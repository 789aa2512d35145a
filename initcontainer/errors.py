"""Failure classes of the init container, each with its exit code.

Raise the most specific class with a message that tells the user what to fix;
the entry point turns it into the exit code and the termination message.
"""

from __future__ import annotations

from initcontainer import contract


class PackageError(Exception):
    """Base class: a failure the user can act on, with an exit code for its class."""

    exit_code: int = 1
    reason: str = "Error"

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class ConfigError(PackageError):
    """The environment is wrong: missing or malformed PACKAGE_* variable, bad credentials dir."""

    exit_code = contract.EXIT_CONFIG
    reason = "ConfigError"


class TransportError(PackageError):
    """The server could not be reached or kept failing: DNS, TLS, timeouts, resets, 5xx, 429."""

    exit_code = contract.EXIT_TRANSPORT
    reason = "TransportError"


class HTTPClientError(PackageError):
    """The server said no for good: 401, 403, 404, 410 and other 4xx."""

    exit_code = contract.EXIT_HTTP_CLIENT
    reason = "HTTPClientError"


class IntegrityError(PackageError):
    """The bytes are not the package: checksum mismatch, not an archive, truncated, empty."""

    exit_code = contract.EXIT_INTEGRITY
    reason = "IntegrityError"


class UnsafeArchiveError(PackageError):
    """The archive tries something dangerous: traversal, escaping links, devices, bombs."""

    exit_code = contract.EXIT_UNSAFE_ARCHIVE
    reason = "UnsafeArchiveError"


class LocalIOError(PackageError):
    """The destination cannot be written: read-only, full, permissions."""

    exit_code = contract.EXIT_LOCAL_IO
    reason = "LocalIOError"
