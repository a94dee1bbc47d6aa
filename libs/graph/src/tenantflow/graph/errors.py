"""What Entra ID's and Graph's error answers mean for a caller.

A token request Entra ID refuses is classified by its AADSTS code, as Microsoft documents them
(MicrosoftDocs/entra-docs, docs/identity-platform/reference-error-codes.md @04f6554, and
shared/reference/graph-wire-formats.md §6 for 7000229): only server errors, timeouts and
throttling are transient; every other refusal is a verdict (TokenRefused) with its reason.

A Graph 429 is a typed ``Throttled`` carrying its Retry-After (integer seconds, fractional
seconds or an HTTP date, all three documented) and ``x-ms-throttle-scope``, so a caller that
schedules work can schedule it, rather than sleep.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from typing import Any

from tenantflow.bus.errors import TransientError
from tenantflow.contracts.events import VerificationFailure as Failure

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
    def __init__(self, status: int, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.request_id = status, code, message, request_id


class Throttled(TransientError):
    """Graph answered 429: retry after ``retry_after_s`` seconds; ``scope`` is what was
    throttled (x-ms-throttle-scope, e.g. Tenant_Application/ReadWrite/{app}/{tenant})."""

    def __init__(
        self, retry_after_s: float, scope: str | None, request: str, request_id: str | None = None
    ) -> None:
        super().__init__(f"{request}: throttled, retry after {retry_after_s:.3g} s ({scope})")
        self.retry_after_s, self.scope, self.request_id = retry_after_s, scope, request_id


def retry_after_seconds(
    value: str | None, default: float, now: Callable[[], float] = time.time
) -> float:
    """Retry-After as integer seconds, fractional seconds or an HTTP date; ``default`` when it
    is missing or unreadable."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, parsed.timestamp() - now())


def graph_error(body: Any) -> tuple[str, str]:
    """Graph's OData error code and message, whatever the body holds."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    return str(error.get("code", "")), str(error.get("message", ""))


class ForeignLink(Exception):
    """A nextLink to a host other than the configured Graph endpoint: not followed, so the
    token is never sent there."""

    def __init__(self, link: str, graph_base_url: str) -> None:
        super().__init__(f"refused to follow {link!r}: not on {graph_base_url}")


class ResyncNeeded(Exception):
    """A delta token Graph no longer honours (410 Gone, syncStateNotFound, resyncRequired):
    start a full round again, from ``location`` when Graph gave one."""

    def __init__(self, location: str | None, code: str, message: str) -> None:
        super().__init__(f"resync needed ({code or 410}): {message}")
        self.location, self.code = location, code


RESYNC_CODES = frozenset({"syncStateNotFound", "resyncRequired"})
