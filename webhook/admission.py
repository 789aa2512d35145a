"""AdmissionReview in, AdmissionReview out: pure, no I/O, no Kubernetes API calls.

The HTTP layer (`webhook.app`) parses JSON and hands the dict here; this module
decides and builds the response. `Decision` names what happened for metrics and
logs with a small fixed set of results and reasons (low label cardinality).

Errors inside our own code do not let a pod through: a Pod that asked for a
package and started without its files is the worst failure of this product, so
an internal error answers `allowed: false` with code 500 and a message pointing
to the webhook logs (the apiserver treats it as final, like any explicit denial).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from webhook import workloads
from webhook.annotations import for_user
from webhook.inject import Denied, inject
from webhook.patch import make_patch
from webhook.settings import Settings

API_VERSIONS: Final = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")

# json.dumps(patch, separators=(",", ":")) without building an encoder for every review.
_PATCH_JSON: Final = json.JSONEncoder(separators=(",", ":"))

Result = Literal["injected", "removed", "skipped", "validated", "warned", "denied", "error"]


class BadReview(ValueError):
    """The body is not an AdmissionReview we can answer (no uid to echo): the HTTP layer sends a 400."""


@dataclass(frozen=True)
class Decision:
    """What happened, e.g. injected, skipped:no-package-url, denied:conflict, error:internal."""

    result: Result
    reason: str

    def __str__(self) -> str:
        return f"{self.result}:{self.reason}" if self.reason else self.result


@dataclass(frozen=True)
class Outcome:
    """The response body plus what the HTTP layer needs for one log line and the metrics."""

    review: dict[str, Any]
    decision: Decision
    uid: str
    kind: str
    operation: str
    namespace: str
    name: str
    dry_run: bool
    warnings: tuple[str, ...] = ()
    message: str = ""
    """The denial message the user sees; it may quote annotation values, so it is never logged."""
    detail: str = ""
    """What the log may say about a denial: annotation keys, container and volume names, no values."""
    error: BaseException | None = field(default=None, compare=False)


def _request(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadReview("expected a JSON object (an AdmissionReview)")
    if body.get("kind") != "AdmissionReview" or body.get("apiVersion") not in API_VERSIONS:
        raise BadReview(f"expected kind AdmissionReview with apiVersion {' or '.join(API_VERSIONS)}")
    request = body.get("request")
    if not isinstance(request, dict):
        raise BadReview("AdmissionReview has no request object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReview("AdmissionReview request has no uid")
    return request


def _object_name(obj: Any) -> str:
    """metadata.name, or `<generateName>*` for controller-made pods whose name is not chosen yet."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict):
        return ""
    name = meta.get("name")
    if isinstance(name, str) and name:
        return name
    generate = meta.get("generateName")
    return f"{generate}*" if isinstance(generate, str) and generate else ""


def _response(
    api_version: str,
    uid: str,
    *,
    allowed: bool,
    warnings: tuple[str, ...] = (),
    patch: list[Any] | None = None,
) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(_PATCH_JSON.encode(patch).encode()).decode("ascii")
    if warnings:
        response["warnings"] = list(warnings)
    return {"apiVersion": api_version, "kind": "AdmissionReview", "response": response}


def _denial(api_version: str, uid: str, code: int, message: str, warnings: tuple[str, ...]) -> dict[str, Any]:
    review = _response(api_version, uid, allowed=False, warnings=warnings)
    review["response"]["status"] = {"code": code, "message": message, "reason": _status_reason(code)}
    return review


def _status_reason(code: int) -> str:
    return {400: "BadRequest", 403: "Forbidden"}.get(code, "InternalError")


