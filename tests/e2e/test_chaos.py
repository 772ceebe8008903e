"""The short chaos run: every kind of fault strikes under load, and every order still ends clean.

The same run as `make chaos`, smaller: its own system on free ports (worker,
relay, consumers, choreography handlers and API as processes; PostgreSQL,
Temporal on SQLite, NATS), each fault once, orchestrated and choreographed
orders mixed. The verdict is the audit over PostgreSQL, the provider's
books and Temporal's open sagas, and the database's orders against what the
clients were told.
"""

from __future__ import annotations

from collections import Counter

import pytest

from bench.orders import Mix
from chaos.faults import Fault
from chaos.run import ChaosPlan, run_chaos

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(600)]


async def test_orders_end_fully_done_or_undone_while_every_part_dies_once():
    plan = ChaosPlan(
        faults=len(Fault),
        gap_s=(1.5, 3.0),
        outage_s=(0.5, 1.5),
        concurrency=3,
        mix=Mix(declined=0.1, out_of_stock=0.1, cancelled=0.1, store_credit=0.2),
        settle_s=180,
        choreography=0.4,
        seed=20261125,
    )

    report = await run_chaos(plan, say=print)

    assert {s.fault for s in report.struck} == set(Fault)
    assert report.violations == []
    assert report.open_sagas == 0
    told = Counter(o.status for o in report.outcomes)
    assert set(told) <= {"CONFIRMED", "CANCELLED"}, report.summary()
    assert told["CONFIRMED"] > 0
    modes = Counter(o.mode for o in report.outcomes)
    assert modes["choreography"] > 0 and modes["orchestration"] > 0
    # What each client was told is what PostgreSQL holds.
    assert report.orders_by_status == dict(sorted(told.items()))
    assert report.passed
