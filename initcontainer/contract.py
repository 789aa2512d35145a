"""The environment contract between the webhook and the init container.

Standard library only: the init container image ships this module, and the
webhook imports it, so both halves agree on names and defaults by construction.
Changing a name here is a breaking change for every running cluster.
"""

from __future__ import annotations

from typing import Final

# Names kept from the shell-script init container this project replaces, so
# existing users can switch without touching their manifests.
INIT_CONTAINER_NAME: Final = "package-downloader"
VOLUME_NAME: Final = "package-shared-volume"
DEFAULT_DEST: Final = "/shared-data/diff-var-files"
DEFAULT_IMAGE_NAME: Final = "package-init-container"

# Prefix shared by every variable; an unknown PACKAGE_* variable is a typo and
# the init container refuses to start on it.
ENV_PREFIX: Final = "PACKAGE_"

ENV_URL: Final = "PACKAGE_URL"
"""Required. The package to fetch (https://, or http:// when ENV_ALLOW_HTTP is true)."""
ENV_SHA256: Final = "PACKAGE_SHA256"
"""Optional. Expected SHA-256 of the downloaded bytes, 64 hex digits, `sha256:` prefix optional."""
ENV_DEST: Final = "PACKAGE_DEST"
"""Directory to fill (the shared volume's mount in the init container)."""
ENV_STRIP_COMPONENTS: Final = "PACKAGE_STRIP_COMPONENTS"
"""Leading path components to drop from every member, 0..32 (like tar --strip-components)."""
ENV_FORMAT: Final = "PACKAGE_FORMAT"
"""auto (magic bytes), tar, tar.gz, tar.bz2, tar.xz, tar.zst, zip."""
ENV_CREDENTIALS_DIR: Final = "PACKAGE_CREDENTIALS_DIR"
"""Directory holding `username`+`password` or `token`, and optionally `ca.crt` (a mounted Secret)."""
ENV_ALLOW_HTTP: Final = "PACKAGE_ALLOW_HTTP"
"""true to accept plain http:// URLs (the webhook sets it only where cluster policy allows)."""
ENV_INSECURE_SKIP_TLS_VERIFY: Final = "PACKAGE_INSECURE_SKIP_TLS_VERIFY"
"""true to turn TLS verification off. Never set by the webhook."""
ENV_MAX_DOWNLOAD_BYTES: Final = "PACKAGE_MAX_DOWNLOAD_BYTES"
ENV_MAX_EXTRACTED_BYTES: Final = "PACKAGE_MAX_EXTRACTED_BYTES"
ENV_MAX_FILES: Final = "PACKAGE_MAX_FILES"
ENV_CONNECT_TIMEOUT: Final = "PACKAGE_CONNECT_TIMEOUT"
ENV_READ_TIMEOUT: Final = "PACKAGE_READ_TIMEOUT"
ENV_TOTAL_TIMEOUT: Final = "PACKAGE_TOTAL_TIMEOUT"
ENV_RETRIES: Final = "PACKAGE_RETRIES"
ENV_TERMINATION_LOG: Final = "PACKAGE_TERMINATION_LOG"
ENV_LOG_FORMAT: Final = "PACKAGE_LOG_FORMAT"
"""json (default) or text."""
# Legacy variables of the shell-script version; still honoured, with a warning.
ENV_USERNAME: Final = "PACKAGE_USERNAME"
ENV_PASSWORD: Final = "PACKAGE_PASSWORD"  # noqa: S105 - a variable name, not a password

DEFAULT_CREDENTIALS_DIR: Final = "/var/run/secrets/package-injector/credentials"
CREDENTIAL_USERNAME: Final = "username"
CREDENTIAL_PASSWORD: Final = "password"  # noqa: S105 - a file name
CREDENTIAL_TOKEN: Final = "token"  # noqa: S105 - a file name
CREDENTIAL_CA: Final = "ca.crt"

DEFAULT_FORMAT: Final = "auto"
FORMATS: Final = ("auto", "tar", "tar.gz", "tar.bz2", "tar.xz", "tar.zst", "zip")
MAX_STRIP_COMPONENTS: Final = 32
DEFAULT_MAX_DOWNLOAD_BYTES: Final = 4 * 1024**3
DEFAULT_MAX_EXTRACTED_BYTES: Final = 16 * 1024**3
DEFAULT_MAX_FILES: Final = 200_000
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
DEFAULT_READ_TIMEOUT: Final = 30.0
DEFAULT_TOTAL_TIMEOUT: Final = 1800.0
DEFAULT_RETRIES: Final = 5
DEFAULT_TERMINATION_LOG: Final = "/dev/termination-log"

