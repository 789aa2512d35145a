"""Registry credentials from `.dockerconfigjson` files, matched the way the kubelet matches pull secrets.

The rules are those of the kubelet's credential keyring (pkg/credentialprovider),
so a Pod's own image pull secrets give the init container the same credentials
its image pulls get:

- A key may carry a scheme (`https://`), which is ignored, and a path; a path of
  `/v1/` or `/v2/` (Docker's legacy index URLs) counts as the bare host.
- A key matches an image name when the ports are equal, the host names have the
  same number of dot-separated labels and each label matches as a shell glob
  (`*.example.com` matches `a.example.com`, not `example.com` or `a.b.example.com`),
  and the key's path is a string prefix of the image's path.
- All matching keys are candidates, most specific first (keys sorted in reverse);
  the kubelet tries each until a pull succeeds, and so do we.
- When no key matches a Docker Hub image, the entry for `index.docker.io` (what
  `docker login` writes) is used.
- Each file is a keyring of its own; several files are searched in turn, as the
  kubelet searches a Pod's image pull secrets in turn.

Both the `{"auths": {...}}` layout and the legacy `.dockercfg` layout (the map
itself) are read; `auth` (base64 of `user:password`) or `username`+`password`
give Basic credentials, `identitytoken` a refresh token for the token endpoint.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from initcontainer.errors import ConfigError

DOCKER_HUB_INDEX_HOST = "index.docker.io"
MAX_CONFIG_BYTES = 1 << 20


@dataclass(frozen=True)
class RegistryCredential:
    """One candidate: Basic username/password or an identity (refresh) token; repr hides secrets."""

    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)
    source: str = ""
    """Where it came from (file and key), for logs; never the secret."""

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.password, self.identity_token) if s)


@dataclass(frozen=True)
class _Entry:
    key: str  # schemeless host[:port][/path]
    credential: RegistryCredential


def _effective_key(loc: str) -> str | None:
    """`https://host:5000/v2/` -> `host:5000`; `host/ns` -> `host/ns`; None when it cannot be parsed."""
    value = loc if loc.startswith(("https://", "http://")) else "https://" + loc
    try:
        parts = urllib.parse.urlsplit(value)
        _ = parts.port
    except ValueError:
        return None
    path = parts.path
    if path.startswith(("/v2/", "/v1/")):
        path = path[3:]
    if not parts.netloc:
        return None
    return parts.netloc + path if path and path != "/" else parts.netloc


def _split(target: str) -> tuple[list[str], str, str]:
    """host labels, port, path of a schemeless `host[:port][/path]`."""
    parts = urllib.parse.urlsplit("dummy://" + target)
    host = parts.hostname or ""
    try:
        port = str(parts.port) if parts.port is not None else ""
    except ValueError:
        port = "invalid"
    return host.split("."), port, parts.path


def urls_match(glob_key: str, target: str) -> bool:
    """The kubelet's URLsMatch: same port, same label count, glob per label, path prefix."""
    glob_labels, glob_port, glob_path = _split(glob_key)
    labels, port, path = _split(target)
    if glob_port != port or len(glob_labels) != len(labels):
        return False
    if not path.startswith(glob_path):
        return False
    return all(fnmatch.fnmatchcase(t, g) for g, t in zip(glob_labels, labels, strict=True))


def is_docker_hub_image(name: str) -> bool:
    """The kubelet's isDefaultRegistryMatch for a normalised or short image name."""
    first, sep, _ = name.partition("/")
    if not first:
        return False
    if not sep or first in ("docker.io", DOCKER_HUB_INDEX_HOST):
        return True
    return not any(c in first for c in ".:")


class Keyring:
    """The entries of one `.dockerconfigjson`, index sorted so more specific keys come first."""

    def __init__(self, entries: Iterable[_Entry]) -> None:
        self._by_key: dict[str, list[RegistryCredential]] = {}
        for entry in entries:
            self._by_key.setdefault(entry.key, []).append(entry.credential)
        self._index = sorted(self._by_key, reverse=True)

    def lookup(self, image: str) -> list[RegistryCredential]:
        """Candidates for `image` (`registry/repository`), in the order to try them."""
        found: list[RegistryCredential] = []
        for key in self._index:
            if urls_match(key, image):
                found.extend(self._by_key[key])
        if not found and is_docker_hub_image(image):
            found.extend(self._by_key.get(DOCKER_HUB_INDEX_HOST, []))
        return found


def parse_dockerconfig(text: str, source: str) -> Keyring:
    """Read one `.dockerconfigjson` (or legacy `.dockercfg`); errors name the file and key, never secrets."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"{source} is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a JSON object")
    auths = data.get("auths", data) if "auths" in data else data
    if not isinstance(auths, dict):
        raise ConfigError(f"{source}: 'auths' must be an object")
    entries: list[_Entry] = []
    for loc, ident in auths.items():
        if not isinstance(loc, str) or not isinstance(ident, dict):
            continue
        key = _effective_key(loc)
        if key is None:
            continue  # the kubelet logs and ignores such an entry
        entries.append(_Entry(key, _credential(ident, f"{source} [{key}]")))
    return Keyring(entries)


def _credential(ident: dict[str, object], source: str) -> RegistryCredential:
    def text(name: str) -> str | None:
        value = ident.get(name)
        return value if isinstance(value, str) and value else None

    username, password = text("username"), text("password")
    auth = text("auth")
    if auth is not None:
        try:
            decoded = base64.b64decode(auth, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ConfigError(f"{source}: 'auth' is not base64 of user:password") from None
        user, sep, pw = decoded.partition(":")
        if not sep:
            raise ConfigError(f"{source}: 'auth' does not decode to user:password")
        username, password = user, pw
    token = text("identitytoken")
    if username is not None and ":" in username:
        raise ConfigError(f"{source}: the username must not contain ':'")
    return RegistryCredential(username=username, password=password, identity_token=token, source=source)


def load_keyrings(paths: Iterable[Path]) -> list[Keyring]:
    """Read each file; a file that is too big, unreadable or malformed is a ConfigError naming it."""
    keyrings = []
    for path in paths:
        try:
            with path.open("rb") as f:
                raw = f.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc.__class__.__name__}") from None
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{path} is not UTF-8") from None
        keyrings.append(parse_dockerconfig(text, str(path)))
    return keyrings


def lookup(keyrings: Iterable[Keyring], image: str) -> list[RegistryCredential]:
    """Candidates from every keyring in turn (the order of the Pod's image pull secrets)."""
    found: list[RegistryCredential] = []
    for keyring in keyrings:
        found.extend(keyring.lookup(image))
    return found
