"""ConcurrencyLimit: at most N at once; a call finding none free waits briefly, then is refused."""

from __future__ import annotations

import asyncio

import pytest

from resilience.concurrency import ConcurrencyLimit, LimitReached


async def test_calls_beyond_the_limit_are_refused_after_the_wait():
    limit = ConcurrencyLimit("inventory", 2, max_wait_s=0.05)
    release = asyncio.Event()

    async def hold() -> None:
        async with limit.slot():
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(2)]
    await asyncio.sleep(0.01)
    assert limit.running == 2
    with pytest.raises(LimitReached, match="inventory: 2 call"):
        async with limit.slot():
            pass
    release.set()
    await asyncio.gather(*holders)
    async with limit.slot():
        assert limit.running == 1
    assert limit.running == 0


async def test_a_waiting_call_gets_the_slot_freed_within_its_wait():
    limit = ConcurrencyLimit("orders", 1, max_wait_s=1.0)
    entered = asyncio.Event()

    async def brief() -> None:
        async with limit.slot():
            entered.set()
            await asyncio.sleep(0.05)

    first = asyncio.create_task(brief())
    await entered.wait()
    async with limit.slot():
        assert limit.running == 1
    await first


def test_a_limit_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        ConcurrencyLimit("shipping", 0)
