"""Fair turns for Graph page work across the tenants a process syncs at once.

A fixed number of page fetches and writes run at a time; when a turn frees, it goes to the
waiting tenant that has had the fewest turns in its sync so far (first come among equals). A
small tenant's handful of pages is served between a large tenant's thousands instead of after
them, while the large tenants share the rest evenly.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class FairTurns:
    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @asynccontextmanager
    async def turn(self, served: int) -> AsyncIterator[None]:
        """Hold one turn; ``served`` is how many turns the caller's sync has had so far."""
        if self._free > 0 and not self._waiting:
            self._free -= 1
        else:
            granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (served, next(self._order), granted))
            try:
                await granted
            except asyncio.CancelledError:
                if granted.done() and not granted.cancelled():
                    self._release()  # granted as it was cancelled: pass the turn on
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            _, _, granted = heapq.heappop(self._waiting)
            if not granted.done():
                granted.set_result(None)
                return
        self._free += 1
