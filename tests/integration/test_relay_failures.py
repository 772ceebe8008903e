"""Events the broker refuses, in both relay modes: one count of attempts kept in the row
across restarts, retries that hold back only their own aggregate, and a re-drive that is
published at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select, update

from db.tables import service_tables
from messaging import wire
from relay.service import run_relay
from relay.stats import RelayStats
from settings import Settings
from stack.cli import main
from tests.factories import eventually
from tests.integration.test_cdc_relay import wait_until_reading
from tests.integration.test_relay import messages_for, statuses, write_events
from wiring.served import RELAYED
from wiring.services import RELAY_PARTITIONS

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(180)]
OUTBOX = service_tables["orders"].outbox
# Past NATS's 1 MB max payload: refused by the client, every time, until fixed.
TOO_BIG = "x" * 1_100_000


@pytest.fixture(params=["hybrid", "cdc"])
def mode_settings(request: pytest.FixtureRequest, relay_settings: Settings) -> Settings:
    """The relay's settings in each mode; in CDC mode with the slot made before the test
    writes (dropped after)."""
    if request.param == "cdc":
        request.getfixturevalue("slot")
    return relay_settings.model_copy(update={"relay_mode": request.param})


@contextlib.asynccontextmanager
async def relaying(engine, settings: Settings) -> AsyncIterator[RelayStats]:
    """A relay in this process until the block ends; in CDC mode, once it reads the slot."""
    stop, stats = asyncio.Event(), RelayStats()
    # All partitions and no leases: alone, it need not wait for a dead instance's to lapse.
    task = asyncio.create_task(
        run_relay(
            settings.relay(), stop, tables=RELAYED, partitions=range(RELAY_PARTITIONS), stats=stats
        )
    )
    try:
        if settings.relay_mode == "cdc":
            await wait_until_reading(engine, task, stats)
        yield stats
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def outbox_row(engine, event_id: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(select(OUTBOX).where(OUTBOX.c.event_id == event_id))).one()


async def fix_payload(engine, event_id: str, payload: dict[str, Any]) -> None:
    """What an operator does before a re-drive: mend the row the broker refused."""
    async with engine.begin() as conn:
        await conn.execute(
            update(OUTBOX).where(OUTBOX.c.event_id == event_id).values(payload=payload)
        )


async def test_attempts_are_counted_in_the_row_across_a_restart_until_the_dead_letter(
    engine, js, mode_settings, caplog
):
    caplog.set_level(logging.WARNING, logger="relay.publisher")
    settings = mode_settings  # relay_max_attempts=3
    order_id = str(uuid.uuid4())
    async with relaying(engine, settings):
        [poison] = await write_events(engine, order_id, ["Huge"], blob=TOO_BIG)
        await eventually(lambda: outbox_row(engine, poison), lambda r: r.attempts >= 1)
    stopped = await outbox_row(engine, poison)
    seen: list[Any] = []

    async def watched() -> Any:
        seen.append(await outbox_row(engine, poison))
        return seen[-1]

    async with relaying(engine, settings):
        final = await eventually(watched, lambda r: r.status == "FAILED", deadline_s=60)
    [letter] = await messages_for(js, order_id, 1, prefix="deadletter")

    assert (stopped.status, stopped.last_error is not None) == ("PENDING", True)
    assert 1 <= stopped.attempts < 3
    assert stopped.next_attempt_at is not None  # backing off, in the row, in both modes
    assert all(r.next_attempt_at is not None for r in seen)
    # Never counted again from zero: each attempt once, before and after the restart.
    assert seen and [r.attempts for r in seen] == sorted(r.attempts for r in seen)
    assert min(r.attempts for r in seen) >= stopped.attempts
    assert attempts_logged(caplog, poison) == ["1 of 3", "2 of 3", "dead after 3"]
    assert final.attempts == 3
    assert letter.subject == "deadletter.order.Huge"
    assert letter.headers["Dead-Letter-Reason"] == final.last_error


def attempts_logged(caplog: pytest.LogCaptureFixture, event_id: str) -> list[str]:
    """The relay's line for each failed attempt of the event, in the order they came."""
    found = []
    for record in caplog.records:
        text = record.getMessage()
        if retrying := re.match(rf"event {event_id} failed, attempt (\d+ of \d+)", text):
            found.append(retrying[1])
        elif dead := re.match(rf"event {event_id} dead-lettered after (\d+) attempts", text):
            found.append(f"dead after {dead[1]}")
    return found


async def test_a_redriven_dead_letter_is_published_at_once_by_the_running_relay(
    engine, js, mode_settings, monkeypatch, capsys
):
    # Hybrid's poll is far off, so only the re-drive's NOTIFY can wake it in time; CDC's
    # retry sweep runs every poll interval (0.2 s here).
    poll_s = 0.2 if mode_settings.relay_mode == "cdc" else 60.0
    settings = mode_settings.model_copy(
        update={"relay_max_attempts": 1, "relay_poll_interval_s": poll_s}
    )
    order_id = str(uuid.uuid4())
    monkeypatch.setenv("DATABASE_URL", settings.database_target)
    async with relaying(engine, settings):
        [event] = await write_events(engine, order_id, ["Huge"], blob=TOO_BIG)
        dead = await eventually(lambda: outbox_row(engine, event), lambda r: r.status == "FAILED")
        await fix_payload(engine, event, {"order_id": order_id, "mended": True})
        assert await asyncio.to_thread(main, ["dead-letters", "--redrive", event]) == 0
        published = await eventually(
            lambda: outbox_row(engine, event), lambda r: r.status == "PUBLISHED", deadline_s=5
        )
        [msg] = await messages_for(js, order_id, 1)

    assert dead.attempts == 1
    assert "re-driven: 1 event(s)" in capsys.readouterr().out
    assert msg.headers[wire.MSG_ID] == event
    assert json.loads(msg.data)["payload"] == {"order_id": order_id, "mended": True}
    assert published.attempts == 1  # a fresh count: the re-drive's one attempt


async def test_a_cdc_event_retrying_holds_back_its_aggregate_only(engine, js, relay_settings, slot):
    # One slot batch holds about two transactions: the rest lie beyond the retrying one.
    settings = relay_settings.model_copy(
        update={"relay_mode": "cdc", "relay_batch_size": 5, "relay_max_attempts": 1000}
    )
    stuck = str(uuid.uuid4())
    async with relaying(engine, settings):
        [poison] = await write_events(engine, stuck, ["Huge"], blob=TOO_BIG)
        [behind] = await write_events(engine, stuck, ["Behind"])
        others = [(await write_events(engine, str(uuid.uuid4()), ["Free"]))[0] for _ in range(8)]
        freed = await eventually(
            lambda: statuses(engine, others), lambda s: s == ["PUBLISHED"] * len(others)
        )
        retrying = await eventually(lambda: outbox_row(engine, poison), lambda r: r.attempts >= 2)
        held = await statuses(engine, [poison, behind])
        await fix_payload(engine, poison, {"order_id": stuck})
        msgs = await messages_for(js, stuck, 2)

    assert freed == ["PUBLISHED"] * len(others)
    assert (retrying.status, retrying.next_attempt_at is not None) == ("PENDING", True)
    assert held == ["PENDING", "PENDING"]  # the later event waits for the retrying one
    assert [m.headers[wire.MSG_ID] for m in msgs] == [poison, behind]
