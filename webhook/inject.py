"""THE injection: a pure function from a pod (or pod template) to the injected copy plus warnings.

Shared by the webhook, the offline `package-injector inject` command and the
tests. It converges: each injected piece is compared with what is already in the
pod; a piece that already says what we want is left untouched (including fields
the apiserver defaulted and what other admission plugins added), a piece of ours
that differs gets our fields rewritten, and a foreign piece with one of our names
is a conflict and denied. So running it on its own output is a no-op, and under
`reinvocationPolicy: IfNeeded` a container added by a later webhook gets its mount.

What counts as ours. Other admission plugins and webhooks add to every container,
ours included: the ServiceAccount plugin a token volumeMount (and it runs again
after our patch), pod-identity webhooks env and a projected-token mount, LimitRanger
resources, the apiserver defaulted fields. So ownership rests on marks no one else
writes, and within our pieces we own only the fields we write:

- the init container named `package-downloader` is ours when the status annotation
  names it (or it already carries exactly what we would write), it runs its image's
  entrypoint (no command, args, ports, probes, lifecycle or restartPolicy), its env
  has `PACKAGE_URL` or `PACKAGE_LIST` and it mounts `package-shared-volume` or a named
  package's `package-shared-volume-NAME`. We own its image,
  imagePullPolicy, resources (the requests and limits we configure: a resource we
  do not set keeps what others, e.g. LimitRanger, gave it), securityContext and
  terminationMessagePolicy (rewritten whole when they differ), the env entries
  named `PACKAGE_*` or configured in `init_env`/`init_proxy_env`, and the mounts of
  our volumes (those we inject now and those the status lists, so a removed
  package's mounts go). Every other env,
  envFrom, volumeMount or field is someone else's: kept, in place, never removed.
  Changes by others accepted as saying the same: our image's name and tag
  under another registry or project (a registry mirror) or pinned with `@sha256:`,
  `imagePullPolicy: Always` (the AlwaysPullImages plugin), and a securityContext at
  least as strict as ours (a policy engine's UID, seccomp profile, dropped
  capabilities): rewriting them would undo those controls on reinvocation. The
  image is not a mark of ownership (upgrades change it); a piece we adopt ends up
  running the configured image (or such a form of it) and our env.
- the emptyDir volume `package-shared-volume` is ours by name and type alone (it
  holds nothing before the pod starts, and the name is our contract's): an earlier
  injection's `emptyDir: {}` gets the sizeLimit configured now; a sizeLimit is kept
  when none is configured. Any other volume type with that name is foreign.
- the Secret volume `package-credentials`, the projected volume `package-pull-secrets`
  (oci:// without `package-secret`: the pod's own imagePullSecrets, `NAME/.dockerconfigjson`
  each, for the init container only) and the read-only package mounts in app
  containers are ours when the status annotation lists them and they have the shape
  we inject (a Secret; a projected volume; a read-only mount without subPath).
- named packages (`package-url.NAME`): the emptyDir `package-shared-volume-NAME` and the
  Secret volume `package-credentials-NAME` are ours when the status lists them with that
  type (never by name alone: a user's volume of that name is a conflict), and a read-only
  mount of `package-shared-volume-NAME` in an app container when the status's record of
  package NAME (`packages`: name, volume, containers) names that container. A volume or
  mount of ours that the annotations no longer ask for (its package's key removed, a
  container dropped from `package-containers.NAME`) is removed; so is everything when no
  `package-url` key of any name is left.

A hand-written status annotation cannot turn a user's hostPath volume or own init
container (one with a command, or without our env and mount) into something we
overwrite. When every `package-url` key is removed from a pod that
carries our status (a dump of an injected pod, a manifest fed to `inject`),
our pieces and the status are removed: the output converges either way.
Pull secrets from `init_image_pull_secrets` are appended to `imagePullSecrets`
unless the pod lists them already; the status records only the entries we
appended, so only those are ever removed again.

Env values are written with every `$` doubled: the kubelet expands `$(VAR)` and
collapses `$$` in `env[].value`, so the init container sees exactly the validated
value (it does not unescape anything itself).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any, Final

from initcontainer import contract
from webhook import annotations as ann
from webhook import limits
from webhook.annotations import Denied, NamedPackage, PackageRequest
from webhook.quantity import same_quantity
from webhook.settings import RESERVED_INIT_ENV, Settings, is_dns_subdomain

__all__ = ["CREDENTIALS_VOLUME", "PULL_SECRETS_VOLUME", "Denied", "InjectionResult", "inject"]

CREDENTIALS_VOLUME: Final = "package-credentials"
PULL_SECRETS_VOLUME: Final = "package-pull-secrets"
"""oci:// without package-secret: the Pod's own image pull secrets, one `NAME/.dockerconfigjson` each."""
# Fields whose values are quantities: the apiserver re-serializes them (1024Mi -> 1Gi).
_QUANTITY_FIELDS: Final = frozenset({"resources", "sizeLimit"})

Obj = dict[str, Any]


@dataclass(frozen=True)
class InjectionResult:
    """The pod copy (changed or not), warnings for the user, and whether the pod asked for a package."""

    pod: Obj
    warnings: tuple[str, ...]
    requested: bool
    changed: bool


