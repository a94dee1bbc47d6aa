"""An enterprise app's client credential, as MSAL takes it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import SecretStr


@dataclass(frozen=True)
class AppCredentials:
    """An app registration's client credential: a certificate (preferred) or a secret."""

    client_id: UUID
    secret: str | None = None
    certificate: Path | None = None
    """PEM of the certificate registered on the app."""
    private_key: Path | None = None
    """PEM of its private key."""

    def __post_init__(self) -> None:
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("a certificate credential needs both the certificate and its key")
        if self.certificate is None and not self.secret:
            raise ValueError(f"app {self.client_id} has neither a secret nor a certificate")

    @classmethod
    def of(
        cls,
        client_id: UUID,
        secret: SecretStr | None,
        certificate: Path | None,
        private_key: Path | None,
    ) -> AppCredentials:
        """From a service's settings, the secret unwrapped."""
        return cls(
            client_id, secret.get_secret_value() if secret else None, certificate, private_key
        )

    def for_msal(self) -> str | dict[str, str]:
        if self.certificate is None or self.private_key is None:
            assert self.secret is not None
            return self.secret
        certificate_pem = self.certificate.read_bytes()
        der = x509.load_pem_x509_certificate(certificate_pem).public_bytes(Encoding.DER)
        return {
            "private_key": self.private_key.read_text(),
            "thumbprint": hashlib.sha1(der, usedforsecurity=False).hexdigest(),
            "public_certificate": certificate_pem.decode(),
        }
