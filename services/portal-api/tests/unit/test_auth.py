"""Token validation for the portal API: what Entra issues passes, everything else is refused."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any
from uuid import uuid4

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tenantflow.devinfra.testing import eventually
from tenantflow.portal_api.auth import (
    AuthenticationError,
    JwksCache,
    PortalRole,
    TokenValidator,
)

pytestmark = pytest.mark.unit

CLIENT_ID = "c7b1e2d3-4f5a-4b6c-8d7e-9f0a1b2c3d4e"
TEMPLATE = "https://login.microsoftonline.com/{tenantid}/v2.0"
TENANT, OTHER_TENANT, USER = uuid4(), uuid4(), uuid4()


def b64(number: int) -> str:
    return (
        base64.urlsafe_b64encode(number.to_bytes((number.bit_length() + 7) // 8, "big"))
        .decode()
        .rstrip("=")
    )


class FakeEntra:
    """A JWKS endpoint served from memory, counting fetches."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.fetches = 0
        self.add_key("key-1")

    def add_key(self, kid: str) -> rsa.RSAPrivateKey:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self.keys[kid]

    def jwks(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        keys = []
        for kid, key in self.keys.items():
            numbers = key.public_key().public_numbers()
            keys.append(
                {
                    "kty": "RSA",
                    "use": "sig",
                    "kid": kid,
                    "n": b64(numbers.n),
                    "e": b64(numbers.e),
                    "issuer": TEMPLATE,
                }
            )
        return httpx.Response(200, json={"keys": keys})

    def token(self, kid: str = "key-1", **overrides: Any) -> str:
        now = int(time.time())
        claims = {
            "aud": CLIENT_ID,
            "iss": TEMPLATE.replace("{tenantid}", str(TENANT)),
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "tid": str(TENANT),
            "oid": str(USER),
            "name": "Megan Bowen",
            "preferred_username": "megan@contoso.example",
            "roles": ["Tenantflow.Admin", "Some.Other.Role"],
            "ver": "2.0",
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        pem = self.keys[kid].private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return jwt.encode(claims, pem, algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def entra() -> FakeEntra:
    return FakeEntra()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def jwks_cache(
    entra: FakeEntra,
    min_refresh: float = 60.0,
    max_age: float = 900.0,
    clock: FakeClock | None = None,
) -> JwksCache:
    client = httpx.AsyncClient(transport=httpx.MockTransport(entra.jwks))
    return JwksCache(
        "https://login.example/common/discovery/v2.0/keys",
        client,
        min_refresh,
        max_age,
        clock=clock or FakeClock(),
    )


def validator(entra: FakeEntra, min_refresh: float = 60.0, **options: Any) -> TokenValidator:
    jwks = options.pop("jwks", None) or jwks_cache(entra, min_refresh, **options)
    return TokenValidator(jwks, [CLIENT_ID, f"api://{CLIENT_ID}"], TEMPLATE, clock_skew_seconds=60)


async def test_a_token_entra_issued_is_accepted(entra: FakeEntra) -> None:
    principal = await validator(entra).validate(entra.token())
    assert principal.tenant_id == TENANT
    assert principal.object_id == USER
    assert principal.roles == {PortalRole.ADMIN}  # unknown roles are dropped
    assert principal.has_any(PortalRole.ADMIN, PortalRole.OPERATOR)


async def test_the_app_id_uri_is_an_accepted_audience(entra: FakeEntra) -> None:
    await validator(entra).validate(entra.token(aud=f"api://{CLIENT_ID}"))


def hs256_with_the_public_key(entra: FakeEntra) -> str:
    public = (
        entra.keys["key-1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    now = int(time.time())
    claims = {
        "aud": CLIENT_ID,
        "iss": TEMPLATE.replace("{tenantid}", str(TENANT)),
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "tid": str(TENANT),
        "oid": str(USER),
    }
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","kid":"key-1","typ":"JWT"}').rstrip(b"=")

    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    signature = hmac.new(public, header + b"." + body, hashlib.sha256).digest()
    return (header + b"." + body + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()


def unknown_key(entra: FakeEntra) -> str:
    entra.add_key("never-published")
    token = entra.token("never-published")
    del entra.keys["never-published"]
    return token


def own_key_with_a_real_kid(entra: FakeEntra) -> str:
    """Signed by a key of the attacker's own, naming a kid Entra publishes."""
    forger = FakeEntra()  # its key-1 is another RSA key
    return forger.token("key-1")


def signed_with(algorithm: str) -> Any:
    """Entra's own key, but an algorithm other than the RS256 Entra signs with."""

    def make(entra: FakeEntra) -> str:
        _, body, _ = entra.token().split(".")
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        pem = entra.keys["key-1"].private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return jwt.encode(claims, pem, algorithm=algorithm, headers={"kid": "key-1"})

    return make


def alg_none(entra: FakeEntra) -> str:
    _, body, _ = entra.token().split(".")
    none = base64.urlsafe_b64encode(b'{"alg":"none","kid":"key-1"}').rstrip(b"=").decode()
    return f"{none}.{body}."


@pytest.mark.parametrize(
    ("case", "make"),
    [
        ("expired", lambda e: e.token(exp=int(time.time()) - 600, iat=int(time.time()) - 4000)),
        ("not yet valid", lambda e: e.token(nbf=int(time.time()) + 600)),
        ("wrong audience", lambda e: e.token(aud=str(uuid4()))),
        ("audience list holding ours", lambda e: e.token(aud=[CLIENT_ID, str(uuid4())])),
        ("audience list of only ours", lambda e: e.token(aud=[CLIENT_ID])),
        ("wrong issuer", lambda e: e.token(iss=f"https://sts.windows.net/{TENANT}/")),
        (
            "a v1.0 token (v1 issuer and version)",
            lambda e: e.token(iss=f"https://sts.windows.net/{TENANT}/", ver="1.0"),
        ),
        ("signed by our own key naming a real kid", own_key_with_a_real_kid),
        ("RS384 with Entra's key", signed_with("RS384")),
        ("RS512 with Entra's key", signed_with("RS512")),
        ("PS256 with Entra's key", signed_with("PS256")),
        (
            "issuer of another tenant",
            lambda e: e.token(iss=TEMPLATE.replace("{tenantid}", str(OTHER_TENANT))),
        ),
        (
            "tid not a GUID",
            lambda e: e.token(tid="contoso", iss=TEMPLATE.replace("{tenantid}", "contoso")),
        ),
        ("no oid", lambda e: e.token(oid=None)),
        ("unknown key", unknown_key),
        ("alg none", alg_none),
        ("HS256 signed with the public key", hs256_with_the_public_key),
        ("garbage", lambda e: "not.a.token"),
    ],
)
async def test_refused(entra: FakeEntra, case: str, make: Any) -> None:
    token = make(entra)
    with pytest.raises(AuthenticationError):
        await validator(entra).validate(token)


async def test_unknown_kids_do_not_cause_a_refetch_storm(entra: FakeEntra) -> None:
    checker = validator(entra, min_refresh=60.0)
    await checker.validate(entra.token())
    assert entra.fetches == 1
    entra.add_key("rotated")
    rotated = entra.token("rotated")
    entra.keys.pop("rotated")  # not yet published when asked: unknown
    results = await asyncio.gather(
        *(checker.validate(rotated) for _ in range(50)), return_exceptions=True
    )
    assert all(isinstance(r, AuthenticationError) for r in results)
    assert entra.fetches == 1  # within the interval: no refetch at all


async def test_a_rotated_key_is_fetched_once_after_the_interval(entra: FakeEntra) -> None:
    checker = validator(entra, min_refresh=1.0)
    await checker.validate(entra.token())
    entra.add_key("rotated")
    checker._jwks._clock.now += 2  # type: ignore[attr-defined]  # the interval has passed
    results = await asyncio.gather(*(checker.validate(entra.token("rotated")) for _ in range(20)))
    assert {r.object_id for r in results} == {USER}
    assert entra.fetches == 2  # one refresh served all twenty


async def test_a_retired_key_is_refused_within_the_maximum_age(entra: FakeEntra) -> None:
    clock = FakeClock()
    jwks = jwks_cache(entra, min_refresh=60.0, max_age=900.0, clock=clock)
    checker = validator(entra, jwks=jwks)
    entra.add_key("key-2")
    await checker.validate(entra.token("key-2"))
    retired = entra.token("key-2")
    del entra.keys["key-2"]  # Entra ID retires the key (say, after a compromise)
    clock.now += 300
    await checker.validate(retired)  # not yet due: the cache still holds it
    assert await jwks.refresh_if_due() == pytest.approx(150.0)
    clock.now += 150  # half the maximum age: the background refresh is due
    assert await jwks.refresh_if_due() == pytest.approx(450.0)
    with pytest.raises(AuthenticationError):
        await checker.validate(retired)
    await checker.validate(entra.token("key-1"))  # the keys still published keep working
    assert entra.fetches == 2  # the known kid never made a request fetch


async def test_keys_no_refresh_could_renew_are_not_trusted_past_their_age(
    entra: FakeEntra,
) -> None:
    clock = FakeClock()
    failing = {"now": False}

    def jwks(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503) if failing["now"] else entra.jwks(request)

    cache = JwksCache(
        "https://login.example/keys",
        httpx.AsyncClient(transport=httpx.MockTransport(jwks)),
        min_refresh_seconds=60.0,
        max_age_seconds=900.0,
        clock=clock,
    )
    checker = validator(entra, jwks=cache)
    await checker.validate(entra.token())
    failing["now"] = True  # Entra's key endpoint is down: refreshes fail
    clock.now += 450
    assert await cache.refresh_if_due() == pytest.approx(60.0)  # retried after the minimum
    clock.now += 449
    await checker.validate(entra.token())  # still within the maximum age
    clock.now += 2
    with pytest.raises(AuthenticationError):
        await checker.validate(entra.token())  # too old to trust, and no fresh copy
    failing["now"] = False
    clock.now += 60
    await checker.validate(entra.token())  # the next allowed fetch restores them


async def test_the_background_refresh_keeps_requests_off_the_network(entra: FakeEntra) -> None:
    clock = FakeClock()
    jwks = jwks_cache(entra, clock=clock)
    checker = validator(entra, jwks=jwks)
    await jwks.refresh_if_due()  # at start-up
    for _ in range(3):
        clock.now += 450
        await jwks.refresh_if_due()
        await asyncio.gather(*(checker.validate(entra.token()) for _ in range(10)))
    assert entra.fetches == 4  # one at start, one per half age: none from requests


async def test_keep_fresh_runs_until_cancelled(entra: FakeEntra) -> None:
    jwks = jwks_cache(entra)
    task = asyncio.create_task(jwks.keep_fresh())
    await eventually(lambda: entra.fetches == 1, within=5.0, what="the first refresh")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
