"""`package-injector certs`: what the apiserver will verify, file modes, CA reuse."""

from __future__ import annotations

import argparse
import base64
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from webhook import certs


def verify(bundle_ca: bytes, cert_pem: bytes, name: str) -> None:
    """Verify as a TLS client would: chain to the CA, serverAuth, the name in the SANs."""
    store = Store([x509.load_pem_x509_certificate(bundle_ca)])
    builder = PolicyBuilder().store(store)
    subject: x509.verification.Subject
    try:
        subject = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        subject = x509.DNSName(name)
    builder.build_server_verifier(subject).verify(x509.load_pem_x509_certificate(cert_pem), [])


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    certs.add_arguments(parser)
    return certs.run(parser.parse_args(list(argv)))


def test_generate_covers_every_service_name_and_extras() -> None:
    bundle = certs.generate("pi", "tools", ips=["127.0.0.1"], dns=["localhost"])
    for name in ("pi", "pi.tools", "pi.tools.svc", "pi.tools.svc.cluster.local", "localhost", "127.0.0.1"):
        verify(bundle.ca_cert, bundle.cert, name)
    with pytest.raises(VerificationError):
        verify(bundle.ca_cert, bundle.cert, "other.tools.svc")
    leaf = x509.load_pem_x509_certificate(bundle.cert)
    assert leaf.subject.rfc4514_string() == "CN=pi.tools.svc"
    assert base64.b64decode(bundle.ca_bundle_b64) == bundle.ca_cert


def test_the_leaf_is_not_a_ca_and_the_ca_is() -> None:
    bundle = certs.generate("pi", "tools")
    ca = x509.load_pem_x509_certificate(bundle.ca_cert)
    leaf = x509.load_pem_x509_certificate(bundle.cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    # Another CA does not verify it: the caBundle must be the CA that signed it.
    with pytest.raises(VerificationError):
        verify(certs.generate("pi", "tools").ca_cert, bundle.cert, "pi.tools.svc")


def test_leaf_never_outlives_the_ca() -> None:
    ca = certs.new_ca("short", days=10)
    bundle = certs.generate("pi", "tools", days=365, ca=ca)
    assert (
        x509.load_pem_x509_certificate(bundle.cert).not_valid_after_utc
        <= x509.load_pem_x509_certificate(ca[0]).not_valid_after_utc
    )


def test_load_ca_rejects_mismatched_and_non_ca_pairs() -> None:
    a, b = certs.generate("a", "ns"), certs.generate("b", "ns")
    with pytest.raises(ValueError, match="does not match"):
        certs.load_ca(a.ca_cert, b.ca_key)
    with pytest.raises(ValueError, match="not a CA"):
        certs.load_ca(a.cert, a.key)


def test_cli_writes_files_with_safe_modes_and_prints_the_ca_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert cli("--service", "pi", "--namespace", "tools", "--out-dir", str(out), "--ip", "127.0.0.1") == 0
    stdout, stderr = capsys.readouterr()
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert modes == {"ca.crt": 0o644, "ca.key": 0o600, "tls.crt": 0o644, "tls.key": 0o600}
    assert base64.b64decode(stdout.strip()) == (out / "ca.crt").read_bytes()
    assert "kubectl -n tools create secret tls pi-tls" in stderr
    verify((out / "ca.crt").read_bytes(), (out / "tls.crt").read_bytes(), "127.0.0.1")


def test_cli_reuses_the_ca_so_the_ca_bundle_is_stable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("--service", "pi", "--namespace", "tools", "--out-dir", str(tmp_path))
    assert cli(*args) == 0
    first_bundle = capsys.readouterr().out
    first_leaf = (tmp_path / "tls.crt").read_bytes()
    assert cli(*args, "--days", "30") == 0
    captured = capsys.readouterr()
    assert captured.out == first_bundle
    assert "reusing the CA" in captured.err
    assert (tmp_path / "tls.crt").read_bytes() != first_leaf
    verify((tmp_path / "ca.crt").read_bytes(), (tmp_path / "tls.crt").read_bytes(), "pi.tools.svc")


def test_cli_refuses_half_a_ca_and_a_broken_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ca.crt").write_bytes(certs.new_ca("x")[0])
    assert cli("--service", "pi", "--namespace", "ns", "--out-dir", str(tmp_path)) == 2
    assert "found only one of" in capsys.readouterr().err
    (tmp_path / "ca.key").write_bytes(certs.new_ca("y")[1])
    assert cli("--service", "pi", "--namespace", "ns", "--out-dir", str(tmp_path)) == 2
    assert "does not match" in capsys.readouterr().err
    assert not (tmp_path / "tls.crt").exists()


def test_cli_rejects_non_positive_days(tmp_path: Path) -> None:
    assert cli("--service", "pi", "--namespace", "ns", "--out-dir", str(tmp_path), "--days", "0") == 2


@pytest.mark.parametrize(
    ("flag", "value"), [("--service", "Bad_Name"), ("--service", "1web"), ("--namespace", "Team.A")]
)
def test_cli_rejects_names_kubernetes_does_not_allow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    argv = {"--service": "pi", "--namespace": "ns", flag: value}
    assert cli(*[x for kv in argv.items() for x in kv], "--out-dir", str(tmp_path)) == 2
    assert f"{flag} {value!r} is not a valid" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_cli_out_dir_that_cannot_be_written_is_an_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Under a regular file: refused for root too (a permission bit would not stop root).
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert cli("--service", "pi", "--namespace", "ns", "--out-dir", str(blocker / "certs")) == 2
    assert f"error: cannot create --out-dir {blocker / 'certs'}: Not a directory" in capsys.readouterr().err
    assert cli("--service", "pi", "--namespace", "ns", "--out-dir", str(blocker)) == 2
    assert f"--out-dir {blocker} is not a directory" in capsys.readouterr().err
