"""Which failures are retried until they pass, and how a dead letter finds its tenant."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from uuid import UUID, uuid4

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError, OperationalError

from tenantflow.bus.consumer import NIL_TENANT, _correlation_of, _tenant_of
from tenantflow.bus.errors import PermanentError, TransientError, is_transient

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "exc",
    [
        TransientError("Graph 503"),
        OperationalError("SELECT 1", {}, Exception("connection refused")),
        ConnectionResetError(),
        TimeoutError(),
        asyncpg.exceptions.ConnectionDoesNotExistError("gone"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    ],
)
def test_infrastructure_failures_are_transient(exc: BaseException) -> None:
    assert is_transient(exc)


def _wrapped(driver_error: Exception) -> DBAPIError:
    """As SQLAlchemy's asyncpg adapter raises it: its own error, caused by the driver's."""
    adapted = Exception(str(driver_error))
    adapted.__cause__ = driver_error
    return DBAPIError("SELECT 1", {}, adapted, connection_invalidated=False)


def test_a_server_restart_seen_through_sqlalchemy_is_transient() -> None:
    assert is_transient(_wrapped(asyncpg.exceptions.AdminShutdownError("postmaster exit")))
    assert is_transient(_wrapped(asyncpg.exceptions.ConnectionDoesNotExistError("closed")))
    assert not is_transient(_wrapped(asyncpg.exceptions.UniqueViolationError("duplicate")))


@pytest.mark.parametrize("exc", [PermanentError("bad"), KeyError("bug"), ValueError("x")])
def test_other_failures_are_not(exc: BaseException) -> None:
    assert not is_transient(exc)


@dataclass
class FakeRecord:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    topic: str = "tenantflow.tenants"
    partition: int = 1
    offset: int = 7


def test_tenant_comes_from_the_key_then_the_subject() -> None:
    tenant = uuid4()
    assert _tenant_of(FakeRecord(key=str(tenant).encode(), value=None)) == tenant
    from_subject = FakeRecord(
        key=b"not-a-uuid", value=None, headers=[("ce_subject", str(tenant).encode())]
    )
    assert _tenant_of(from_subject) == tenant
    assert _tenant_of(FakeRecord(key=None, value=None)) == NIL_TENANT


def test_correlation_is_read_or_derived_stably() -> None:
    correlation = uuid4()
    record = FakeRecord(key=None, value=json.dumps({"correlation_id": str(correlation)}).encode())
    assert _correlation_of(record) == correlation
    poison = FakeRecord(key=None, value=b"\xff garbage")
    assert _correlation_of(poison) == _correlation_of(poison)
    assert isinstance(_correlation_of(poison), UUID)
