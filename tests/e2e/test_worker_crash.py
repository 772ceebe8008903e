"""A worker SIGKILLed between the two phases: the coordinator finishes with its decision."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from domain.order_saga import SagaState
from tests import factories
from tests.conftest import start_saga
from tests.factories import eventually

pytestmark = pytest.mark.asyncio
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def reaped() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker processes a test starts; any still running when it ends, pass or fail, is killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


async def start_worker(settings, queue: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": settings.temporal_target,
        "DATABASE_URL": settings.database_target,
        "SAGA_TASK_QUEUE": queue,
        "SAGA_PAYMENT_PROVIDER_URL": settings.payment_provider_target,
        # The session's card token key (security.card_key), not the project's.
        "SAGA_DATA_DIR": str(settings.data_dir),
        "SAGA_WORKER_METRICS_PORT": "0",
        # Keep the sweep out of this test: it is the coordinator that must finish.
        "SAGA_RECOVERY_INTERVAL_S": "3600",
    }
    out = log.open("ab")
    proc = subprocess.Popen(  # noqa: ASYNC220 - only forks; readiness is polled below
        [sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=out, stderr=out
    )
    await eventually(
        lambda: asyncio.sleep(0, log.read_text()), lambda t: "worker serving" in t, deadline_s=60
    )
    return proc


async def test_sigkill_between_phases_completes_with_the_logged_decision(
    client, settings, engine, product, tmp_path, reaped
):
    queue = f"crash-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"
    sku = await product(stock=5, price=1000)
    customer = await factories.insert_wallet(engine, balance=1000)
    order_id = str(uuid.uuid4())
    first = await start_worker(settings, queue, log)
    reaped.append(first)

    async with engine.connect() as blocker:
        await blocker.begin()
        # An uncommitted row under the same tx id: the coordinator's decision
        # insert waits on it, so every participant is prepared and nothing decided.
        await blocker.execute(
            text(
                "INSERT INTO coordinator.decisions (tx_id, decision, participants, votes) "
                "VALUES (:t, 'ABORT', '[]', '{}')"
            ),
            {"t": order_id},
        )
        handle = await start_saga(
            client, queue, [(sku, 2)], customer_id=customer, order_id=order_id, store_credit=800
        )
        prepared = await eventually(
            lambda: factories.prepared_branches(engine, order_id), lambda b: len(b) == 2
        )

        # Every vote in, the card's (TCC at the provider) too: killed before a
        # try answered, the prepare would miss its deadline and the 2PC abort.
        # The decision is logged by a local activity: seen as its insert waiting
        # on the blocker's row, not as a pending activity.
        async def deciding() -> int:
            async with engine.connect() as conn:
                waiting = await conn.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND query ILIKE '%INSERT INTO coordinator.decisions%'"
                    )
                )
            return int(waiting or 0)

        await eventually(deciding, lambda waiting: waiting == 1, deadline_s=30)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        await blocker.rollback()

    # Between the phases, with the coordinator's process dead: still prepared.
    assert prepared == [f"tpc:{order_id}:stock", f"tpc:{order_id}:store_credit"]
    assert await factories.prepared_branches(engine, order_id) == prepared
    second = await start_worker(settings, queue, log)
    reaped.append(second)
    try:
        state: SagaState = await asyncio.wait_for(handle.result(), 90)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)

    assert state.status == "CONFIRMED"
    decision = await factories.decision_of(engine, order_id)
    assert (decision.decision, decision.completed_at is not None) == ("COMMIT", True)
    assert await factories.prepared_branches(engine, order_id) == []
    assert (await factories.hold_of(engine, order_id)).status == "CAPTURED"
    assert await factories.stock_of(engine, sku) == 3
    assert await factories.balance_of(engine, customer) == 200
