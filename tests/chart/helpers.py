"""Small helpers for the chart tests: render with helm-python-sdk, pick objects, validate, match selectors."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "package-injector"
DEPLOY = REPO / "deploy"
RELEASE = "package-injector"
NAMESPACE = "package-injector"

# Custom resources: kubernetes-validate has no schema for them; the tests check their shape instead.
CRD_KINDS = {"Certificate", "Issuer", "ClusterIssuer", "ServiceMonitor"}
# Every Kubernetes minor the chart supports (Chart.yaml kubeVersion >=1.34; the e2e tests run 1.37).
SCHEMA_VERSIONS = ["1.34", "1.35", "1.36", "1.37"]
HOOK = "helm.sh/hook"
SYSTEM_NAMESPACES = ["kube-system", "kube-public", "kube-node-lease"]


@functools.cache
def _chart() -> helm.Chart:
    return helm.Chart.load(CHART)


def render_files(values: dict[str, Any] | None = None, *, namespace: str = NAMESPACE) -> dict[str, str]:
    """{template path: rendered text} for an install of the chart."""
    return _chart().render(values or {}, name=RELEASE, namespace=namespace, is_install=True)


def render(values: dict[str, Any] | None = None, *, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """Every object the chart renders (hooks included), in template order."""
    docs: list[dict[str, Any]] = []
    for path, text in sorted(render_files(values, namespace=namespace).items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def notes(values: dict[str, Any] | None = None) -> str:
    return next(t for p, t in render_files(values).items() if p.endswith("NOTES.txt"))


def hooks(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if HOOK in d["metadata"].get("annotations", {})]


def release_objects(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if HOOK not in d["metadata"].get("annotations", {})]


def all_of(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in all_of(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, (
        f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    )
    return found[0]


def validate(doc: dict[str, Any], version: str) -> None:
    """Strict schema validation (unknown fields fail); raises kubernetes_validate's ValidationError."""
    kubernetes_validate.validate(doc, version, strict=True)


def validate_all(docs: list[dict[str, Any]], label: str = "") -> int:
    """Each non-CRD object against every schema version; fails at the first error, else returns the count."""
    checked = 0
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        for version in SCHEMA_VERSIONS:
            try:
                validate(doc, version)
            except kubernetes_validate.ValidationError as err:
                where = f"{doc['kind']}/{doc['metadata']['name']} @ {version}"
                pytest.fail(f"{label}: {where}: {err.message}" if label else f"{where}: {err.message}")
            checked += 1
    return checked


def kustomize(path: Path) -> list[dict[str, Any]]:
    out = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Kubernetes LabelSelector semantics (matchLabels AND matchExpressions)."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        present = key in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[op]
        if not ok:
            return False
    return True


def namespace_labels(name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The labels Kubernetes puts on every namespace, plus any given."""
    return {"kubernetes.io/metadata.name": name, **(extra or {})}
