"""Cluster-wide settings of the webhook, from environment variables and/or a file.

Every field can be set as an environment variable `PACKAGE_INJECTOR_<FIELD>`
(lists and mappings as JSON), or in a YAML/JSON file named by
`PACKAGE_INJECTOR_CONFIG_FILE` or `package-injector serve --config FILE`.
Environment variables win over the file. The Helm chart renders these variables.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError

from initcontainer import contract
from webhook.hosts import pattern_problem
from webhook.quantity import parse_quantity

ENV_PREFIX = "PACKAGE_INJECTOR_"
# Init container variables the webhook derives from annotations, or that weaken security: never taken from
# `init_env` (refused when settings load; `webhook.inject` filters them again). Defined once, here.
RESERVED_INIT_ENV: Final = frozenset(
    {
        contract.ENV_URL,
        # Per Pod (the packages of one Pod), never one list for every Pod.
        contract.ENV_PACKAGE_LIST,
        contract.ENV_SHA256,
        contract.ENV_DEST,
        contract.ENV_STRIP_COMPONENTS,
        contract.ENV_CREDENTIALS_DIR,
        contract.ENV_ALLOW_HTTP,
        contract.ENV_INSECURE_SKIP_TLS_VERIFY,
        contract.ENV_USERNAME,
        contract.ENV_PASSWORD,
        # Set from the s3_region, s3_endpoint and sts_endpoint settings.
        contract.ENV_S3_REGION,
        contract.ENV_S3_ENDPOINT,
        contract.ENV_STS_ENDPOINT,
        contract.ENV_PACKAGE_LIST,
    }
)
PROXY_ENV: Final = contract.PROXY_ENV
CONFIG_FILE_ENV = "PACKAGE_INJECTOR_CONFIG_FILE"

# Kubernetes object names (here, not in webhook.annotations, so settings can check Secret names too).
_DNS_LABEL: Final = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_SUBDOMAIN: Final = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")
DNS_LABEL: Final = re.compile(rf"^{_DNS_LABEL}$")


def is_dns_subdomain(name: str) -> bool:
    """A valid name for most Kubernetes objects, Secrets included (DNS-1123 subdomain, at most 253)."""
    return len(name) <= 253 and DNS_SUBDOMAIN.match(name) is not None


class Settings(BaseSettings):
    """What a platform team decides once for the whole cluster."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    # --- annotation contract policy ---
    annotation_prefix: str = Field(
        default="",
        description="Prefix added to every annotation key, e.g. 'example.com/' makes the trigger "
        "'example.com/package-url'. Empty by default, so the trigger is exactly 'package-"
        "url'.",
    )
    allowed_schemes: list[Literal["https", "http", "oci", "s3"]] = Field(
        default=["https", "oci", "s3"],
        description="URL schemes a package-url may use (oci: OCI registries; s3: s3://BUCKET/KEY); add "
        "'http' for trusted mirrors (the init container then gets PACKAGE_ALLOW_HTTP=true); remove 'oci' or "
        "'s3' to refuse OCI registries or S3.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts a package-url may point at (for oci:// the registry host, Docker Hub names as "
        "docker.io); '*.example.com' matches subdomains (not the apex). s3:// URLs are matched by bucket "
        "against entries 's3://BUCKET' ('s3://*': any bucket); host entries never admit a bucket. The S3 "
        "endpoint is not checked here (it comes from s3_endpoint or the Pod's Secret, which the webhook does "
        "not read), so restrict egress where that matters. Empty: any host and any bucket.",
    )
    s3_region: str | None = Field(
        default=None,
        description="Region of s3:// packages whose Secret names none (PACKAGE_S3_REGION). Empty: us-east-1, "
        "or the AWS_REGION the EKS pod identity webhook sets.",
    )
    s3_endpoint: str | None = Field(
        default=None,
        description="S3-compatible endpoint (https://host[:port][/prefix], path-style) for s3:// packages "
        "whose Secret names none (PACKAGE_S3_ENDPOINT); http:// only when allowed_schemes has http (the init "
        "container then gets PACKAGE_ALLOW_HTTP=true). Empty: AWS.",
    )
    sts_endpoint: str | None = Field(
        default=None,
        description="STS endpoint for web identity (PACKAGE_STS_ENDPOINT). Empty: the region's AWS STS, "
        "https://sts.REGION.amazonaws.com.",
    )
    require_checksum: bool = Field(
        default=False, description="Deny pods without package-sha256 (oci://: without an @sha256: digest)."
    )
    plain_http_registries: list[str] = Field(
        default_factory=list,
        description="OCI registry hosts spoken to over plain http (no TLS); '*.example.com' matches "
        "subdomains. The init container gets PACKAGE_ALLOW_HTTP=true for them.",
    )
    max_size_limit: str | None = Field(
        default=None,
        description="Largest package-size-limit a pod may ask for (a Kubernetes quantity such as 2Gi); "
        "also caps the default.",
    )
    default_size_limit: str | None = Field(
        default=None,
        description="sizeLimit of the shared emptyDir when a pod asks for none (capped by "
        "max_size_limit). Unset: no limit.",
    )
    max_packages_per_pod: int = Field(
        default=8,
        ge=1,
        le=64,
        description="Most packages one Pod may ask for: package-url plus every package-url.NAME (each is "
        "its own volume and download). A Pod above it is denied with this number in the message.",
    )
    default_mount_path: str = Field(
        default=contract.DEFAULT_DEST,
        description="Where main containers see the package when a pod sets no package-mount-path.",
    )

    # --- what gets injected ---
    init_image: str = Field(
        default=f"{contract.DEFAULT_IMAGE_NAME}:0.1.0",
        description="Image of the injected init container. The chart and deploy/ set it as the "
        "PACKAGE_INJECTOR_INIT_IMAGE variable of the webhook, where a kustomize images: entry can "
        "change it.",
    )
    init_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="imagePullPolicy of the injected init container."
    )
    init_resources: dict[str, dict[str, str]] = Field(
        description="Resources of the injected init container (quantities as strings).",
        default_factory=lambda: {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"memory": "256Mi"},
        },
    )
    max_init_resources: dict[str, str] = Field(
        default_factory=lambda: {"cpu": "2", "memory": "4Gi", "ephemeral-storage": "20Gi"},
        description="Largest request or limit a pod may set for the init container with the "
        "package-init-requests-* and package-init-limits-* annotations, per resource (cpu, memory, "
        "ephemeral-storage). A resource left out has no cap.",
    )
    init_run_as_user: int | None = Field(
        default=65532,
        description="UID of the init container when the pod sets none (or runs as root); set it to the "
        "mesh proxy's UID (Istio: 1337) so the download bypasses the mesh redirect. null: the"
        " pod's runAsUser, or the image's user when the pod sets none.",
    )
    init_run_as_group: int | None = Field(
        default=65532,
        description="GID of the init container under the same rule as init_run_as_user; a runAsGroup the "
        "pod sets (other than 0) is kept.",
    )
    init_env: dict[str, str] = Field(
        default_factory=dict,
        description="Extra PACKAGE_* variables for every injected init container (limits, timeouts, log "
        "format). Names and values are checked with the init container's own rules "
        "(initcontainer/contract.py) when the settings load; the variables the webhook sets "
        "from annotations, and the unsafe ones, are refused.",
    )
    init_proxy_env: dict[str, str] = Field(
        default_factory=dict,
        description="Proxy variables for the init container: HTTPS_PROXY, HTTP_PROXY, NO_PROXY (or "
        "lowercase). Only http:// proxies (https:// targets still go through them encrypted, "
        "with CONNECT).",
    )
    init_image_pull_secrets: list[str] = Field(
        default_factory=list,
        description="Secrets added to every injected pod's imagePullSecrets, for an init image in a "
        "private registry. They must exist in each pod's namespace; a name the pod already "
        "lists is not added again.",
    )

    @field_validator("init_env")
    @classmethod
    def _known_package_env(cls, value: dict[str, str]) -> dict[str, str]:
        """Only PACKAGE_* names the init container knows, and none the webhook derives from annotations."""
        for name in value:
            if name not in contract.KNOWN_ENV:
                known = ", ".join(sorted(contract.KNOWN_ENV - RESERVED_INIT_ENV))
                raise ValueError(f"{name!r} is not a variable of the init container; known: {known}")
            if name in RESERVED_INIT_ENV:
                raise ValueError(
                    f"{name!r} is set per pod from annotations or is unsafe; remove it from init_env"
                )
            # The init container's own rule: a value it refuses would fail every injected Pod.
            problem = contract.env_value_problem(name, value[name])
            if problem:
                raise ValueError(f"{problem} (the init container would refuse it in every Pod)")
        return value

    @field_validator("init_resources")
    @classmethod
    def _init_resources(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        """Quantities under requests/limits, requests within limits: the apiserver would refuse every pod."""
        for kind, values in value.items():
            if kind not in ("requests", "limits"):
                raise ValueError(f"{kind!r} is not 'requests' or 'limits'")
            for name, quantity in values.items():
                if parse_quantity(quantity) < 0:
                    raise ValueError(f"{kind}.{name}: {quantity!r} must not be negative")
        limits = value.get("limits", {})
        for name, quantity in value.get("requests", {}).items():
            if name in limits and parse_quantity(quantity) > parse_quantity(limits[name]):
                raise ValueError(f"requests.{name} {quantity} is above limits.{name} {limits[name]}")
        return value

    @field_validator("max_init_resources")
    @classmethod
    def _resource_caps(cls, value: dict[str, str]) -> dict[str, str]:
        for name, quantity in value.items():
            if name not in ("cpu", "memory", "ephemeral-storage"):
                raise ValueError(f"{name!r} is not one of cpu, memory, ephemeral-storage")
            if parse_quantity(quantity) <= 0:
                raise ValueError(f"{name}: {quantity!r} must be a positive quantity")
        return value

    @field_validator("init_proxy_env")
    @classmethod
    def _proxy_env_only(cls, value: dict[str, str]) -> dict[str, str]:
        """Proxies only: PACKAGE_* variables belong in init_env, anything else has no use here."""
        for name in value:
            if name not in PROXY_ENV:
                raise ValueError(f"{name!r} is not a proxy variable; allowed: {', '.join(sorted(PROXY_ENV))}")
            problem = contract.env_value_problem(name, value[name])
            if problem:
                raise ValueError(f"{problem} (the init container would refuse it in every Pod)")
        return value

    @field_validator("init_image_pull_secrets")
    @classmethod
    def _secret_names(cls, value: list[str]) -> list[str]:
        """A name no Secret can have (a typo, `namespace/name`) would only show up as failed pulls later."""
        for name in value:
            if not is_dns_subdomain(name):
                raise ValueError(
                    f"{name!r} is not a valid Secret name (lowercase letters, digits, '-' and '.')"
                )
        duplicates = sorted({n for n in value if value.count(n) > 1})
        if duplicates:
            raise ValueError(f"{', '.join(map(repr, duplicates))} is listed more than once")
        return value

    @field_validator("max_size_limit", "default_size_limit")
    @classmethod
    def _quantity(cls, value: str | None) -> str | None:
        """Reject a bad quantity at startup rather than on the first pod."""
        if value is not None and parse_quantity(value) <= 0:
            raise ValueError(f"{value!r} must be a positive quantity such as 1Gi")
        return value

    @field_validator("allowed_hosts", "plain_http_registries")
    @classmethod
    def _host_patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            problem = pattern_problem(pattern)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("s3_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", value):
            raise ValueError(f"{value!r} is not a region name like eu-west-1")
        return value or None

    @field_validator("s3_endpoint", "sts_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        """scheme://host[:port][/prefix], checked as the init container will check it."""
        if not value:
            return None
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ValueError(f"{value!r} has an invalid port") from None
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"{value!r} must be an https:// URL with a host, e.g. https://minio.example.com")
        if parts.username is not None or "@" in parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"{value!r} must hold no user, password, query string or fragment")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _plain_http_endpoint(self) -> Settings:
        for name in ("s3_endpoint", "sts_endpoint"):
            if (getattr(self, name) or "").startswith("http://") and "http" not in self.allowed_schemes:
                raise ValueError(f"{name} uses plain http://; add http to allowed_schemes to allow it")
        return self

    @field_validator("default_mount_path")
    @classmethod
    def _absolute_mount_path(cls, value: str) -> str:
        if not value.startswith("/") or value.rstrip("/") == "" or ".." in value.split("/"):
            raise ValueError(f"{value!r} must be an absolute directory path other than '/'")
        return value.rstrip("/")

    # --- serving ---
    host: str = Field(default="0.0.0.0", description="Address the HTTPS admission port binds to.")
    port: int = Field(default=8443, description="HTTPS admission port (POST /mutate).")
    metrics_port: int = Field(default=8080, description="Plain-HTTP port for /healthz, /readyz and /metrics.")
    tls_cert_file: Path = Field(
        default=Path("/etc/package-injector/tls/tls.crt"),
        description="Serving certificate (PEM); reloaded when it changes.",
    )
    tls_key_file: Path = Field(
        default=Path("/etc/package-injector/tls/tls.key"), description="Its private key (PEM)."
    )
    cert_reload_interval: float = Field(default=10.0, description="Seconds between checks of the cert files.")
    max_body_bytes: int = Field(default=3 * 1024 * 1024, description="Larger AdmissionReviews get a 413.")
    max_connections: int = Field(
        default=256,
        ge=1,
        description="Open connections per port, TLS handshakes included. When all are taken, the one idle "
        "the longest is closed for the newcomer; a newcomer is refused only when none is idle.",
    )
    max_header_bytes: int = Field(
        default=32 * 1024, ge=1024, description="Request line plus headers; larger ones get a 431."
    )
    tls_handshake_timeout: float = Field(
        default=10.0, gt=0, description="Seconds a client has to finish the TLS handshake."
    )
    request_read_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds from a request's first byte (or the connection's start) until its headers and "
        "body have all arrived; a slower client is disconnected. The apiserver sends a review at once.",
    )
    keep_alive_timeout: int = Field(
        default=120,
        ge=1,
        description="Seconds an idle keep-alive connection stays open between requests. Longer than the "
        "apiserver's own idle timeout (90 s), so the apiserver closes idle connections, not us: our close "
        "would race a review it may be writing on that connection (`failed calling webhook ...: EOF`).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="debug, info, warning or error."
    )
    log_format: Literal["json", "text"] = Field(
        default="json", description="json (one object per line) or text."
    )
    access_log: bool = Field(
        default=False, description="Log every HTTP request (admission logs already carry the decision)."
    )
    shutdown_delay: float = Field(
        default=0.0,
        ge=0,
        description="Seconds between SIGTERM and closing the admission port, with /readyz failing "
        "meanwhile, so endpoints drop the pod before it stops accepting. The chart sets a few"
        " seconds.",
    )
    shutdown_timeout: float = Field(
        default=20.0, gt=0, description="Longest wait for in-flight reviews after the port is closed."
    )

    def key(self, name: str) -> str:
        """Full annotation key for a short name such as 'package-url'."""
        return f"{self.annotation_prefix}{name}"