def _decide(request: dict[str, Any], settings: Settings, api_version: str, base: dict[str, Any]) -> Outcome:
    uid = base["uid"]
    kind, operation, namespace = base["kind"], base["operation"], base["namespace"]
    kind_ref = request.get("kind") if isinstance(request.get("kind"), dict) else {}
    assert isinstance(kind_ref, dict)
    group = str(kind_ref.get("group", ""))
    obj = request.get("object")

    def outcome(review: dict[str, Any], result: Result, reason: str, **extra: Any) -> Outcome:
        return Outcome(review=review, decision=Decision(result, reason), **base, **extra)

    def allow(result: Result, reason: str, warnings: tuple[str, ...] = ()) -> Outcome:
        if warnings and result in ("skipped", "validated"):
            result = "warned"
        review = _response(api_version, uid, allowed=True, warnings=warnings)
        return outcome(review, result, reason, warnings=warnings)

    if request.get("subResource"):
        return allow("skipped", "subresource")
    is_pod = kind == "Pod" and group == ""
    is_workload = workloads.is_workload(kind, group)
    if not is_pod and not is_workload:
        return allow("skipped", "unsupported-kind")
    if (is_pod and operation != "CREATE") or (is_workload and operation not in ("CREATE", "UPDATE")):
        return allow("skipped", "operation")
    if not isinstance(obj, dict):
        message = for_user(f"{operation} of a {kind} without an object")
        return outcome(
            _denial(api_version, uid, 400, message, ()),
            "denied",
            "malformed-object",
            message=message,
            detail="no object",
        )

    try:
        if is_workload:
            if operation == "UPDATE" and _template_unchanged(request, kind):
                # Never block unrelated updates (scaling, finalizer removal) of a workload created
                # before the webhook or under older rules: report problems as warnings only.
                try:
                    checked = workloads.validate(obj, settings, namespace, kind)
                except Denied as denied:
                    return allow("warned", "template-unchanged", (denied.message,))
                return allow("validated", "template-unchanged", checked.warnings)
            checked = workloads.validate(obj, settings, namespace, kind)
            return allow(
                "validated", "package-url" if checked.requested else "no-package-url", checked.warnings
            )

        result = inject(obj, settings, namespace)
    except Denied as denied:
        review = _denial(api_version, uid, denied.code, denied.message, denied.warnings)
        return outcome(
            review,
            "denied",
            denied.reason,
            message=denied.message,
            detail=denied.detail,
            warnings=denied.warnings,
        )

    if not result.changed:
        reason = "already-injected" if result.requested else "no-package-url"
        return allow("skipped", reason, result.warnings)
    patch = make_patch(obj, result.pod)
    review = _response(api_version, uid, allowed=True, warnings=result.warnings, patch=patch)
    if not result.requested:
        # package-url removed from a pod that carries our status: what we injected is taken out.
        return outcome(review, "removed", "no-package-url", warnings=result.warnings)
    return outcome(review, "injected", "package-url", warnings=result.warnings)


def _template_unchanged(request: dict[str, Any], kind: str) -> bool:
    old, new = request.get("oldObject"), request.get("object")
    if not isinstance(old, dict) or not isinstance(new, dict):
        return False
    old_template, new_template = workloads.pod_template(old, kind), workloads.pod_template(new, kind)
    return old_template is not None and old_template == new_template


def review(body: Any, settings: Settings) -> Outcome:
    """Answer one AdmissionReview (already parsed from JSON). Raises BadReview when it cannot."""
    request = _request(body)
    api_version = str(body["apiVersion"])
    uid: str = request["uid"]
    kind_ref = request.get("kind")
    kind = str(kind_ref.get("kind", "")) if isinstance(kind_ref, dict) else ""
    obj = request.get("object")
    # Always the request's namespace: pods made by controllers arrive with generateName and often without
    # metadata.namespace, and the apiserver has already checked that a given one matches the request.
    ns = request.get("namespace")
    base: dict[str, Any] = {
        "uid": uid,
        "kind": kind,
        "operation": str(request.get("operation", "")),
        "namespace": ns if isinstance(ns, str) else "",
        "name": _object_name(obj) or str(request.get("name") or ""),
        "dry_run": request.get("dryRun") is True,
    }
    try:
        return _decide(request, settings, api_version, base)
    except BadReview:
        raise
    except Exception as exc:
        message = f"package-injector internal error, see webhook logs (uid {uid})"
        review = _denial(api_version, uid, 500, message, ())
        return Outcome(
            review=review, decision=Decision("error", "internal"), message=message, error=exc, **base
        )
