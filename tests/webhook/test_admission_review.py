"""AdmissionReview in, AdmissionReview out, without HTTP: every branch and its Decision."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.webhook.reviews import apply_response, review
from webhook import admission
from webhook.admission import BadReview
from webhook.inject import inject
from webhook.settings import Settings

URL = "https://files.example.com/site.tar.gz"
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
PodFactory = Callable[..., dict[str, Any]]


def deployment(annotations: dict[str, str], own: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "shop", "namespace": "shop", "annotations": own or {}},
        "spec": {
            "selector": {"matchLabels": {"app": "shop"}},
            "template": {
                "metadata": {"labels": {"app": "shop"}, "annotations": annotations},
                "spec": {"containers": [{"name": "shop", "image": "shop:1"}]},
            },
        },
    }


def test_injects_and_the_patch_yields_the_injected_pod(make_pod: PodFactory, settings: Settings) -> None:
    pod = make_pod({"package-url": URL})
    body = review(pod)
    out = admission.review(body, settings)
    response = out.review["response"]
    assert out.review["apiVersion"] == "admission.k8s.io/v1" and out.review["kind"] == "AdmissionReview"
    assert response["uid"] == body["request"]["uid"] and response["allowed"] is True
    assert apply_response(pod, response) == inject(pod, settings, "shop").pod
    assert str(out.decision) == "injected:package-url"
    assert (out.namespace, out.name, out.kind, out.operation) == ("shop", "web-5d4f8b7c9-*", "Pod", "CREATE")


def test_v1beta1_is_answered_in_kind(make_pod: PodFactory, settings: Settings) -> None:
    out = admission.review(
        review(make_pod({"package-url": URL}), api_version="admission.k8s.io/v1beta1"), settings
    )
    assert out.review["apiVersion"] == "admission.k8s.io/v1beta1" and "patch" in out.review["response"]


def test_dry_run_is_answered_the_same(make_pod: PodFactory, settings: Settings) -> None:
    pod = make_pod({"package-url": URL})
    wet, dry = admission.review(review(pod), settings), admission.review(review(pod, dry_run=True), settings)
    assert dry.dry_run and not wet.dry_run
    assert dry.review["response"]["patch"] == wet.review["response"]["patch"]


def test_namespace_comes_from_the_request(make_pod: PodFactory, settings: Settings) -> None:
    pod = make_pod({"package-url": URL})
    pod["metadata"]["namespace"] = "elsewhere"
    assert admission.review(review(pod, namespace="shop"), settings).namespace == "shop"
    # Never the object's: a review without a namespace is logged without one.
    assert admission.review(review(pod, namespace=""), settings).namespace == ""


def test_pod_without_url_gets_no_patch(make_pod: PodFactory, settings: Settings) -> None:
    out = admission.review(review(make_pod({"app": "x"})), settings)
    assert out.review["response"] == {"uid": out.uid, "allowed": True}
    assert str(out.decision) == "skipped:no-package-url"


def test_typo_without_url_is_allowed_with_a_warning(make_pod: PodFactory, settings: Settings) -> None:
    out = admission.review(review(make_pod({"package-ulr": URL})), settings)
    assert out.review["response"]["allowed"] is True and "patch" not in out.review["response"]
    assert out.review["response"]["warnings"] == [
        'package-injector: annotation "package-ulr" is not a package-injector key and is ignored; '
        'did you mean "package-url"?'
    ]
    assert str(out.decision) == "warned:no-package-url"


def test_warnings_travel_with_the_patch(make_pod: PodFactory, settings: Settings) -> None:
    pod = make_pod({"package-url": URL, "package-sha256": SHA, "package-sha265": "x"})
    out = admission.review(review(pod), settings)
    assert "patch" in out.review["response"] and len(out.review["response"]["warnings"]) == 1
    assert out.decision.result == "injected"


def test_already_injected_pod_gets_no_patch(make_pod: PodFactory, settings: Settings) -> None:
    injected = inject(make_pod({"package-url": URL, "package-sha256": SHA}), settings).pod
    out = admission.review(review(injected), settings)
    assert "patch" not in out.review["response"] and str(out.decision) == "skipped:already-injected"


def test_invalid_annotation_is_denied_with_status(make_pod: PodFactory, settings: Settings) -> None:
    out = admission.review(review(make_pod({"package-url": "ftp://x/y", "package-sha265": "x"})), settings)
    response = out.review["response"]
    assert response["allowed"] is False
    assert response["status"] == {
        "code": 400,
        "reason": "BadRequest",
        "message": (
            'package-injector: annotation "package-url": must be an absolute https://, oci:// or s3:// URL'
        ),
    }
    assert "did you mean" in response["warnings"][0]
    assert str(out.decision) == "denied:invalid-annotation"


def test_policy_denial_is_403(make_pod: PodFactory) -> None:
    out = admission.review(
        review(make_pod({"package-url": URL})), Settings(allowed_hosts=["other.example.com"])
    )
    assert out.review["response"]["status"]["code"] == 403 and str(out.decision) == "denied:policy"


def test_conflict_denial(make_pod: PodFactory, settings: Settings) -> None:
    pod = make_pod({"package-url": URL}, init_containers=[{"name": "package-downloader", "image": "x"}])
    out = admission.review(review(pod), settings)
    assert out.review["response"]["status"]["code"] == 400 and str(out.decision) == "denied:conflict"


@pytest.mark.parametrize("operation", ["UPDATE", "DELETE", "CONNECT"])
def test_pods_are_only_mutated_on_create(make_pod: PodFactory, settings: Settings, operation: str) -> None:
    pod = make_pod({"package-url": "ftp://invalid"})
    out = admission.review(review(pod, operation=operation, old=pod), settings)
    assert out.review["response"] == {"uid": out.uid, "allowed": True}
    assert str(out.decision) == "skipped:operation"


def test_pod_subresources_are_skipped(make_pod: PodFactory, settings: Settings) -> None:
    out = admission.review(
        review(make_pod({"package-url": URL}), sub_resource="ephemeralcontainers"), settings
    )
    assert "patch" not in out.review["response"] and str(out.decision) == "skipped:subresource"


@pytest.mark.parametrize("operation", ["CREATE", "UPDATE"])
def test_workload_with_bad_template_is_denied(operation: str, settings: Settings) -> None:
    old = deployment({"package-url": URL})
    new = deployment({"package-url": URL, "package-strip-components": "x"})
    out = admission.review(review(new, kind="Deployment", operation=operation, old=old), settings)
    assert out.review["response"]["allowed"] is False
    assert '"package-strip-components": must be an integer' in out.review["response"]["status"]["message"]


def test_workloads_are_never_mutated(settings: Settings) -> None:
    template = deployment({"package-url": URL, "package-sha256": SHA})
    out = admission.review(review(template, kind="Deployment"), settings)
    assert out.review["response"] == {"uid": out.uid, "allowed": True}
    assert str(out.decision) == "validated:package-url"


def test_workload_metadata_annotation_is_warned(settings: Settings) -> None:
    out = admission.review(review(deployment({}, own={"package-url": URL}), kind="Deployment"), settings)
    assert out.review["response"]["allowed"] is True
    assert "move it to spec.template.metadata.annotations" in out.review["response"]["warnings"][0]
    assert out.decision.result == "warned"


def test_unrelated_update_of_an_old_invalid_workload_is_not_blocked(settings: Settings) -> None:
    broken = deployment({"package-url": URL, "package-sha256": "x"})
    scaled = deployment({"package-url": URL, "package-sha256": "x"})
    scaled["metadata"]["finalizers"] = []
    out = admission.review(review(scaled, kind="Deployment", operation="UPDATE", old=broken), settings)
    assert out.review["response"]["allowed"] is True
    assert "must be 64 hex digits" in out.review["response"]["warnings"][0]
    assert str(out.decision) == "warned:template-unchanged"


def test_cronjob_v1beta1(settings: Settings) -> None:
    tmpl = deployment({"package-url": "nope"})["spec"]["template"]
    cron = {
        "kind": "CronJob",
        "metadata": {"name": "c"},
        "spec": {"jobTemplate": {"spec": {"template": tmpl}}},
    }
    out = admission.review(review(cron, kind="CronJob"), settings)
    assert out.review["response"]["allowed"] is False


def test_unknown_kinds_are_allowed(settings: Settings) -> None:
    out = admission.review(
        review({"metadata": {"annotations": {"package-url": "x"}}}, kind="Widget"), settings
    )
    assert out.review["response"] == {"uid": out.uid, "allowed": True}
    assert str(out.decision) == "skipped:unsupported-kind"
    same_name = review(deployment({"package-url": "x"}), kind="Deployment", group="example.com")
    assert admission.review(same_name, settings).review["response"]["allowed"] is True


def test_create_without_object_is_denied(settings: Settings) -> None:
    out = admission.review(review(None), settings)
    assert out.review["response"]["allowed"] is False and str(out.decision) == "denied:malformed-object"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ([], "expected a JSON object"),
        ({"kind": "Pod", "apiVersion": "v1"}, "expected kind AdmissionReview"),
        ({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v2", "request": {}}, "expected kind"),
        ({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}, "has no request"),
        ({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"uid": 5}}, "no uid"),
    ],
)
def test_non_reviews_are_refused(body: Any, expected: str, settings: Settings) -> None:
    with pytest.raises(BadReview, match=expected):
        admission.review(body, settings)


def test_internal_error_denies_with_500(
    make_pod: PodFactory, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(admission, "inject", boom)
    body = review(make_pod({"package-url": URL}))
    out = admission.review(body, settings)
    uid = body["request"]["uid"]
    assert out.review["response"] == {
        "uid": uid,
        "allowed": False,
        "status": {
            "code": 500,
            "reason": "InternalError",
            "message": f"package-injector internal error, see webhook logs (uid {uid})",
        },
    }
    assert str(out.decision) == "error:internal" and isinstance(out.error, RuntimeError)


def patch_of(out: admission.Outcome) -> list[dict[str, Any]]:
    return json.loads(base64.b64decode(out.review["response"]["patch"]))  # type: ignore[no-any-return]


def test_patch_for_a_bare_pod_adds_the_missing_arrays_whole() -> None:
    """No initContainers, volumes or volumeMounts keys: `add .../-` would fail, whole arrays are added."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bare", "annotations": {"example.com/package-url": URL, "a~b/c": "x"}},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
    }
    settings = Settings(annotation_prefix="example.com/")
    out = admission.review(review(pod), settings)
    ops = {(op["op"], op["path"]) for op in patch_of(out)}
    assert ops == {
        ("add", "/metadata/annotations/example.com~1package-status"),
        ("add", "/spec/initContainers"),
        ("add", "/spec/volumes"),
        ("add", "/spec/containers/0/volumeMounts"),
    }
    assert apply_response(pod, out.review["response"]) == inject(pod, settings, "shop").pod