def covers(existing: Any, desired: Any, quantity: bool = False) -> bool:
    """Whether `existing` already says everything `desired` says (extra, e.g. defaulted, fields allowed)."""
    if isinstance(desired, dict):
        return isinstance(existing, dict) and all(
            k in existing and covers(existing[k], v, quantity or k in _QUANTITY_FIELDS)
            for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(existing, list)
            and len(existing) == len(desired)
            and all(covers(e, d, quantity) for e, d in zip(existing, desired, strict=True))
        )
    if quantity and isinstance(desired, str) and isinstance(existing, str):
        return existing == desired or same_quantity(existing, desired)
    return bool(existing == desired) and type(existing) is type(desired)


def _as_list(parent: Obj, key: str, what: str) -> list[Any]:
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise Denied(f"{what} must be a list of objects", 400, "malformed-object")
    return value


def _registry_pull_secrets(spec: Obj, request: PackageRequest, settings: Settings) -> list[str]:
    """The Pod's imagePullSecrets the init container gets for an oci:// package without package-secret.

    The kubelet pulls the Pod's images with these; the same credentials fetch its package. The
    secrets the webhook adds for its own init image (`init_image_pull_secrets`) are not passed on.
    """
    if request.secret or request.url is None or not contract.is_oci_url(request.url):
        return []
    entries = spec.get("imagePullSecrets")
    if not isinstance(entries, list):
        return []
    names: list[str] = []
    for entry in entries:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not is_dns_subdomain(name):
            continue
        if name not in names and name not in settings.init_image_pull_secrets:
            names.append(name)
    return names


def named_volume(package: NamedPackage) -> str:
    """The emptyDir of a named package: `package-shared-volume-NAME` (NAME as a DNS label)."""
    return f"{contract.VOLUME_NAME}-{ann.volume_suffix(package.name)}"


def named_credentials_volume(package: NamedPackage) -> str:
    """The Secret volume of a named package's `package-secret.NAME`: `package-credentials-NAME`."""
    return f"{CREDENTIALS_VOLUME}-{ann.volume_suffix(package.name)}"


def package_list(packages: Iterable[NamedPackage]) -> str:
    """PACKAGE_LIST (initcontainer/contract.py): one object per named package, only the fields it needs."""
    entries: list[Obj] = []
    for package in packages:
        entry: Obj = {"name": package.name, "url": package.url, "dest": contract.named_dest(package.name)}
        if package.sha256:
            entry["sha256"] = package.sha256
        if package.strip_components:
            entry["stripComponents"] = package.strip_components
        if package.secret:
            entry["credentialsDir"] = contract.named_credentials_dir(package.name)
        entries.append(entry)
    return json.dumps(entries, separators=(",", ":"))


def _env(request: PackageRequest, settings: Settings, pull_secrets: list[str]) -> list[Obj]:
    """The unnamed package in PACKAGE_URL etc. (as ever), the named ones in PACKAGE_LIST."""
    env: list[tuple[str, str]] = []
    if request.url is not None:
        env.append((contract.ENV_URL, request.url))
        if request.sha256:
            env.append((contract.ENV_SHA256, request.sha256))
        env.append((contract.ENV_DEST, contract.DEFAULT_DEST))
        if request.strip_components:
            env.append((contract.ENV_STRIP_COMPONENTS, str(request.strip_components)))
        if request.secret or pull_secrets:
            env.append((contract.ENV_CREDENTIALS_DIR, contract.DEFAULT_CREDENTIALS_DIR))
    if request.packages:
        env.append((contract.ENV_PACKAGE_LIST, package_list(request.packages)))
    if request.allow_http or any(p.allow_http for p in request.packages):
        env.append((contract.ENV_ALLOW_HTTP, "true"))
    urls = [u for u in (request.url, *(p.url for p in request.packages)) if u is not None]
    if any(u[:5].lower() == f"{contract.S3_SCHEME}://" for u in urls):
        for name, value in (
            (contract.ENV_S3_REGION, settings.s3_region),
            (contract.ENV_S3_ENDPOINT, settings.s3_endpoint),
            (contract.ENV_STS_ENDPOINT, settings.sts_endpoint),
        ):
            if value:
                env.append((name, value))
    env += sorted((k, v) for k, v in settings.init_env.items() if k not in RESERVED_INIT_ENV)
    env += sorted(settings.init_proxy_env.items())
    return [{"name": k, "value": kubelet_escape(v)} for k, v in env]


def kubelet_escape(value: str) -> str:
    """`value` as written into `env[].value` so that the kubelet's `$(VAR)` expansion yields it unchanged.

    The kubelet turns `$$` into `$` and `$(NAME)` into NAME's value; doubling every `$` leaves no
    reference and no lone `$` for it to act on."""
    return value.replace("$", "$$")


def our_env_names(settings: Settings) -> frozenset[str]:
    """Env names we own in the init container: every PACKAGE_* of the contract (init_env allows only those)
    and the configured proxy variables; other webhooks' names (a proxy injector's too) stay theirs."""
    return contract.KNOWN_ENV | settings.init_proxy_env.keys()


