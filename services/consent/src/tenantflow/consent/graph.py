"""Entra ID tokens (MSAL, one app instance per tenant, token cache in memory) and Graph calls
that honour Retry-After on 429/503/504 and surface what stays transient as TransientError.

A token request Entra ID refuses is classified by its AADSTS code, as Microsoft documents them
(MicrosoftDocs/entra-docs, docs/identity-platform/reference-error-codes.md @04f6554, and
shared/reference/graph-wire-formats.md §6 for 7000229): only server errors, timeouts and
throttling are transient; every other refusal is a verdict (TokenRefused) with its reason, so a
verification ends instead of retrying for ever.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import re
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import msal
import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tenantflow.bus.errors import TransientError
from tenantflow.contracts.events import VerificationFailure as Failure

RETRYABLE = {429, 500, 502, 503, 504}
GRAPH_DEFAULT_SCOPE = "https://graph.microsoft.com/.default"

REFUSALS: dict[int, Failure] = {
    # the app is not in the tenant: never consented, or its enterprise app was deleted
    700016: Failure.ADMIN_CONSENT_MISSING,  # UnauthorizedClient_DoesNotMatchRequest
    7000229: Failure.ADMIN_CONSENT_MISSING,  # missing service principal
    65001: Failure.ADMIN_CONSENT_MISSING,  # DelegationDoesNotExist
    90094: Failure.ADMIN_CONSENT_MISSING,  # AdminConsentRequired
    # the tenant
    90002: Failure.TENANT_NOT_FOUND,  # InvalidTenantName
    90038: Failure.TENANT_NOT_FOUND,  # NationalCloudTenantRedirection: in another cloud
    # a tenant admin disabled the enterprise app (accountEnabled false)
    7000112: Failure.APP_DISABLED,  # UnauthorizedClientApplicationDisabled
    70001: Failure.APP_DISABLED,  # UnauthorizedClient: the application is disabled
    1000031: Failure.APP_DISABLED,  # the application can't be accessed at this time
    # a tenant policy blocks the app's token (Conditional Access for workload identities)
    53003: Failure.ACCESS_BLOCKED,  # BlockedByConditionalAccess
    530032: Failure.ACCESS_BLOCKED,  # BlockedByConditionalAccessOnSecurityPolicy
    # tenantflow's own credential for the app: an operator has to fix it
    7000215: Failure.APP_CREDENTIALS_INVALID,  # invalid client secret
    7000222: Failure.APP_CREDENTIALS_INVALID,  # client secret expired
    70002: Failure.APP_CREDENTIALS_INVALID,  # InvalidClient
    7000218: Failure.APP_CREDENTIALS_INVALID,  # neither client_assertion nor client_secret
    700025: Failure.APP_CREDENTIALS_INVALID,  # the client is public
    700027: Failure.APP_CREDENTIALS_INVALID,  # client assertion failed signature validation
    700030: Failure.APP_CREDENTIALS_INVALID,  # certificate subject name not authorized
    50012: Failure.APP_CREDENTIALS_INVALID,  # AuthenticationFailed (the client assertion)
    50048: Failure.APP_CREDENTIALS_INVALID,  # SubjectMismatchesIssuer in the client assertion
    # not in Microsoft's table, but what Entra ID answers for an assertion outside its validity
    700024: Failure.APP_CREDENTIALS_INVALID,
}
"""AADSTS codes a client-credentials token request can meet that retrying cannot change."""

TRANSIENT_AADSTS = frozenset(
    {
        50000,  # TokenIssuanceError: an issue with the sign-in service
        50033,  # RetryableError
        50196,  # LoopDetected: too many identical requests; throttling
        90006,  # ExternalServerRetryableError
        90012,  # RequestTimeout
        90024,  # RequestBudgetExceededError
        90033,  # MsodsServiceUnavailable
        90055,  # TenantThrottlingError
        90090,  # GraphRetryableError
        90091,  # GraphServiceUnreachable
    }
)
TRANSIENT_OAUTH_ERRORS = frozenset({"temporarily_unavailable", "server_error", "slow_down"})


class TokenRefused(Exception):
    """Entra ID refused the app a token for a reason retrying cannot change."""

    def __init__(self, reason: Failure, code: int | None, description: str) -> None:
        super().__init__(f"AADSTS{code}: {description}" if code else description)
        self.reason, self.code, self.description = reason, code, description


def classify_token_error(result: dict[str, Any]) -> TokenRefused | TransientError:
    """What an error answer from the token endpoint means (MSAL hands 4xx answers over as
    dicts; it raises for 5xx)."""
    codes = [code for code in result.get("error_codes", []) if isinstance(code, int)]
    error = result.get("error")
    description = str(result.get("error_description", "")).split("\r\n")[0][:500]
    for code in codes:
        if code in REFUSALS:
            return TokenRefused(REFUSALS[code], code, description)
    if (
        set(codes) & TRANSIENT_AADSTS
        or not isinstance(error, str)
        or error in TRANSIENT_OAUTH_ERRORS
    ):
        return TransientError(f"Entra ID failed transiently: {error}: {description}")
    return TokenRefused(Failure.TOKEN_REFUSED, codes[0] if codes else None, description or error)


class GraphCallFailed(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code = status, code


class _VerifyingSession(requests.Session):
    """requests lets REQUESTS_CA_BUNDLE override a session's own ``verify``; passing it on each
    request keeps the CA we were given."""

    def __init__(self, verify: str | bool) -> None:
        super().__init__()
        self._verify = verify

    def request(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("verify", self._verify)
        return super().request(*args, **kwargs)


def retry_after_seconds(value: str | None, default: float) -> float:
    """Retry-After as integer seconds, fractional seconds or an HTTP date."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time())


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


