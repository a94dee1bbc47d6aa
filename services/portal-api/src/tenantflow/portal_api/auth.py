"""Bearer tokens issued by Entra ID to the portal API's multi-tenant app registration.

Checks, in order: RS256 only (no ``none``, no HMAC with the public key); a key from the
issuer's JWKS, refreshed on an unknown kid at most every ``jwks_min_refresh_seconds`` (one fetch
at a time, so a burst of forged kids cannot cause a refetch storm) and in the background before
the keys are ``jwks_max_age_seconds`` old (so a key Entra ID retires stops validating within that
age); ``aud`` exactly one string, our client id or App ID URI (Entra ID v2 access tokens carry
one audience); ``tid`` a GUID; ``iss`` exactly the v2 issuer of that tid; ``exp``/``nbf`` with a
small skew; ``oid`` a GUID. Users are identified by (tid, oid) only, never by email or UPN.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID

import httpx
import jwt

log = logging.getLogger(__name__)

ALGORITHM = "RS256"


class PortalRole(StrEnum):
    ADMIN = "Tenantflow.Admin"
    """Link tenants, activate Intune writing, change deployments."""
    OPERATOR = "Tenantflow.Operator"
    """Change deployments."""
    AUDITOR = "Tenantflow.Auditor"
    READER = "Tenantflow.Reader"
    CATALOG_ADMIN = "Tenantflow.CatalogAdmin"
    """Change the provider's app catalog; honoured for the provider's own tenant only."""


class AuthenticationError(Exception):
    """The bearer token is missing or not acceptable; the reason is for logs, not clients."""


@dataclass(frozen=True)
class Principal:
    tenant_id: UUID
    object_id: UUID
    roles: frozenset[PortalRole]
    name: str | None = None

    def has_any(self, *roles: PortalRole) -> bool:
        return bool(self.roles & set(roles))


class JwksCache:
    """Signing keys by kid, fetched from ``url``.

    Refreshed in the background (``keep_fresh``) every half ``max_age_seconds``, so requests
    never wait for it; keys that are ``max_age_seconds`` old (every refresh failed since) are no
    longer trusted: a key Entra ID retired is refused within that age, whatever happens. An
    unknown kid refetches at once, at most every ``min_refresh_seconds``; one fetch runs at a
    time and the requests waiting on it see its result.
    """

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        min_refresh_seconds: float = 60.0,
        max_age_seconds: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._client = client
        self._min_refresh = min_refresh_seconds
        self._max_age = max_age_seconds
        self._clock = clock
        self._keys: dict[str, dict[str, Any]] = {}
        self._loaded_at = float("-inf")
        self._tried_at = float("-inf")
        self._lock = asyncio.Lock()
        self.fetches = 0

    def _trusted(self) -> dict[str, dict[str, Any]]:
        return self._keys if self._clock() - self._loaded_at < self._max_age else {}

    async def get(self, kid: str) -> dict[str, Any] | None:
        key = self._trusted().get(kid)
        if key is not None:
            return key
        async with self._lock:  # one refresh at a time; the others see its result
            if kid not in self._trusted() and self._may_fetch():
                await self._refresh()
        return self._trusted().get(kid)

    async def refresh_if_due(self) -> float:
        """Refresh when half the maximum age has passed (or the last attempt failed and the
        minimum interval has); the seconds until the next refresh is due."""
        if self._clock() >= self._due() and self._may_fetch():
            async with self._lock:
                await self._refresh()
        now = self._clock()
        return max(self._due() - now, self._tried_at + self._min_refresh - now, 0.0)

    async def keep_fresh(self) -> None:
        """Refresh the keys before they get old, until cancelled."""
        while True:
            delay = await self.refresh_if_due()
            await asyncio.sleep(delay)

    def _due(self) -> float:
        return self._loaded_at + self._max_age / 2

    def _may_fetch(self) -> bool:
        return self._clock() - self._tried_at >= self._min_refresh

    async def _refresh(self) -> None:
        """Fetch the keys; a failure is logged and leaves the keys held as they were."""
        self._tried_at = self._clock()
        self.fetches += 1
        try:
            response = await self._client.get(self.url)
            response.raise_for_status()
            keys = response.json().get("keys", [])
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("signing keys could not be fetched from %s: %r", self.url, exc)
            return
        self._keys = {key["kid"]: key for key in keys if "kid" in key}
        self._loaded_at = self._tried_at


class TokenValidator:
    def __init__(
        self,
        jwks: JwksCache,
        audiences: list[str],
        issuer_template: str,
        clock_skew_seconds: int = 120,
    ) -> None:
        self._jwks = jwks
        self._audiences = audiences
        self._issuer_template = issuer_template
        self._skew = clock_skew_seconds

    async def validate(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthenticationError(f"malformed token: {exc}") from exc
        if header.get("alg") != ALGORITHM:
            raise AuthenticationError(f"algorithm {header.get('alg')!r} is not {ALGORITHM}")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise AuthenticationError("no kid")
        jwk = await self._jwks.get(kid)
        if jwk is None:
            raise AuthenticationError(f"unknown signing key {kid!r}")
        try:
            key = jwt.PyJWK(jwk, algorithm=ALGORITHM).key
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audiences,
                leeway=self._skew,
                options={"require": ["exp", "nbf", "iat", "iss", "aud", "tid", "oid"]},
            )
        except jwt.PyJWTError as exc:
            raise AuthenticationError(f"rejected: {exc}") from exc
        if not isinstance(claims["aud"], str):
            # PyJWT accepts a list when any element matches; Entra ID issues one audience
            raise AuthenticationError("aud is not a single audience")
        try:
            tenant_id, object_id = UUID(str(claims["tid"])), UUID(str(claims["oid"]))
        except ValueError as exc:
            raise AuthenticationError("tid or oid is not a GUID") from exc
        expected_issuer = self._issuer_template.replace("{tenantid}", str(tenant_id))
        if claims["iss"] != expected_issuer:
            raise AuthenticationError(f"issuer {claims['iss']!r} is not {expected_issuer!r}")
        key_issuer = jwk.get("issuer")
        if key_issuer not in (None, self._issuer_template, expected_issuer):
            raise AuthenticationError("the signing key belongs to another issuer")
        roles = frozenset(
            PortalRole(role)
            for role in claims.get("roles", [])
            if role in PortalRole._value2member_map_
        )
        return Principal(tenant_id, object_id, roles, claims.get("name"))