def _security_context(spec: Obj, settings: Settings) -> tuple[Obj, list[str]]:
    """PSS-restricted; the UID/GID from settings only when the pod sets none (or runs as root).

    Pod-level runAsUser, runAsGroup, runAsNonRoot and fsGroup apply to this container unchanged, so a pod
    that sets them keeps its identity; ours always says runAsNonRoot, so PSS `restricted` holds either way.
    """
    sc: Obj = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    pod_sc = spec.get("securityContext") if isinstance(spec.get("securityContext"), dict) else {}
    assert isinstance(pod_sc, dict)
    pod_uid, pod_gid = pod_sc.get("runAsUser"), pod_sc.get("runAsGroup")
    warnings = []
    if pod_uid is None or pod_uid == 0:
        if settings.init_run_as_user is not None:
            sc["runAsUser"] = settings.init_run_as_user
        # A group the pod chose (other than root's) is kept, like its UID: it may own the app's files.
        if settings.init_run_as_group is not None and (pod_gid is None or pod_gid == 0):
            sc["runAsGroup"] = settings.init_run_as_group
        if pod_uid == 0:
            uid = settings.init_run_as_user
            who = f"UID {uid}" if uid is not None else "the image's non-root user"
            warnings.append(
                ann.for_user(
                    f"the pod runs as root (runAsUser: 0); {contract.INIT_CONTAINER_NAME} runs as {who}"
                )
            )
    return sc, warnings


def _init_container(
    spec: Obj, request: PackageRequest, settings: Settings, pull_secrets: list[str]
) -> tuple[Obj, list[str]]:
    mounts: list[Obj] = []
    if request.url is not None:
        mounts.append({"name": contract.VOLUME_NAME, "mountPath": contract.DEFAULT_DEST})
    if request.secret:
        mounts.append(
            {"name": CREDENTIALS_VOLUME, "mountPath": contract.DEFAULT_CREDENTIALS_DIR, "readOnly": True}
        )
    elif pull_secrets:
        mounts.append(
            {"name": PULL_SECRETS_VOLUME, "mountPath": contract.DEFAULT_CREDENTIALS_DIR, "readOnly": True}
        )
    for package in request.packages:
        mounts.append({"name": named_volume(package), "mountPath": contract.named_dest(package.name)})
        if package.secret:
            mounts.append(
                {
                    "name": named_credentials_volume(package),
                    "mountPath": contract.named_credentials_dir(package.name),
                    "readOnly": True,
                }
            )
    security_context, warnings = _security_context(spec, settings)
    container: Obj = {
        "name": contract.INIT_CONTAINER_NAME,
        "image": settings.init_image,
        "imagePullPolicy": settings.init_image_pull_policy,
        "env": _env(request, settings, pull_secrets),
        # A fresh dict two levels deep: a deep copy, without copy.deepcopy's cost.
        "resources": ann.init_resources(request.init_resources, settings),
        "securityContext": security_context,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": mounts,
    }
    return container, warnings


def _volumes(request: PackageRequest, pull_secrets: list[str]) -> list[Obj]:
    """The unnamed package's volumes, then each named package's: its emptyDir (the Pod's sizeLimit applies
    to each) and its Secret."""
    empty_dir: Obj = {"sizeLimit": request.size_limit} if request.size_limit else {}
    volumes: list[Obj] = []
    if request.url is not None:
        volumes.append({"name": contract.VOLUME_NAME, "emptyDir": empty_dir})
    if request.secret:
        volumes.append({"name": CREDENTIALS_VOLUME, "secret": {"secretName": request.secret}})
    elif pull_secrets:
        # One directory per Secret, named after it; `optional` because a pull secret of another type
        # (`.dockercfg`) or one that does not exist must not stop the Pod (the kubelet only warns).
        sources = [
            {
                "secret": {
                    "name": name,
                    "items": [
                        {
                            "key": contract.CREDENTIAL_DOCKERCONFIG,
                            "path": f"{name}/{contract.CREDENTIAL_DOCKERCONFIG}",
                        }
                    ],
                    "optional": True,
                }
            }
            for name in pull_secrets
        ]
        volumes.append({"name": PULL_SECRETS_VOLUME, "projected": {"sources": sources}})
    for package in request.packages:
        volumes.append({"name": named_volume(package), "emptyDir": dict(empty_dir)})
        if package.secret:
            secret = {"secretName": package.secret}
            volumes.append({"name": named_credentials_volume(package), "secret": secret})
    return volumes


def _volume_covers(existing: Obj, desired: Obj) -> bool:
    """A volume is ours-equivalent only with the same source type: no hostPath alongside our emptyDir."""
    sources = {k for k in existing if k != "name"}
    return sources == {k for k in desired if k != "name"} and covers(existing, desired)


def _volume_rewritten(existing: Obj, desired: Obj) -> Obj:
    """Our emptyDir keeps what else it says (a medium); only the sizeLimit we configure changes."""
    if "emptyDir" in desired and isinstance(existing.get("emptyDir"), dict):
        return {**existing, "emptyDir": {**existing["emptyDir"], **desired["emptyDir"]}}
    return desired


