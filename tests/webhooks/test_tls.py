"""HTTPS deliveries dial the checked address but verify the certificate against the URL's host name."""

from __future__ import annotations

import datetime as dt
import ssl

import pytest
from standardwebhooks.webhooks import Webhook

from atelier_platform.webhooks import delivery

x509 = pytest.importorskip("cryptography.x509")  # ships with moto, a dev dependency
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

pytestmark = pytest.mark.django_db

HOST = "receiver.example"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A throw-away CA and a server certificate for HOST, as PEM files."""
    folder = tmp_path_factory.mktemp("tls")
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(_name("Atelier test CA")).issuer_name(_name("Atelier test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder().subject_name(_name(HOST)).issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


@pytest.fixture
def tls_receiver(start_receiver, certificates):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates["cert"], certificates["key"])
    return start_receiver(context)


@pytest.fixture
def trust_test_ca(monkeypatch, certificates):
    """The delivery trusts the test CA (in production: the system's trust store)."""
    real = ssl.create_default_context
    monkeypatch.setattr(delivery.ssl, "create_default_context", lambda *a, **k: real(cafile=str(certificates["ca"])))


def test_an_untrusted_certificate_fails_the_attempt(project, tls_receiver, resolve_as, endpoint_for, emit):
    resolve_as(HOST, ["127.0.0.1"])
    endpoint_for(project, f"https://{HOST}:{tls_receiver.port}/in")
    [row] = emit(project)
    assert delivery.attempt(str(row.pk)) == "retrying"
    row.refresh_from_db()
    assert row.last_error.startswith("TLS error") and "CERTIFICATE_VERIFY_FAILED" in row.last_error
    assert tls_receiver.requests == []


def test_a_trusted_certificate_for_the_url_host_delivers(project, tls_receiver, resolve_as, endpoint_for, emit, trust_test_ca):
    resolve_as(HOST, ["127.0.0.1"])
    endpoint = endpoint_for(project, f"https://{HOST}:{tls_receiver.port}/in")
    [row] = emit(project)
    assert delivery.attempt(str(row.pk)) == "succeeded"
    [request] = tls_receiver.requests
    assert request.headers["Host"] == f"{HOST}:{tls_receiver.port}"
    Webhook(endpoint.secret).verify(request.body, request.headers)


def test_a_certificate_for_another_name_fails_even_when_trusted(project, tls_receiver, resolve_as, endpoint_for, emit,
                                                                 trust_test_ca):
    resolve_as("impostor.example", ["127.0.0.1"])
    endpoint_for(project, f"https://impostor.example:{tls_receiver.port}/in")
    [row] = emit(project)
    assert delivery.attempt(str(row.pk)) == "retrying"
    row.refresh_from_db()
    assert row.last_error.startswith("TLS error") and "impostor.example" in row.last_error
    assert tls_receiver.requests == []
