"""Workloads (Deployment, StatefulSet, ...): where their pod template lives, and its validation.

The webhook never mutates workloads: their Pods are injected when created. It
validates the template with the same rules, so `kubectl apply` of a broken
Deployment fails at once with the message instead of later inside a ReplicaSet,
and warns when the annotations sit on the workload's own metadata, where they do
nothing. The offline `inject` command uses `pod_template` to inject templates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from webhook import annotations as ann
from webhook.inject import Denied, inject
from webhook.settings import Settings

# kind -> (API groups, path from the object to its pod template)
WORKLOADS: Final[dict[str, tuple[frozenset[str], tuple[str, ...]]]] = {
    "Deployment": (frozenset({"apps", "extensions"}), ("spec", "template")),
    "StatefulSet": (frozenset({"apps"}), ("spec", "template")),
    "DaemonSet": (frozenset({"apps", "extensions"}), ("spec", "template")),
    "ReplicaSet": (frozenset({"apps", "extensions"}), ("spec", "template")),
    "Job": (frozenset({"batch"}), ("spec", "template")),
    "CronJob": (frozenset({"batch"}), ("spec", "jobTemplate", "spec", "template")),
}


@dataclass(frozen=True)
class Validation:
    """Warnings for an acceptable workload; whether its template asks for a package."""

    warnings: tuple[str, ...]
    requested: bool


def is_workload(kind: str, group: str | None = None) -> bool:
    """Whether `kind` (in API group `group`, when given) has a pod template we check."""
    entry = WORKLOADS.get(kind)
    return entry is not None and (group is None or group in entry[0])


def pod_template(obj: dict[str, Any], kind: str | None = None) -> dict[str, Any] | None:
    """The pod template inside `obj` (the same dict, so callers may replace its parts), or None."""
    entry = WORKLOADS.get(kind or str(obj.get("kind", "")))
    if entry is None:
        return None
    node: Any = obj
    for step in entry[1]:
        node = node.get(step) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def misplaced_warnings(obj: dict[str, Any], template: dict[str, Any] | None, settings: Settings) -> list[str]:
    """Warn about package-* annotations on the workload's metadata that its pod template lacks."""
    metadata = obj.get("metadata")
    own = metadata.get("annotations") if isinstance(metadata, dict) else None
    if not isinstance(own, dict):
        return []
    tmeta = template.get("metadata") if template else None
    tmpl = tmeta.get("annotations") if isinstance(tmeta, dict) else None
    tmpl = tmpl if isinstance(tmpl, dict) else {}
    misplaced = [k for k in own if isinstance(k, str) and ann.is_user_key(k, settings) and k not in tmpl]
    if not misplaced:
        return []
    kind = obj.get("kind") or "workload"
    path = "spec.jobTemplate.spec.template" if kind == "CronJob" else "spec.template"
    return [
        ann.for_user(
            f"{', '.join(misplaced)} on the {kind}'s own metadata does nothing; "
            f"move it to {path}.metadata.annotations"
        )
    ]


def validate(
    obj: dict[str, Any], settings: Settings, namespace: str | None, kind: str | None = None
) -> Validation:
    """Check the pod template as its Pods will be checked; raise Denied like `inject`."""
    template = pod_template(obj, kind)
    warnings = misplaced_warnings(obj, template, settings)
    if template is None:
        return Validation(tuple(warnings), requested=False)
    try:
        result = inject(template, settings, namespace)
    except Denied as denied:
        # Say where: the user edits the workload, and the keys live in its pod template.
        kind = kind or str(obj.get("kind") or "workload")
        path = ".".join(WORKLOADS[kind][1]) if kind in WORKLOADS else "pod template"
        raise Denied(
            f"{kind} {path}: {denied.text}", denied.code, denied.reason, denied.warnings, denied.detail
        ) from None
    return Validation((*result.warnings, *warnings), requested=result.requested)
