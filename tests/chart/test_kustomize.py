"""deploy/: the kustomize base equals the chart's defaults; overlays validate and wire certificates right."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509

from tests.chart.helpers import (
    DEPLOY,
    all_of,
    kustomize,
    one,
    release_objects,
    render,
    validate_all,
)

HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")


def _normalize(doc: dict[str, Any]) -> dict[str, Any]:
    """Drop what only Helm (labels, config checksum) or only kustomize (name hash) adds."""
    doc = yaml.safe_load(yaml.safe_dump(doc))
    metas = [doc["metadata"]]
    if doc["kind"] == "Deployment":
        template = doc["spec"]["template"]
        metas.append(template["metadata"])
        template["metadata"].pop("annotations", None)
        for volume in template["spec"]["volumes"]:
            if "configMap" in volume:
                volume["configMap"]["name"] = re.sub(r"-[a-z0-9]{10}$", "", volume["configMap"]["name"])
    if doc["kind"] == "ConfigMap":
        doc["metadata"]["name"] = re.sub(r"-[a-z0-9]{10}$", "", doc["metadata"]["name"])
        doc["data"] = {k: yaml.safe_load(v) for k, v in doc["data"].items()}
    if doc["kind"] == "MutatingWebhookConfiguration":
        for webhook in doc["webhooks"]:
            webhook["clientConfig"].pop("caBundle", None)
    for meta in metas:
        for label in HELM_ONLY_LABELS:
            meta.get("labels", {}).pop(label, None)
    return doc


def _key(doc: dict[str, Any]) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def test_base_equals_the_chart_defaults() -> None:
    chart = {_key(d): d for d in map(_normalize, release_objects(render())) if d["kind"] != "Secret"}
    base = {_key(d): d for d in map(_normalize, kustomize(DEPLOY / "base")) if d["kind"] != "Namespace"}
    assert set(base) == set(chart)
    for key, doc in chart.items():
        assert base[key] == doc, f"deploy/base differs from the chart for {key}"


def test_base_namespace_enforces_restricted_pods() -> None:
    (ns,) = all_of(kustomize(DEPLOY / "base"), "Namespace")
    assert ns["metadata"]["name"] == "package-injector"
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_base_and_cert_manager_overlay_validate() -> None:
    validate_all(kustomize(DEPLOY / "base"))
    docs = kustomize(DEPLOY / "overlays" / "cert-manager")
    validate_all(docs)
    mwc = one(docs, "MutatingWebhookConfiguration")
    namespace, name = mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].split("/")
    serving = one(docs, "Certificate", name)
    assert serving["metadata"]["namespace"] == namespace == "package-injector"
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == serving["spec"]["secretName"]
    chart = render({"tls": {"mode": "certManager"}})
    kinds = ("Certificate", "Issuer")
    assert {_key(d): d["spec"] for d in chart if d["kind"] in kinds} == {
        _key(d): d["spec"] for d in docs if d["kind"] in kinds
    }


def _certs_command() -> str:
    return f"{sys.executable} -m webhook"


def test_generated_certs_route(tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, deploy, ignore=shutil.ignore_patterns("certs", "cabundle-patch.yaml"))
    env = {**os.environ, "PACKAGE_INJECTOR": _certs_command()}
    script = deploy / "generate-certs.sh"

    def generate() -> list[dict[str, Any]]:
        out = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return kustomize(deploy / "overlays" / "generated-certs")

    docs = generate()
    validate_all(docs)
    secret = one(docs, "Secret", "package-injector-tls")
    assert secret["type"] == "kubernetes.io/tls"
    bundles = {
        base64.b64decode(w["clientConfig"]["caBundle"])
        for w in one(docs, "MutatingWebhookConfiguration")["webhooks"]
    }
    assert bundles == {base64.b64decode(secret["data"]["ca.crt"])}
    ca = x509.load_pem_x509_certificate(bundles.pop())
    served = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    served.verify_directly_issued_by(ca)
    sans = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "package-injector.package-injector.svc" in sans.get_values_for_type(x509.DNSName)
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "package-injector-tls"

    # Renewal: a second run re-issues the serving certificate and keeps the CA, so the caBundle holds.
    again = generate()
    assert one(again, "Secret", "package-injector-tls")["data"]["tls.crt"] != secret["data"]["tls.crt"]
    assert one(again, "Secret", "package-injector-tls")["data"]["ca.crt"] == secret["data"]["ca.crt"]
