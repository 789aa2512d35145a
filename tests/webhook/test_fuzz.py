"""Structure-aware fuzzing of `POST /mutate`: thousands of mutated AdmissionReviews, no 5xx or internal error.

Each case starts from an apiserver-shaped review (every operation, Pods and every workload kind, other kinds,
subresources; annotated with valid and broken values, earlier injections, pull secrets) and gets one to
three mutations at random paths: wrong JSON types, removed keys and items, lone surrogates, NaN/Infinity,
numbers beyond a float, duplicate keys, deep nesting, huge values. The body is answered by
`webhook.app.answer` (the pure part of the handler); then:

- it never raises (over HTTP: no 5xx) and never decides `error:internal`;
- a 200 echoes the request's uid, and its JSON is strict (no NaN);
- a returned patch applies with `jsonpatch` (not our patch code), and when the object was a valid Pod
  (Kubernetes' JSON schema, strict, via `kubernetes-validate`) the patched one is valid too;
- a sample goes over real TLS to the real `package-injector serve` and must get the same answer;
- a sample of patches is applied by `kubectl patch --local` too, which must give the same object.

Seeded: `FUZZ_SEED` (default 10) and `FUZZ_CASES` (default 4000) reproduce or widen a run; a failure names
the seed and the case number, and the case's body is written to the test's tmp dir.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import json
import os
import random
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonpatch
import kubernetes_validate
import kubernetes_validate.utils
import pytest

from tests.support.webhook import running_webhook
from tests.webhook.reviews import review
from webhook.app import BAD_REQUEST_REASONS, answer
from webhook.inject import Denied, inject
from webhook.settings import Settings
from webhook.workloads import WORKLOADS

SEED = int(os.environ.get("FUZZ_SEED", "10"))
CASES = int(os.environ.get("FUZZ_CASES", "4000"))
OVER_TLS = 300
VALIDATED = 600  # patched cases whose input and output are checked against the schema
KUBECTL_GROUPS = 12  # kubectl runs; each patches every sampled pod that got the same patch
KUBECTL = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "kubectl"
SETTINGS = Settings(init_image_pull_secrets=["regcred"], max_size_limit="2Gi")
K8S_VERSION = kubernetes_validate.latest_version()

# --- the seeds of every case ------------------------------------------------------------------------

URLS = [
    "https://files.example.com/site.tar.gz",
    "http://files.example.com/a.tgz",
    "https://[::1]/a.tgz",
    "https://[::1/a.tgz",
    "https://[zz]/x",
    "https://user:pw@h/x",
    "ftp://h/x",
    "https://h:99999/x",
    "https:///x",
    " ",
    "https://h/$(HOME)/x",
    "https://h/\u00e9\u4e2d",
]
VALUES = {
    "package-sha256": ["a" * 64, "sha256:" + "B" * 64, "xyz"],
    "package-mount-path": ["/opt/pkg", "/etc", "relative", "/a/../b", "/", "/opt/x/"],
    "package-containers": ["app", "app,side", "nope", ",", "app,app", "Bad_Name"],
    "package-strip-components": ["0", "1", "-1", "99999", "x"],
    "package-secret": ["creds", "ns/creds", "BAD", "a" * 300],
    "package-size-limit": ["1Gi", "3Gi", "0", "-1", "abc", "1e3"],
    "package-init-position": ["first", "last", "middle"],
    "package-status": ["{}", "[", '{"version":1}', '{"version":1,"containers":[1],"volumes":[]}'],
    "pakage-url": ["x"],
    "package_url": ["x"],
    "example.com/package-url": ["x"],
}
ODD_VALUES: list[Any] = [
    None,
    0,
    -1,
    1.5,
    True,
    False,
    "",
    "x",
    "x" * 100_000,
    [],
    {},
    [1, "a", None],
    {"a": {"b": []}},
    10**30,
    "\u2028",
    "\x00",
]
RAW_TOKENS = ["NaN", "Infinity", "-Infinity", "1e999", '"\\ud800"', '"a\\udfff"', '"\\ud83d\\ude00"', "-0"]
OTHER_KINDS = ["ConfigMap", "Service", "Secret"]
OPERATIONS = ["CREATE", "UPDATE", "DELETE", "CONNECT"]


def base_pod(rng: random.Random) -> dict[str, Any]:
    names = rng.choice([["app"], ["app", "side"], ["app", "side", "third"]])
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "web-", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {
            "containers": [
                {
                    "name": n,
                    "image": "nginx:1.27",
                    "volumeMounts": [
                        {"name": "token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
                    ],
                    "env": [{"name": "A", "value": "1"}],
                }
                for n in names
            ],
            "volumes": [{"name": "token", "projected": {"sources": []}}],
        },
    }
    if rng.random() < 0.3:
        pod["spec"]["initContainers"] = [{"name": "setup", "image": "busybox"}]
    if rng.random() < 0.2:
        pod["spec"]["imagePullSecrets"] = [{"name": "regcred"}]
    if rng.random() < 0.2:
        pod["spec"]["securityContext"] = {"runAsUser": rng.choice([0, 1000])}
    annotations: dict[str, str] = {}
    if rng.random() < 0.85:
        annotations["package-url"] = URLS[0] if rng.random() < 0.6 else rng.choice(URLS)
    for key, values in VALUES.items():
        if rng.random() < 0.1:
            annotations[key] = values[0] if rng.random() < 0.6 else rng.choice(values)
    if annotations:
        pod["metadata"]["annotations"] = annotations
    if rng.random() < 0.25:  # an earlier injection, maybe with package-url gone since
        with contextlib.suppress(Denied):  # a denied base is still a fine base
            pod = copy.deepcopy(inject(pod, SETTINGS, "shop").pod)
        if rng.random() < 0.4:
            pod["metadata"].get("annotations", {}).pop("package-url", None)
    return pod


def base_review(rng: random.Random) -> dict[str, Any]:
    pod = base_pod(rng)
    roll = rng.random()
    if roll < 0.6:
        body = review(pod, operation=rng.choice(["CREATE"] * 8 + OPERATIONS))
    elif roll < 0.85:
        kind = rng.choice(sorted(WORKLOADS))
        template = {"metadata": pod["metadata"], "spec": pod["spec"]}
        obj: dict[str, Any] = {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "w"}}
        path = WORKLOADS[kind][1]
        node = obj
        for step in path[:-1]:
            node = node.setdefault(step, {})
        node[path[-1]] = template
        group = sorted(WORKLOADS[kind][0])[0]
        operation = rng.choice(["CREATE", "UPDATE", "DELETE"])
        old = copy.deepcopy(obj) if operation == "UPDATE" else None
        if old is not None and rng.random() < 0.5:
            old["metadata"]["labels"] = {"changed": "x"}
        body = review(obj, kind=kind, group=group, operation=operation, old=old)
    else:
        kind = rng.choice(OTHER_KINDS)
        body = review({"apiVersion": "v1", "kind": kind, "metadata": {"name": "o"}}, kind=kind, group="")
    if rng.random() < 0.05:
        body["request"]["subResource"] = rng.choice(["status", "binding", "ephemeralcontainers"])
    if rng.random() < 0.1:
        body["apiVersion"] = "admission.k8s.io/v1beta1"
    return body


# --- mutations --------------------------------------------------------------------------------------


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from paths(value, (*prefix, i))


def get(node: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        node = node[step]
    return node


@dataclass
class Case:
    number: int
    body: dict[str, Any]
    raw: bytes
    mutations: list[str]


def mutate(rng: random.Random, body: dict[str, Any], number: int) -> Case:
    raws: dict[str, str] = {}
    done: list[str] = []
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
        candidates = [p for p in paths(body) if p]
        # Favour the paths the webhook reads.
        favoured = [p for p in candidates if any(s in p for s in ("annotations", "containers", "request"))]
        path = rng.choice(favoured if favoured and rng.random() < 0.7 else candidates)
        parent, key = get(body, path[:-1]), path[-1]
        action = rng.random()
        if action < 0.45:
            parent[key] = copy.deepcopy(rng.choice(ODD_VALUES))
            done.append(f"{path}=odd")
        elif action < 0.6:
            del parent[key]
            done.append(f"del {path}")
        elif action < 0.78:
            token = f"@@RAW{len(raws)}@@"
            raws[json.dumps(token)] = rng.choice(RAW_TOKENS)
            parent[key] = token
            done.append(f"{path}=raw {raws[json.dumps(token)]}")
        elif action < 0.88 and isinstance(parent, dict):
            token = f"@@DUP{len(raws)}@@"
            raws[json.dumps(token)] = json.dumps(key)
            parent[token] = copy.deepcopy(rng.choice(ODD_VALUES))
            done.append(f"duplicate {path}")
        else:  # as text, so neither this test's walk nor json.dumps recurse into it
            depth = rng.choice([20, 99, 120, 2000])
            opens = [rng.choice(("[", '{"a":')) for _ in range(depth)]
            closes = ["]" if o == "[" else "}" for o in reversed(opens)]
            token = f"@@RAW{len(raws)}@@"
            raws[json.dumps(token)] = "".join(opens) + '"x"' + "".join(closes)
            parent[key] = token
            done.append(f"{path}=nested {depth}")
    text = json.dumps(body, ensure_ascii=rng.random() < 0.5)
    for token, raw in raws.items():
        text = text.replace(token, raw)
    return Case(number, body, text.encode("utf-8", "surrogatepass"), done)


def cases() -> list[Case]:
    rng = random.Random(SEED)
    return [mutate(rng, base_review(rng), number) for number in range(CASES)]


# --- checks -----------------------------------------------------------------------------------------


@functools.cache
def _cached_schema(filename: str, version: str) -> Any:
    return _SCHEMA_CONTENTS(filename, version)


_SCHEMA_CONTENTS = kubernetes_validate.utils.schema_contents


def valid_pod(pod: Any) -> bool:
    """Strictly valid against Kubernetes' Pod schema (schema files read once, not once per call)."""
    if not isinstance(pod, dict) or pod.get("apiVersion") != "v1" or pod.get("kind") != "Pod":
        return False
    try:
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError:
        return False
    return True


