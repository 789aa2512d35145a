"""The package-url allow-list: `files.example.com` matches exactly, `*.example.com` any subdomain.

`s3://` URLs are matched by bucket, against entries written `s3://BUCKET` (or
`s3://*` for any bucket); host entries never admit them, since a bucket may be
named like a host (`files.example.com`) without being served by it. The S3
endpoint itself comes from the Pod's Secret or the cluster setting `s3_endpoint`,
which the webhook cannot see or does not need to check.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from initcontainer.contract import S3_SCHEME, s3_bucket_problem

S3_PREFIX: Final = f"{S3_SCHEME}://"

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


def bucket_allowed(bucket: str, patterns: list[str]) -> bool:
    """Whether an `s3://BUCKET` (or `s3://*`) entry admits `bucket`."""
    return any(p in (f"{S3_PREFIX}{bucket}", f"{S3_PREFIX}*") for p in patterns)


def pattern_problem(pattern: str) -> str | None:
    """None when `pattern` is a usable allow-list entry, else why not (checked when settings load)."""
    if pattern.startswith(S3_PREFIX):
        bucket = pattern[len(S3_PREFIX) :]
        problem = None if bucket == "*" else s3_bucket_problem(bucket)
        return f"{pattern!r}: {problem}" if problem else None
    name = pattern.lower().rstrip(".")
    name = name[2:] if name.startswith("*.") else name
    try:
        ipaddress.ip_address(name.strip("[]"))
        return None
    except ValueError:
        pass
    if not _HOSTNAME.match(name):
        return f"{pattern!r} is not a host name, '*.domain' pattern (no scheme, port or path) or s3://BUCKET"
    return None