# What the init container leaves in DEST. Hidden names, so `ls` in the app shows
# only the package. The marker is written last: its presence means "complete".
MARKER_NAME: Final = ".package-injector.json"
STAGING_PREFIX: Final = ".package-staging-"

# Exit codes by failure class, so `kubectl describe pod` and alerts can tell
# "fix your URL" from "the server is down" without reading logs.
EXIT_OK: Final = 0
EXIT_CONFIG: Final = 2
EXIT_TRANSPORT: Final = 3
EXIT_HTTP_CLIENT: Final = 4
EXIT_INTEGRITY: Final = 5
EXIT_UNSAFE_ARCHIVE: Final = 6
EXIT_LOCAL_IO: Final = 7

KNOWN_ENV: Final = frozenset(
    {
        ENV_URL,
        ENV_SHA256,
        ENV_DEST,
        ENV_STRIP_COMPONENTS,
        ENV_FORMAT,
        ENV_CREDENTIALS_DIR,
        ENV_ALLOW_HTTP,
        ENV_INSECURE_SKIP_TLS_VERIFY,
        ENV_MAX_DOWNLOAD_BYTES,
        ENV_MAX_EXTRACTED_BYTES,
        ENV_MAX_FILES,
        ENV_CONNECT_TIMEOUT,
        ENV_READ_TIMEOUT,
        ENV_TOTAL_TIMEOUT,
        ENV_RETRIES,
        ENV_TERMINATION_LOG,
        ENV_LOG_FORMAT,
        ENV_USERNAME,
        ENV_PASSWORD,
    }
)

# One line per variable, for `package-init --help` (the full reference is docs/init-container.md).
ENV_SUMMARY: Final = {
    ENV_URL: "the package to fetch (required; https://, or http:// with PACKAGE_ALLOW_HTTP=true)",
    ENV_SHA256: "expected SHA-256 of the download (64 hex digits, sha256: prefix optional)",
    ENV_DEST: f"directory to fill (default {DEFAULT_DEST})",
    ENV_STRIP_COMPONENTS: f"leading path components to drop, 0..{MAX_STRIP_COMPONENTS} (default 0)",
    ENV_FORMAT: f"{', '.join(FORMATS)} (default {DEFAULT_FORMAT}: from the first bytes)",
    ENV_CREDENTIALS_DIR: f"a mounted Secret: username+password or token, optional ca.crt "
    f"(default {DEFAULT_CREDENTIALS_DIR})",
    ENV_ALLOW_HTTP: "true to accept http:// URLs (default false)",
    ENV_INSECURE_SKIP_TLS_VERIFY: "true turns TLS verification off (default false; never set by the webhook)",
    ENV_MAX_DOWNLOAD_BYTES: "largest download, e.g. 4Gi (default 4Gi)",
    ENV_MAX_EXTRACTED_BYTES: "largest extracted total (default 16Gi)",
    ENV_MAX_FILES: f"most archive entries (default {DEFAULT_MAX_FILES})",
    ENV_CONNECT_TIMEOUT: f"seconds to connect, or 10s/1m (default {DEFAULT_CONNECT_TIMEOUT:g})",
    ENV_READ_TIMEOUT: f"seconds without a byte before the link is lost (default {DEFAULT_READ_TIMEOUT:g})",
    ENV_TOTAL_TIMEOUT: f"deadline of the whole run, retries included (default {DEFAULT_TOTAL_TIMEOUT:g})",
    ENV_RETRIES: f"consecutive transient failures tolerated (default {DEFAULT_RETRIES})",
    ENV_TERMINATION_LOG: f"file for the JSON failure reason (default {DEFAULT_TERMINATION_LOG} if it exists)",
    ENV_LOG_FORMAT: "json (default) or text",
    ENV_USERNAME: "legacy basic-auth user (prefer a Secret in PACKAGE_CREDENTIALS_DIR)",
    ENV_PASSWORD: "legacy basic-auth password (visible in the pod spec: prefer a Secret)",
}
EXIT_SUMMARY: Final = {
    EXIT_OK: "installed, or already installed",
    1: "internal error (a bug: please report it with the log)",
    EXIT_CONFIG: "configuration: a PACKAGE_* variable is missing, unknown or invalid",
    EXIT_TRANSPORT: "transport: DNS, connection, TLS, timeout, retries used up",
    EXIT_HTTP_CLIENT: "HTTP 4xx: wrong URL, credentials or permissions",
    EXIT_INTEGRITY: "integrity: checksum mismatch, not an archive, truncated, too large",
    EXIT_UNSAFE_ARCHIVE: "unsafe archive: absolute or .. paths, links out of the tree, devices, bombs",
    EXIT_LOCAL_IO: "local I/O: the volume is full or not writable",
}
