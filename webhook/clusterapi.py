"""What `check`, `explain` and `inject --cluster-settings` read from a cluster, over webhook.kubeapi.

GET and POST of an API path as JSON (POST only for dry-runs and access reviews), so callers stay
independent of the transport and tests can answer from a real apiserver or a dict. The credentials are
webhook.kubeapi's: a kubeconfig (flag, $KUBECONFIG, ~/.kube/config) or, inside a Pod, the service
account. The settings the cluster's webhook runs with are read from the ConfigMap the chart (and deploy/)
mounts into the webhook, found through the MutatingWebhookConfiguration's service reference: no release
name to guess."""

from __future__ import annotations

import http.client
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import yaml

from webhook import kubeapi
from webhook.settings import Settings, settings_from_environment, settings_from_values

DEFAULT_CONFIGURATION: Final = "package-injector"
CONFIG_KEY: Final = "config.yaml"
MWC_PATH: Final = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
# Metadata only (no `data`): enough to know a Secret exists, without reading its content.
METADATA_ONLY: Final = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"


class ApiError(Exception):
    """The API answered with an error other than 404 (or could not be reached)."""

    def __init__(self, path: str, status: int, message: str) -> None:
        super().__init__(f"GET {path}: {status or 'no answer'} {message}".rstrip())
        self.status = status


Getter = Callable[[str, bool], "dict[str, Any] | None"]
Poster = Callable[[str, dict[str, Any]], tuple[int, dict[str, Any]]]


def _no_post(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    raise ApiError(path, 0, "this connection is read-only")


@dataclass(frozen=True)
class Kube:
    """GET `path` (metadata only when asked) -> the object, or None on 404; raises ApiError otherwise.
    POST `path` -> (status, body), API errors included as answers (a refusal is a finding)."""

    get_json: Getter
    where: str
    post_json: Poster = _no_post

    def get(self, path: str, metadata_only: bool = False) -> dict[str, Any] | None:
        return self.get_json(path, metadata_only)

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self.post_json(path, body)


def default_kubeconfig() -> str | None:
    """The kubeconfig kubectl would use, if one exists."""
    path = os.path.expanduser(os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0])
    return path if os.path.exists(path) else None