def test_patch_touches_only_what_changes(make_pod: PodFactory, settings: Settings) -> None:
    """Existing arrays get appended or inserted items; nothing we do not own is replaced or removed."""
    pod = make_pod({"package-url": URL}, init_containers=[{"name": "migrate", "image": "m"}])
    ops = patch_of(admission.review(review(pod), settings))
    assert all(op["op"] == "add" for op in ops), ops
    assert {op["path"] for op in ops} == {
        "/metadata/annotations/package-status",
        "/spec/initContainers/0",
        "/spec/volumes/1",
        "/spec/containers/0/volumeMounts/1",
    }


def test_removed_package_url_gets_a_patch_that_takes_our_pieces_out(
    make_pod: PodFactory, settings: Settings
) -> None:
    original = make_pod({"package-url": URL})
    injected = inject(original, settings).pod
    del injected["metadata"]["annotations"]["package-url"]
    out = admission.review(review(injected), settings)
    assert str(out.decision) == "removed:no-package-url"
    restored = apply_response(injected, out.review["response"])
    del original["metadata"]["annotations"]["package-url"]
    assert restored == original
    assert "removed what it injected" in out.review["response"]["warnings"][0]


def test_workload_denial_names_the_template(settings: Settings) -> None:
    out = admission.review(
        review(deployment({"package-url": URL, "package-sha256": "x"}), kind="Deployment"), settings
    )
    assert out.review["response"]["status"]["message"] == (
        'package-injector: Deployment spec.template: annotation "package-sha256": must be 64 hex digits '
        "(sha256sum output)"
    )
    assert out.detail == "invalid annotations: package-sha256"


def test_denial_detail_for_logs_has_no_annotation_values(make_pod: PodFactory, settings: Settings) -> None:
    pod = make_pod({"package-url": URL, "package-mount-path": "/opt/secret-project"})
    pod["spec"]["containers"][0]["volumeMounts"].append({"name": "d", "mountPath": "/opt/secret-project"})
    out = admission.review(review(pod), settings)
    assert str(out.decision) == "denied:conflict"
    assert "/opt/secret-project" in out.message and "secret-project" not in out.detail
    assert out.detail == 'container "app" mounts volume "d" at the package mount path'


def test_dry_run_decides_exactly_like_a_real_request(make_pod: PodFactory, settings: Settings) -> None:
    for given in ({"package-url": URL}, {"package-url": "ftp://x"}, {"team": "a"}):
        pod = make_pod(given)
        wet, dry = (
            admission.review(review(pod), settings),
            admission.review(review(pod, dry_run=True), settings),
        )
        wet_response = {k: v for k, v in wet.review["response"].items() if k != "uid"}
        dry_response = {k: v for k, v in dry.review["response"].items() if k != "uid"}
        assert wet_response == dry_response and wet.decision == dry.decision