# --- what counts as ours (the rules are in the module docstring) ---------------------------------------

_VOLUME_SOURCES: Final = {
    contract.VOLUME_NAME: "emptyDir",
    CREDENTIALS_VOLUME: "secret",
    PULL_SECRETS_VOLUME: "projected",
}
# Named packages' volumes: `package-shared-volume-NAME` (emptyDir), `package-credentials-NAME` (Secret).
_NAMED_SOURCES: Final = ((f"{contract.VOLUME_NAME}-", "emptyDir"), (f"{CREDENTIALS_VOLUME}-", "secret"))
_INIT_MOUNTS: Final = frozenset({contract.VOLUME_NAME, CREDENTIALS_VOLUME, PULL_SECRETS_VOLUME})
_URL_ONLY: Final = frozenset({contract.ENV_URL, contract.ENV_PACKAGE_LIST})
# We never set these: an init container with any of them runs something other than the downloader.
_RUNS_SOMETHING_ELSE: Final = (
    "command",
    "args",
    "ports",
    "restartPolicy",
    "lifecycle",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
)


def _volume_source(name: str) -> str | None:
    """The source type our volume of that name has (None: not a name we give volumes)."""
    if name in _VOLUME_SOURCES:
        return _VOLUME_SOURCES[name]
    return next((source for prefix, source in _NAMED_SOURCES if name.startswith(prefix)), None)


def _is_package_volume(name: Any) -> bool:
    """The unnamed package's emptyDir or a named package's."""
    return isinstance(name, str) and (
        name == contract.VOLUME_NAME or name.startswith(f"{contract.VOLUME_NAME}-")
    )


def _is_named(item: Any, names: frozenset[str]) -> bool:
    if not isinstance(item, dict):
        return False
    name = item.get("name")
    return isinstance(name, str) and name in names


def _same_entries(existing: list[Obj], desired: list[Obj]) -> bool:
    """Our entries, each once, saying what we want, in any order (a webhook that sorts lists is no reason
    to rewrite them; duplicates are: the kubelet would use the last one)."""
    by_name = {e["name"]: e for e in existing}
    return len(by_name) == len(existing) == len(desired) and all(
        d["name"] in by_name and covers(by_name[d["name"]], d) for d in desired
    )


def _named(items: Any, names: frozenset[str]) -> list[Obj]:
    """The entries of a list of objects whose name is one of `names` (ours), in order."""
    return [i for i in items if _is_named(i, names)] if isinstance(items, list) else []


def _field_says(key: str, existing: Any, desired: Any) -> bool:
    """Whether the init container's field `key` says what we want, or what another plugin made of it."""
    if key == "image" and isinstance(existing, str) and isinstance(desired, str):
        # A registry-mirror webhook prefixes our image or moves it to its own registry and project, a
        # digest-pinning policy appends @sha256:...; all still name it (the same last path segment: name and
        # tag). Another name or tag (an upgrade) is a difference.
        name = existing.split("@", 1)[0] if "@" not in desired else existing
        return name == desired or name.rsplit("/", 1)[-1] == desired.rsplit("/", 1)[-1]
    if key == "imagePullPolicy" and existing == "Always":
        return True  # the AlwaysPullImages plugin's value: stricter than ours, and it validates it
    if key == "securityContext":
        return isinstance(existing, dict) and _as_strict(existing, desired)
    return covers(existing, desired, key in _QUANTITY_FIELDS)


def _as_strict(existing: Obj, desired: Obj) -> bool:
    """Whether a securityContext is at least as strict as ours: a policy engine's other non-root UID or
    GID, a Localhost seccomp profile or more dropped capabilities is kept (undoing it on reinvocation would
    get the pod refused by that policy's validation); anything that grants more than ours is not."""
    if existing.get("privileged") not in (None, False) or existing.get("runAsUser") == 0:
        return False
    if existing.get("procMount") not in (None, "Default"):
        return False
    for key, value in desired.items():
        have = existing.get(key)
        if key in ("runAsUser", "runAsGroup"):
            ok = type(have) is int and have > 0
        elif key == "seccompProfile":
            ok = isinstance(have, dict) and have.get("type") in ("RuntimeDefault", "Localhost")
        elif key == "capabilities":
            ok = (
                isinstance(have, dict)
                and not have.get("add")
                and isinstance(have.get("drop"), list)
                and "ALL" in have["drop"]
            )
        else:
            ok = key in existing and covers(have, value)
        if not ok:
            return False
    return True


def _init_converged(
    existing: Obj, desired: Obj, env_names: frozenset[str], mount_names: frozenset[str]
) -> bool:
    """Every field we own says what we want; what others added (env, mounts, defaults) does not matter."""
    if any(k in existing for k in _RUNS_SOMETHING_ELSE):
        return False
    for key, value in desired.items():
        if key == "env":
            ok = _same_entries(_named(existing.get(key), env_names), value)
        elif key == "volumeMounts":
            ok = _same_entries(_named(existing.get(key), mount_names), value)
        else:
            ok = key in existing and _field_says(key, existing[key], value)
        if not ok:
            return False
    return True


