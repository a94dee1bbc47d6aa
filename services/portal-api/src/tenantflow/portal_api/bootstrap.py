"""Composition root of portal-api: builds everything the process runs, once."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx

from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.portal_api import handlers
from tenantflow.portal_api.auth import JwksCache, TokenValidator
from tenantflow.portal_api.catalog_seed import seed_catalog
from tenantflow.portal_api.models import SCHEMA
from tenantflow.portal_api.ratelimit import RateLimiter
from tenantflow.portal_api.settings import Settings

SERVICE = "portal-api"
MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"


@dataclass
class Portal:
    """What the routes use, built once: the runtime (database, outbox, bus), token checks, and
    the rate limits."""

    settings: Settings
    runtime: ServiceRuntime
    tokens: TokenValidator
    user_limits: RateLimiter
    tenant_limits: RateLimiter

    async def start(self) -> None:
        """Migrate, start the bus, and add the shipped catalog's missing apps."""
        await self.runtime.start()
        await seed_catalog(self.runtime.sessions, self.settings.catalog_seed)


def bootstrap(settings: Settings) -> Portal:
    runtime = ServiceRuntime.for_service(SERVICE, SCHEMA, MIGRATIONS, settings)
    tls = ssl.create_default_context()
    if settings.ca_bundle:
        tls.load_verify_locations(cafile=settings.ca_bundle)
    entra = httpx.AsyncClient(verify=tls, timeout=10.0)
    runtime.on_stop(entra.aclose)
    jwks = JwksCache(
        f"{settings.login_base_url.rstrip('/')}/common/discovery/v2.0/keys",
        entra,
        settings.jwks_min_refresh_seconds,
        settings.jwks_max_age_seconds,
    )
    runtime.in_background("signing-keys", jwks.keep_fresh)
    handlers.register(runtime)
    return Portal(
        settings=settings,
        runtime=runtime,
        tokens=TokenValidator(
            jwks, settings.audiences, settings.issuer_template, settings.clock_skew_seconds
        ),
        user_limits=RateLimiter(settings.user_requests_per_minute),
        tenant_limits=RateLimiter(settings.tenant_requests_per_minute),
    )
