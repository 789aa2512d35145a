"""AdmissionReview bodies shaped like the ones kube-apiserver sends (fields as seen from 1.20)."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from typing import Any

import jsonpatch

GROUPS = {
    "Pod": ("", "v1", "pods"),
    "Deployment": ("apps", "v1", "deployments"),
    "CronJob": ("batch", "v1beta1", "cronjobs"),
}


def review(
    obj: dict[str, Any] | None,
    *,
    kind: str = "Pod",
    operation: str = "CREATE",
    namespace: str = "shop",
    dry_run: bool = False,
    api_version: str = "admission.k8s.io/v1",
    old: dict[str, Any] | None = None,
    sub_resource: str | None = None,
    group: str | None = None,
) -> dict[str, Any]:
    g, v, resource = GROUPS.get(kind, (group or "example.com", "v1", kind.lower() + "s"))
    if group is not None:
        g = group
    request: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": g, "version": v, "kind": kind},
        "resource": {"group": g, "version": v, "resource": resource},
        "requestKind": {"group": g, "version": v, "kind": kind},
        "requestResource": {"group": g, "version": v, "resource": resource},
        "name": (obj or {}).get("metadata", {}).get("name", ""),
        "namespace": namespace,
        "operation": operation,
        "userInfo": {
            "username": "system:serviceaccount:kube-system:replicaset-controller",
            "uid": "a2b1",
            "groups": ["system:serviceaccounts", "system:authenticated"],
        },
        "object": obj,
        "oldObject": old,
        "dryRun": dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
    }
    if sub_resource:
        request["subResource"] = sub_resource
    return {"kind": "AdmissionReview", "apiVersion": api_version, "request": request}


def apply_response(obj: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """The object as the apiserver would store it after applying the response's JSONPatch."""
    if "patch" not in response:
        return copy.deepcopy(obj)
    assert response["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(response["patch"]))
    return jsonpatch.apply_patch(obj, patch)  # type: ignore[no-any-return]
