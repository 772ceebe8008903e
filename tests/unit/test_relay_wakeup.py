"""The polling relay's wake-up: a ring ends a sleep, a linger lets rings gather,
and a stop ends either at once."""

from __future__ import annotations

import asyncio
import time

from relay.polling_loop import Wakeup


async def test_a_ring_ends_a_sleep_and_names_its_outbox() -> None:
    wake = Wakeup()
    asleep = asyncio.ensure_future(wake.sleep(30))
    await asyncio.sleep(0)
    wake.notified("orders")
    await asyncio.wait_for(asleep, 1)
    assert wake.rung()
    assert wake.take() == {"orders"}
    assert not wake.rung()


async def test_a_ring_heard_before_the_sleep_is_not_slept_through() -> None:
    wake = Wakeup()
    wake.notified("stock")
    began = time.monotonic()
    await wake.sleep(30)
    assert time.monotonic() - began < 1


async def test_a_sleep_with_no_ring_lasts_its_timeout() -> None:
    wake = Wakeup()
    began = time.monotonic()
    await wake.sleep(0.05)
    assert time.monotonic() - began >= 0.04
    assert not wake.rung()


async def test_a_linger_gathers_rings_without_ending_and_a_stop_ends_it() -> None:
    wake = Wakeup()
    lingering = asyncio.ensure_future(wake.linger(30))
    await asyncio.sleep(0)
    wake.notified("orders")
    wake.notified("payments")
    await asyncio.sleep(0.05)
    assert not lingering.done()  # the rings wait for the pass after it
    wake.interrupt()
    await asyncio.wait_for(lingering, 1)
    assert wake.take() == {"orders", "payments"}
    began = time.monotonic()
    await wake.sleep(30)  # stopped: no sleep lasts any more
    await wake.linger(30)
    assert time.monotonic() - began < 1