def _init_rewritten(
    existing: Obj, desired: Obj, env_names: frozenset[str], mount_names: frozenset[str]
) -> Obj:
    """Our fields from `desired`, ours first in env and volumeMounts; everything others added is kept.

    A fresh injection followed by another plugin's appends gives the same order, so the result converges."""
    out = dict(existing)
    for key, value in desired.items():
        if key in ("env", "volumeMounts"):
            names = env_names if key == "env" else mount_names
            items = existing.get(key)
            theirs = [i for i in items if not _is_named(i, names)] if isinstance(items, list) else []
            out[key] = [*value, *theirs]
        elif not (key in existing and _field_says(key, existing[key], value)):
            out[key] = _resources_merged(existing.get(key), value) if key == "resources" else value
    return out


def _resources_merged(existing: Any, desired: Obj) -> Obj:
    """Our requests and limits over theirs: a resource we do not set keeps what others gave it.

    LimitRanger fills the namespace's defaults (a CPU limit) only when the apiserver runs its plugins, which
    it does not after a reinvocation round; dropping that limit there gets the pod denied by a quota."""
    if not isinstance(existing, dict):
        return desired
    out = dict(existing)
    for section, values in desired.items():
        theirs = existing.get(section)
        out[section] = {**theirs, **values} if isinstance(theirs, dict) else values
    return out


@dataclass(frozen=True)
class _Owner:
    """What the status annotation says a previous run injected; each piece must also look like ours."""

    status: dict[str, Any] | None

    def _listed(self, field: str) -> frozenset[str]:
        """The names the status lists under `field`, as a set: membership is checked once per item."""
        return frozenset(self.status.get(field, [])) if self.status is not None else frozenset()

    @cached_property
    def _volumes(self) -> frozenset[str]:
        return self._listed("volumes")

    @cached_property
    def _containers(self) -> frozenset[str]:
        return self._listed("containers")

    @cached_property
    def _pull_secrets(self) -> frozenset[str]:
        return self._listed("imagePullSecrets")

    @cached_property
    def _package_containers(self) -> dict[str, frozenset[str]]:
        """Volume -> the containers that mount it: the unnamed package's and each named package's.

        A record counts only for its own package's volume (`package-shared-volume-NAME`): a hand-written
        one naming the user's volume must not make the user's read-only mount of it ours to remove."""
        packages = self.status.get("packages", []) if self.status is not None else []
        found = {
            p["volume"]: frozenset(p["containers"])
            for p in packages
            if p["volume"] == f"{contract.VOLUME_NAME}-{ann.volume_suffix(p['name'])}"
        }
        found[contract.VOLUME_NAME] = self._containers
        return found

    @property
    def volumes(self) -> frozenset[str]:
        """The volume names the status lists: their mounts in our init container are ours too."""
        return self._volumes

    def volume(self, volume: Obj) -> bool:
        name = volume.get("name")
        listed = name in self._volumes
        return listed and {k for k in volume if k != "name"} == {_volume_source(str(name))}

    def adoptable_volume(self, volume: Obj) -> bool:
        """Ours to update: listed in the status, or our emptyDir by name and type (see the docstring)."""
        if volume.get("name") == contract.VOLUME_NAME and volume.keys() == {"name", "emptyDir"}:
            return isinstance(volume["emptyDir"], dict)
        return self.volume(volume)

    def init_container(self, container: Obj) -> bool:
        if self.status is None or self.status.get("initContainer") != container.get("name"):
            return False
        if any(k in container for k in _RUNS_SOMETHING_ELSE):
            return False
        has_url = any("value" in e for e in _named(container.get("env"), _URL_ONLY))
        mounts = container.get("volumeMounts")
        shared = isinstance(mounts, list) and any(
            isinstance(m, dict) and _is_package_volume(m.get("name")) for m in mounts
        )
        return has_url and shared

    def mount(self, container_name: Any, mount: Obj) -> bool:
        """A package mount in an app container: the status says this container got this package."""
        return (
            container_name in self._package_containers.get(str(mount.get("name")), frozenset())
            and mount.get("readOnly") is True
            and not {"subPath", "subPathExpr", "mountPropagation"} & set(mount)
        )

    def pull_secret(self, entry: Obj) -> bool:
        """An imagePullSecrets entry we added; one the pod listed itself is never in the status."""
        return entry.keys() == {"name"} and entry["name"] in self._pull_secrets


def _ensure(
    items: list[Any],
    desired: Obj,
    owned: Callable[[Obj], bool],
    conflict: Callable[[], Denied],
    same: Callable[[Obj, Obj], bool] = covers,
    rewrite: Callable[[Obj, Obj], Obj] = lambda existing, desired: desired,
) -> bool:
    """Make the item named like `desired` say what it should; True when the list changed.

    `conflict` makes the denial for a foreign item with that name (made only then: it is rare)."""
    for i, item in enumerate(items):
        if item.get("name") != desired["name"]:
            continue
        if same(item, desired):
            return False
        if not owned(item):
            raise conflict()
        items[i] = rewrite(item, desired)
        return True
    items.append(desired)
    return True


