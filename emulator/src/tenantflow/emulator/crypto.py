"""The emulator's TLS authority, its token-signing keys, and app certificates.

Everything is generated on first start and kept in the state directory, so a CA that a client
trusted stays valid across restarts.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=825)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _self_signed(key: rsa.RSAPrivateKey, common_name: str, ca: bool) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
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
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    return builder.sign(key, hashes.SHA256())


def thumbprint_sha1(cert: x509.Certificate) -> str:
    """The x5t of a certificate: base64url of its SHA-1 digest."""
    return b64url(cert.fingerprint(hashes.SHA1()))  # noqa: S303 - x5t is defined as SHA-1


def thumbprint_sha256(cert: x509.Certificate) -> str:
    return b64url(cert.fingerprint(hashes.SHA256()))


@dataclass
class CertificateAuthority:
    """The CA clients trust (its PEM is printed and served) and the server certificate it signs."""

    directory: Path

    @property
    def ca_path(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def server_cert_path(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key_path(self) -> Path:
        return self.directory / "server-key.pem"

    def ensure(self, hosts: list[str]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        ca_key_path = self.directory / "ca-key.pem"
        if self.ca_path.exists() and ca_key_path.exists():
            ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
            assert isinstance(ca_key, rsa.RSAPrivateKey)
            ca_cert = x509.load_pem_x509_certificate(self.ca_path.read_bytes())
        else:
            ca_key = _new_key()
            ca_cert = _self_signed(ca_key, "tenantflow emulator CA", ca=True)
            _write_private(ca_key_path, _pem_key(ca_key))
            self.ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        self._issue_server_cert(ca_key, ca_cert, hosts)

    def _issue_server_cert(
        self, ca_key: rsa.RSAPrivateKey, ca_cert: x509.Certificate, hosts: list[str]
    ) -> None:
        key = _new_key()
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        _write_private(self.server_key_path, _pem_key(key))
        self.server_cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@dataclass
class SigningKey:
    """One RSA key Entra signs tokens with, published in the JWKS with its certificate."""

    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @functools.cached_property
    def kid(self) -> str:
        return thumbprint_sha1(self.certificate)

    def jwk(self, issuer: str) -> dict[str, object]:
        numbers = self.private_key.public_key().public_numbers()
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        return {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
            "x5c": [base64.b64encode(der).decode()],
            "issuer": issuer,
        }

    @classmethod
    def generate(cls) -> SigningKey:
        key = _new_key()
        return cls(key, _self_signed(key, "accounts.emulator.tenantflow", ca=False))


@dataclass
class KeySet:
    """Signing keys, newest last. Tokens are signed with the active key; retired keys leave the
    JWKS, so tokens they signed stop validating (key rollover)."""

    keys: list[SigningKey] = field(default_factory=list)

    @property
    def active(self) -> SigningKey:
        return self.keys[-1]

    def find(self, kid: object) -> SigningKey | None:
        """The published key with this kid; None for an unknown or retired one."""
        return next((key for key in self.keys if key.kid == kid), None)

    def add(self) -> SigningKey:
        key = SigningKey.generate()
        self.keys.append(key)
        return key

    def retire(self, kid: str) -> None:
        remaining = [key for key in self.keys if key.kid != kid]
        if len(remaining) == len(self.keys):
            raise KeyError(kid)
        if not remaining:
            raise ValueError("cannot retire the last signing key")
        self.keys = remaining

    def jwks(self, issuer: str) -> dict[str, object]:
        return {"keys": [key.jwk(issuer) for key in self.keys]}


@dataclass(frozen=True)
class AppCertificate:
    """A client certificate registered on an app (certificate credentials)."""

    certificate_pem: bytes
    private_key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.certificate_pem)

    @property
    def x5t(self) -> str:
        return thumbprint_sha1(self.certificate)

    @property
    def x5t_s256(self) -> str:
        return thumbprint_sha256(self.certificate)

    @property
    def sha1_hex(self) -> str:
        return hashlib.sha1(  # noqa: S324 - the thumbprint MSAL asks for is SHA-1
            self.certificate.public_bytes(serialization.Encoding.DER)
        ).hexdigest()

    @classmethod
    def load_or_create(cls, directory: Path, name: str) -> AppCertificate:
        cert_path, key_path = directory / f"{name}.pem", directory / f"{name}-key.pem"
        if not (cert_path.exists() and key_path.exists()):
            directory.mkdir(parents=True, exist_ok=True)
            key = _new_key()
            cert = _self_signed(key, name, ca=False)
            _write_private(key_path, _pem_key(key))
            cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(cert_path.read_bytes(), key_path.read_bytes())


def _write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.write_bytes(data)
