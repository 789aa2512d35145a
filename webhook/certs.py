"""`package-injector certs`: a CA and a serving certificate for the webhook Service.

For `deploy/` users without cert-manager and for local development. The CA is reused when `ca.crt` and
`ca.key` already exist in the output directory, so re-running the command (for example to renew the serving
certificate) keeps the `caBundle` registered in the MutatingWebhookConfiguration valid: no churn, no outage.
The caBundle must be the CA, never the leaf (osm#4603): a leaf in the caBundle breaks at the next renewal.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import os
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_DAYS: Final = 365
DEFAULT_CA_DAYS: Final = 3650
# Backdate notBefore a little: clocks across a cluster are never exactly in step.
CLOCK_SKEW: Final = timedelta(minutes=5)

CA_CERT: Final = "ca.crt"
CA_KEY: Final = "ca.key"
TLS_CERT: Final = "tls.crt"
TLS_KEY: Final = "tls.key"


@dataclass(frozen=True)
class CertBundle:
    """PEM bytes of a CA and of the serving certificate it signed."""

    ca_cert: bytes
    ca_key: bytes
    cert: bytes
    key: bytes

    @property
    def ca_bundle_b64(self) -> str:
        """The value for `webhooks[].clientConfig.caBundle`."""
        return base64.b64encode(self.ca_cert).decode("ascii")


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names the apiserver may use for a Service reference (it dials `NAME.NS.svc`)."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """ECDSA keys sign: handshakes always, certificates and CRLs only for the CA."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def new_ca(common_name: str, days: int = DEFAULT_CA_DAYS) -> tuple[bytes, bytes]:
    """A self-signed CA allowed to sign serving certificates only (pathlen 0); returns (cert, key) PEM."""
    key = _new_key()
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(signs_certificates=True),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _public_der(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_ca(
    ca_cert_pem: bytes, ca_key_pem: bytes
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey]:
    """Parse a CA pair and check that the key belongs to the certificate and that it is a CA."""
    cert = x509.load_pem_x509_certificate(ca_cert_pem)
    key = serialization.load_pem_private_key(ca_key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError("the CA key must be an EC or RSA key")
    if _public_der(cert.public_key()) != _public_der(key.public_key()):
        raise ValueError("the CA key does not match the CA certificate")
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise ValueError("the CA certificate is not a CA (basicConstraints CA:FALSE or missing)")
    return cert, key


def issue(
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    dns_names: list[str],
    ips: list[str] | None = None,
    days: int = DEFAULT_DAYS,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> tuple[bytes, bytes]:
    """A serving certificate for the names, signed by the CA; returns (cert, key) PEM.

    The validity never outlasts the CA. `not_before`/`not_after` let tests make not-yet-valid or expired
    certificates.
    """
    ca_cert, ca_key = load_ca(ca_cert_pem, ca_key_pem)
    if not dns_names and not ips:
        raise ValueError("a serving certificate needs at least one DNS name or IP address")
    key = _new_key()
    now = datetime.now(UTC)
    start = not_before or now - CLOCK_SKEW
    end = not_after or min(now + timedelta(days=days), ca_cert.not_valid_after_utc)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips or []]
    common_name = dns_names[0] if dns_names else (ips or [""])[0]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(signs_certificates=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def generate(
    service: str,
    namespace: str,
    *,
    days: int = DEFAULT_DAYS,
    ca_days: int = DEFAULT_CA_DAYS,
    ips: list[str] | None = None,
    dns: list[str] | None = None,
    ca: tuple[bytes, bytes] | None = None,
) -> CertBundle:
    """A CA (new, or the given (cert, key) PEM pair) and a serving certificate for the Service names."""
    ca_cert, ca_key = ca or new_ca(f"{service}.{namespace} webhook CA", ca_days)
    # The `.svc` name first: it becomes the subject CN, the name the apiserver dials.
    names = [
        f"{service}.{namespace}.svc",
        *service_dns_names(service, namespace),
        *(d for d in dns or [] if d),
    ]
    cert, key = issue(ca_cert, ca_key, list(dict.fromkeys(names)), ips or [], days)
    return CertBundle(ca_cert=ca_cert, ca_key=ca_key, cert=cert, key=key)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write through a temporary file and rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def write_bundle(bundle: CertBundle, out_dir: Path) -> None:
    """Write the four files: keys 0600, certificates 0644."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _write(out_dir / CA_CERT, bundle.ca_cert, 0o644)
    _write(out_dir / CA_KEY, bundle.ca_key, 0o600)
    _write(out_dir / TLS_KEY, bundle.key, 0o600)
    _write(out_dir / TLS_CERT, bundle.cert, 0o644)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `package-injector certs`."""
    parser.add_argument("--service", required=True, help="name of the webhook Service")
    parser.add_argument("--namespace", required=True, help="namespace of the webhook Service")
    parser.add_argument(
        "--out-dir", required=True, type=Path, help="directory for ca.crt, ca.key, tls.crt, tls.key"
    )
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS, help="validity of the serving certificate")
    parser.add_argument("--ca-days", type=int, default=DEFAULT_CA_DAYS, help="validity of a new CA")
    parser.add_argument("--ip", action="append", default=[], help="extra IP address SAN (repeatable)")
    parser.add_argument("--dns", action="append", default=[], help="extra DNS name SAN (repeatable)")


# A Service name is a DNS-1035 label (starts with a letter); a namespace a DNS-1123 label.
_SERVICE_NAME: Final = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_NAMESPACE_NAME: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None


def _argument_problems(args: argparse.Namespace) -> list[str]:
    """Names no Service or namespace can have would give a certificate for a host nobody dials."""
    problems = []
    if not _SERVICE_NAME.match(args.service):
        problems.append(
            f"--service {args.service!r} is not a valid Service name: lowercase letters, digits and '-', "
            "starting with a letter, at most 63 characters"
        )
    if not _NAMESPACE_NAME.match(args.namespace):
        problems.append(
            f"--namespace {args.namespace!r} is not a valid namespace name: lowercase letters, digits and "
            "'-', at most 63 characters"
        )
    if args.days <= 0 or args.ca_days <= 0:
        problems.append("--days and --ca-days must be positive")
    return problems


def _writable_dir(out_dir: Path) -> str | None:
    """Why `out_dir` cannot take the files, or None; checked before anything is generated or written."""
    if out_dir.exists() and not out_dir.is_dir():
        return f"--out-dir {out_dir} is not a directory"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create --out-dir {out_dir}: {exc.strerror or exc}"
    if not os.access(out_dir, os.W_OK | os.X_OK):
        return f"cannot write to --out-dir {out_dir}: permission denied"
    return None


def run(args: argparse.Namespace) -> int:
    """Write the files and print the caBundle to register; reuse the CA found in --out-dir."""
    out_dir: Path = args.out_dir
    problems = _argument_problems(args)
    if not problems:
        unwritable = _writable_dir(out_dir)
        problems += [unwritable] if unwritable else []
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    ca: tuple[bytes, bytes] | None = None
    ca_cert_path, ca_key_path = out_dir / CA_CERT, out_dir / CA_KEY
    if ca_cert_path.exists() != ca_key_path.exists():
        print(
            f"error: found only one of {ca_cert_path} and {ca_key_path}; remove it or add the other",
            file=sys.stderr,
        )
        return 2
    try:
        if ca_cert_path.exists():
            ca = (_read(ca_cert_path), _read(ca_key_path))
            load_ca(*ca)
            print(f"reusing the CA in {out_dir} (the caBundle stays the same)", file=sys.stderr)
        bundle = generate(
            args.service,
            args.namespace,
            days=args.days,
            ca_days=args.ca_days,
            ips=args.ip,
            dns=args.dns,
            ca=ca,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    leaf = x509.load_pem_x509_certificate(bundle.cert)
    if leaf.not_valid_after_utc < datetime.now(UTC) + timedelta(days=args.days) - timedelta(hours=1):
        print(
            f"warning: the CA expires {leaf.not_valid_after_utc:%Y-%m-%d}, "
            "so the serving certificate does too; "
            "delete ca.crt and ca.key to make a new CA (and re-register the caBundle)",
            file=sys.stderr,
        )
    try:
        write_bundle(bundle, out_dir)
    except OSError as exc:
        print(f"error: cannot write to {out_dir}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"wrote {CA_CERT}, {CA_KEY}, {TLS_CERT}, {TLS_KEY} to {out_dir}", file=sys.stderr)
    print(
        f"serving certificate valid until {leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}; "
        "create the Secret with:\n"
        f"  kubectl -n {args.namespace} create secret tls {args.service}-tls "
        f"--cert={out_dir / TLS_CERT} --key={out_dir / TLS_KEY}\n"
        "and set webhooks[].clientConfig.caBundle to the line printed on stdout",
        file=sys.stderr,
    )
    print(bundle.ca_bundle_b64)
    return 0