def _init_index(init_containers: list[Obj], position: str) -> int:
    """`last` appends; `first` goes after leading native sidecars (restartPolicy: Always), e.g. a mesh
    proxy, which must already run so the download has network."""
    if position == "last":
        return len(init_containers)
    index = 0
    while index < len(init_containers) and init_containers[index].get("restartPolicy") == "Always":
        index += 1
    return index


def _place_init_container(
    init_containers: list[Obj],
    desired: Obj,
    position: str,
    owner: _Owner,
    env_names: frozenset[str],
    mount_names: frozenset[str],
) -> bool:
    names = [c.get("name") for c in init_containers]
    if contract.INIT_CONTAINER_NAME in names:
        index = names.index(contract.INIT_CONTAINER_NAME)
        existing = init_containers[index]
        converged = _init_converged(existing, desired, env_names, mount_names)
        if not converged and not owner.init_container(existing):
            raise Denied(
                "the pod already has an init container named "
                f'"{contract.INIT_CONTAINER_NAME}" that package-injector did not inject; rename it',
                400,
                "conflict",
                detail=f'foreign init container "{contract.INIT_CONTAINER_NAME}"',
            )
        rest = init_containers[:index] + init_containers[index + 1 :]
        target = _init_index(rest, position)
        keep = existing if converged else _init_rewritten(existing, desired, env_names, mount_names)
        if target == index and keep is existing:
            return False
        rest.insert(target, keep)
        init_containers[:] = rest
        return True
    init_containers.insert(_init_index(init_containers, position), desired)
    return True


def _normal_path(value: Any) -> str:
    path = posixpath.normpath(str(value or "")) if value else ""
    return "/" + path.lstrip("/") if path.startswith("//") else path


@dataclass(frozen=True)
class _AppMount:
    """One package's read-only mount in the app containers: which volume, where, for whom, and the key a
    message about it names (`package-mount-path` or `package-mount-path.NAME`)."""

    volume: str
    mount_path: str
    targets: frozenset[str]
    key: str

    @property
    def desired(self) -> Obj:
        return {"name": self.volume, "mountPath": self.mount_path, "readOnly": True}


def _check_mount_paths(name: Any, mounts: list[Obj], package: _AppMount, ours: frozenset[str]) -> None:
    """Deny another volume at the package mount path or below it.

    Nested mounts are legal in Kubernetes, but one *below* the package path hides those package files (and
    needs its mount point inside the read-only package volume). One *above* it (an emptyDir at /app with the
    package at /app/config) is fine: the package hides only that subdirectory of the other volume. The
    mounts of `ours` (the package volumes injected now or listed in the status) are skipped:
    `annotations.parse` keeps packages apart, and ours are rewritten or removed.
    """
    mount_path = package.mount_path
    key = package.key
    for mount in mounts:
        if mount.get("name") in ours:
            continue
        path, volume = _normal_path(mount.get("mountPath")), mount.get("name")
        if path == mount_path:
            raise Denied(
                f'container "{name}" already mounts volume "{volume}" at '
                f'{mount_path}; set the "{key}" annotation to another directory',
                400,
                "conflict",
                detail=f'container "{name}" mounts volume "{volume}" at the package mount path',
            )
        if path.startswith(mount_path + "/"):
            raise Denied(
                f'container "{name}" mounts volume "{volume}" at {path}, inside the '
                f"package mount path {mount_path}, where it would hide package files; move that volumeMount "
                f'out of {mount_path} or set the "{key}" annotation to another directory',
                400,
                "conflict",
                detail=f'container "{name}" mounts volume "{volume}" inside the package mount path',
            )


def _mount_conflict(name: Any, volume: str) -> Denied:
    return Denied(
        f'container "{name}" already mounts "{volume}" differently; '
        "remove that volumeMount, package-injector adds it",
        400,
        "conflict",
        detail=f'container "{name}" mounts "{volume}" differently',
    )


def _volume_conflict(name: str) -> Denied:
    return Denied(
        f'the pod already has a volume named "{name}" that package-injector did not add; rename that volume',
        400,
        "conflict",
        detail=f'foreign volume "{name}"',
    )


def _mount_containers(containers: list[Obj], packages: list[_AppMount], owner: _Owner) -> bool:
    """Each container gets the mounts of the packages that target it and loses ours that no longer do
    (a container dropped from `package-containers`, a package whose key was removed)."""
    changed = False
    ours = frozenset({p.volume for p in packages} | {v for v in owner.volumes if _is_package_volume(v)})
    for container in containers:
        name = container.get("name")
        mounts = _as_list(container, "volumeMounts", f"containers[{name}].volumeMounts")
        wanted = [p for p in packages if name in p.targets]
        wanted_volumes = {p.volume for p in wanted}
        kept = [m for m in mounts if m.get("name") in wanted_volumes or not owner.mount(name, m)]
        this = len(kept) != len(mounts)
        for package in wanted:
            _check_mount_paths(name, kept, package, ours)
            conflict = partial(_mount_conflict, name, package.volume)
            this |= _ensure(kept, package.desired, partial(owner.mount, name), conflict)
        if this:
            container["volumeMounts"] = kept
            changed = True
    return changed