@dataclass
class GraphClient:
    login_base_url: str
    graph_base_url: str
    ca_bundle: str | None
    attempts: int = 4
    backoff_s: float = 0.5
    _msal: dict[tuple[UUID, str], msal.ConfidentialClientApplication] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._verify: str | bool = self.ca_bundle or True
        self._http = httpx.AsyncClient(
            base_url=self.graph_base_url,
            timeout=30.0,
            verify=ssl.create_default_context(cafile=self.ca_bundle) if self.ca_bundle else True,
        )

    async def close(self) -> None:
        await self._http.aclose()

    def _app(self, credentials: AppCredentials, tenant: str) -> msal.ConfidentialClientApplication:
        key = (credentials.client_id, tenant)
        if key not in self._msal:
            self._msal[key] = msal.ConfidentialClientApplication(
                str(credentials.client_id),
                client_credential=credentials.for_msal(),
                authority=f"{self.login_base_url}/{tenant}",
                instance_discovery=self.login_base_url == "https://login.microsoftonline.com",
                http_client=_VerifyingSession(self._verify),
            )
        return self._msal[key]

    def forget_tokens(self, tenant: str) -> None:
        """Drop cached tokens for ``tenant``: a re-check must ask Entra again, since a revoked
        consent leaves earlier tokens valid until they expire."""
        for key in [key for key in self._msal if key[1] == tenant]:
            del self._msal[key]

    async def token(self, credentials: AppCredentials, tenant: str) -> str:
        try:
            app = await asyncio.to_thread(self._app, credentials, tenant)
            result = await asyncio.to_thread(app.acquire_token_for_client, [GRAPH_DEFAULT_SCOPE])
        except requests.RequestException as exc:
            self._msal.pop((credentials.client_id, tenant), None)
            raise TransientError(f"Entra ID unreachable: {exc}") from exc
        except msal.exceptions.MsalServiceError as exc:
            # MSAL raises (rather than returning an error) when Entra answers 5xx or 429 without
            # a token response: an outage, not a verdict
            self._msal.pop((credentials.client_id, tenant), None)
            status = re.search(r"HTTP Error: (\d+)", str(exc))
            if status and (int(status.group(1)) >= 500 or int(status.group(1)) == 429):
                raise TransientError(f"Entra ID failed: {exc}") from exc
            raise
        except ValueError as exc:  # MSAL: the tenant's discovery document was refused (90002)
            self._msal.pop((credentials.client_id, tenant), None)
            raise TokenRefused(Failure.TENANT_NOT_FOUND, 90002, str(exc)) from exc
        if "access_token" in result:
            return str(result["access_token"])
        raise classify_token_error(result)

    async def request(self, token: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        for attempt in range(1, self.attempts + 1):
            try:
                response = await self._http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                if attempt == self.attempts:
                    raise TransientError(f"Graph unreachable: {exc!r}") from exc
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
                continue
            if response.status_code in RETRYABLE:
                if attempt == self.attempts:
                    raise TransientError(f"Graph answered {response.status_code} {attempt} times")
                wait = retry_after_seconds(
                    response.headers.get("Retry-After"), self.backoff_s * 2 ** (attempt - 1)
                )
                await asyncio.sleep(wait)
                continue
            if response.status_code >= 400:
                error = (response.json() if response.content else {}).get("error", {})
                raise GraphCallFailed(
                    response.status_code, error.get("code", ""), error.get("message", "")
                )
            body: dict[str, Any] = response.json() if response.content else {}
            return body
        raise AssertionError("unreachable")
