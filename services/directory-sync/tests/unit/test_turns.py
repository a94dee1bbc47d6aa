"""Turns go to the sync that has had the fewest, and none is lost to a cancellation."""

from __future__ import annotations

import asyncio

import pytest

from tenantflow.directory_sync.turns import FairTurns

pytestmark = pytest.mark.unit


async def test_the_least_served_waiter_goes_first() -> None:
    turns = FairTurns(1)
    order: list[str] = []
    release = asyncio.Event()

    async def work(name: str, served: int) -> None:
        async with turns.turn(served):
            order.append(name)
            await release.wait()

    holder = asyncio.create_task(work("holder", 0))
    await asyncio.sleep(0)
    waiters = [
        asyncio.create_task(work(name, served))
        for name, served in (("big-a", 40), ("big-b", 40), ("small", 1))
    ]
    for _ in range(3):
        await asyncio.sleep(0)
    release.set()
    await asyncio.wait_for(asyncio.gather(holder, *waiters), timeout=5)
    assert order == ["holder", "small", "big-a", "big-b"]


async def test_a_cancelled_waiter_does_not_keep_a_turn() -> None:
    turns = FairTurns(1)
    release = asyncio.Event()

    async def hold() -> None:
        async with turns.turn(0):
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(hold())
    await asyncio.sleep(0)
    cancelled.cancel()
    release.set()
    await asyncio.wait_for(holder, timeout=5)
    with pytest.raises(asyncio.CancelledError):
        await cancelled

    async def quick() -> str:
        async with turns.turn(0):
            return "served"

    assert await asyncio.wait_for(quick(), timeout=5) == "served"


async def test_up_to_the_number_of_slots_run_at_once() -> None:
    turns = FairTurns(2)
    running, most = 0, 0

    async def work() -> None:
        nonlocal running, most
        async with turns.turn(0):
            running += 1
            most = max(most, running)
            await asyncio.sleep(0)
            running -= 1

    await asyncio.wait_for(asyncio.gather(*(work() for _ in range(10))), timeout=5)
    assert most == 2