def _targets(containers: tuple[str, ...] | None, names: list[Any], key: str) -> frozenset[str]:
    """The containers a package is mounted into; deny naming one the Pod does not have."""
    if containers is None:
        return frozenset(str(n) for n in names)
    missing = [c for c in containers if c not in set(names)]
    if missing:
        have = ", ".join(str(n) for n in names)
        raise Denied(
            f'annotation "{key}": the pod has no container '
            f"{', '.join(repr(m) for m in missing)} (it has: {have})",
            400,
            "invalid-annotation",
            detail=f"invalid annotations: {key}",
        )
    return frozenset(containers)


def _app_mounts(request: PackageRequest, names: list[Any], settings: Settings) -> list[_AppMount]:
    """The unnamed package's mount (if it has a URL), then each named package's, in name order."""
    mounts = []
    if request.url is not None:
        targets = _targets(request.containers, names, settings.key(ann.CONTAINERS))
        mounts.append(
            _AppMount(contract.VOLUME_NAME, request.mount_path, targets, settings.key(ann.MOUNT_PATH))
        )
    for package in request.packages:
        suffix = f"{ann.NAME_SEPARATOR}{package.name}"
        targets = _targets(package.containers, names, settings.key(ann.CONTAINERS) + suffix)
        key = settings.key(ann.MOUNT_PATH) + suffix
        mounts.append(_AppMount(named_volume(package), package.mount_path, targets, key))
    return mounts


def _pull_secrets(spec: Obj, settings: Settings, owner: _Owner) -> tuple[bool, list[str]]:
    """Append each configured pull secret the pod does not list; True when the list changed, and our names.

    The pod's own entries stay first and untouched, and a name it already lists is its own, never ours, so
    removing `package-url` later keeps it. Entries we added for names no longer configured are dropped.
    """
    wanted = settings.init_image_pull_secrets
    if not wanted and not (owner.status and owner.status.get("imagePullSecrets")):
        return False, []  # the default: the pod's list is not even looked at
    entries = _as_list(spec, "imagePullSecrets", "spec.imagePullSecrets")
    kept = [e for e in entries if e.get("name") in wanted or not owner.pull_secret(e)]
    present = {e.get("name") for e in kept}
    foreign = {e.get("name") for e in kept if not owner.pull_secret(e)}
    result = kept + [{"name": name} for name in wanted if name not in present]
    changed = result != entries
    if changed:
        if result:
            spec["imagePullSecrets"] = result
        else:
            del spec["imagePullSecrets"]
    return changed, [name for name in wanted if name not in foreign]


def _drop(parent: Obj, key: str, ours: Callable[[Obj], bool]) -> bool:
    """Remove our items from the list `parent[key]`; drop the key once the list is empty."""
    items = parent.get(key)
    if not isinstance(items, list):
        return False
    kept = [i for i in items if not (isinstance(i, dict) and ours(i))]
    if len(kept) == len(items):
        return False
    if kept:
        parent[key] = kept
    else:
        del parent[key]
    return True


def _remove(out: Obj, metadata: Obj, owner: _Owner, settings: Settings) -> tuple[bool, list[str]]:
    """`package-url` is gone but our status is there: take out what we injected (and only that)."""
    spec = out.get("spec")
    removed: list[str] = []
    if isinstance(spec, dict):
        if _drop(spec, "initContainers", owner.init_container):
            removed.append(f"init container {contract.INIT_CONTAINER_NAME}")
        if _drop(spec, "volumes", owner.volume):
            removed.append("volumes")
        for container in spec.get("containers") or []:
            if isinstance(container, dict):
                name = container.get("name")
                if _drop(container, "volumeMounts", partial(owner.mount, name)):
                    removed.append(f"mount in {name}")
        if _drop(spec, "imagePullSecrets", owner.pull_secret):
            removed.append("image pull secrets")
    del metadata["annotations"][settings.key(ann.STATUS)]
    what = f"removed what it injected before ({', '.join(removed)})" if removed else "removed its status"
    return True, [
        ann.for_user(
            f'"{settings.key(ann.URL)}" is not set but "{settings.key(ann.STATUS)}" is; '
            f"package-injector {what}"
        )
    ]


def _writable_copy(pod: Obj) -> Obj:
    """Copy exactly the containers of what `inject` may change; share everything else with `pod`.

    `inject` edits only the metadata and its annotations, the spec's volumes and init
    containers lists, and each main container's volumeMounts (spec.imagePullSecrets
    it replaces with a new list, never edits). A deep copy of the rest
    cost more than the injection itself, and shared subtrees let `webhook.patch` skip
    them by identity. Neither the input nor the result may be mutated by callers.
    """
    out = dict(pod)
    metadata = out.get("metadata")
    if type(metadata) is dict:
        metadata = out["metadata"] = dict(metadata)
        if type(metadata.get("annotations")) is dict:
            metadata["annotations"] = dict(metadata["annotations"])
    spec = out.get("spec")
    if type(spec) is dict:
        spec = out["spec"] = dict(spec)
        for key in ("volumes", "initContainers", "containers"):
            if type(spec.get(key)) is list:
                spec[key] = list(spec[key])
        containers = spec.get("containers")
        if type(containers) is list:
            for i, container in enumerate(containers):
                if type(container) is dict:
                    container = containers[i] = dict(container)
                    if type(container.get("volumeMounts")) is list:
                        container["volumeMounts"] = list(container["volumeMounts"])
    return out


