"""Shutdown steps are waited for with a limit, even a step that will not be cancelled."""

from __future__ import annotations

import asyncio

import pytest

from tenantflow.bus.bounded import bounded

pytestmark = pytest.mark.unit


async def test_a_step_that_ignores_cancellation_is_given_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await release.wait()  # like a flush to a broker that is gone

    loop = asyncio.get_running_loop()
    started = loop.time()
    finished = await asyncio.wait_for(bounded(stubborn(), 0.2, "flush"), 5.0)
    assert finished is False
    assert loop.time() - started < 2.0
    assert "flush did not finish within 0.2 s" in caplog.text
    release.set()  # let the abandoned task end with the test


async def test_a_failing_step_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def failing() -> None:
        raise RuntimeError("boom")

    assert await bounded(failing(), 1.0, "close") is True
    assert "close failed: RuntimeError('boom')" in caplog.text


async def test_cancelling_the_wait_cancels_the_step() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def step() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    waiter = asyncio.create_task(bounded(step(), 60.0, "step"))
    await asyncio.wait_for(started.wait(), 5.0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.wait_for(cancelled.wait(), 5.0)
