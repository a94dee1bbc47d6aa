"""How a handler tells the bus what kind of failure it hit."""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError


class PermanentError(Exception):
    """Retrying cannot help (bad data, a rule broken): dead-letter the message at once."""


class TransientError(Exception):
    """Retrying later can help (a dependency is down or throttling): never dead-letter."""


SERVER_GONE = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
)
"""The database server went away, is shutting down or is starting up (a restart, a failover)."""


def is_transient(exc: BaseException) -> bool:
    """Infrastructure failures are retried until they pass; they say nothing about the message."""
    if isinstance(exc, TransientError | OperationalError | InterfaceError | OSError | TimeoutError):
        return True
    if isinstance(exc, (asyncio.TimeoutError, *SERVER_GONE)):
        return True
    if isinstance(exc, DBAPIError):
        # SQLAlchemy's asyncpg adapter wraps the driver's error: its cause says what happened
        return exc.connection_invalidated or any(
            isinstance(cause, SERVER_GONE) for cause in _causes(exc.orig)
        )
    return False


def _causes(exc: BaseException | None) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from (a short chain; a cycle ends it)."""
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__
    return chain