def connect(kubeconfig: str | None, context: str | None) -> Kube:
    """A connection from a kubeconfig or the in-cluster service account (webhook.kubeapi reads the
    credentials and speaks HTTPS); raises LookupError when there are none."""
    path = kubeconfig or default_kubeconfig()
    if not (path or context) and "KUBERNETES_SERVICE_HOST" not in os.environ:
        raise LookupError(
            "no kubeconfig: set --kubeconfig or $KUBECONFIG, or create ~/.kube/config (kubectl's own)"
        )
    try:
        api = kubeapi.load(kubeconfig, context)
    except kubeapi.KubeConfigError as exc:
        raise LookupError(str(exc)) from None
    if api.in_cluster:
        where = "in-cluster service account"
    else:
        where = f"kubeconfig {path}" + (f", context {context}" if context else "")

    def request(method: str, path: str, accept: str, body: dict[str, Any] | None) -> tuple[int, Any]:
        """One call; any status returned, connection errors as ApiError (say where, no traceback)."""
        saved = api.headers.get("Accept")
        api.headers["Accept"] = accept
        try:
            return api.request(method, path, body)
        except (OSError, http.client.HTTPException) as exc:
            raise ApiError(path, 0, f"({type(exc).__name__}: {exc})") from None
        finally:
            if saved is None:
                api.headers.pop("Accept", None)
            else:
                api.headers["Accept"] = saved

    def get_json(path: str, metadata_only: bool) -> dict[str, Any] | None:
        status, data = request("GET", path, METADATA_ONLY if metadata_only else "application/json", None)
        if status == 404:
            return None
        if status >= 300:
            message = data.get("message") if isinstance(data, dict) else data
            raise ApiError(path, status, str(message or ""))
        answer: dict[str, Any] = data
        return answer

    def post_json(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        status, data = request("POST", path, "application/json", body)
        return status, data if isinstance(data, dict) else {"message": str(data)[:200]}

    return Kube(get_json, where, post_json)


def resource_path(kind: str, namespace: str | None, name: str | None = None) -> str:
    """API path of a namespaced object (or collection) of the kinds `explain` reads."""
    group = KINDS[kind]
    ns = f"/namespaces/{namespace}" if namespace else ""
    tail = f"/{name}" if name else ""
    return f"{group[0]}{ns}/{group[1]}{tail}"


# kind -> (API prefix, plural).
KINDS: Final = {
    "Pod": ("/api/v1", "pods"),
    "Namespace": ("/api/v1", "namespaces"),
    "Endpoints": ("/api/v1", "endpoints"),
    "Secret": ("/api/v1", "secrets"),
    "ConfigMap": ("/api/v1", "configmaps"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "StatefulSet": ("/apis/apps/v1", "statefulsets"),
    "DaemonSet": ("/apis/apps/v1", "daemonsets"),
    "ReplicaSet": ("/apis/apps/v1", "replicasets"),
    "Job": ("/apis/batch/v1", "jobs"),
    "CronJob": ("/apis/batch/v1", "cronjobs"),
}


def webhook_configuration(kube: Kube, name: str) -> dict[str, Any] | None:
    """The MutatingWebhookConfiguration `name`, or None."""
    return kube.get(f"{MWC_PATH}/{name}")


def settings_configmap(mwc: dict[str, Any]) -> tuple[str, str]:
    """(namespace, name) of the webhook's settings ConfigMap: the chart names it like the Service."""
    for webhook in mwc.get("webhooks") or []:
        service = (webhook.get("clientConfig") or {}).get("service")
        if isinstance(service, dict) and service.get("name") and service.get("namespace"):
            return str(service["namespace"]), str(service["name"])
    raise LookupError(
        "the webhook configuration calls a URL, not a Service: name the settings ConfigMap with "
        "--settings-configmap NAMESPACE/NAME"
    )


def _container_env(deployment: dict[str, Any]) -> dict[str, str]:
    """Plain `value` variables of the Deployment's containers (valueFrom cannot be resolved here)."""
    env: dict[str, str] = {}
    for container in (
        ((deployment.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers", [])
    ):
        for var in container.get("env") or []:
            if isinstance(var, dict) and isinstance(var.get("value"), str):
                env[str(var.get("name"))] = var["value"]
    return env


def cluster_settings(kube: Kube, configuration: str, configmap: str | None = None) -> tuple[Settings, str]:
    """The settings the cluster's webhook runs with, and where they were read (for messages).

    The settings file from the ConfigMap, then the PACKAGE_INJECTOR_* variables of the webhook Deployment
    (named like the ConfigMap, as the chart and deploy/ name them), which win as they do in the Pod; the
    caller's own environment is not applied.
    """
    if configmap:
        namespace, _, name = configmap.partition("/")
        if not name:
            raise LookupError(f"--settings-configmap must be NAMESPACE/NAME, got {configmap!r}")
    else:
        mwc = webhook_configuration(kube, configuration)
        if mwc is None:
            raise LookupError(
                f"MutatingWebhookConfiguration {configuration} not found (installed under another name? "
                "use --name)"
            )
        namespace, name = settings_configmap(mwc)
    cm = kube.get(resource_path("ConfigMap", namespace, name))
    where = f"ConfigMap {namespace}/{name}"
    if cm is None:
        raise LookupError(f"{where} not found")
    text = (cm.get("data") or {}).get(CONFIG_KEY)
    if text is None:
        raise LookupError(f"{where} has no {CONFIG_KEY} key")
    values = yaml.safe_load(text) or {}
    if not isinstance(values, dict):
        raise LookupError(f"{where}: {CONFIG_KEY} is not a mapping of settings")
    deployment = kube.get(resource_path("Deployment", namespace, name))
    if deployment is not None:
        values = {**values, **settings_from_environment(_container_env(deployment))}
        where += f" and Deployment {namespace}/{name}'s environment"
    return settings_from_values(values, environment=False), where
