"""Throw-away certificate authorities and certificates for TLS distribution tests.

Built with ``cryptography`` (a test-only dependency; the runtime never imports it)::

    pki = make_pki(tmp_path)
    pki.ca.cert                    # the cluster CA (PEM file)
    pki.node.cert, pki.node.key    # a node certificate signed by the CA (SAN 127.0.0.1)
    pki.client.cert, .key          # beamfleet's client certificate, signed by the CA
    pki.other_ca.cert              # an unrelated CA
    pki.other_node, pki.other_client  # certificates signed by the unrelated CA

Keys are EC P-256 (fast to make and to handshake) and written with mode 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    """One certificate and its private key, as PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """Everything a TLS distribution test needs, in one directory."""

    ca: Issued
    node: Issued
    client: Issued
    other_ca: Issued
    other_node: Issued
    other_client: Issued


def _write(path: Path, data: bytes, mode: int) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _save(
    directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> Issued:
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return Issued(
        _write(directory / f"{stem}.pem", cert.public_bytes(serialization.Encoding.PEM), 0o644),
        _write(directory / f"{stem}.key", pem_key, 0o600),
    )


def _builder(
    subject: str, issuer: x509.Name, public: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
    )


def make_ca(
    directory: Path, stem: str
) -> tuple[Issued, x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA: its files, certificate and key."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(f"beamfleet test {stem}", _name(f"beamfleet test {stem}"), key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _save(directory, stem, cert, key), cert, key


def issue(
    directory: Path,
    stem: str,
    ca: tuple[Issued, x509.Certificate, ec.EllipticCurvePrivateKey],
    *,
    hosts: tuple[str, ...] = ("127.0.0.1",),
) -> Issued:
    """A leaf certificate for ``stem`` signed by ``ca``, valid as TLS server and client."""
    _, ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName("localhost")]
    sans += [x509.IPAddress(ipaddress.ip_address(h)) for h in hosts]
    # OTP checks a peer node's certificate against the host part of its name as a DNS
    # name (also when it is an address), so the address is a dNSName too
    sans += [x509.DNSName(h) for h in hosts]
    cert = (
        _builder(stem, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return _save(directory, stem, cert, key)


def make_pki(directory: Path) -> Pki:
    """A cluster CA with a node and a client certificate, and an unrelated CA with both."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca(directory, "ca")
    other = make_ca(directory, "other-ca")
    return Pki(
        ca=ca[0],
        node=issue(directory, "node", ca),
        client=issue(directory, "client", ca),
        other_ca=other[0],
        other_node=issue(directory, "other-node", other),
        other_client=issue(directory, "other-client", other),
    )
