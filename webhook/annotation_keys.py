"""The annotation keys of package-injector, each documented where it is defined.

The keys are what users write on a Pod (or a workload's pod template); `settings.annotation_prefix`
may put a domain in front of them (`example.com/package-url`). This module holds only the names, so
anything that must spell a key (the webhook's validation in `annotations.py`, `check`'s probe Pod,
tests) imports it instead of retyping it; the values' rules live in `annotations.py`, and the README's
annotation table says the same for users.
"""

from __future__ import annotations

from typing import Final

URL: Final = "package-url"
"""The package to download (https://, http:// only where allowed); its presence triggers injection."""
SHA256: Final = "package-sha256"
"""The package's SHA-256 (64 hex digits, optionally `sha256:`); checked before anything is visible."""
MOUNT_PATH: Final = "package-mount-path"
"""Where the app containers see the package, read-only (default `settings.default_mount_path`)."""
CONTAINERS: Final = "package-containers"
"""Comma-separated names of the containers that get the mount (default: all app containers)."""
STRIP_COMPONENTS: Final = "package-strip-components"
"""Leading path components to drop from each archive member, like `tar --strip-components`."""
SECRET: Final = "package-secret"  # noqa: S105 - an annotation key, not a password
"""Name of a Secret in the Pod's namespace with username+password or token (and ca.crt) for the download."""
SIZE_LIMIT: Final = "package-size-limit"
"""sizeLimit of the emptyDir the package is unpacked into (a Kubernetes quantity, e.g. 2Gi)."""
INIT_POSITION: Final = "package-init-position"
"""`first` (default; after leading native sidecars) or `last`: where the init container goes."""
STATUS: Final = "package-status"
"""Written by the webhook, never by users: JSON saying what was injected, so a re-run converges."""

RESOURCE_NAMES: Final = ("cpu", "memory", "ephemeral-storage")
INIT_RESOURCES: Final = {
    f"package-init-{kind}-{name}": (kind, name) for kind in ("requests", "limits") for name in RESOURCE_NAMES
}
"""`package-init-requests-cpu` ... `package-init-limits-ephemeral-storage`: the downloader's own requests and
limits (quantities), each replacing one entry of `settings.init_resources`, capped by `max_init_resources`."""

USER_KEYS: Final = (
    URL,
    SHA256,
    MOUNT_PATH,
    CONTAINERS,
    STRIP_COMPONENTS,
    SECRET,
    SIZE_LIMIT,
    INIT_POSITION,
    *INIT_RESOURCES,
)
"""The keys users may set."""
ALL_KEYS: Final = (*USER_KEYS, STATUS)
NAMED_KEYS: Final = (URL, SHA256, MOUNT_PATH, CONTAINERS, STRIP_COMPONENTS, SECRET)
"""The keys that also describe a named package: `package-url.NAME` (which makes NAME a package of the
Pod) and the companions on the same suffix, `package-sha256.NAME` ... `package-secret.NAME`. The bare
keys stay the unnamed package; the other keys (size limit, init position, init resources) hold for the
whole Pod."""
NAME_SEPARATOR: Final = "."
"""Between a key of NAMED_KEYS and the package's name: `package-url.tools`."""
FAMILY_PREFIX: Final = "package-"
"""What every key starts with: an unknown key that does is reported as a probable typo."""
