"""What one review may cost (`webhook.limits`), and malformed input answered with a 4xx, never an error.

Each body goes through `webhook.app.answer`, the pure part of `POST /mutate` (parse, caps, review, encode);
`test_guard.py` and `test_fuzz.py` send such bodies over real TLS.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest

from tests.webhook.reviews import review
from webhook import annotations as ann
from webhook import limits
from webhook.admission import Outcome
from webhook.app import _log, answer
from webhook.inject import Denied, inject
from webhook.settings import Settings

URL = "https://files.example.com/site.tar.gz"
SETTINGS = Settings()


def pod(annotations: dict[str, Any], containers: list[Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "annotations": annotations},
        "spec": {"containers": containers or [{"name": "app", "image": "nginx"}], **spec},
    }


def answered(raw: bytes | dict[str, Any]) -> Outcome:
    result = answer(raw if isinstance(raw, bytes) else json.dumps(raw).encode(), SETTINGS)
    assert isinstance(result, tuple), result
    outcome, encoded = result
    assert json.loads(encoded)["response"]["uid"] == outcome.uid
    return outcome


def denial(raw: bytes | dict[str, Any]) -> dict[str, Any]:
    outcome = answered(raw)
    assert outcome.error is None and outcome.decision.result == "denied", outcome.decision
    status: dict[str, Any] = outcome.review["response"]["status"]
    assert status["code"] == 400
    return status


def refusal(raw: bytes) -> tuple[str, str]:
    result = answer(raw, SETTINGS)
    assert not isinstance(result, tuple), result[0].decision
    return result.reason, result.message


def raw_review(obj: str, uid: str = '"u-1"') -> bytes:
    """An AdmissionReview as text, for what json.dumps cannot write (lone surrogates, NaN)."""
    text = (
        '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":UID,'
        '"kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"shop",'
        '"object":OBJ}}'
    )
    return text.replace("UID", uid).replace("OBJ", obj.replace("URL", URL)).encode()


# --- malformed input seen in issue 10 ----------------------------------------------------------------


@pytest.mark.parametrize("url", ["https://[::1/a.tgz", "https://[zz]/a.tgz", "https://]/a.tgz["])
def test_bad_bracketed_host_is_a_denial_that_quotes_nothing(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    outcome = answered(review(pod({"package-url": url})))
    status = outcome.review["response"]["status"]
    assert status["code"] == 400 and "is not a valid URL" in status["message"]
    assert "::1" not in status["message"] and "zz" not in status["message"]
    with caplog.at_level(logging.INFO, logger="package_injector.admission"):
        _log(outcome, 0.001)
    assert "[" not in caplog.text and "a.tgz" not in caplog.text


def test_deeply_nested_status_owns_nothing() -> None:
    status = "[" * 5000 + "]" * 5000
    outcome = answered(review(pod({"package-url": URL, "package-status": status})))
    assert outcome.decision.result == "injected"


@pytest.mark.parametrize(
    "body",
    [
        raw_review("{}", uid='"\\ud800"'),
        raw_review('{"metadata":{"annotations":{"\\udfff":"x","package-url":"URL"}}}'),
        raw_review(
            '{"metadata":{"annotations":{"package-url":"URL"}},"spec":{"containers":[{"name":"a\\ud800"}]}}'
        ),
    ],
    ids=["uid", "annotation-key", "container-name"],
)
def test_lone_surrogate_is_a_400(body: bytes) -> None:
    assert refusal(body) == (
        "too-complex",
        "request body contains a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text",
    )


def test_a_surrogate_pair_is_text() -> None:
    assert answered(raw_review("{}", uid='"\\ud83d\\ude00"')).uid == "\U0001f600"


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
def test_nan_and_infinity_are_not_json(number: str) -> None:
    reason, _ = refusal(
        raw_review('{"metadata":{"annotations":{"package-url":"URL"}},"x":NUMBER}'.replace("NUMBER", number))
    )
    assert reason == "malformed-json"


@pytest.mark.parametrize("depth", [101, 900, 5000])
def test_nesting_is_capped(depth: int) -> None:
    reason, message = refusal(raw_review("[" * depth + "]" * depth))
    assert reason in ("too-complex", "malformed-json") and ("100 levels" in message or "JSON" in message)


def test_nesting_within_the_cap_is_answered() -> None:
    obj = json.loads(json.dumps(pod({"package-url": URL})))
    obj["spec"]["affinity"] = json.loads("[" * 90 + "]" * 90)
    assert answered(review(obj)).decision.result == "injected"


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"containers": [{"name": ["x"]}]}, "spec.containers[0].name"),
        ({"containers": [{"name": {"a": 1}}]}, "spec.containers[0].name"),
        ({"containers": [{"name": "a", "env": 5}]}, "spec.containers[0].env"),
        ({"containers": [{"name": "a", "env": [{"name": []}]}]}, "spec.containers[0].env[0].name"),
        ({"containers": [{"name": "a", "volumeMounts": [{"name": "v", "mountPath": 3}]}]}, "mountPath"),
        (
            {"containers": [{"name": "a"}], "initContainers": [{"name": "package-downloader", "env": {}}]},
            "env",
        ),
        ({"containers": [{"name": "a"}], "volumes": [{"name": 7}]}, "spec.volumes[0].name"),
        ({"containers": [{"name": "a"}], "imagePullSecrets": [{"name": [1]}]}, "imagePullSecrets[0].name"),
        ({"containers": "a"}, "spec.containers must be a list of objects"),
    ],
)
def test_wrong_types_are_denied_with_the_path(spec: dict[str, Any], path: str) -> None:
    obj = pod({"package-url": URL})
    obj["spec"] = spec
    assert path in denial(review(obj))["message"]


def test_wrong_types_in_an_unannotated_pod_are_not_our_business() -> None:
    obj = pod({})
    obj["spec"] = {"containers": [{"name": ["x"]}]}
    assert answered(review(obj)).decision.result == "skipped"


# --- caps --------------------------------------------------------------------------------------------


def test_thousands_of_listed_containers_are_denied_naming_the_cap() -> None:
    containers = [{"name": f"c{i}", "image": "x"} for i in range(3000)]
    names = ",".join(c["name"] for c in containers)
    status = denial(review(pod({"package-url": URL, "package-containers": names}, containers)))
    assert f"more than {limits.MAX_CONTAINERS} containers" in status["message"]


def test_the_container_cap_itself_is_injected() -> None:
    containers = [{"name": f"c{i}", "image": "x"} for i in range(limits.MAX_CONTAINERS)]
    names = ",".join(c["name"] for c in containers)
    outcome = answered(review(pod({"package-url": URL, "package-containers": names}, containers)))
    assert outcome.decision.result == "injected"
    patch = json.loads(base64.b64decode(outcome.review["response"]["patch"]))
    mounts = [op for op in patch if op["path"].endswith("/volumeMounts")]
    assert len(mounts) == limits.MAX_CONTAINERS


def test_entries_are_capped() -> None:
    env = [{"name": f"V{i}", "value": "x"} for i in range(limits.MAX_ENTRIES)]
    status = denial(review(pod({"package-url": URL}, [{"name": "a", "env": env}])))
    assert f"more than {limits.MAX_ENTRIES}" in status["message"]


def test_annotation_caps_are_kubernetes_own() -> None:
    many = {f"k{i}": "v" for i in range(limits.MAX_ANNOTATIONS + 1)}
    assert f"the {limits.MAX_ANNOTATIONS} allowed" in denial(review(pod(many)))["message"]
    long_key = {"package-" + "x" * limits.MAX_KEY_LENGTH: "v"}
    assert f"({limits.MAX_KEY_LENGTH})" in denial(review(pod(long_key)))["message"]
    big = {"a": "x" * limits.MAX_ANNOTATIONS_BYTES}
    assert f"({limits.MAX_ANNOTATIONS_BYTES})" in denial(review(pod(big)))["message"]


def test_long_keys_never_enter_the_hint_cache() -> None:
    ann._close_key_cached.cache_clear()
    for i in range(50):
        ann.unknown_key_warnings({f"package-{'x' * 200}{i}": "v"}, SETTINGS)
    assert ann._close_key_cached.cache_info().currsize == 0
    assert ann.unknown_key_warnings({"package-ulr": "v"}, SETTINGS)[0].endswith('did you mean "package-url"?')
    assert ann._close_key_cached.cache_info().currsize == 1


def test_hint_length_bound_loses_no_hint() -> None:
    """Words longer than the bound cannot reach difflib's cutoff: checked against difflib itself."""
    for key in ann.USER_KEYS:
        tail = key.removeprefix(ann.FAMILY_PREFIX)
        word = tail + "x" * (ann._HINT_MAX_LEN + 1 - len(tail))
        assert ann._close_key_cached(word, True) is None
        assert ann._close_key_cached("package-" + word, False) is None


# --- the checks themselves ---------------------------------------------------------------------------


def test_check_document_is_iterative_and_counts_nodes() -> None:
    deep: Any = "x"
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(limits.TooComplex, match="100 levels"):
        limits.check_document(deep)
    shared = ["x"] * 10
    for _ in range(8):
        shared = [shared] * 10  # a YAML alias bomb: 10**9 paths over a few hundred objects
    with pytest.raises(limits.TooComplex, match="values"):
        limits.check_document(shared, max_nodes=10_000)
    limits.check_document(json.loads("[" * 100 + "]" * 100))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "\ud800", {"\udc00": 1}])
def test_check_document_strings(value: Any) -> None:
    limits.check_document({"a": [value]})  # not looked at unless asked
    with pytest.raises(limits.TooComplex):
        limits.check_document({"a": [value]}, strings=True)


def test_inject_refuses_the_same_as_the_webhook() -> None:
    obj = pod({"package-url": URL}, [{"name": 5}])
    with pytest.raises(Denied, match=r"spec.containers\[0\].name must be a string"):
        inject(obj, SETTINGS)