def inject(pod: Obj, settings: Settings, namespace: str | None = None) -> InjectionResult:
    """Inject the package into a copy of `pod` (a Pod or a pod template: metadata + spec).

    Raises Denied with a user-facing message on invalid annotations and conflicts.
    `namespace` is the admission request's namespace (never the object's: pods made by
    controllers often carry none), or `inject -n`; it is named in messages about the
    Secret, which must live in that namespace. The result does not depend on it.
    """
    if not isinstance(pod, dict):
        raise Denied("the object is not a JSON object", 400, "malformed-object")
    out = _writable_copy(pod)
    metadata = out.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise Denied("metadata must be an object", 400, "malformed-object")
    annotations = metadata.get("annotations")
    if annotations is not None and not isinstance(annotations, dict):
        raise Denied("metadata.annotations must be an object", 400, "malformed-object")
    if annotations:
        limits.check_annotations(annotations)
    parsed = ann.parse(annotations, settings, namespace)
    key = settings.key
    owner = _Owner(ann.read_status(annotations, settings))
    spec = out.get("spec")
    has_status = annotations is not None and key(ann.STATUS) in annotations
    if isinstance(spec, dict) and (parsed.request is not None or has_status):
        limits.check_pod_spec(spec)  # before anything below walks the spec's lists
    if parsed.request is None:
        if has_status:
            changed, removal = _remove(out, metadata, owner, settings)
            return InjectionResult(out, (*parsed.warnings, *removal), requested=False, changed=changed)
        return InjectionResult(out, parsed.warnings, requested=False, changed=False)
    request = parsed.request
    warnings = list(parsed.warnings)

    if not isinstance(spec, dict):
        raise Denied("the pod has no spec", 400, "malformed-object")
    containers = _as_list(spec, "containers", "spec.containers")
    init_containers = _as_list(spec, "initContainers", "spec.initContainers")
    volumes = _as_list(spec, "volumes", "spec.volumes")
    if not containers:
        raise Denied("the pod has no containers", 400, "malformed-object")
    names = [c.get("name") for c in containers]
    if contract.INIT_CONTAINER_NAME in names:
        raise Denied(
            f'the pod has a container named "{contract.INIT_CONTAINER_NAME}", the name of '
            "the injected init container; rename it",
            400,
            "conflict",
            detail=f'container named "{contract.INIT_CONTAINER_NAME}"',
        )

    app_mounts = _app_mounts(request, names, settings)

    changed = False
    pull_secrets = _registry_pull_secrets(spec, request, settings)
    desired_volumes = _volumes(request, pull_secrets)
    for volume in desired_volumes:
        conflict = partial(_volume_conflict, volume["name"])
        changed |= _ensure(
            volumes, volume, owner.adoptable_volume, conflict, _volume_covers, _volume_rewritten
        )
    # A volume of ours no longer wanted (package-secret or the pull secrets gone, a package removed): drop it.
    wanted = {v["name"] for v in desired_volumes}
    kept = [v for v in volumes if v.get("name") in wanted or not owner.volume(v)]
    changed |= len(kept) != len(volumes)
    volumes[:] = kept
    spec["volumes"] = volumes

    desired_init, sc_warnings = _init_container(spec, request, settings, pull_secrets)
    warnings += sc_warnings
    # Mounts of volumes the status lists are ours in our init container: a removed package's go.
    mount_names = _INIT_MOUNTS | wanted | owner.volumes
    changed |= _place_init_container(
        init_containers, desired_init, request.init_position, owner, our_env_names(settings), mount_names
    )
    spec["initContainers"] = init_containers

    changed |= _mount_containers(containers, app_mounts, owner)
    secrets_changed, our_pull_secrets = _pull_secrets(spec, settings, owner)
    changed |= secrets_changed

    def mounted(package: _AppMount) -> list[str]:
        return [str(n) for n in names if n in package.targets]

    unnamed = [m for m in app_mounts if m.volume == contract.VOLUME_NAME]
    records = [
        {"name": p.name, "volume": m.volume, "containers": mounted(m)}
        for p, m in zip(request.packages, app_mounts[len(unnamed) :], strict=True)
    ]
    used_volumes = [v["name"] for v in desired_volumes]
    new_status = ann.status_value(
        mounted(unnamed[0]) if unnamed else [], used_volumes, our_pull_secrets, records
    )
    if owner.status is None or owner.status != ann.read_status({key(ann.STATUS): new_status}, settings):
        if metadata.get("annotations") is None:
            metadata["annotations"] = {}
        metadata["annotations"][key(ann.STATUS)] = new_status
        out["metadata"] = metadata
        changed = True
    return InjectionResult(out, tuple(warnings), requested=True, changed=changed)