def load_settings(config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Settings from an optional file, then the environment, then explicit overrides."""
    path = config_file or os.environ.get(CONFIG_FILE_ENV)
    file_values: dict[str, Any] = {}
    if path:
        text = Path(path).read_text(encoding="utf-8")
        loaded = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of settings, got {type(loaded).__name__}")
        file_values = loaded or {}
    return settings_from_values(file_values, **overrides)


def settings_from_values(
    values: Mapping[str, Any], *, environment: bool = True, **overrides: Any
) -> Settings:
    """Settings from a mapping (a file's content), then the environment unless told not to, then overrides.

    `environment=False` reads nothing from this process's environment: for settings read from a cluster,
    which the caller's shell variables must not change.
    """
    file_values = {str(k).replace("-", "_"): v for k, v in values.items()}
    if not environment:
        return Settings.model_validate({**file_values, **overrides})
    env_names = {name for name in Settings.model_fields if f"{ENV_PREFIX}{name.upper()}" in os.environ}
    merged = {k: v for k, v in file_values.items() if k not in env_names}
    merged.update(overrides)
    return Settings(**merged)


def settings_from_environment(env: Mapping[str, str]) -> dict[str, Any]:
    """The settings a PACKAGE_INJECTOR_* environment (e.g. a Deployment's env) sets, lists and mappings
    decoded from JSON as pydantic-settings decodes them; the config-file variable and other names ignored."""
    values: dict[str, Any] = {}
    for name, text in env.items():
        field = name.removeprefix(ENV_PREFIX).lower()
        if not name.startswith(ENV_PREFIX) or name == CONFIG_FILE_ENV or field not in Settings.model_fields:
            continue
        origin = getattr(Settings.model_fields[field].annotation, "__origin__", None)
        values[field] = json.loads(text) if origin in (list, dict) else text
    return values


class SettingsError(Exception):
    """Settings cannot be loaded (bad variable, bad file): the operator's to fix, said without a traceback."""


def _where(name: str) -> str:
    """How the user wrote setting `name`: the environment variable when it is set, else the file key."""
    env = f"{ENV_PREFIX}{name.upper()}"
    return env if env in os.environ else name


def _describe_problem(error: Mapping[str, Any]) -> str:
    loc = [str(p) for p in error["loc"]]
    name = loc[0] if loc else "?"
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(name, Settings.model_fields, n=1, cutoff=0.6)
        hint = f'; did you mean "{close[0]}"?' if close else " (see the settings reference in the docs)"
        return f'unknown setting "{name}"{hint}'
    where = ".".join([_where(name), *loc[1:]])
    return f"{where}: {str(error['msg']).removeprefix('Value error, ')}"


def load_settings_or_explain(config_file: str | os.PathLike[str] | None = None) -> Settings:
    """`load_settings`, with every failure turned into one SettingsError sentence per problem."""
    try:
        return load_settings(config_file)
    except ValidationError as exc:
        problems = "; ".join(_describe_problem(e) for e in exc.errors())
        raise SettingsError(f"invalid settings: {problems}") from None
    except PydanticSettingsError as exc:
        # A PACKAGE_INJECTOR_* variable of a list or mapping setting that is not JSON.
        name = str(exc).partition('field "')[2].partition('"')[0]
        env = f"{ENV_PREFIX}{name.upper()}" if name else "a PACKAGE_INJECTOR_* variable"
        field = Settings.model_fields.get(name)
        is_list = field is not None and getattr(field.annotation, "__origin__", None) is list
        example = "'[\"a.example.com\"]'" if is_list else '\'{"KEY": "value"}\''
        kind = "list" if is_list else "mapping"
        raise SettingsError(f"{env} must be a JSON {kind}, e.g. {env}={example}") from None
    except (OSError, ValueError, yaml.YAMLError) as exc:
        source = config_file or os.environ.get(CONFIG_FILE_ENV)
        raise SettingsError(f"cannot load settings from {source}: {exc}") from None
