"""TLS modes: the chart-generated CA (auto) and cert-manager."""

from __future__ import annotations

import base64
import time
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.chart.helpers import NAMESPACE, RELEASE, all_of, one, render

SERVICE_DNS = [
    RELEASE,
    f"{RELEASE}.{NAMESPACE}",
    f"{RELEASE}.{NAMESPACE}.svc",
    f"{RELEASE}.{NAMESPACE}.svc.cluster.local",
]


def _cert(b64: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(b64))


def _public(obj: Any) -> bytes:
    return bytes(
        obj.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def test_auto_ca_bundle_is_the_ca_that_signed_the_served_certificate() -> None:
    docs = render()
    ca_secret = one(docs, "Secret", f"{RELEASE}-ca")
    tls_secret = one(docs, "Secret", f"{RELEASE}-tls")
    bundles = {w["clientConfig"]["caBundle"] for w in one(docs, "MutatingWebhookConfiguration")["webhooks"]}
    assert bundles == {ca_secret["data"]["tls.crt"]} == {tls_secret["data"]["ca.crt"]}

    ca = _cert(bundles.pop())
    served = _cert(tls_secret["data"]["tls.crt"])
    # The caBundle is the CA, not the leaf (osm#4603), and the served certificate chains to it.
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert served.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    served.verify_directly_issued_by(ca)
    # The apiserver dials NAME.NAMESPACE.svc: it must be a SAN.
    sans = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(SERVICE_DNS) <= set(sans.get_values_for_type(x509.DNSName))
    eku = served.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    # The key in the Secret belongs to the served certificate; the CA key to the CA.
    key = serialization.load_pem_private_key(base64.b64decode(tls_secret["data"]["tls.key"]), None)
    assert _public(key.public_key()) == _public(served.public_key())
    ca_key = serialization.load_pem_private_key(base64.b64decode(ca_secret["data"]["tls.key"]), None)
    assert _public(ca_key.public_key()) == _public(ca.public_key())
    # Validity as configured, and the expiry annotation the next upgrade reads.
    days = (served.not_valid_after_utc - served.not_valid_before_utc).days
    assert 364 <= days <= 366
    not_after = int(tls_secret["metadata"]["annotations"]["package-injector.dev/not-after"])
    assert abs(not_after - served.not_valid_after_utc.timestamp()) < 3600
    assert not_after > time.time() + 300 * 86400


def test_auto_webhook_pods_mount_only_the_serving_pair() -> None:
    docs = render()
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == f"{RELEASE}-tls"
    assert [i["key"] for i in volumes["tls"]["secret"]["items"]] == ["tls.crt", "tls.key"]
    assert f"{RELEASE}-ca" not in str(volumes), "the CA key is never mounted"


def test_auto_certificates_are_new_without_cluster_access() -> None:
    """Rendering offline (helm template, Argo CD) cannot reuse the CA: the README documents this."""
    first = one(render(), "Secret", f"{RELEASE}-ca")["data"]["tls.crt"]
    second = one(render(), "Secret", f"{RELEASE}-ca")["data"]["tls.crt"]
    assert first != second


def test_cert_manager_mode() -> None:
    docs = render({"tls": {"mode": "certManager"}})
    assert not all_of(docs, "Secret"), "cert-manager writes the Secrets"
    webhook_config = one(docs, "MutatingWebhookConfiguration")
    for w in webhook_config["webhooks"]:
        assert "caBundle" not in w["clientConfig"], "cainjector fills it"
    inject_from = webhook_config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    namespace, name = inject_from.split("/")
    serving = one(docs, "Certificate", name)
    assert namespace == NAMESPACE == serving["metadata"]["namespace"]
    assert set(serving["spec"]["dnsNames"]) == set(SERVICE_DNS)
    assert serving["spec"]["secretName"] == f"{RELEASE}-tls"
    assert "server auth" in serving["spec"]["usages"]
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == serving["spec"]["secretName"]
    # A CA chain, so a renewed serving certificate keeps the caBundle valid.
    ca = one(docs, "Certificate", f"{RELEASE}-ca")
    assert ca["spec"]["isCA"] is True
    ca_issuer = one(docs, "Issuer", f"{RELEASE}-ca")
    assert ca_issuer["spec"] == {"ca": {"secretName": ca["spec"]["secretName"]}}
    assert serving["spec"]["issuerRef"] == {
        "name": f"{RELEASE}-ca",
        "kind": "Issuer",
        "group": "cert-manager.io",
    }
    assert one(docs, "Issuer", f"{RELEASE}-selfsigned")["spec"] == {"selfSigned": {}}
    assert ca["spec"]["issuerRef"]["name"] == f"{RELEASE}-selfsigned"
    for d in all_of(docs, "Certificate") + all_of(docs, "Issuer"):
        assert d["apiVersion"] == "cert-manager.io/v1"


def test_cert_manager_with_an_existing_issuer() -> None:
    ref = {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    docs = render({"tls": {"mode": "certManager", "certManager": {"issuerRef": ref}}})
    assert not all_of(docs, "Issuer")
    (serving,) = all_of(docs, "Certificate")
    assert serving["spec"]["issuerRef"] == ref
