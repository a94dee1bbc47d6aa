"""How a handler tells the bus what kind of failure it hit."""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError


class PermanentError(Exception):
    """Retrying cannot help (bad data, a rule broken): dead-letter the message at once."""


class TransientError(Exception):
    """Retrying later can help (a dependency is down or throttling): never dead-letter."""


def is_transient(exc: BaseException) -> bool:
    """Infrastructure failures are retried until they pass; they say nothing about the message."""
    if isinstance(exc, TransientError | OperationalError | InterfaceError | OSError | TimeoutError):
        return True
    if isinstance(exc, asyncio.TimeoutError | asyncpg.PostgresConnectionError):
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated
