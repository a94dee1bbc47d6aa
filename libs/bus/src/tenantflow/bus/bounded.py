"""Waiting with a limit, for shutdown paths that must end whatever a dependency does."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

log = logging.getLogger(__name__)


async def bounded(awaitable: Awaitable[Any], seconds: float, what: str) -> bool:
    """Await ``awaitable`` for at most ``seconds``; past that, cancel it and go on without
    waiting for the cancellation to land (a cancelled coroutine can still be stuck, in a
    ``finally`` for example). A failure is logged, not raised: a shutdown step that fails must
    not stop the steps after it. True when it finished in time."""
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=max(seconds, 0.0))
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        log.warning("%s did not finish within %.1f s; given up", what, seconds)
        return False
    if not task.cancelled() and task.exception() is not None:
        log.warning("%s failed: %r", what, task.exception())
    return True