@dataclass
class Checked:
    case: Case
    answer: dict[str, Any] | None  # the 200 body, None for a 400
    original: Any  # request.object as the server parsed it (raw tokens in place, duplicates resolved)
    patched: dict[str, Any] | None
    patch: list[dict[str, Any]] | None


def strict_json(data: bytes) -> Any:
    def refuse(name: str) -> None:
        raise ValueError(f"{name} in an answer")

    return json.loads(data, parse_constant=refuse)


def check(case: Case, where: str) -> Checked:
    try:
        result = answer(case.raw, SETTINGS)
    except Exception as exc:  # what would have been a 500
        raise AssertionError(f"{where}: raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(result, tuple):
        assert result.reason in BAD_REQUEST_REASONS, where
        return Checked(case, None, None, None, None)
    outcome, encoded = result
    body = json.loads(case.raw)  # as the server read it: duplicate keys resolved the same way
    reply = strict_json(encoded)
    assert outcome.decision.result != "error", f"{where}: internal error {outcome.error!r}"
    response = reply["response"]
    assert response["uid"] == body["request"]["uid"], where
    status = response.get("status")
    assert status is None or 400 <= status["code"] < 500, f"{where}: {status}"
    if "patch" not in response:
        return Checked(case, reply, body["request"].get("object"), None, None)
    assert response["patchType"] == "JSONPatch", where
    patch = strict_json(base64.b64decode(response["patch"]))
    try:
        patched = jsonpatch.apply_patch(body["request"]["object"], patch)
    except jsonpatch.JsonPatchException as exc:
        raise AssertionError(f"{where}: the patch does not apply: {exc}") from exc
    return Checked(case, reply, body["request"]["object"], patched, patch)


def test_fuzzed_reviews(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kubernetes_validate.utils, "schema_contents", _cached_schema)
    checked: list[Checked] = []
    for case in cases():
        where = f"FUZZ_SEED={SEED} case {case.number} ({'; '.join(case.mutations) or 'no mutation'})"
        try:
            checked.append(check(case, where))
        except AssertionError:
            (tmp_path / f"case-{case.number}.json").write_bytes(case.raw)
            raise
    patched = [c for c in checked if c.patched is not None]
    assert sum(c.answer is None for c in checked) > CASES // 20, "too few 400s: mutations not reaching"
    assert len(patched) > CASES // 20, "too few injections: bases not reaching the injection"

    # The schema: a valid Pod stays valid once patched.
    validated = 0
    for c in patched[:VALIDATED]:
        if valid_pod(c.original):
            where = f"FUZZ_SEED={SEED} case {c.case.number}"
            assert valid_pod(c.patched), f"{where}: the patched pod is not valid: {c.patched}"
            validated += 1
    assert validated > VALIDATED // 10, f"only {validated} patched pods were valid to begin with"

    # kubectl, an independent JSON Patch implementation, on a sample grouped by patch.
    groups: dict[str, list[Checked]] = {}
    for c in patched:
        if valid_pod(c.original):
            groups.setdefault(json.dumps(c.patch), []).append(c)
        if len(groups) >= KUBECTL_GROUPS:
            break
    for number, (patch_text, members) in enumerate(groups.items()):
        members = members[:10]
        files = []
        for i, c in enumerate(members):
            path = tmp_path / f"kubectl-{number}-{i}.json"
            path.write_text(json.dumps(c.original))
            files += ["-f", str(path)]
        run = subprocess.run(
            [str(KUBECTL), "patch", "--local", *files, "--type=json", "-p", patch_text, "-o", "json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, f"FUZZ_SEED={SEED} cases {[c.case.number for c in members]}: {run.stderr}"
        decoder, text, results = json.JSONDecoder(), run.stdout.strip(), []
        while text:
            obj, end = decoder.raw_decode(text)
            results.append(obj)
            text = text[end:].strip()
        assert results == [c.patched for c in members], f"FUZZ_SEED={SEED} kubectl group {number}"
    refused = sum(c.answer is None for c in checked)
    print(  # shown with -s: how much of the space this run covered
        f"fuzz seed {SEED}: {len(checked)} cases, {refused} HTTP 400, {len(patched)} patched, "
        f"{validated} schema-validated, {sum(len(m[:10]) for m in groups.values())} also by kubectl "
        f"in {len(groups)} runs"
    )


def test_fuzzed_reviews_over_tls(tmp_path: Path) -> None:
    """A sample through the real server: same answers as in-process, never a 5xx."""
    sample = cases()[:: max(1, CASES // OVER_TLS)]
    env = {
        "PACKAGE_INJECTOR_INIT_IMAGE_PULL_SECRETS": '["regcred"]',
        "PACKAGE_INJECTOR_MAX_SIZE_LIMIT": "2Gi",
    }
    with running_webhook(tmp_path, env) as server:
        context = ssl.create_default_context(cafile=str(server.ca_file))
        with httpx.Client(verify=context, timeout=60) as client:
            for case in sample:
                where = f"FUZZ_SEED={SEED} case {case.number}"
                response = client.post(
                    server.url + "/mutate", content=case.raw, headers={"content-type": "application/json"}
                )
                assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:300]}"
                expected = answer(case.raw, SETTINGS)
                if isinstance(expected, tuple):
                    assert response.status_code == 200, where
                    assert response.content == expected[1], where
                else:
                    assert response.status_code == 400, where
                    reasons = {response.json()["error"], expected.reason}
                    # Nesting near the interpreter's recursion limit: json.loads itself gives up first
                    # (malformed-json) or our depth cap does (too-complex), by how deep the caller's stack is.
                    assert len(reasons) == 1 or reasons == {"malformed-json", "too-complex"}, where
        assert server.proc.poll() is None
