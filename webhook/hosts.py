"""The package-url host allow-list: `files.example.com` matches exactly, `*.example.com` any subdomain."""

from __future__ import annotations

import ipaddress
import re
from typing import Final

_HOSTNAME: Final = re.compile(r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9_]*[a-z0-9])?)*$")


def host_allowed(host: str, patterns: list[str]) -> bool:
    """Whether `host` matches an allow-list entry; `*.example.com` matches subdomains, not the apex."""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.lower().rstrip(".")
        if pattern.startswith("*."):
            suffix = pattern[1:]
            if host.endswith(suffix) and len(host) > len(suffix):
                return True
        elif host == pattern.strip("[]"):
            return True
    return False


def pattern_problem(pattern: str) -> str | None:
    """None when `pattern` is a usable allow-list entry, else why not (checked when settings load)."""
    name = pattern.lower().rstrip(".")
    name = name[2:] if name.startswith("*.") else name
    try:
        ipaddress.ip_address(name.strip("[]"))
        return None
    except ValueError:
        pass
    if not _HOSTNAME.match(name):
        return f"{pattern!r} is not a host name or '*.domain' pattern (no scheme, port or path)"
    return None
